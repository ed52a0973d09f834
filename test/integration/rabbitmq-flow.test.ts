/**
 * The RabbitMQ adapter against the real broker: throughput without loss, overload with a shared
 * pool (both policies), poison messages, stop mid-burst, bad input. Exact outcomes by message id.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rabbitConsumer, type ConsumeMessage } from '../../adapters/rabbitmq/index.js';
import { DEAD_LETTER_HEADERS, WorkerPool, type Consumer, type Message } from '../../src/index.js';
import { rabbitFixture, type RabbitFixture } from '../helpers/rabbit.js';
import { tick, until } from '../helpers/wait.js';

let rabbit: RabbitFixture;
beforeAll(async () => {
  rabbit = await rabbitFixture();
});
afterAll(async () => {
  await rabbit?.close();
});

/** Handler calls per id, and the pool bound seen from inside every call. */
function tally(pool: WorkerPool) {
  const calls = new Map<string, number>();
  let maxPending = 0;
  let maxActive = 0;
  return {
    calls,
    get maxPending() {
      return maxPending;
    },
    get maxActive() {
      return maxActive;
    },
    get duplicates() {
      return [...calls.values()].reduce((sum, n) => sum + n - 1, 0);
    },
    record(message: Message) {
      calls.set(message.id, (calls.get(message.id) ?? 0) + 1);
      const s = pool.status();
      maxPending = Math.max(maxPending, s.pending);
      maxActive = Math.max(maxActive, s.active);
    },
  };
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });

describe('rabbitConsumer on a real RabbitMQ', () => {
  it('handles 5,000 messages through a pool of 8 + 16: every id once, bound kept', async () => {
    const queue = rabbit.queue();
    const ids = await rabbit.fill(queue, 5000);
    const pool = new WorkerPool({ maxConcurrency: 8, maxQueueSize: 16 });
    const seen = tally(pool);
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      pool,
      handler: async (m) => {
        seen.record(m);
        await sleep(1 + (m.body[m.body.length - 2]! % 5));
      },
    });
    await consumer.start();
    await until(() => consumer.status().handled === 5000, '5000 handled', 60_000);
    const stopped = await consumer.stop();
    expect(stopped.drained).toBe(true);
    expect([...seen.calls.keys()].sort()).toEqual([...ids].sort());
    expect(seen.duplicates).toBe(0);
    expect(seen.maxActive).toBeLessThanOrEqual(8);
    expect(seen.maxPending).toBeLessThanOrEqual(16);
    expect((await rabbit.depth(queue)).messageCount).toBe(0);
    await pool.close();
  }, 120_000);

  for (const onOverload of ['pause', 'nack'] as const) {
    it(`two queues into one shared pool, faster than it drains, onOverload '${onOverload}': nothing lost, bound kept`, async () => {
      const [qa, qb] = [rabbit.queue('sluice-ovl-a'), rabbit.queue('sluice-ovl-b')];
      const ids = [...(await rabbit.fill(qa, 300, 'a')), ...(await rabbit.fill(qb, 300, 'b'))];
      const pool = new WorkerPool({ maxConcurrency: 4, maxQueueSize: 4 });
      const seen = tally(pool);
      let pausedWithoutConsumer = 0;
      const consumers: Consumer<ConsumeMessage>[] = [qa, qb].map((queue) =>
        rabbitConsumer({
          url: rabbit.url,
          queue,
          pool,
          // Each consumer alone may fill the pool: together they overflow it.
          prefetch: 8,
          onOverload,
          overloadBackoff: { initialMs: 20, maxMs: 200 },
          handler: async (m) => {
            seen.record(m);
            await sleep(3);
          },
        }),
      );
      const pauses: Promise<void>[] = [];
      for (const [i, consumer] of consumers.entries()) {
        consumer.on('paused', () => {
          if (onOverload !== 'pause') return;
          // While paused by basic.cancel, the broker shows no consumer on the queue.
          pauses.push(
            rabbit.depth([qa, qb][i]!).then((d) => {
              if (d.consumerCount === 0) pausedWithoutConsumer++;
            }),
          );
        });
      }
      await Promise.all(consumers.map((c) => c.start()));
      await until(() => seen.calls.size === 600, 'all 600 handled', 60_000);
      await Promise.all(consumers.map((c) => c.stop()));
      await Promise.all(pauses);
      expect([...seen.calls.keys()].sort()).toEqual([...ids].sort());
      expect(seen.duplicates).toBe(0);
      expect(seen.maxPending).toBeLessThanOrEqual(4);
      const overloaded = consumers.reduce((n, c) => n + c.status().overloaded, 0);
      const givenBack = consumers.reduce((n, c) => n + c.status().givenBack, 0);
      expect(overloaded).toBeGreaterThan(0);
      expect(givenBack).toBe(overloaded);
      if (onOverload === 'pause') expect(pausedWithoutConsumer).toBeGreaterThan(0);
      expect((await rabbit.depth(qa)).messageCount + (await rabbit.depth(qb)).messageCount).toBe(0);
      await pool.close();
    }, 120_000);
  }

  it('dead-letters a poison message after exactly maxAttempts, with the error in its headers, while others flow', async () => {
    const queue = rabbit.queue();
    const ids = await rabbit.fill(queue, 200);
    await rabbit.publisher.publishJson(queue, { poison: true }, { id: 'poison-1' });
    let poisonRuns = 0;
    const handled = new Set<string>();
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      pool: { maxConcurrency: 4, maxQueueSize: 4 },
      retry: { maxAttempts: 4, backoff: { initialMs: 20, maxMs: 100 } },
      handler: async (m) => {
        if (m.json<{ poison?: boolean }>().poison) {
          poisonRuns++;
          throw new Error('card processor says no');
        }
        handled.add(m.id);
      },
    });
    await consumer.start();
    await until(() => consumer.status().deadLettered === 1 && handled.size === 200, 'poison dead-lettered, rest handled', 30_000);
    await consumer.stop();
    expect(poisonRuns).toBe(4);
    expect([...handled].sort()).toEqual([...ids].sort());
    const dead = await rabbit.drain(`${queue}.dlq`);
    expect(dead).toHaveLength(1);
    const headers = dead[0]!.properties.headers!;
    expect(dead[0]!.properties.messageId).toBe('poison-1');
    expect(String(headers[DEAD_LETTER_HEADERS.error])).toBe('card processor says no');
    expect(String(headers[DEAD_LETTER_HEADERS.attempts])).toBe('4');
    expect(String(headers[DEAD_LETTER_HEADERS.source])).toBe(queue);
    expect(String(headers[DEAD_LETTER_HEADERS.key])).toBe(queue);
    expect(JSON.parse(dead[0]!.content.toString())).toEqual({ poison: true });
    expect((await rabbit.depth(queue)).messageCount).toBe(0);
  }, 60_000);

  it('stop() during a burst gives back what did not finish; a new consumer handles every id', async () => {
    const queue = rabbit.queue();
    const ids = await rabbit.fill(queue, 400);
    const handled = new Map<string, number>();
    const handler = async (m: Message, { signal }: { signal: AbortSignal }) => {
      await sleep(20, signal);
      signal.throwIfAborted();
      handled.set(m.id, (handled.get(m.id) ?? 0) + 1);
    };
    const first = rabbitConsumer({ url: rabbit.url, queue, pool: { maxConcurrency: 8, maxQueueSize: 8 }, handler });
    await first.start();
    await until(() => handled.size >= 50, 'part of the burst handled', 30_000);
    await first.stop({ timeoutMs: 5 });
    const afterFirst = handled.size;
    expect(afterFirst).toBeLessThan(400);
    const second = rabbitConsumer({ url: rabbit.url, queue, pool: { maxConcurrency: 8, maxQueueSize: 8 }, handler });
    await second.start();
    await until(() => ids.every((id) => handled.has(id)), 'every id handled', 30_000);
    await second.stop();
    expect([...handled.keys()].sort()).toEqual([...ids].sort());
    expect((await rabbit.depth(queue)).messageCount).toBe(0);
  }, 60_000);

  it('a non-JSON body with a JSON handler goes to the dead-letter queue and the consumer keeps going', async () => {
    const queue = rabbit.queue();
    await rabbit.fill(queue, 3, 'before');
    await rabbit.publisher.sendToQueue(queue, 'definitely { not json', { id: 'garbage-1' });
    await rabbit.fill(queue, 3, 'after');
    const handled: string[] = [];
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      retry: { maxAttempts: 5 },
      handler: async (m) => {
        m.json();
        handled.push(m.id);
      },
    });
    await consumer.start();
    await until(() => handled.length === 6 && consumer.status().deadLettered === 1, 'garbage dead-lettered, rest handled', 20_000);
    await consumer.stop();
    expect(handled.sort()).toEqual(['after-0', 'after-1', 'after-2', 'before-0', 'before-1', 'before-2']);
    // A decode error is permanent: one attempt, no retries spent on it.
    expect(consumer.status().retried).toBe(0);
    const dead = await rabbit.drain(`${queue}.dlq`);
    expect(dead.map((d) => d.properties.messageId)).toEqual(['garbage-1']);
    expect(String(dead[0]!.properties.headers![DEAD_LETTER_HEADERS.errorName])).toBe('DecodeError');
    expect(String(dead[0]!.properties.headers![DEAD_LETTER_HEADERS.attempts])).toBe('1');
  }, 30_000);

  it('an unreachable broker fails start() with a clear, password-free error after the configured attempts', async () => {
    const errors: string[] = [];
    const consumer = rabbitConsumer({
      url: 'amqp://alice:s3cret-pw@127.0.0.1:1',
      queue: 'nowhere',
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      recovery: { startAttempts: 3, backoff: { initialMs: 10, maxMs: 20 } },
      handler: async () => {},
    });
    consumer.on('error', ({ error }) => errors.push(String(error)));
    const failure = await consumer.start().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(failure).toBeInstanceOf(Error);
    expect(failure!.message).toMatch(/rabbitmq:nowhere: could not connect to amqp:\/\/alice:\*\*\*@127\.0\.0\.1:1 after 3 attempt\(s\): RabbitMQ at amqp:\/\/alice:\*\*\*@127\.0\.0\.1:1: connect ECONNREFUSED/);
    expect(errors).toHaveLength(2);
    for (const text of [failure!.message, ...errors]) expect(text).not.toContain('s3cret-pw');
    expect(consumer.state).toBe('stopped');
  });

  it('a consumer given its own name is called by it (and by its source) in the start error and the attempt reports', async () => {
    const consumer = rabbitConsumer({
      name: 'payments',
      url: 'amqp://127.0.0.1:1',
      queue: 'nowhere',
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      recovery: { startAttempts: 2, backoff: { initialMs: 10, maxMs: 10 } },
      handler: async () => {},
    });
    const during: string[] = [];
    consumer.on('error', (e) => void during.push(e.during));
    const failure = await consumer.start().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(failure!.message).toMatch(/^consumer "payments" \(rabbitmq:nowhere\): could not connect to amqp:\/\/127\.0\.0\.1:1 after 2 attempt\(s\): /);
    expect(during).toEqual([expect.stringMatching(/^consumer "payments" \(rabbitmq:nowhere\): connect attempt 1 of 2 to amqp:\/\/127\.0\.0\.1:1 failed; next in \d+ ms$/)]);
  });

  it('a queue that does not exist fails start() naming the queue', async () => {
    const queue = rabbit.queue('sluice-missing');
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      recovery: { startAttempts: 1 },
      handler: async () => {},
    });
    await expect(consumer.start()).rejects.toThrow(new RegExp(`NOT_FOUND - no queue '${queue}'`));
  });

  it('invalid options throw at construction, naming the option', () => {
    const base = { url: 'amqp://127.0.0.1', queue: 'q', pool: { maxConcurrency: 1, maxQueueSize: 0 }, handler: async () => {} };
    expect(() => rabbitConsumer({ ...base, queue: '' })).toThrow(/option "queue" must be a non-empty string/);
    expect(() => rabbitConsumer({ ...base, url: undefined })).toThrow(/exactly one of option "url" or option "connection"/);
    expect(() => rabbitConsumer({ ...base, prefetch: 0 })).toThrow(/option "prefetch" must be between 1 and 65535, got 0/);
    expect(() => rabbitConsumer({ ...base, prefetch: 3000, declare: { type: 'quorum' } })).toThrow(/"prefetch" must be between 1 and 2000/);
    expect(() => rabbitConsumer({ ...base, declare: { type: 'stream' as never } })).toThrow(/option "declare.type" must be one of 'classic' \| 'quorum', got "stream"/);
    expect(() => rabbitConsumer({ ...base, deadLetter: {} as never })).toThrow(/option "deadLetter" must be \{ queue \} or/);
    expect(() => rabbitConsumer({ ...base, pool: { maxConcurrency: 0, maxQueueSize: 0 } })).toThrow(/maxConcurrency/);
    expect(() => rabbitConsumer({ ...base, recovery: { startAttempts: 0 } })).toThrow(/option "recovery.startAttempts" must be between|>= 1/);
  });

  it('declares a quorum queue with a binding and counts attempts across redeliveries', async () => {
    const queue = rabbit.queue('sluice-quorum');
    const exchange = `${queue}.in`;
    const attempts: number[] = [];
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      declare: { type: 'quorum', bindings: [{ exchange, routingKey: 'pay.#' }] },
      pool: { maxConcurrency: 2, maxQueueSize: 2 },
      retry: { maxAttempts: 3, backoff: { initialMs: 10, maxMs: 20 } },
      handler: async (m, { attempt }) => {
        attempts.push(attempt);
        expect(m.key).toBe('pay.eur');
        if (attempt < 3) throw new Error(`flaky ${attempt}`);
      },
    });
    await consumer.start();
    await rabbit.publisher.publish(exchange, 'pay.eur', JSON.stringify({ n: 1 }), { id: 'q-1' });
    await until(() => consumer.status().handled === 1, 'handled on the third attempt', 20_000);
    await consumer.stop();
    expect(attempts).toEqual([1, 2, 3]);
    expect(consumer.status().retried).toBe(2);
    expect(consumer.status().deadLettered).toBe(0);
    await tick(10);
    expect((await rabbit.depth(queue)).messageCount).toBe(0);
  }, 30_000);
});
