/**
 * JetStream consumers survive a server killed and restarted (a private nats-server, never the
 * machine's shared one) and connections cut by a TCP proxy: every id is handled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nanos } from 'nats';
import { natsConsumer } from '../../adapters/nats/index.js';
import type { Message } from '../../src/index.js';
import { natsFixture, type NatsFixture } from '../helpers/nats.js';
import { startPrivateNatsServer, type PrivateNatsServer } from '../helpers/nats-server.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { until } from '../helpers/wait.js';

let server: PrivateNatsServer;
let nats: NatsFixture;
beforeAll(async () => {
  server = await startPrivateNatsServer();
  nats = await natsFixture(server.url);
});
afterAll(async () => {
  await nats?.close();
  await server?.dispose();
});

async function consumeThrough(url: string, fault: (handledSoFar: number) => Promise<void>) {
  const { stream, subject, dlq } = await nats.stream();
  const ids = await nats.fill(subject, 2000);
  const calls = new Map<string, number>();
  const states: string[] = [];
  const consumer = natsConsumer({
    servers: url,
    stream,
    durable: 'survivor',
    // Messages the server sent into a dead connection come back after ack_wait: keep it short here.
    consumerConfig: { ack_wait: nanos(2000) },
    deadLetter: { subject: dlq },
    pullExpiresMs: 1000,
    connectOptions: { reconnectTimeWait: 100 },
    recovery: { backoff: { initialMs: 50, maxMs: 500 } },
    pool: { maxConcurrency: 8, maxQueueSize: 8 },
    handler: async (m: Message) => {
      await new Promise((r) => setTimeout(r, 3));
      calls.set(m.id, (calls.get(m.id) ?? 0) + 1);
    },
  });
  consumer.on('connection', (e) => states.push(e.state));
  await consumer.start();
  await until(() => calls.size >= 600, 'a third handled', 30_000);
  await fault(calls.size);
  await until(() => ids.every((id) => calls.has(id)), 'every id handled after the fault', 60_000);
  await consumer.stop();
  const duplicates = [...calls.values()].reduce((s, n) => s + n - 1, 0);
  return { ids, calls, states, duplicates, consumer };
}

describe('natsConsumer recovers on a real NATS server', () => {
  it('a server killed (SIGKILL) and restarted mid-stream: every id handled', async () => {
    let handledBeforeKill = 0;
    const r = await consumeThrough(server.url, async (handled) => {
      handledBeforeKill = handled;
      await server.kill();
      await new Promise((res) => setTimeout(res, 300));
      await server.start();
    });
    expect(r.states).toContain('disconnected');
    expect(r.states).toContain('recovered');
    expect([...r.calls.keys()].sort()).toEqual([...r.ids].sort());
    // A server killed without flushing can forget acks it had taken (its consumer state on disk
    // lags): only messages handled before the kill may come twice.
    expect(r.duplicates).toBeLessThanOrEqual(handledBeforeKill + 16);
  }, 120_000);

  it('connections cut by a TCP proxy and refused for a while: every id handled', async () => {
    const proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: server.port });
    try {
      const r = await consumeThrough(`nats://127.0.0.1:${proxy.port}`, async () => {
        proxy.setEnabled(false);
        proxy.cutAll();
        await new Promise((res) => setTimeout(res, 500));
        proxy.setEnabled(true);
      });
      expect(r.states).toContain('disconnected');
      expect(r.states).toContain('recovered');
      expect([...r.calls.keys()].sort()).toEqual([...r.ids].sort());
      expect(r.duplicates).toBeLessThanOrEqual(16);
    } finally {
      await proxy.close();
    }
  }, 120_000);
});
