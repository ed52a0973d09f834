/**
 * Batch handlers (issue #12) on the real RabbitMQ: every id once in batches of at most `size`, the
 * `timeoutMs` flush, key grouping, per-message retry and dead letter inside a batch, stop in the
 * middle of a batch, the pool's bound and the broker's unacked count, and the prefetch check at
 * construction. Outcomes are counted per message id, on the consumer and on the broker.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rabbitConsumer, type ConsumeMessage, type RabbitSource } from '../../adapters/rabbitmq/index.js';
import { DEAD_LETTER_HEADERS, PermanentError, WorkerPool, type BatchContext, type Consumer, type Message } from '../../src/index.js';
import { rabbitFixture, type RabbitFixture } from '../helpers/rabbit.js';
import { tick, until } from '../helpers/wait.js';

let rabbit: RabbitFixture;
beforeAll(async () => {
  rabbit = await rabbitFixture();
});
afterAll(async () => {
  await rabbit?.close();
});

/** The downstream's latency in a handler: keeps batches overlapping, proves nothing by itself. */
const work = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Rejects with the signal's reason once it is aborted: a handler that waits for its stop. */
const abortedBy = (signal: AbortSignal) =>
  new Promise<never>((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

const sorted = (ids: Iterable<string>) => [...ids].sort();

/** Every batch handler call (ids, attempts, key, ctx.key) and, per id, the attempts it was seen with. */
function callLog() {
  const calls: { ids: string[]; attempts: number[]; key: string | undefined; tenants: (string | undefined)[] }[] = [];
  const attemptsOf = new Map<string, number[]>();
  return {
    calls,
    attemptsOf,
    record(messages: Message[], ctx: BatchContext) {
      calls.push({
        ids: messages.map((m) => m.id),
        attempts: messages.map((m) => m.deliveryAttempt),
        key: ctx.key,
        tenants: messages.map((m) => m.header('tenant')),
      });
      for (const m of messages) attemptsOf.set(m.id, [...(attemptsOf.get(m.id) ?? []), m.deliveryAttempt]);
    },
  };
}

/** Per id, how often the consumer reported it handled (acked) and dead-lettered. */
function outcomes(consumer: Consumer<ConsumeMessage>) {
  const handled = new Map<string, number>();
  const deadLettered = new Map<string, number>();
  const bump = (map: Map<string, number>, id: string) => map.set(id, (map.get(id) ?? 0) + 1);
  consumer.on('handled', ({ message }) => bump(handled, message.id));
  consumer.on('deadLettered', ({ message }) => bump(deadLettered, message.id));
  return { handled, deadLettered };
}

/** The pool's bound, checked wherever the test samples it: active ≤ maxConcurrency, active + pending + held ≤ capacity. */
function poolBound(pool: WorkerPool) {
  const violations: string[] = [];
  let samples = 0;
  let mostUsed = 0;
  return {
    violations,
    get samples() {
      return samples;
    },
    get mostUsed() {
      return mostUsed;
    },
    check(where: string) {
      samples++;
      const s = pool.status();
      const used = s.active + s.pending + s.held;
      mostUsed = Math.max(mostUsed, used);
      if (used > s.maxConcurrency + s.maxQueueSize || s.active > s.maxConcurrency) {
        violations.push(`${where}: active ${s.active} + pending ${s.pending} + held ${s.held} > ${s.maxConcurrency} + ${s.maxQueueSize}`);
      }
    },
  };
}

/** The prefetch the consumer opened with (the option, or the default the adapter computed). */
const prefetchOf = (consumer: Consumer<ConsumeMessage>) => (consumer.source as RabbitSource).prefetch;

/**
 * Samples, until stopped, the pool's bound, what the consumer holds (`inFlight`) and the unacked
 * count at the broker without the management plugin: published − ready − acked. Acked is read after
 * the broker answered: an ack counted here may not have reached it yet, never the reverse, so the
 * figure never exceeds the broker's real unacked count at the moment it answered.
 */
function sampleWhileRunning(queue: string, published: number, consumer: Consumer<ConsumeMessage>, bound: ReturnType<typeof poolBound>) {
  const samples: { unacked: number; inFlight: number }[] = [];
  let sampling = true;
  const loop = (async () => {
    while (sampling) {
      bound.check('sample');
      const { messageCount } = await rabbit.depth(queue);
      samples.push({ unacked: published - messageCount - consumer.status().handled, inFlight: consumer.status().inFlight });
      await tick(20);
    }
  })();
  return {
    samples,
    async stop() {
      sampling = false;
      await loop;
    },
  };
}

/** Where every run must end: the pool's bound never broken, and nothing left in the work queue. */
async function expectCleanEnd(queue: string, bound: ReturnType<typeof poolBound>) {
  expect(bound.violations).toEqual([]);
  expect((await rabbit.depth(queue)).messageCount).toBe(0);
}

/** Teardown whatever happened: a failed assertion must not leave a consumer consuming or a pool open. */
async function shutDown(pool: WorkerPool | undefined, ...consumers: (Consumer<ConsumeMessage> | undefined)[]) {
  for (const consumer of consumers) await consumer?.stop({ timeoutMs: 1_000 }).catch(() => {});
  await pool?.close({ drain: false });
}

describe('rabbitConsumer with a batchHandler on a real RabbitMQ', () => {
  it('500 messages, size 50, pool 4 + 200: every id handled exactly once, in batches of at most 50, nothing left unacked', async () => {
    const queue = rabbit.queue('sluice-batch-all');
    const ids = await rabbit.fill(queue, 500);
    const pool = new WorkerPool({ maxConcurrency: 4, maxQueueSize: 200 });
    const bound = poolBound(pool);
    const log = callLog();
    const events: { size: number; succeeded: number; failed: number }[] = [];
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      pool,
      batch: { size: 50, timeoutMs: 1_000 },
      batchHandler: async (messages, ctx) => {
        bound.check('handler call');
        log.record(messages, ctx);
        await work(5);
      },
    });
    const { handled } = outcomes(consumer);
    consumer.on('batch', ({ size, succeeded, failed }) => {
      bound.check('batch event');
      events.push({ size, succeeded, failed });
    });
    const sampler = sampleWhileRunning(queue, ids.length, consumer, bound);
    try {
      await consumer.start();
      await until(() => handled.size === 500, 'all 500 handled', 60_000);
      await sampler.stop();
      const stopped = await consumer.stop();
      expect(stopped.drained).toBe(true);

      expect(sorted(handled.keys())).toEqual(sorted(ids));
      for (const id of ids) expect(handled.get(id), id).toBe(1);
      for (const id of ids) expect(log.attemptsOf.get(id), id).toEqual([1]);
      const sizes = log.calls.map((c) => c.ids.length);
      expect(Math.max(...sizes)).toBeLessThanOrEqual(50);
      expect(sizes.reduce((a, b) => a + b, 0)).toBe(500);
      // With 204 credits and 500 waiting, batches fill: the size is what flushes them.
      expect(sizes).toContain(50);
      expect(consumer.status().batches).toBe(log.calls.length);
      expect(events.map((e) => e.size).sort((a, b) => a - b)).toEqual([...sizes].sort((a, b) => a - b));
      expect(events.reduce((n, e) => n + e.succeeded, 0)).toBe(500);
      expect(events.every((e) => e.failed === 0)).toBe(true);

      expect(bound.violations).toEqual([]);
      expect(bound.samples).toBeGreaterThanOrEqual(2 * log.calls.length);
      // One consumer tag all along (never paused, nothing refused): the broker kept to the prefetch.
      expect(consumer.status().overloaded).toBe(0);
      expect(sampler.samples.length).toBeGreaterThan(0);
      const prefetch = prefetchOf(consumer);
      for (const { unacked, inFlight } of sampler.samples) {
        expect(unacked).toBeLessThanOrEqual(prefetch);
        expect(inFlight).toBeLessThanOrEqual(prefetch);
      }
      // The channel is closed: anything still unacked would be back in the queue now.
      expect(await rabbit.depth(queue)).toMatchObject({ messageCount: 0, consumerCount: 0 });
      expect((await rabbit.depth(`${queue}.dlq`)).messageCount).toBe(0);
    } finally {
      await sampler.stop().catch(() => {});
      await shutDown(pool, consumer);
    }
  }, 120_000);

  it('timeoutMs flushes a partial batch: 7 messages with size 100 come in one call while the consumer runs, and 3 more in the next', async () => {
    const queue = rabbit.queue('sluice-batch-timeout');
    const first = await rabbit.fill(queue, 7, 'early');
    const log = callLog();
    const statesAtCall: string[] = [];
    // Long enough that the test sees the 7 gathered before the timer hands them over.
    const timeoutMs = 2_000;
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      pool: { maxConcurrency: 2, maxQueueSize: 100 },
      batch: { size: 100, timeoutMs },
      batchHandler: (messages, ctx) => {
        statesAtCall.push(consumer.state);
        log.record(messages, ctx);
      },
    });
    const { handled } = outcomes(consumer);
    const events: number[] = [];
    consumer.on('batch', ({ size }) => events.push(size));
    try {
      await consumer.start();
      await until(() => consumer.status().batching === 7, 'the 7 gathered, not yet handed to the pool', 20_000);
      expect(log.calls).toHaveLength(0);
      await until(() => log.calls.length === 1, 'the partial batch flushed by its timer', 30_000);
      expect(sorted(log.calls[0]!.ids)).toEqual(sorted(first));
      expect(statesAtCall).toEqual(['running']); // not flushed by stop(), and 7 < size: the timer did it
      await until(() => handled.size === 7, 'the 7 acked', 10_000);
      expect(consumer.status().batching).toBe(0);

      // A new batch starts its own timer.
      const second = await rabbit.fill(queue, 3, 'late');
      await until(() => log.calls.length === 2, 'the second partial batch flushed by its timer', 30_000);
      expect(sorted(log.calls[1]!.ids)).toEqual(sorted(second));
      expect(statesAtCall).toEqual(['running', 'running']);
      await until(() => handled.size === 10, 'all 10 acked', 10_000);
      expect(events).toEqual([7, 3]);
      await consumer.stop();
      for (const id of [...first, ...second]) expect(handled.get(id), id).toBe(1);
      expect((await rabbit.depth(queue)).messageCount).toBe(0);
    } finally {
      await shutDown(undefined, consumer);
    }
  }, 90_000);

  it('batch.key from a header: every call holds one key (= ctx.key), each id once; a message the key cannot be read from is dead-lettered', async () => {
    const queue = rabbit.queue('sluice-batch-key');
    await rabbit.withChannel((ch) => ch.assertQueue(queue, { durable: true }));
    const tenants = ['t-a', 't-b', 't-c', 't-d'];
    const ids = Array.from({ length: 200 }, (_, i) => `k-${i}`);
    const tenantOf = new Map(ids.map((id, i) => [id, tenants[i % tenants.length]!]));
    await Promise.all(ids.map((id) => rabbit.publisher.publishJson(queue, { id }, { id, headers: { tenant: tenantOf.get(id)! } })));
    await rabbit.publisher.publishJson(queue, { id: 'no-tenant' }, { id: 'no-tenant' });
    const pool = new WorkerPool({ maxConcurrency: 4, maxQueueSize: 80 });
    const bound = poolBound(pool);
    const log = callLog();
    const eventKeys: (string | undefined)[] = [];
    const keyErrors: string[] = [];
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      pool,
      batch: { size: 20, timeoutMs: 200, key: (m) => m.header('tenant') as string },
      batchHandler: async (messages, ctx) => {
        bound.check('handler call');
        log.record(messages, ctx);
        await work(3);
      },
    });
    const { handled, deadLettered } = outcomes(consumer);
    consumer.on('batch', ({ key }) => {
      bound.check('batch event');
      eventKeys.push(key);
    });
    consumer.on('error', ({ during, error }) => {
      if (during === 'batch-key') keyErrors.push(String(error));
    });
    try {
      await consumer.start();
      await until(() => handled.size === 200 && deadLettered.size === 1, '200 handled, the key-less one dead-lettered', 60_000);
      await consumer.stop();

      for (const call of log.calls) {
        expect(call.key, `call of ${call.ids.join(',')}`).toBeDefined();
        expect(new Set(call.tenants), `call keyed ${call.key}`).toEqual(new Set([call.key]));
        for (const id of call.ids) expect(tenantOf.get(id), id).toBe(call.key);
        expect(call.ids.length).toBeLessThanOrEqual(20);
      }
      for (const tenant of tenants) {
        const calls = log.calls.filter((c) => c.key === tenant);
        expect(calls.length, tenant).toBeGreaterThanOrEqual(3); // 50 messages in batches of at most 20
        expect(calls.reduce((n, c) => n + c.ids.length, 0), tenant).toBe(50);
      }
      expect(sorted(eventKeys.map(String))).toEqual(sorted(log.calls.map((c) => String(c.key))));
      expect(sorted(handled.keys())).toEqual(sorted(ids));
      for (const id of ids) expect(handled.get(id), id).toBe(1);
      for (const id of ids) expect(log.attemptsOf.get(id), id).toEqual([1]);
      expect(log.attemptsOf.has('no-tenant')).toBe(false);
      expect(keyErrors).toHaveLength(1);
      expect(keyErrors[0]).toMatch(/batch\.key returned undefined, not a string/);

      const dead = await rabbit.drain(`${queue}.dlq`);
      expect(dead.map((d) => d.properties.messageId)).toEqual(['no-tenant']);
      expect(String(dead[0]!.properties.headers![DEAD_LETTER_HEADERS.errorName])).toBe('PermanentError');
      expect(String(dead[0]!.properties.headers![DEAD_LETTER_HEADERS.reason])).toBe('permanent-error');
      await expectCleanEnd(queue, bound);
    } finally {
      await shutDown(pool, consumer);
    }
  }, 90_000);

  it('failed messages of a batch: only they are retried (attempt 2), poison ones reach the dead-letter queue once each with the sluice headers, the healthy are handled once', async () => {
    const queue = rabbit.queue('sluice-batch-fail');
    const ids = await rabbit.fill(queue, 60);
    const kind = (id: string) => (['healthy', 'flaky', 'permanent', 'doomed'] as const)[Number(id.split('-')[1]) % 4]!;
    const of = (k: ReturnType<typeof kind>) => ids.filter((id) => kind(id) === k);
    const [healthy, flaky, permanent, doomed] = [of('healthy'), of('flaky'), of('permanent'), of('doomed')];
    const pool = new WorkerPool({ maxConcurrency: 4, maxQueueSize: 40 });
    const bound = poolBound(pool);
    const log = callLog();
    const events: { size: number; failed: number }[] = [];
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      pool,
      retry: { maxAttempts: 2, backoff: { initialMs: 10, maxMs: 20 } },
      batch: { size: 20, timeoutMs: 100 },
      batchHandler: async (messages, ctx) => {
        bound.check('handler call');
        log.record(messages, ctx);
        await work(2);
        const failed: { message: Message; error: unknown }[] = [];
        for (const m of messages) {
          const k = kind(m.id);
          // Both ways of failing one message: marking it, and naming it in the result.
          if (k === 'permanent') ctx.fail(m, new PermanentError(`poison ${m.id}`));
          if (k === 'doomed') failed.push({ message: m, error: new Error(`doomed ${m.id} on attempt ${m.deliveryAttempt}`) });
          if (k === 'flaky' && m.deliveryAttempt === 1) failed.push({ message: m, error: new Error(`flaky ${m.id}`) });
        }
        return { failed };
      },
    });
    const { handled, deadLettered } = outcomes(consumer);
    const retried = new Map<string, number[]>();
    consumer.on('retried', ({ message, nextAttempt }) => retried.set(message.id, [...(retried.get(message.id) ?? []), nextAttempt]));
    consumer.on('batch', ({ size, failed }) => {
      bound.check('batch event');
      events.push({ size, failed });
    });
    try {
      await consumer.start();
      const goal = healthy.length + flaky.length;
      await until(() => handled.size === goal && deadLettered.size === permanent.length + doomed.length, 'every message handled or dead-lettered', 60_000);
      await consumer.stop();

      for (const id of healthy) expect(log.attemptsOf.get(id), `healthy ${id}`).toEqual([1]);
      for (const id of flaky) expect(log.attemptsOf.get(id), `flaky ${id}`).toEqual([1, 2]);
      for (const id of doomed) expect(log.attemptsOf.get(id), `doomed ${id}`).toEqual([1, 2]);
      for (const id of permanent) expect(log.attemptsOf.get(id), `permanent ${id}`).toEqual([1]);
      expect(sorted(handled.keys())).toEqual(sorted([...healthy, ...flaky]));
      for (const [id, n] of handled) expect(n, id).toBe(1);
      expect(sorted(deadLettered.keys())).toEqual(sorted([...permanent, ...doomed]));
      for (const [id, n] of deadLettered) expect(n, id).toBe(1);
      expect(sorted(retried.keys())).toEqual(sorted([...flaky, ...doomed]));
      for (const [id, next] of retried) expect(next, id).toEqual([2]);
      expect(consumer.status().retried).toBe(flaky.length + doomed.length);
      expect(events.reduce((n, e) => n + e.size, 0)).toBe(ids.length + flaky.length + doomed.length);
      expect(events.reduce((n, e) => n + e.failed, 0)).toBe(flaky.length + permanent.length + 2 * doomed.length);

      const dead = await rabbit.drain(`${queue}.dlq`);
      expect(sorted(dead.map((d) => String(d.properties.messageId)))).toEqual(sorted([...permanent, ...doomed]));
      for (const d of dead) {
        const id = String(d.properties.messageId);
        const h = d.properties.headers!;
        const header = (name: string) => String(h[name]);
        expect(header(DEAD_LETTER_HEADERS.source), id).toBe(queue);
        expect(header(DEAD_LETTER_HEADERS.messageId), id).toBe(id);
        expect(header(DEAD_LETTER_HEADERS.key), id).toBe(queue);
        expect(Number.isNaN(Date.parse(header(DEAD_LETTER_HEADERS.at))), id).toBe(false);
        expect(JSON.parse(d.content.toString()), id).toMatchObject({ id });
        if (kind(id) === 'permanent') {
          expect(header(DEAD_LETTER_HEADERS.error), id).toBe(`poison ${id}`);
          expect(header(DEAD_LETTER_HEADERS.errorName), id).toBe('PermanentError');
          expect(header(DEAD_LETTER_HEADERS.attempts), id).toBe('1');
          expect(header(DEAD_LETTER_HEADERS.reason), id).toBe('permanent-error');
        } else {
          expect(header(DEAD_LETTER_HEADERS.error), id).toBe(`doomed ${id} on attempt 2`);
          expect(header(DEAD_LETTER_HEADERS.errorName), id).toBe('Error');
          expect(header(DEAD_LETTER_HEADERS.attempts), id).toBe('2');
          expect(header(DEAD_LETTER_HEADERS.reason), id).toBe('max-attempts');
        }
      }
      await expectCleanEnd(queue, bound);
    } finally {
      await shutDown(pool, consumer);
    }
  }, 90_000);

  it('stop() while batches run and others are gathered loses nothing: handled + still in the queue = every id, and a second consumer handles the rest', async () => {
    const queue = rabbit.queue('sluice-batch-stop');
    const total = 300;
    const ids = await rabbit.fill(queue, total);
    const size = 20;
    const fastCalls = 3;
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 100 });
    let calls = 0;
    let blocked = 0;
    const firstLog = callLog();
    const first = rabbitConsumer({
      url: rabbit.url,
      queue,
      pool,
      // 2 running batches (40) + 90 waiting: whole batches wait for a slot and a partial one gathers.
      prefetch: 130,
      batch: { size, timeoutMs: 60_000 }, // only size and stop() flush here
      batchHandler: async (messages, ctx) => {
        firstLog.record(messages, ctx);
        if (++calls <= fastCalls) return;
        // The slow downstream: it honours the stop deadline's signal.
        blocked++;
        await abortedBy(ctx.signal);
      },
    });
    const firstOutcome = outcomes(first);
    let second: Consumer<ConsumeMessage> | undefined;
    try {
      await first.start();
      // Steady: 2 batches blocked, whole batches waiting for a slot, a partial one gathering, the credit used up.
      let ready = -1;
      await until(
        () =>
          firstOutcome.handled.size === fastCalls * size &&
          blocked === 2 &&
          first.status().pool.pending > 0 &&
          ready + first.status().inFlight + firstOutcome.handled.size === total,
        'two batches running, the rest of the credit waiting or gathering',
        30_000,
        async () => (ready = (await rabbit.depth(queue)).messageCount),
      );
      const before = first.status();
      // Whole batches wait for a slot; the partial rest gathers, unless a pause for overload (the
      // pool filled before the first batches ran) found a free slot and started it early.
      expect(before.pool.pending).toBeGreaterThan(0);
      expect(before.pool.active).toBe(2);
      // At most the prefetch; less while an overload pause (the pool filled before batches ran) holds.
      expect(before.inFlight).toBeGreaterThan(2 * size);
      expect(before.inFlight).toBeLessThanOrEqual(130);

      const stopped = await first.stop({ timeoutMs: 100 });
      expect(stopped.drained).toBe(false);
      // All in flight is given back; so are deliveries still arriving from a resume (the overload
      // pause lifting) just before the stop: the checks below show that nothing was lost or doubled.
      expect(stopped.givenBack).toBeGreaterThanOrEqual(before.inFlight);
      expect(first.status().deadLettered).toBe(0);

      const handledFirst = new Set(firstOutcome.handled.keys());
      for (const [id, n] of firstOutcome.handled) expect(n, id).toBe(1);
      const inQueue = (await rabbit.peek(queue)).map((m) => String(m.properties.messageId));
      expect(new Set(inQueue).size).toBe(inQueue.length); // each once
      expect(inQueue.filter((id) => handledFirst.has(id))).toEqual([]);
      expect(sorted([...handledFirst, ...inQueue])).toEqual(sorted(ids)); // no id lost
      // The batches that were running when the deadline passed are among them, not acked.
      const interrupted = firstLog.calls.slice(fastCalls).flatMap((c) => c.ids);
      expect(interrupted).toHaveLength(2 * size);
      for (const id of interrupted) expect(inQueue, id).toContain(id);

      const secondLog = callLog();
      second = rabbitConsumer({
        url: rabbit.url,
        queue,
        pool: { maxConcurrency: 2, maxQueueSize: 100 },
        batch: { size, timeoutMs: 100 },
        batchHandler: (messages, ctx) => secondLog.record(messages, ctx),
      });
      const secondOutcome = outcomes(second);
      await second.start();
      await until(() => secondOutcome.handled.size === inQueue.length, 'the second consumer handles the rest', 60_000);
      await second.stop();
      expect(sorted(secondOutcome.handled.keys())).toEqual(sorted(inQueue));
      for (const [id, n] of secondOutcome.handled) expect(n, id).toBe(1);
      for (const id of handledFirst) expect(secondLog.attemptsOf.has(id), id).toBe(false); // nothing handled twice
      expect((await rabbit.depth(queue)).messageCount).toBe(0);
      expect((await rabbit.depth(`${queue}.dlq`)).messageCount).toBe(0);
    } finally {
      await shutDown(pool, first, second);
    }
  }, 120_000);

  it('bounds hold with a prefetch beyond the pool: active + pending + held ≤ capacity at every call, event and sample; unacked at the broker = what the consumer holds', async () => {
    const queue = rabbit.queue('sluice-batch-bound');
    const total = 304; // whole batches of 8: the 60 s timer never has to flush one
    const ids = await rabbit.fill(queue, total);
    const size = 8;
    const prefetch = 64;
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 30 });
    const capacity = 32;
    const bound = poolBound(pool);
    const log = callLog();
    const hold = gate();
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      pool,
      // More credit than the pool holds: the bound is the pool's, not the broker's.
      prefetch,
      onOverload: 'pause',
      batch: { size, timeoutMs: 60_000 },
      batchHandler: async (messages, ctx) => {
        bound.check('handler call');
        log.record(messages, ctx);
        await hold.opened;
        await work(2);
      },
    });
    const { handled } = outcomes(consumer);
    consumer.on('batch', () => bound.check('batch event'));
    const sampler = sampleWhileRunning(queue, total, consumer, bound);
    try {
      await consumer.start();
      // Held: the pool fills, the overflow is refused and consumption paused at the broker.
      let depth = { messageCount: -1, consumerCount: -1 };
      await until(
        () => consumer.status().overloaded > 0 && consumer.status().paused && depth.consumerCount === 0 && depth.messageCount + consumer.status().inFlight === total,
        'the pool full, the consumer paused, every message either held by it or ready',
        30_000,
        async () => (depth = await rabbit.depth(queue)),
      );
      const s = consumer.status();
      expect(s.pool.active).toBe(2);
      // The bound is reached, not exceeded.
      expect(s.pool.active + s.pool.pending + s.pool.held).toBe(capacity);
      // A running batch takes one slot and its messages no places; each waiting message holds one place.
      expect(s.pool.pending + s.pool.held).toBe(s.inFlight - size * s.pool.active);
      // Unacked at the broker, management-free: exactly what the consumer holds, within the pool's own bound of messages.
      expect(total - depth.messageCount - consumer.status().handled).toBe(s.inFlight);
      expect(s.inFlight).toBeLessThanOrEqual(size * pool.status().maxConcurrency + pool.status().maxQueueSize);

      hold.open();
      await until(() => handled.size === total, 'every message handled', 90_000);
      await sampler.stop();
      await consumer.stop();

      expect(sorted(handled.keys())).toEqual(sorted(ids));
      for (const [id, n] of handled) expect(n, id).toBe(1);
      for (const id of ids) expect(log.attemptsOf.get(id), id).toEqual([1]); // a refusal never ran a handler
      expect(Math.max(...log.calls.map((c) => c.ids.length))).toBeLessThanOrEqual(size);
      expect(bound.violations).toEqual([]);
      expect(bound.mostUsed).toBe(capacity);
      expect(bound.samples).toBeGreaterThanOrEqual(2 * log.calls.length);
      expect(sampler.samples.length).toBeGreaterThan(0);
      // What the consumer holds stays within the pool's accounting: running batches' messages plus one place each waiting.
      for (const { inFlight } of sampler.samples) expect(inFlight).toBeLessThanOrEqual(size * 2 + 30);
      // Not asserted here: unacked at the broker ≤ prefetch. Each overload pause + resume is a new consumer tag with
      // a fresh per-consumer window while the old tag's deliveries are still held (next test).
      expect(consumer.status().givenBack).toBe(consumer.status().overloaded);
      expect((await rabbit.depth(queue)).messageCount).toBe(0);
    } finally {
      hold.open();
      await sampler.stop().catch(() => {});
      await shutDown(pool, consumer);
    }
  }, 150_000);

  // Fails on 26b6a71: a fixed pool's consumer has a per-consumer basic.qos only, and resume's new basic.consume gets a
  // fresh window beside the old tag's deliveries, still unacked in held batches (a channel-wide limit bounds both).
  it('a pause and resume while batches hold their deliveries: unacked at the broker stays within prefetch', async () => {
    const queue = rabbit.queue('sluice-batch-recredit');
    const total = 304; // whole batches of 8
    const ids = await rabbit.fill(queue, total);
    const size = 8;
    const prefetch = 64;
    // Room for more than twice the prefetch: the pool refuses nothing, only the broker's credit bounds what comes.
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 200 });
    const hold = gate();
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      pool,
      prefetch,
      batch: { size, timeoutMs: 60_000 },
      batchHandler: () => hold.opened,
    });
    const { handled } = outcomes(consumer);
    let depth = { messageCount: -1, consumerCount: -1 };
    const refresh = async () => (depth = await rabbit.depth(queue));
    const held = () => consumer.status().inFlight;
    try {
      await consumer.start();
      await until(() => held() === prefetch && depth.messageCount + held() === total, 'the credit used up by held batches', 30_000, refresh);
      // Any pause does this: a user's, a flow gate's, or overload's (basic.cancel, then a new basic.consume).
      await consumer.pause();
      await consumer.resume();
      // RabbitMQ's queue delivers to a new consumer before it answers a later declare: once the consumer holds all that
      // left the queue, the count is final.
      await until(() => depth.consumerCount === 1 && depth.messageCount + held() === total, 'consuming again, every delivery arrived', 30_000, refresh);
      const unacked = total - depth.messageCount;
      expect(unacked, `unacked at the broker after one pause/resume, prefetch ${prefetch}; the consumer holds ${held()}`).toBeLessThanOrEqual(prefetch);
    } finally {
      hold.open();
      await until(() => handled.size === total, 'every message handled', 60_000).catch(() => {});
      await shutDown(pool, consumer);
    }
    expect(sorted(handled.keys())).toEqual(sorted(ids));
  }, 120_000);

  it('construction: a prefetch below batch.size throws a RangeError naming both numbers', async () => {
    const base = { url: rabbit.url, queue: 'sluice-batch-never-started', batchHandler: () => {} };
    const tooSmall = () => rabbitConsumer({ ...base, pool: { maxConcurrency: 4, maxQueueSize: 200 }, prefetch: 10, batch: { size: 50 } });
    expect(tooSmall).toThrow(RangeError);
    expect(tooSmall).toThrow(/"batch\.size" 50\b.*\b10\b.*prefetch/);
    // The default prefetch (the pool's capacity) below the default size of 100.
    const defaults = () => rabbitConsumer({ ...base, pool: { maxConcurrency: 4, maxQueueSize: 200 }, prefetch: 99 });
    expect(defaults).toThrow(RangeError);
    expect(defaults).toThrow(/\b100\b.*\b99\b/);
    // Equal is enough: a batch can fill.
    const equal = rabbitConsumer({ ...base, pool: { maxConcurrency: 4, maxQueueSize: 200 }, prefetch: 50, batch: { size: 50 } });
    expect(equal.state).toBe('new');
    await equal.stop(); // closes the pool it owns
    // And the pool's own check: a size the pool could never hold names size and capacity.
    const poolTooSmall = () => rabbitConsumer({ ...base, pool: { maxConcurrency: 2, maxQueueSize: 8 }, batch: { size: 20 } });
    expect(poolTooSmall).toThrow(RangeError);
    expect(poolTooSmall).toThrow(/"batch\.size" 20 .*capacity 10 \(maxConcurrency 2 \+ maxQueueSize 8\)/);
  });
});
