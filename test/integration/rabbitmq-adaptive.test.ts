/**
 * RabbitMQ's prefetch follows an adaptive pool's limit (adapters/rabbitmq/source.ts followPool):
 * after the limit shrinks, the broker holds no more unacked deliveries for the consumer than the
 * pool's new capacity, and nothing has to be refused for overload.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rabbitConsumer } from '../../adapters/rabbitmq/index.js';
import { WorkerPool, type LimitChange } from '../../src/index.js';
import { rabbitFixture, type RabbitFixture } from '../helpers/rabbit.js';
import { until } from '../helpers/wait.js';

let rabbit: RabbitFixture;
beforeAll(async () => {
  rabbit = await rabbitFixture();
});
afterAll(async () => {
  await rabbit?.close();
});

describe('rabbitConsumer on an adaptive pool', () => {
  it('prefetch shrinks with the limit: unacked at the broker ≤ the new capacity, no overload', async () => {
    const queue = rabbit.queue();
    const total = 60;
    await rabbit.fill(queue, total);
    // Capacity 16 + 0 at first; the limit then falls to 4 (resize lowers an adaptive pool's ceiling: the same `limit` event a shrink by latency sends).
    const pool = new WorkerPool({ maxConcurrency: 16, maxQueueSize: 0, adaptive: { min: 1, initial: 16 } });
    const changes: LimitChange[] = [];
    pool.on('limit', (c) => changes.push(c));
    let gate!: () => void;
    let opened = new Promise<void>((r) => (gate = r));
    let acked = 0;
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      pool,
      onOverload: 'nack',
      handler: async () => {
        await opened;
      },
    });
    consumer.on('handled', () => acked++);
    const unacked = async () => total - acked - (await rabbit.depth(queue)).messageCount;
    await consumer.start();
    await until(() => pool.active === 16, '16 running under the first limit');
    expect(await unacked()).toBe(16);
    expect(consumer.source).toMatchObject({ prefetch: 16 });

    pool.resize({ maxConcurrency: 4 });
    expect(changes).toContainEqual(expect.objectContaining({ from: 16, to: 4 }));
    expect(consumer.source).toMatchObject({ prefetch: 4 });

    // Let the 16 finish; the ones after them block again.
    const release = gate;
    opened = new Promise<void>((r) => (gate = r));
    release();
    await until(() => acked >= 16 && pool.active === 4, 'the first 16 acked and 4 running under the new limit');
    // However long we look, the broker has given the consumer at most the new capacity.
    let most = 0;
    for (let i = 0; i < 20; i++) {
      most = Math.max(most, await unacked());
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(most).toBeLessThanOrEqual(4);
    // A channel-wide basic.qos bounds the deliveries already out too: nothing was ever refused for overload.
    expect(consumer.status().overloaded).toBe(0);

    // Everything still arrives, 4 at a time.
    const finish = () => {
      gate();
      opened = Promise.resolve();
    };
    finish();
    await until(() => acked === total, 'every message handled');
    expect(pool.status()).toMatchObject({ limit: 4 });
    await consumer.stop();
    await pool.close();
  });
});
