import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';

/** Echo server on an ephemeral 127.0.0.1 port that remembers its live sockets. */
async function startEchoServer(): Promise<{ server: Server; port: number; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    socket.pipe(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  return { server, port: address.port, sockets };
}

function connectTo(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Write `payload` and collect exactly payload.length echoed bytes. */
function roundTrip(socket: Socket, payload: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      received += chunk.length;
      if (received >= payload.length) {
        socket.off('data', onData);
        resolve(Buffer.concat(chunks));
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(payload);
  });
}

/** Resolves when the socket closes (events.once would reject on the 'error' that precedes it). */
function closeOf(socket: Socket): Promise<void> {
  return new Promise((resolve) => socket.once('close', () => resolve()));
}

async function waitFor(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('startTcpProxy', () => {
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let proxy: TcpProxy;
  const clients: Socket[] = [];

  beforeEach(async () => {
    echo = await startEchoServer();
    proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: echo.port });
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.destroy();
    await proxy.close();
    for (const s of echo.sockets) s.destroy();
    await new Promise<void>((resolve) => echo.server.close(() => resolve()));
  });

  it('listens on 127.0.0.1 with an ephemeral port and forwards bytes both ways', async () => {
    expect(proxy.host).toBe('127.0.0.1');
    expect(proxy.port).toBeGreaterThan(0);
    expect(proxy.port).not.toBe(echo.port);

    const client = await connectTo(proxy.port);
    clients.push(client);
    expect((await roundTrip(client, Buffer.from('ping'))).toString()).toBe('ping');

    // A payload much larger than one TCP segment arrives intact and in order.
    const big = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = i % 251;
    expect((await roundTrip(client, big)).equals(big)).toBe(true);

    expect(proxy.activeConnections).toBe(1);
    expect(echo.sockets.size).toBe(1);
  });

  it('cutAll drops live connections on both sides', async () => {
    const a = await connectTo(proxy.port);
    const b = await connectTo(proxy.port);
    clients.push(a, b);
    expect((await roundTrip(a, Buffer.from('a'))).toString()).toBe('a');
    expect((await roundTrip(b, Buffer.from('b'))).toString()).toBe('b');
    expect(echo.sockets.size).toBe(2);

    const errors: Error[] = [];
    a.on('error', (e) => errors.push(e));
    b.on('error', (e) => errors.push(e));
    const closed = Promise.all([closeOf(a), closeOf(b)]);

    proxy.cutAll();

    await closed;
    expect(a.destroyed && b.destroyed).toBe(true);
    // The proxy resets (RST), so the client sees an error, not a clean end of stream.
    expect(errors.map((e) => (e as NodeJS.ErrnoException).code)).toEqual(['ECONNRESET', 'ECONNRESET']);
    expect(proxy.activeConnections).toBe(0);
    // The upstream (broker) side is gone too.
    await waitFor(() => echo.sockets.size === 0);

    // New connections still work after a cut.
    const c = await connectTo(proxy.port);
    clients.push(c);
    expect((await roundTrip(c, Buffer.from('again'))).toString()).toBe('again');
  });

  it('setEnabled(false) refuses new connections but keeps live ones; true accepts again on the same port', async () => {
    const live = await connectTo(proxy.port);
    clients.push(live);

    proxy.setEnabled(false);
    await expect(connectTo(proxy.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect((await roundTrip(live, Buffer.from('still here'))).toString()).toBe('still here');

    proxy.setEnabled(true);
    const fresh = await connectTo(proxy.port);
    clients.push(fresh);
    expect((await roundTrip(fresh, Buffer.from('back'))).toString()).toBe('back');
  });

  it('close() cuts connections and stops listening', async () => {
    const client = await connectTo(proxy.port);
    clients.push(client);
    const errors: Error[] = [];
    client.on('error', (e) => errors.push(e));
    const closed = closeOf(client);
    await proxy.close();
    await closed;
    expect(errors.map((e) => (e as NodeJS.ErrnoException).code)).toEqual(['ECONNRESET']);
    await expect(connectTo(proxy.port)).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });
});
