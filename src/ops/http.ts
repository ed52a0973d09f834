import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Dashboard } from './dashboard.js';
import type { ServiceHealth } from './service.js';

export interface HealthServer {
  address: AddressInfo;
  close(): Promise<void>;
}

/**
 * A tiny node:http endpoint: /healthz (liveness), /readyz (readiness: connected and not
 * draining), /metrics when metrics are on, /dashboard (and its /dashboard/events stream) when a
 * dashboard is given. No framework, loopback unless told otherwise.
 */
export async function serveHealth(options: {
  port: number;
  host?: string;
  health: () => ServiceHealth;
  metrics?: () => Promise<{ contentType: string; body: string }>;
  dashboard?: Dashboard;
}): Promise<HealthServer> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (options.dashboard?.handle(req, res, '/dashboard')) return;
    const json = (code: number, body: unknown) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method !== 'GET') return json(405, { error: 'GET only' });
    if (path === '/healthz') {
      const h = options.health();
      return json(h.live ? 200 : 503, h);
    }
    if (path === '/readyz') {
      const h = options.health();
      return json(h.ready ? 200 : 503, h);
    }
    if (path === '/metrics' && options.metrics) {
      options.metrics().then(
        ({ contentType, body }) => {
          res.writeHead(200, { 'content-type': contentType });
          res.end(body);
        },
        (error: unknown) => json(500, { error: String(error) }),
      );
      return;
    }
    json(404, { error: `no route ${path}` });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => resolve());
  });
  return {
    address: server.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
