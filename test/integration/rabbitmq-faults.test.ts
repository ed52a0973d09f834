/**
 * Faults against the real RabbitMQ: a channel killed by a protocol error, a connection closed
 * from the broker side (rabbitmqctl close_connection), and a connection cut by a TCP proxy the
 * test controls. The consumer must recover and every id must be handled. The shared broker is
 * never stopped.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rabbitConsumer, type RabbitSource } from '../../adapters/rabbitmq/index.js';
import type { Consumer, Message } from '../../src/index.js';
import { rabbitFixture, type RabbitFixture } from '../helpers/rabbit.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { until } from '../helpers/wait.js';

const run = promisify(execFile);
let rabbit: RabbitFixture;
beforeAll(async () => {
  rabbit = await rabbitFixture();
});
afterAll(async () => {
  await rabbit?.close();
});

/** Runs a consumer over `n` messages; `fault` is called once a third of them are handled. */
async function survives(
  n: number,
  options: { url?: string; socketOptions?: Record<string, unknown>; handlerMs?: number },
  fault: (consumer: Consumer, queue: string) => Promise<void>,
) {
  const queue = rabbit.queue('sluice-fault');
  const ids = await rabbit.fill(queue, n);
  const calls = new Map<string, number>();
  // Handlers wait while the fault is being made (rabbitmqctl takes seconds): it always lands mid-stream.
  let held: Promise<void> | undefined;
  const recovered: number[] = [];
  const errors: string[] = [];
  const consumer = rabbitConsumer({
    url: options.url ?? rabbit.url,
    socketOptions: options.socketOptions,
    queue,
    pool: { maxConcurrency: 8, maxQueueSize: 8 },
    recovery: { backoff: { initialMs: 50, maxMs: 500 } },
    handler: async (m: Message) => {
      await new Promise((r) => setTimeout(r, options.handlerMs ?? 2));
      if (held) await held;
      calls.set(m.id, (calls.get(m.id) ?? 0) + 1);
    },
  });
  consumer.on('connection', (e) => {
    if (e.state === 'recovered') recovered.push(Date.now());
  });
  consumer.on('error', ({ error }) => errors.push(String(error)));
  await consumer.start();
  await until(() => calls.size >= n / 3, 'a third handled', 30_000);
  let release!: () => void;
  held = new Promise<void>((resolve) => (release = resolve));
  try {
    await fault(consumer, queue);
  } finally {
    held = undefined;
    release();
  }
  expect(calls.size, 'the fault came before the last message was handled').toBeLessThan(n);
  await until(() => ids.every((id) => calls.has(id)), 'every id handled after the fault', 60_000);
  await consumer.stop();
  const duplicates = [...calls.values()].reduce((s, c) => s + c - 1, 0);
  return { queue, ids, calls, recovered, errors, duplicates, consumer };
}

describe('rabbitConsumer recovers from faults on a real RabbitMQ', () => {
  it('a channel killed by a protocol error (ack of an unknown delivery tag) is recovered', async () => {
    const r = await survives(2000, {}, async (consumer) => {
      const source = consumer.source as RabbitSource;
      // The broker answers with PRECONDITION_FAILED and closes the channel; the connection stays.
      source.channel!.ack({ fields: { deliveryTag: 987_654_321 } } as never);
    });
    expect(r.recovered.length).toBeGreaterThanOrEqual(1);
    expect([...r.calls.keys()].sort()).toEqual([...r.ids].sort());
    // Only deliveries in flight on the dead channel can be seen twice: at most the prefetch (16).
    expect(r.duplicates).toBeLessThanOrEqual(16);
    expect((await rabbit.depth(r.queue)).messageCount).toBe(0);
  }, 90_000);

  it('a connection closed by the broker (rabbitmqctl close_connection) is reconnected', async () => {
    const name = `sluice-test-${randomUUID().slice(0, 8)}`;
    const r = await survives(2000, { socketOptions: { clientProperties: { connection_name: name } }, handlerMs: 20 }, async () => {
      const { stdout } = await run('rabbitmqctl', ['list_connections', '--no-table-headers', 'pid', 'client_properties']);
      const line = stdout.split('\n').find((l) => l.includes(name));
      expect(line, `connection ${name} listed by rabbitmqctl`).toBeDefined();
      const pid = line!.split('\t')[0]!;
      await run('rabbitmqctl', ['close_connection', pid, 'sluice fault test']);
    });
    expect(r.recovered.length).toBeGreaterThanOrEqual(1);
    expect([...r.calls.keys()].sort()).toEqual([...r.ids].sort());
    expect(r.duplicates).toBeLessThanOrEqual(16);
    expect(r.errors.join('\n')).not.toContain('guest:guest');
  }, 90_000);

  it('a connection cut by a TCP proxy, then refused for a while, is reconnected; readiness follows the connection', async () => {
    const target = new URL(rabbit.url);
    const proxy = await startTcpProxy({ targetHost: target.hostname, targetPort: Number(target.port || 5672) });
    const readiness: boolean[] = [];
    try {
      const url = `amqp://guest:guest@127.0.0.1:${proxy.port}`;
      const r = await survives(2000, { url }, async (consumer) => {
        proxy.setEnabled(false);
        proxy.cutAll();
        await until(() => consumer.health().ready === false, 'not ready while cut off', 10_000);
        readiness.push(consumer.health().ready);
        expect(consumer.health().details.reasons).toContain('broker connection lost');
        proxy.setEnabled(true);
        await until(() => consumer.health().ready, 'ready again after reconnect', 30_000);
        readiness.push(consumer.health().ready);
      });
      expect(readiness).toEqual([false, true]);
      expect(r.recovered.length).toBeGreaterThanOrEqual(1);
      expect([...r.calls.keys()].sort()).toEqual([...r.ids].sort());
      expect(r.duplicates).toBeLessThanOrEqual(16);
    } finally {
      await proxy.close();
    }
  }, 90_000);
});
