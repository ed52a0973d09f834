/**
 * A private nats-server with JetStream for fault tests: on a free port with its own store
 * directory, so it can be killed and restarted without touching the machine's shared server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BINARY = process.env.NATS_SERVER_BIN ?? 'nats-server';

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  server.close();
  return port;
}

export async function listening(port: number, limitMs: number): Promise<void> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1', () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${BINARY} did not listen on 127.0.0.1:${port} within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface PrivateNatsServer {
  readonly url: string;
  readonly port: number;
  /** SIGKILL: no goodbye to the clients. */
  kill(): Promise<void>;
  /** Starts again on the same port and store: JetStream keeps its streams. */
  start(): Promise<void>;
  /** Stops it for good and removes its store. */
  dispose(): Promise<void>;
}

export async function startPrivateNatsServer(): Promise<PrivateNatsServer> {
  const port = await freePort();
  const store = mkdtempSync(join(tmpdir(), 'sluice-nats-'));
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn(BINARY, ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', store], { stdio: 'ignore' });
    child.on('error', () => {});
    await listening(port, 15_000);
  };
  const kill = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    c.kill('SIGKILL');
    await once(c, 'exit');
  };
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    kill,
    start,
    async dispose() {
      await kill();
      rmSync(store, { recursive: true, force: true });
    },
  };
}
