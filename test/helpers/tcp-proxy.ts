/**
 * A small Toxiproxy-like TCP proxy for fault tests: put it between a client and a broker, then
 * cut the live connections or refuse new ones while the test watches how the client copes.
 *
 *   const proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: 5672 });
 *   connect(`amqp://guest:guest@127.0.0.1:${proxy.port}`) ...
 *   proxy.cutAll();            // every live connection is reset (client sees ECONNRESET)
 *   proxy.setEnabled(false);   // new connections are refused (ECONNREFUSED), live ones stay
 *   proxy.setEnabled(true);    // accept again, on the same port
 *   await proxy.close();
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';

export interface TcpProxyOptions {
  targetHost: string;
  targetPort: number;
  /** Interface to listen on; default 127.0.0.1. The port is always ephemeral. */
  listenHost?: string;
}

export interface TcpProxy {
  /** Port the proxy listens on (stays the same across setEnabled(false/true)). */
  readonly port: number;
  readonly host: string;
  /** Number of client connections currently forwarded. */
  readonly activeConnections: number;
  /** Client connections accepted since the proxy started (how often a client tried). */
  readonly accepted: number;
  /** Reset every live connection, on both sides. New connections are still accepted if enabled. */
  cutAll(): void;
  /**
   * false: stop listening, so new connections are refused (ECONNREFUSED) while live ones keep
   * flowing; true: listen again on the same port.
   */
  setEnabled(enabled: boolean): void;
  /** Cut everything and stop listening. */
  close(): Promise<void>;
}

export async function startTcpProxy(options: TcpProxyOptions): Promise<TcpProxy> {
  const { targetHost, targetPort } = options;
  const host = options.listenHost ?? '127.0.0.1';
  const pairs = new Set<readonly [Socket, Socket]>();
  let listening = false;
  let closed = false;
  let accepted = 0;

  const server: Server = createServer((client) => {
    accepted++;
    const upstream = connect({ host: targetHost, port: targetPort });
    const pair = [client, upstream] as const;
    pairs.add(pair);
    let done = false;
    const drop = () => {
      if (done) return;
      done = true;
      pairs.delete(pair);
      // One side ended or failed: tear down the other abruptly too, like a broken link.
      if (!client.destroyed) client.resetAndDestroy();
      if (!upstream.destroyed) upstream.resetAndDestroy();
    };
    for (const socket of pair) {
      socket.setNoDelay(true);
      socket.on('error', drop);
      socket.on('close', drop);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.on('error', () => {
    // A failed re-listen after setEnabled(true) leaves the proxy refusing; tests notice.
    listening = false;
  });

  server.listen({ host, port: 0, exclusive: true });
  await once(server, 'listening');
  listening = true;
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('tcp proxy: no port');
  const port = address.port;

  const cutAll = () => {
    for (const [client, upstream] of [...pairs]) {
      client.resetAndDestroy();
      upstream.resetAndDestroy();
    }
    pairs.clear();
  };

  return {
    port,
    host,
    get activeConnections() {
      return pairs.size;
    },
    get accepted() {
      return accepted;
    },
    cutAll,
    setEnabled(enabled: boolean) {
      if (closed) throw new Error('tcp proxy is closed');
      if (enabled && !listening) {
        // Binds within a tick: a client connecting afterwards finds the port open.
        server.listen({ host, port, exclusive: true });
        listening = true;
      } else if (!enabled && listening) {
        server.close(); // closes the listening socket now; live connections continue
        listening = false;
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      cutAll();
      if (listening) {
        listening = false;
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    },
  };
}
