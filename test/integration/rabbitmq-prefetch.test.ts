/**
 * The channel-wide prefetch on the real RabbitMQ: it bounds what a consumer holds across pauses
 * (a resumed consumer tag gets no fresh window on top of what is still unacked), and a queue that
 * sluice did not declare and that turns out to be a quorum queue (which refuses it) is consumed
 * all the same, with the per-consumer prefetch.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rabbitConsumer } from '../../adapters/rabbitmq/index.js';
import type { Message } from '../../src/index.js';
import { rabbitFixture, type RabbitFixture } from '../helpers/rabbit.js';
import { until } from '../helpers/wait.js';

let rabbit: RabbitFixture;
beforeAll(async () => {
  rabbit = await rabbitFixture();
});
afterAll(async () => {
  await rabbit?.close();
});

describe('rabbitConsumer prefetch on a real RabbitMQ', () => {
  it('after a pause and resume with deliveries still held, unacked at the broker stays within prefetch', async () => {
    const queue = rabbit.queue('sluice-prefetch-pause');
    const total = 100;
    await rabbit.fill(queue, total);
    const prefetch = 10;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const handled = new Set<string>();
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      prefetch,
      pool: { maxConcurrency: 40, maxQueueSize: 0 },
      handler: async (m: Message) => {
        await released;
        handled.add(m.id);
      },
    });
    let depth = { messageCount: -1, consumerCount: -1 };
    const refresh = async () => (depth = await rabbit.depth(queue));
    try {
      await consumer.start();
      await until(() => consumer.status().inFlight === prefetch && depth.messageCount === total - prefetch, 'the prefetch held', 30_000, refresh);
      await consumer.pause();
      await consumer.resume();
      await until(() => depth.consumerCount === 1, 'consuming again', 30_000, refresh);
      // The broker has had its chance to push more: a new basic.consume answers before later commands.
      await refresh();
      expect(total - depth.messageCount).toBeLessThanOrEqual(prefetch);
      expect(consumer.status().inFlight).toBe(prefetch);
    } finally {
      release();
    }
    await until(() => handled.size === total, 'every message handled', 60_000);
    await consumer.stop();
  });

  it('a quorum queue it did not declare refuses the channel-wide prefetch: it consumes with the per-consumer one instead', async () => {
    const queue = rabbit.queue('sluice-prefetch-quorum');
    await rabbit.withChannel(async (ch) => {
      await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    });
    rabbit.cleanup({ queues: [queue] });
    const ids = await rabbit.fill(queue, 30);
    const handled = new Set<string>();
    const errors: string[] = [];
    const consumer = rabbitConsumer({ url: rabbit.url, queue, prefetch: 5, pool: { maxConcurrency: 2, maxQueueSize: 3 }, handler: (m: Message) => void handled.add(m.id) });
    consumer.on('error', ({ error }) => errors.push(String(error)));
    await consumer.start();
    await until(() => handled.size === ids.length, 'every message of the quorum queue handled', 30_000);
    await consumer.stop();
    expect([...handled].sort()).toEqual([...ids].sort());
    expect(consumer.health().details.connection).not.toBe('disconnected');
  });
});
