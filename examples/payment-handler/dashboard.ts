/**
 * The demo's live dashboard (runService's /dashboard): on a local port, loopback only.
 *
 *   --dashboard-port 9464   the port (default 9464; a free one when 9464 is taken); `off` for none
 *   --dashboard-wait 15     on a terminal: seconds to wait for a page to connect before the burst
 *                           is published (0: publish at once); piped, it never waits
 *
 * On a terminal the demo also keeps the dashboard up once every message is settled, until Ctrl-C:
 * the page only records while it is open, so it has to be open during the burst to chart it.
 */
import { createServer } from 'node:net';
import type { Service } from '../../src/index.js';
import { log } from './progress.js';

export interface DashboardMode {
  /** undefined: no dashboard. */
  port: number | undefined;
  waitMs: number;
  interactive: boolean;
}

export function dashboardMode(portOption: string, waitOption: string, interactive: boolean): DashboardMode {
  const port = portOption === 'off' ? undefined : Number(portOption);
  if (port !== undefined && !(Number.isInteger(port) && port >= 0 && port < 65536)) {
    throw new RangeError(`--dashboard-port must be a port number (0 for any free one) or off, got ${JSON.stringify(portOption)}`);
  }
  const waitS = Number(waitOption);
  if (!(waitS >= 0)) throw new RangeError(`--dashboard-wait must be a number of seconds >= 0, got ${JSON.stringify(waitOption)}`);
  return { port, waitMs: interactive ? waitS * 1000 : 0, interactive };
}

/** `port` if nothing listens on it on 127.0.0.1, else 0 (the system picks a free one). */
export function freePort(port: number): Promise<number> {
  if (port === 0) return Promise.resolve(0);
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', () => resolve(0));
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(port)));
  });
}

export function dashboardUrl(service: Service): string | undefined {
  const address = service.httpAddress;
  return service.dashboard && address ? `http://127.0.0.1:${address.port}/dashboard` : undefined;
}

/** On a terminal: waits until a page is connected (or the time is up), so that the burst is charted. */
export async function waitForViewer(service: Service, mode: DashboardMode): Promise<void> {
  const dashboard = service.dashboard;
  if (!dashboard || mode.waitMs === 0 || dashboard.watchers > 0) return;
  log(`  open the dashboard now: the burst starts when a page connects (or in ${Math.round(mode.waitMs / 1000)} s)`);
  const deadline = performance.now() + mode.waitMs;
  while (dashboard.watchers === 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  log(dashboard.watchers > 0 ? '  a dashboard page is connected: publishing' : '  no page connected: publishing anyway');
}

/** On a terminal: keeps serving the dashboard until Ctrl-C. */
export async function linger(service: Service, mode: DashboardMode): Promise<void> {
  const url = dashboardUrl(service);
  if (!url || !mode.interactive) return;
  log(`\nevery message is settled; the dashboard stays up at ${url}: Ctrl-C to drain and print the summary`);
  await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
}
