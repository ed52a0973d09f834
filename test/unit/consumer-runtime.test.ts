import { describe, expect, it } from 'vitest';
import { MemoryBroker, memoryConsumer } from '../../adapters/memory/index.js';
import {
  DEAD_LETTER_HEADERS,
  DecodeError,
  PermanentError,
  ShutdownError,
  TaskTimeoutError,
  WorkerPool,
  Consumer,
  Message,
} from '../../src/index.js';
import type { Delivery, Source, SourceContext } from '../../src/adapter/index.js';
import { tick, until } from '../helpers/wait.js';


function publishMany(broker: MemoryBroker, queue: string, n: number, prefix = 'm'): string[] {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = `${prefix}-${i}`;
    broker.publishJson(queue, { i }, { id });
    ids.push(id);
  }
  return ids;
}

/** Counts handler calls per id and checks the pool bound on every call. */
function recorder(pool: WorkerPool) {
  const calls = new Map<string, number>();
  let maxActive = 0;
  let maxPending = 0;
  return {
    calls,
    get maxActive() {
      return maxActive;
    },
    get maxPending() {
      return maxPending;
    },
    record(message: Message) {
      calls.set(message.id, (calls.get(message.id) ?? 0) + 1);
      const s = pool.status();
      maxActive = Math.max(maxActive, s.active);
      maxPending = Math.max(maxPending, s.pending);
    },
  };
}

describe('Consumer runtime on the in-memory broker', () => {
  it('handles and acks every message exactly once when nothing fails', async () => {
    const broker = new MemoryBroker();
    const pool = new WorkerPool({ maxConcurrency: 4, maxQueueSize: 8 });
    const ids = publishMany(broker, 'q', 500);
    const rec = recorder(pool);
    const consumer = memoryConsumer({ broker, queue: 'q', pool, handler: async (m) => { rec.record(m); await tick(1); } });
    await consumer.start();
    await until(() => consumer.status().handled === 500, 'all handled');
    await consumer.stop();
    expect([...rec.calls.keys()].sort()).toEqual([...ids].sort());
    expect([...rec.calls.values()].every((n) => n === 1)).toBe(true);
    expect(rec.maxActive).toBeLessThanOrEqual(4);
    expect(rec.maxPending).toBeLessThanOrEqual(8);
    expect(broker.depth('q')).toEqual({ ready: 0, unacked: 0, delayed: 0 });
    expect(consumer.status()).toMatchObject({ state: 'stopped', handled: 500, failed: 0, overloaded: 0, inFlight: 0 });
  });

  it('retries a failing message with growing backoff and counts attempts from 1', async () => {
    const broker = new MemoryBroker();
    broker.publishJson('q', {}, { id: 'flaky' });
    const attempts: number[] = [];
    const ctxAttempts: number[] = [];
    const retried: { nextAttempt: number; delayMs: number }[] = [];
    const consumer = memoryConsumer({
      broker,
      queue: 'q',
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      retry: { maxAttempts: 5, backoff: { initialMs: 10, multiplier: 2, jitter: 0 } },
      handler: async (m, ctx) => {
        attempts.push(m.deliveryAttempt);
        ctxAttempts.push(ctx.attempt);
        if (m.deliveryAttempt < 3) throw new Error('transient');
      },
    });
    consumer.on('retried', (e) => retried.push({ nextAttempt: e.nextAttempt, delayMs: e.delayMs }));
    await consumer.start();
    await until(() => consumer.status().handled === 1, 'handled after retries');
    await consumer.stop();
    expect(attempts).toEqual([1, 2, 3]);
    expect(ctxAttempts).toEqual([1, 2, 3]);
    expect(retried).toEqual([
      { nextAttempt: 2, delayMs: 10 },
      { nextAttempt: 3, delayMs: 20 },
    ]);
    expect(broker.depth('q.dlq').ready).toBe(0);
  });

  it('dead-letters after exactly maxAttempts with the error in the headers, while others flow', async () => {
    const broker = new MemoryBroker();
    const ids = publishMany(broker, 'q', 50);
    broker.publishJson('q', { poison: true }, { id: 'poison', key: 'rk.poison' });
    const pool = new WorkerPool({ maxConcurrency: 3, maxQueueSize: 3 });
    const rec = recorder(pool);
    const consumer = memoryConsumer({
      broker,
      queue: 'q',
      pool,
      retry: { maxAttempts: 4, backoff: { initialMs: 1, jitter: 0 } },
      handler: async (m) => {
        rec.record(m);
        if (m.json<{ poison?: boolean }>().poison) throw new Error('cannot charge this card');
      },
    });
    await consumer.start();
    await until(() => consumer.status().deadLettered === 1 && consumer.status().handled === 50, 'poison dead-lettered');
    await consumer.stop();
    expect(rec.calls.get('poison')).toBe(4);
    for (const id of ids) expect(rec.calls.get(id)).toBe(1);
    const [dead, ...more] = broker.drain('q.dlq');
    expect(more).toHaveLength(0);
    expect(dead!.id).toBe('poison');
    expect(dead!.headers).toMatchObject({
      [DEAD_LETTER_HEADERS.error]: 'cannot charge this card',
      [DEAD_LETTER_HEADERS.errorName]: 'Error',
      [DEAD_LETTER_HEADERS.attempts]: '4',
      [DEAD_LETTER_HEADERS.source]: 'q',
      [DEAD_LETTER_HEADERS.reason]: 'max-attempts',
      [DEAD_LETTER_HEADERS.key]: 'rk.poison',
      [DEAD_LETTER_HEADERS.messageId]: 'poison',
    });
  });

  it('sends an undecodable body and a PermanentError straight to dead-letter without retrying', async () => {
    const broker = new MemoryBroker();
    broker.publish('q', '{not json', { id: 'garbled' });
    broker.publish('q', new Uint8Array([0xff, 0xfe, 0x00]), { id: 'not-utf8' });
    broker.publishJson('q', { refuse: true }, { id: 'refused' });
    broker.publishJson('q', { ok: true }, { id: 'fine' });
    const calls = new Map<string, number>();
    const consumer = memoryConsumer({
      broker,
      queue: 'q',
      pool: { maxConcurrency: 2, maxQueueSize: 2 },
      retry: { maxAttempts: 5, backoff: { initialMs: 1 } },
      handler: async (m) => {
        calls.set(m.id, (calls.get(m.id) ?? 0) + 1);
        const body = m.json<{ refuse?: boolean }>();
        if (body.refuse) throw new PermanentError('account closed');
      },
    });
    await consumer.start();
    await until(() => consumer.status().deadLettered === 3 && consumer.status().handled === 1, 'three dead letters');
    await consumer.stop();
    expect(Object.fromEntries(calls)).toEqual({ garbled: 1, 'not-utf8': 1, refused: 1, fine: 1 });
    const dead = Object.fromEntries(broker.drain('q.dlq').map((m) => [m.id, m.headers]));
    expect(dead.garbled).toMatchObject({ [DEAD_LETTER_HEADERS.errorName]: 'DecodeError', [DEAD_LETTER_HEADERS.reason]: 'permanent-error', [DEAD_LETTER_HEADERS.attempts]: '1' });
    expect(dead['not-utf8']).toMatchObject({ [DEAD_LETTER_HEADERS.errorName]: 'DecodeError' });
    expect(dead.refused).toMatchObject({ [DEAD_LETTER_HEADERS.errorName]: 'PermanentError', [DEAD_LETTER_HEADERS.error]: 'account closed' });
    expect(() => { throw new DecodeError('x'); }).toThrow(PermanentError);
  });

  for (const policy of ['pause', 'nack'] as const) {
    it(`onOverload '${policy}': a shared pool fed by two queues never overflows and loses nothing`, async () => {
      const broker = new MemoryBroker();
      const pool = new WorkerPool({ maxConcurrency: 3, maxQueueSize: 5 });
      const a = publishMany(broker, 'a', 300, 'a');
      const b = publishMany(broker, 'b', 300, 'b');
      const rec = recorder(pool);
      let pausedEvents = 0;
      let resumedEvents = 0;
      const make = (queue: string) => {
        const c = memoryConsumer({ broker, queue, pool, prefetch: 20, onOverload: policy, handler: async (m) => { rec.record(m); await tick(1); } });
        c.on('paused', () => pausedEvents++);
        c.on('resumed', () => resumedEvents++);
        c.on('overloaded', (e) => expect(e.pool.pending).toBeLessThanOrEqual(5));
        return c;
      };
      const consumers = [make('a'), make('b')];
      await Promise.all(consumers.map((c) => c.start()));
      await until(() => rec.calls.size === 600, 'all 600 handled', 20_000);
      await Promise.all(consumers.map((c) => c.stop()));
      const overloaded = consumers.reduce((n, c) => n + c.status().overloaded, 0);
      const givenBack = consumers.reduce((n, c) => n + c.status().givenBack, 0);
      expect(overloaded).toBeGreaterThan(0);
      expect(givenBack).toBe(overloaded);
      expect(pausedEvents).toBeGreaterThan(0);
      expect(resumedEvents).toBe(pausedEvents);
      expect(rec.maxActive).toBeLessThanOrEqual(3);
      expect(rec.maxPending).toBeLessThanOrEqual(5);
      for (const id of [...a, ...b]) expect(rec.calls.get(id)).toBe(1);
      expect(broker.depth('a')).toEqual({ ready: 0, unacked: 0, delayed: 0 });
      expect(broker.depth('b')).toEqual({ ready: 0, unacked: 0, delayed: 0 });
    }, 30_000);
  }

  it("'pause' holds the source paused until the pool is back at its low-water mark", async () => {
    const broker = new MemoryBroker();
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 2, lowWaterMark: 1 });
    publishMany(broker, 'q', 40);
    const releases: (() => void)[] = [];
    const consumer = memoryConsumer({
      broker, queue: 'q', pool, prefetch: 10, onOverload: 'pause',
      handler: () => new Promise<void>((resolve) => releases.push(resolve)),
    });
    const occupancyWhenAvailable: number[] = [];
    pool.on('available', (s) => occupancyWhenAvailable.push(s.active + s.pending));
    await consumer.start();
    await until(() => consumer.status().paused, 'paused on overload');
    // Freeing one of four places is not enough: still above the low-water mark.
    releases.shift()!();
    await tick(20);
    expect(consumer.status().paused).toBe(true);
    expect(occupancyWhenAvailable).toEqual([]);
    while (consumer.status().handled < 40) {
      releases.shift()?.();
      await tick(1);
    }
    await consumer.stop();
    expect(occupancyWhenAvailable.length).toBeGreaterThan(0);
    expect(occupancyWhenAvailable.every((n) => n <= 1)).toBe(true);
    expect(consumer.status()).toMatchObject({ handled: 40, inFlight: 0 });
  }, 20_000);

  it('times a handler out: its signal aborts, the attempt fails and is retried, the slot is held until it ends', async () => {
    const broker = new MemoryBroker();
    broker.publishJson('q', {}, { id: 'slow' });
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    const reasons: unknown[] = [];
    let activeDuringRetry = -1;
    let finishFirst!: () => void;
    const consumer = memoryConsumer({
      broker, queue: 'q', pool, handlerTimeoutMs: 30, retry: { maxAttempts: 2, backoff: { initialMs: 1 } },
      handler: async (m, { signal }) => {
        if (m.deliveryAttempt === 1) {
          // Ignores its signal on purpose: it keeps the slot until it really ends.
          signal.addEventListener('abort', () => reasons.push(signal.reason));
          await new Promise<void>((r) => (finishFirst = r));
          return;
        }
        activeDuringRetry = pool.status().active;
      },
    });
    const failures: unknown[] = [];
    consumer.on('failed', (e) => failures.push(e.error));
    await consumer.start();
    await until(() => reasons.length === 1, 'first attempt signalled');
    expect(reasons[0]).toBeInstanceOf(TaskTimeoutError);
    expect(failures[0]).toBeInstanceOf(TaskTimeoutError);
    await tick(30);
    // The retry is waiting for the only slot, which the ignoring handler still holds.
    expect(consumer.status().handled).toBe(0);
    expect(pool.status().active).toBe(1);
    finishFirst();
    await until(() => consumer.status().handled === 1, 'retry handled');
    expect(activeDuringRetry).toBe(1);
    await consumer.stop();
  });

  it('stop() during a burst lets in-flight work finish; a new consumer gets every other message', async () => {
    const broker = new MemoryBroker();
    const ids = publishMany(broker, 'q', 300);
    const seen = new Map<string, number>();
    const handler = async (m: Message) => {
      await tick(2);
      seen.set(m.id, (seen.get(m.id) ?? 0) + 1);
    };
    const first = memoryConsumer({ broker, queue: 'q', pool: { maxConcurrency: 4, maxQueueSize: 4 }, handler });
    await first.start();
    await until(() => first.status().handled >= 50, 'some handled');
    const result = await first.stop({ timeoutMs: 5_000 });
    expect(result).toEqual({ drained: true, givenBack: 0 });
    expect(broker.depth('q').unacked).toBe(0);
    const second = memoryConsumer({ broker, queue: 'q', pool: { maxConcurrency: 4, maxQueueSize: 4 }, handler });
    await second.start();
    await until(() => seen.size === 300, 'all ids handled');
    await second.stop();
    for (const id of ids) expect(seen.get(id)).toBe(1);
  });

  it('stop() past its deadline aborts handlers, gives their messages back, and never acks them afterwards', async () => {
    const broker = new MemoryBroker();
    publishMany(broker, 'q', 6);
    const signals: AbortSignal[] = [];
    const consumer = memoryConsumer({
      broker, queue: 'q', pool: { maxConcurrency: 2, maxQueueSize: 2 },
      // Never ends on its own: only the abort ends it.
      handler: (_m, { signal }) => new Promise<void>((_, reject) => { signals.push(signal); signal.addEventListener('abort', () => reject(signal.reason)); }),
    });
    const errors: unknown[] = [];
    consumer.on('error', (e) => errors.push(e.error));
    await consumer.start();
    await until(() => signals.length === 2 && consumer.status().inFlight === 4, 'pool full');
    const result = await consumer.stop({ timeoutMs: 50 });
    expect(result.drained).toBe(false);
    expect(signals.every((s) => s.aborted && s.reason instanceof ShutdownError)).toBe(true);
    expect(consumer.status()).toMatchObject({ handled: 0, givenBack: 4, inFlight: 0, state: 'stopped' });
    expect(broker.depth('q')).toEqual({ ready: 6, unacked: 0, delayed: 0 });
    expect(errors).toEqual([]);
  });

  it('reports a failing broker action as an error event, tries it again, and keeps consuming', async () => {
    const broker = new MemoryBroker();
    publishMany(broker, 'q', 3);
    const consumer = memoryConsumer({ broker, queue: 'q', pool: { maxConcurrency: 1, maxQueueSize: 0 }, prefetch: 3, handler: async () => {} });
    const realAck = broker.ack.bind(broker);
    let failNext = true;
    broker.ack = (queue, tag) => {
      if (failNext) {
        failNext = false;
        throw new Error('channel closed');
      }
      realAck(queue, tag);
    };
    const errors: { during: string; id?: string }[] = [];
    consumer.on('error', (e) => errors.push({ during: e.during, id: e.message?.id }));
    await consumer.start();
    await until(() => consumer.status().handled === 3, 'all three acked, the first on its second try');
    await consumer.stop({ timeoutMs: 100 });
    expect(errors).toEqual([{ during: 'ack', id: 'm-0' }]);
    expect(consumer.status()).toMatchObject({ settlementFailures: 1, deferred: 0, abandoned: 0 });
    expect(broker.depth('q')).toEqual({ ready: 0, unacked: 0, delayed: 0 });
  });

  it('reports a stall when messages are in flight and nothing completes, and its end', async () => {
    const broker = new MemoryBroker();
    publishMany(broker, 'q', 1);
    let release!: () => void;
    const consumer: Consumer = memoryConsumer({
      broker, queue: 'q', pool: { maxConcurrency: 1, maxQueueSize: 0 }, stallTimeoutMs: 40,
      handler: () => new Promise<void>((r) => (release = r)),
    });
    const events: string[] = [];
    consumer.on('stalled', (e) => events.push(`stalled:${e.inFlight}`));
    consumer.on('unstalled', () => events.push('unstalled'));
    await consumer.start();
    await until(() => consumer.status().stalled, 'stalled');
    release();
    await until(() => !consumer.status().stalled, 'unstalled');
    await consumer.stop();
    expect(events).toEqual(['stalled:1', 'unstalled']);
  });

  it('rejects invalid options at construction, naming the option and the value', () => {
    const broker = new MemoryBroker();
    const handler = async () => {};
    const base = { broker, queue: 'q', handler };
    expect(() => memoryConsumer({ ...base, pool: { maxConcurrency: 0, maxQueueSize: 1 } })).toThrow(/maxConcurrency.*0/);
    expect(() => memoryConsumer({ ...base, pool: { maxConcurrency: 1, maxQueueSize: 1 }, onOverload: 'drop' as never })).toThrow(/onOverload.*'nack' \| 'pause'.*"drop"/);
    expect(() => memoryConsumer({ ...base, pool: { maxConcurrency: 1, maxQueueSize: 1 }, retry: { maxAttempts: 0 } })).toThrow(RangeError);
    expect(() => memoryConsumer({ ...base, pool: { maxConcurrency: 1, maxQueueSize: 1 }, retry: { maxAttempts: 1.5 } })).toThrow(/retry\.maxAttempts.*1\.5/);
    expect(() => memoryConsumer({ ...base, pool: { maxConcurrency: 1, maxQueueSize: 1 }, retry: { backoff: { initialMs: -1 } } })).toThrow(/retry\.backoff\.initialMs/);
    expect(() => memoryConsumer({ ...base, pool: { maxConcurrency: 1, maxQueueSize: 1 }, handlerTimeoutMs: Number.NaN })).toThrow(/handlerTimeoutMs.*NaN/);
    expect(() => memoryConsumer({ ...base, pool: { maxConcurrency: 1, maxQueueSize: 1 }, handler: 'nope' as never })).toThrow(/handler.*function/);
    expect(() => memoryConsumer({ ...base, pool: undefined as never })).toThrow(/pool/);
    expect(() => memoryConsumer({ ...base, queue: '', pool: { maxConcurrency: 1, maxQueueSize: 1 } })).toThrow(/queue/);
  });
});

describe('Consumer runtime when its shared pool is closed under it', () => {
  it('a message the pool cancels inside dispatch (a saturated listener closed it) is refused, and the runtime does not touch it', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    let context!: SourceContext;
    const source: Source = {
      name: 'fake',
      capabilities: { delayedRetry: true, redelivery: true, pause: true },
      start: async (c: SourceContext) => void (context = c),
      pause: async () => {},
      resume: async () => {},
      stop: async () => {},
      close: async () => {},
    };
    const settled: string[] = [];
    const delivery = (id: string): Delivery => ({
      message: new Message({ body: new Uint8Array(0), id, source: 'fake', raw: undefined }),
      ack: () => void settled.push(`ack ${id}`),
      retry: async () => void settled.push(`retry ${id}`),
      deadLetter: async () => void settled.push(`dead-letter ${id}`),
      giveBack: async () => void settled.push(`give-back ${id}`),
    });
    let release!: () => void;
    const running = new Promise<void>((r) => (release = r));
    const consumer = new Consumer(source, { pool, handler: () => running });
    await consumer.start();
    expect(context.dispatch(delivery('a'))).toBe('accepted');
    pool.on('saturated', () => void pool.close({ drain: false }));
    // Queued, then cancelled by the close before dispatch returned: an adapter must hear "not taken".
    expect(context.dispatch(delivery('b'))).toBe('stopping');
    release();
    // The refusal is the return value: the adapter gives 'b' back; the runtime calls nothing on it.
    await until(() => settled.length === 1, 'a settled');
    expect(settled).toEqual(['ack a']);
    await consumer.stop();
    expect(settled).toEqual(['ack a']);
  });

  it('gives messages back and pauses instead of spinning', async () => {
    const broker = new MemoryBroker();
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    const consumer = memoryConsumer({ broker, queue: 'q', pool, prefetch: 5, handler: async () => {} });
    const errors: string[] = [];
    consumer.on('error', (e) => errors.push(String(e.error)));
    await consumer.start();
    await pool.close();
    publishMany(broker, 'q', 5);
    await until(() => consumer.status().givenBack >= 1, 'given back');
    await tick(50);
    // Paused: the five messages wait in the broker, not in a give-back loop.
    expect(consumer.status().givenBack).toBeLessThanOrEqual(5);
    expect(consumer.status().paused).toBe(true);
    expect(errors).toEqual(['Error: consumer "memory:q": its pool is closed; consumption paused']);
    await consumer.stop();
    expect(broker.depth('q')).toEqual({ ready: 5, unacked: 0, delayed: 0 });
  });
});

describe('Message bodies', () => {
  it('decode independently: a cut multi-byte sequence fails as DecodeError and leaves nothing behind for the next body', () => {
    const message = (body: Uint8Array) => new Message({ body, id: 'm', source: 'q', raw: undefined });
    // '€' is e2 82 ac: cut after two bytes.
    expect(() => message(new Uint8Array([0xe2, 0x82])).text()).toThrow(DecodeError);
    // A decoder that kept state would finish the '€' with this body's first byte and return '€a'.
    const tail = message(new Uint8Array([0xac, 0x61]));
    expect(() => tail.text()).toThrow(DecodeError);
    expect(message(Buffer.from('{"amount":12,"currency":"€"}')).json()).toEqual({ amount: 12, currency: '€' });
  });
});

describe('Message headers', () => {
  it('reads a header as text whatever form the broker gave it', () => {
    const bytes = Buffer.from('xxpay-7yy').subarray(2, 7);
    const message = new Message({
      body: new Uint8Array(0),
      id: 'm',
      source: 'q',
      raw: undefined,
      headers: { 'message-id': bytes, repeated: [Buffer.from('first'), Buffer.from('second')], count: 3, nested: { a: 1 }, 'x-lower': 'v' },
    });
    expect(message.header('message-id')).toBe('pay-7');
    expect(message.header('repeated')).toBe('first');
    expect(message.header('count')).toBe('3');
    expect(message.header('nested')).toBe('{"a":1}');
    expect(message.header('X-Lower')).toBe('v');
    expect(message.header('absent')).toBeUndefined();
  });
});
