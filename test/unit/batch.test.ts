/** Batch handlers on the in-memory broker (and, for pure runtime logic, a tiny in-test Source). */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MemoryBroker, memoryConsumer, type MemoryConsumerOptions, type StoredMessage } from '../../adapters/memory/index.js';
import {
  Consumer,
  DEAD_LETTER_HEADERS,
  InFlightLimit,
  Message,
  PermanentError,
  ShutdownError,
  TaskTimeoutError,
  WorkerPool,
  type BatchContext,
  type BatchResult,
  type ConsumerEvents,
  type ConsumerStatus,
  type FlowGate,
  type PoolStatus,
  type StopOptions,
  type StopResult,
} from '../../src/index.js';
import type { Delivery, Source, SourceContext } from '../../src/adapter/index.js';
import { seededRandom } from '../helpers/random.js';
import { tick, until } from '../helpers/wait.js';

const FAST_RETRY = { maxAttempts: 3, backoff: { initialMs: 1, maxMs: 5, jitter: 0 } };
const EMPTY = { ready: 0, unacked: 0, delayed: 0 };

/** A memory broker that shows the test every delivery just before and just after the consumer's dispatch. */
class WatchedBroker extends MemoryBroker {
  /** Ids in the order the broker handed them out (a redelivery appears again). */
  readonly delivered: string[] = [];
  before: ((message: StoredMessage) => void) | undefined;
  after: ((message: StoredMessage) => void) | undefined;

  override subscribe(queue: string, prefetch: number, deliver: (message: StoredMessage, tag: number) => void) {
    return super.subscribe(queue, prefetch, (message, tag) => {
      this.delivered.push(message.id);
      this.before?.(message);
      deliver(message, tag);
      this.after?.(message);
    });
  }
}

function publishMany(broker: MemoryBroker, queue: string, n: number, prefix = 'm', body: (i: number) => unknown = (i) => ({ i })): string[] {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = `${prefix}-${i}`;
    broker.publishJson(queue, body(i), { id });
    ids.push(id);
  }
  return ids;
}

/** Samples a pool's status and keeps every breach of its bounds. */
class Bounds {
  samples = 0;
  maxHeld = 0;
  maxActive = 0;
  readonly violations: string[] = [];

  constructor(readonly pool: WorkerPool) {}

  check(where: string): PoolStatus {
    const s = this.pool.status();
    this.samples++;
    this.maxHeld = Math.max(this.maxHeld, s.held);
    this.maxActive = Math.max(this.maxActive, s.active);
    if (this.violations.length < 10) {
      if (s.active + s.pending + s.held > s.maxConcurrency + s.maxQueueSize) {
        this.violations.push(`${where}: active ${s.active} + pending ${s.pending} + held ${s.held} > maxConcurrency ${s.maxConcurrency} + maxQueueSize ${s.maxQueueSize}`);
      }
      if (s.active > s.maxConcurrency) this.violations.push(`${where}: active ${s.active} > maxConcurrency ${s.maxConcurrency}`);
    }
    return s;
  }

  /** Samples before and after every dispatch of this broker's deliveries. */
  watch(broker: WatchedBroker): this {
    broker.before = () => void this.check('before dispatch');
    broker.after = () => void this.check('after dispatch');
    return this;
  }
}

interface Call {
  ids: string[];
  attempts: number[];
  key: string | undefined;
  messages: Message[];
}

/** Records batch handler calls and counts the runs of each message id. */
class CallLog {
  readonly calls: Call[] = [];
  readonly runs = new Map<string, number>();

  record(messages: Message[], ctx: BatchContext): Call {
    const call = { ids: messages.map((m) => m.id), attempts: messages.map((m) => m.deliveryAttempt), key: ctx.key, messages };
    this.calls.push(call);
    for (const id of call.ids) this.runs.set(id, (this.runs.get(id) ?? 0) + 1);
    return call;
  }

  runsOf(id: string): number {
    return this.runs.get(id) ?? 0;
  }

  get sizes(): number[] {
    return this.calls.map((c) => c.ids.length);
  }

  /** The attempt with which `id` reached its first call. */
  attemptOf(id: string): number | undefined {
    const call = this.calls.find((c) => c.ids.includes(id));
    return call?.attempts[call.ids.indexOf(id)];
  }

  expectEachOnce(ids: string[]): void {
    expect([...this.runs.keys()].sort()).toEqual([...ids].sort());
    expect([...this.runs.entries()].filter(([, n]) => n !== 1)).toEqual([]);
  }
}

type BatchBody = (messages: Message<StoredMessage>[], ctx: BatchContext, call: Call) => Promise<BatchResult | void> | BatchResult | void;

/** A memory consumer (of queue 'q' unless told) whose batch handler logs each call in `log`, then runs `body`. */
function logged(log: CallLog, options: Omit<MemoryConsumerOptions, 'queue' | 'batchHandler'> & { queue?: string }, body?: BatchBody): Consumer<StoredMessage> {
  return memoryConsumer({
    queue: 'q',
    ...options,
    batchHandler: (messages, ctx) => {
      const call = log.record(messages, ctx);
      return body === undefined ? undefined : body(messages, ctx, call);
    },
  });
}

/** Starts the consumer, waits until its status says `done`, then stops it. */
async function runUntil(consumer: Consumer, done: (s: ConsumerStatus) => boolean, what: string, limitMs = 10_000, stop?: StopOptions): Promise<StopResult> {
  await consumer.start();
  await until(() => done(consumer.status()), what, limitMs);
  return consumer.stop(stop);
}

/** The messages each event of `name` was about, with the error of a `failed` one. */
function events<E extends 'handled' | 'retried' | 'deadLettered' | 'failed'>(consumer: Consumer, name: E) {
  const seen: { id: string; error?: unknown; next?: string }[] = [];
  consumer.on(name, (e) => {
    const event = e as { message: Message; error?: unknown; next?: string };
    seen.push({ id: event.message.id, error: event.error, next: event.next });
  });
  return {
    seen,
    get ids() {
      return seen.map((s) => s.id).sort();
    },
  };
}

/** A promise the test lets go of when it wants (a handler's downstream that hangs until then). */
function gate() {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  return { opened, open };
}

/** Rejects with the signal's reason once it aborts (a handler that honours its signal). */
const aborted = (signal: AbortSignal) => new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));

/** Counts the calls in progress around a body. */
class Running {
  now = 0;

  async during<T>(body: () => Promise<T>): Promise<T> {
    this.now++;
    try {
      return await body();
    } finally {
      this.now--;
    }
  }
}

/** The dead letters of queue 'q', sorted by id. */
const deadLetters = (broker: MemoryBroker) => broker.drain('q.dlq').sort((a, b) => a.id.localeCompare(b.id));

function withoutTimestamp(headers: StoredMessage['headers']): StoredMessage['headers'] {
  const { [DEAD_LETTER_HEADERS.at]: at, ...rest } = headers;
  expect(new Date(String(at)).toISOString()).toBe(at);
  return rest;
}

/** Lets the broker's deliveries (setImmediate) run while setTimeout is faked. */
async function immediatesUntil(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 10_000; i++) {
    if (condition()) return;
    await new Promise<void>((r) => setImmediate(r));
  }
  throw new Error(`never happened: ${what}`);
}

const keyOf = (m: Message) => String(m.json<{ k: unknown }>().k);

afterEach(() => {
  vi.useRealTimers();
});

describe('batch handler: every message once, batches no larger than size, delivery order kept', () => {
  for (const size of [1, 10, 100]) {
    it(`size ${size}`, async () => {
      const broker = new WatchedBroker();
      const pool = new WorkerPool({ maxConcurrency: 4, maxQueueSize: 200 });
      const bounds = new Bounds(pool).watch(broker);
      const n = 450;
      const ids = publishMany(broker, 'q', n);
      const log = new CallLog();
      const consumer = logged(log, { broker, pool, batch: { size, timeoutMs: 20 } }, async () => {
        bounds.check('handler');
        await tick(1);
      });
      await runUntil(consumer, (s) => s.handled === n, `all ${n} handled`, 20_000);
      await pool.close();
      log.expectEachOnce(ids);
      expect(log.sizes.every((s) => s >= 1 && s <= size)).toBe(true);
      // Published before start, far more than a batch: batches do fill to size.
      expect(Math.max(...log.sizes)).toBe(size);
      // Nothing was refused or redelivered, so delivery order is publish order; batches start in the order they closed.
      expect(broker.delivered).toEqual(ids);
      expect(log.calls.flatMap((c) => c.ids)).toEqual(ids);
      expect(consumer.status()).toMatchObject({ handled: n, failed: 0, overloaded: 0, batches: log.calls.length, batching: 0, inFlight: 0 });
      expect(bounds.violations).toEqual([]);
      expect(broker.depth('q')).toEqual(EMPTY);
    });
  }
});

describe('batch handler: timeoutMs', () => {
  it('flushes a partial batch: 7 messages with size 100 make one call of 7, only once the timeout has passed', async () => {
    // Only the batch timer is faked; the broker delivers on setImmediate, which stays real.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const broker = new MemoryBroker();
    const ids = publishMany(broker, 'q', 7);
    const log = new CallLog();
    const consumer = logged(log, { broker, pool: { maxConcurrency: 2, maxQueueSize: 200 }, batch: { size: 100, timeoutMs: 500 } });
    await consumer.start();
    await immediatesUntil(() => consumer.status().batching === 7, 'all 7 gathered');
    expect(consumer.status()).toMatchObject({ batching: 7, inFlight: 7, batches: 0 });
    expect(consumer.status().pool).toMatchObject({ held: 7, active: 0, pending: 0 });
    vi.advanceTimersByTime(499);
    await immediatesUntil(() => true, 'a turn');
    expect(log.calls).toHaveLength(0);
    expect(consumer.status().batching).toBe(7);
    vi.advanceTimersByTime(1);
    // The flushed batch starts in the free slot at once: the handler ran inside the timer.
    expect(log.calls.map((c) => c.ids)).toEqual([ids]);
    await immediatesUntil(() => consumer.status().handled === 7, 'all 7 handled');
    vi.useRealTimers();
    await consumer.stop();
    expect(log.calls).toHaveLength(1);
    log.expectEachOnce(ids);
    expect(consumer.status()).toMatchObject({ handled: 7, batches: 1, batching: 0 });
    expect(broker.depth('q')).toEqual(EMPTY);
  });
});

describe('batch handler: key', () => {
  it('groups by key: every call has one key (= ctx.key), keys never mix, order per key kept; a key that throws or is not a string dead-letters that message only', async () => {
    const broker = new MemoryBroker();
    const tenants = ['acme', 'globex', 'initech'];
    const byTenant = new Map<string, string[]>(tenants.map((t) => [t, []]));
    const good: string[] = [];
    for (let i = 0; i < 60; i++) {
      const id = `m-${i}`;
      const tenant = tenants[i % 3]!;
      broker.publishJson('q', { tenant }, { id });
      byTenant.get(tenant)!.push(id);
      good.push(id);
      if (i === 20) broker.publishJson('q', { throws: true }, { id: 'key-throws' });
      if (i === 40) broker.publishJson('q', { tenant: 7 }, { id: 'key-number' });
    }
    const log = new CallLog();
    const mixed: string[] = [];
    const keyErrors: { during: string; id: string | undefined; error: unknown }[] = [];
    const tenantKey = (m: Message) => {
      const body = m.json<{ tenant?: unknown; throws?: boolean }>();
      if (body.throws) throw new Error('no tenant on this row');
      return body.tenant as string;
    };
    const consumer = logged(log, { broker, pool: { maxConcurrency: 2, maxQueueSize: 40 }, batch: { size: 7, timeoutMs: 20, key: tenantKey } }, async (messages, ctx) => {
      for (const m of messages) if (m.json<{ tenant: string }>().tenant !== ctx.key) mixed.push(`${m.id} in ${String(ctx.key)}`);
      await tick(1);
    });
    consumer.on('error', (e) => void keyErrors.push({ during: e.during, id: e.message?.id, error: e.error }));
    await runUntil(consumer, (s) => s.handled === 60 && s.deadLettered === 2, 'all handled, two dead-lettered');
    log.expectEachOnce(good);
    expect(log.runsOf('key-throws') + log.runsOf('key-number')).toBe(0);
    expect(mixed).toEqual([]);
    expect(log.calls.every((c) => tenants.includes(c.key!))).toBe(true);
    expect(log.sizes.every((s) => s <= 7)).toBe(true);
    for (const tenant of tenants) {
      expect(log.calls.filter((c) => c.key === tenant).flatMap((c) => c.ids)).toEqual(byTenant.get(tenant));
    }
    const dead = deadLetters(broker);
    expect(dead.map((d) => d.id)).toEqual(['key-number', 'key-throws']);
    for (const d of dead) {
      expect(d.headers).toMatchObject({
        [DEAD_LETTER_HEADERS.reason]: 'permanent-error',
        [DEAD_LETTER_HEADERS.errorName]: 'PermanentError',
        [DEAD_LETTER_HEADERS.attempts]: '1',
        [DEAD_LETTER_HEADERS.source]: 'q',
        [DEAD_LETTER_HEADERS.messageId]: d.id,
      });
      expect(String(d.headers[DEAD_LETTER_HEADERS.error])).toMatch(/batch\.key/);
    }
    expect(String(dead[0]!.headers[DEAD_LETTER_HEADERS.error])).toMatch(/not a string/);
    expect(String(dead[1]!.headers[DEAD_LETTER_HEADERS.error])).toMatch(/no tenant on this row/);
    expect(keyErrors.map((e) => `${e.during} ${e.id}`).sort()).toEqual(['batch-key key-number', 'batch-key key-throws']);
    expect(keyErrors.every((e) => e.error instanceof PermanentError)).toBe(true);
    expect(consumer.status()).toMatchObject({ handled: 60, deadLettered: 2, retried: 0, batching: 0, inFlight: 0 });
    expect(broker.depth('q')).toEqual(EMPTY);
  });
});

describe('batch handler: outcomes per message', () => {
  it('returning nothing, {} or { failed: [] } acks the whole call', async () => {
    const broker = new MemoryBroker();
    const ids = publishMany(broker, 'q', 30);
    const log = new CallLog();
    const returns = [undefined, {}, { failed: [] }];
    const consumer = logged(log, { broker, pool: { maxConcurrency: 1, maxQueueSize: 20 }, batch: { size: 10, timeoutMs: 20 } }, async () => returns[(log.calls.length - 1) % 3]);
    await runUntil(consumer, (s) => s.handled === 30, 'all handled');
    log.expectEachOnce(ids);
    expect(consumer.status()).toMatchObject({ handled: 30, failed: 0, retried: 0, deadLettered: 0 });
    expect(broker.depth('q')).toEqual(EMPTY);
  });

  it('a throw fails every message of the call: each is retried, then dead-lettered after maxAttempts with the headers a single-message failure gets', async () => {
    const publish = (broker: MemoryBroker) => {
      const ids: string[] = [];
      for (let i = 0; i < 12; i++) {
        const id = `row-${i}`;
        broker.publishJson('q', { i }, { id, key: `tenant.${i % 2}`, headers: { 'x-tenant': `t${i % 2}` } });
        ids.push(id);
      }
      return ids;
    };
    const options = { pool: { maxConcurrency: 2, maxQueueSize: 20 }, retry: FAST_RETRY };
    const batchBroker = new MemoryBroker();
    const ids = publish(batchBroker);
    const log = new CallLog();
    const batch = logged(log, { ...options, broker: batchBroker, batch: { size: 5, timeoutMs: 10 } }, async () => {
      throw new Error('bulk insert failed');
    });
    const retried = events(batch, 'retried');
    await runUntil(batch, (s) => s.deadLettered === 12, 'all dead-lettered');
    for (const id of ids) expect(log.runsOf(id)).toBe(3);
    expect(retried.ids).toEqual([...ids, ...ids].sort());
    expect(batch.status()).toMatchObject({ handled: 0, failed: 36, retried: 24, deadLettered: 12 });

    const singleBroker = new MemoryBroker();
    publish(singleBroker);
    const single = memoryConsumer({
      ...options,
      broker: singleBroker,
      queue: 'q',
      handler: async () => {
        throw new Error('bulk insert failed');
      },
    });
    await runUntil(single, (s) => s.deadLettered === 12, 'all dead-lettered (single)');

    const headersById = (broker: MemoryBroker) => new Map(deadLetters(broker).map((d) => [d.id, withoutTimestamp(d.headers)]));
    const fromBatch = headersById(batchBroker);
    const fromSingle = headersById(singleBroker);
    expect([...fromBatch.keys()].sort()).toEqual([...ids].sort());
    for (const id of ids) expect(fromBatch.get(id)).toEqual(fromSingle.get(id));
    expect(fromBatch.get('row-3')).toMatchObject({
      [DEAD_LETTER_HEADERS.error]: 'bulk insert failed',
      [DEAD_LETTER_HEADERS.errorName]: 'Error',
      [DEAD_LETTER_HEADERS.attempts]: '3',
      [DEAD_LETTER_HEADERS.reason]: 'max-attempts',
      [DEAD_LETTER_HEADERS.source]: 'q',
      [DEAD_LETTER_HEADERS.messageId]: 'row-3',
      [DEAD_LETTER_HEADERS.key]: 'tenant.1',
      'x-tenant': 't1',
    });
    expect(batchBroker.depth('q')).toEqual(EMPTY);
  });

  it('ctx.fail(m, err) retries only the marked messages; the others are acked', async () => {
    const broker = new MemoryBroker();
    const ids = publishMany(broker, 'q', 40);
    const marked = new Set(ids.filter((_, i) => i % 3 === 0));
    const log = new CallLog();
    const consumer = logged(log, { broker, pool: { maxConcurrency: 2, maxQueueSize: 40 }, retry: FAST_RETRY, batch: { size: 8, timeoutMs: 10 } }, (messages, ctx) => {
      for (const m of messages) if (marked.has(m.id) && m.deliveryAttempt === 1) ctx.fail(m, new Error('row rejected'));
    });
    const retried = events(consumer, 'retried');
    const failed = events(consumer, 'failed');
    await runUntil(consumer, (s) => s.handled === 40, 'all handled');
    for (const id of ids) expect(log.runsOf(id)).toBe(marked.has(id) ? 2 : 1);
    expect(retried.ids).toEqual([...marked].sort());
    expect(failed.ids).toEqual([...marked].sort());
    expect(failed.seen.every((f) => f.next === 'retry' && (f.error as Error).message === 'row rejected')).toBe(true);
    expect(consumer.status()).toMatchObject({ handled: 40, retried: marked.size, deadLettered: 0 });
    expect(broker.depth('q.dlq').ready).toBe(0);
  });

  it('ctx.fail(m, new PermanentError()) dead-letters that message at once, without a retry', async () => {
    const broker = new MemoryBroker();
    const ids = publishMany(broker, 'q', 20);
    const poison = new Set(['m-13', 'm-4']);
    const log = new CallLog();
    const retry = { ...FAST_RETRY, maxAttempts: 5 };
    const consumer = logged(log, { broker, pool: { maxConcurrency: 2, maxQueueSize: 20 }, retry, batch: { size: 5, timeoutMs: 10 } }, (messages, ctx) => {
      for (const m of messages) if (poison.has(m.id)) ctx.fail(m, new PermanentError('unknown account'));
    });
    const retried = events(consumer, 'retried');
    await runUntil(consumer, (s) => s.handled === 18 && s.deadLettered === 2, 'handled and dead-lettered');
    for (const id of ids) expect(log.runsOf(id)).toBe(1);
    expect(retried.seen).toEqual([]);
    const dead = deadLetters(broker);
    expect(dead.map((d) => d.id)).toEqual([...poison]);
    for (const d of dead) {
      expect(d.headers).toMatchObject({
        [DEAD_LETTER_HEADERS.reason]: 'permanent-error',
        [DEAD_LETTER_HEADERS.errorName]: 'PermanentError',
        [DEAD_LETTER_HEADERS.error]: 'unknown account',
        [DEAD_LETTER_HEADERS.attempts]: '1',
      });
    }
  });

  it('a returned { failed: [...] } fails exactly those messages, each with its own error', async () => {
    const broker = new MemoryBroker();
    const ids = publishMany(broker, 'q', 30);
    const transient = new Set(['m-1', 'm-9', 'm-22']);
    const log = new CallLog();
    const consumer = logged(log, { broker, pool: { maxConcurrency: 2, maxQueueSize: 20 }, retry: FAST_RETRY, batch: { size: 6, timeoutMs: 10 } }, (messages) => {
      const failed: { message: Message; error: unknown }[] = [];
      for (const m of messages) {
        if (m.id === 'm-5') failed.push({ message: m, error: new PermanentError('constraint violated') });
        else if (transient.has(m.id) && m.deliveryAttempt === 1) failed.push({ message: m, error: new Error('deadlock detected') });
      }
      return { failed };
    });
    const retried = events(consumer, 'retried');
    await runUntil(consumer, (s) => s.handled === 29 && s.deadLettered === 1, 'handled and dead-lettered');
    for (const id of ids) expect(log.runsOf(id)).toBe(transient.has(id) ? 2 : 1);
    expect(retried.ids).toEqual([...transient].sort());
    const dead = deadLetters(broker);
    expect(dead.map((d) => d.id)).toEqual(['m-5']);
    expect(dead[0]!.headers).toMatchObject({ [DEAD_LETTER_HEADERS.error]: 'constraint violated', [DEAD_LETTER_HEADERS.reason]: 'permanent-error' });
  });

  it('a throw with marked messages: the marked keep their own error (a PermanentError dead-letters), the rest are retried', async () => {
    const broker = new MemoryBroker();
    const ids = publishMany(broker, 'q', 10);
    const log = new CallLog();
    const consumer = logged(log, { broker, pool: { maxConcurrency: 1, maxQueueSize: 20 }, retry: FAST_RETRY, batch: { size: 10, timeoutMs: 10 } }, (messages, ctx) => {
      if (log.calls.length > 1) return;
      for (const m of messages) if (m.id === 'm-7') ctx.fail(m, new PermanentError('bad row'));
      throw new Error('connection reset');
    });
    const retried = events(consumer, 'retried');
    await runUntil(consumer, (s) => s.handled === 9 && s.deadLettered === 1, 'handled and dead-lettered');
    for (const id of ids) expect(log.runsOf(id)).toBe(id === 'm-7' ? 1 : 2);
    expect(retried.ids).toEqual(ids.filter((id) => id !== 'm-7').sort());
    expect(deadLetters(broker).map((d) => [d.id, d.headers[DEAD_LETTER_HEADERS.error]])).toEqual([['m-7', 'bad row']]);
  });

  it('ctx.fail with a message that is not in the call throws a TypeError (the call itself goes on)', async () => {
    const broker = new MemoryBroker();
    const ids = publishMany(broker, 'q', 12);
    const log = new CallLog();
    const thrown: unknown[] = [];
    const stranger = new Message({ body: new Uint8Array(0), id: 'stranger', source: 'q', raw: undefined });
    const consumer = logged(log, { broker, pool: { maxConcurrency: 1, maxQueueSize: 20 }, batch: { size: 4, timeoutMs: 10 } }, (_messages, ctx) => {
      const previous = log.calls.at(-2);
      // A message of another call (same broker, same queue) is as foreign as a made-up one.
      for (const foreign of [stranger, ...(previous?.messages.slice(0, 1) ?? [])]) {
        try {
          ctx.fail(foreign, new Error('should not be accepted'));
        } catch (error) {
          thrown.push(error);
        }
      }
    });
    await runUntil(consumer, (s) => s.handled === 12, 'all handled');
    log.expectEachOnce(ids);
    expect(log.calls.length).toBeGreaterThan(1);
    expect(thrown).toHaveLength(2 * log.calls.length - 1);
    expect(thrown.every((e) => e instanceof TypeError && /not in this batch/.test(e.message))).toBe(true);
    expect(consumer.status()).toMatchObject({ handled: 12, failed: 0, retried: 0 });
  });

  it('a returned failed entry that names a foreign message fails the whole call (each of its messages retried)', async () => {
    const broker = new MemoryBroker();
    const ids = publishMany(broker, 'q', 5);
    const log = new CallLog();
    const stranger = new Message({ body: new Uint8Array(0), id: 'stranger', source: 'q', raw: undefined });
    const consumer = logged(log, { broker, pool: { maxConcurrency: 1, maxQueueSize: 20 }, retry: FAST_RETRY, batch: { size: 5, timeoutMs: 10 } }, (messages) => {
      if (log.calls.length === 1) return { failed: [{ message: stranger, error: new Error('not mine') }, { message: messages[0]!, error: new Error('mine') }] };
    });
    const failed = events(consumer, 'failed');
    await runUntil(consumer, (s) => s.handled === 5, 'all handled');
    expect(log.calls[0]!.ids).toEqual(ids);
    for (const id of ids) expect(log.runsOf(id)).toBe(2);
    expect(failed.ids).toEqual([...ids].sort());
    expect(failed.seen.every((f) => f.error instanceof TypeError && /not in this batch/.test(f.error.message))).toBe(true);
    expect(consumer.status()).toMatchObject({ handled: 5, retried: 5, deadLettered: 0 });
  });
});

describe('batch handler: pool bounds and construction', () => {
  it('a running batch takes one slot and its messages stop holding places; while gathering, each holds one', async () => {
    const broker = new WatchedBroker();
    const pool = new WorkerPool({ maxConcurrency: 4, maxQueueSize: 20 });
    const ids = publishMany(broker, 'q', 10);
    const afterDispatch: Pick<PoolStatus, 'active' | 'held'>[] = [];
    broker.after = () => {
      const { active, held } = pool.status();
      afterDispatch.push({ active, held });
    };
    const inside: PoolStatus[] = [];
    const log = new CallLog();
    const downstream = gate();
    const consumer = logged(log, { broker, pool, batch: { size: 10, timeoutMs: 60_000 } }, async () => {
      inside.push(pool.status());
      await downstream.opened;
    });
    await consumer.start();
    await until(() => log.calls.length === 1, 'the batch runs');
    expect(afterDispatch).toEqual([
      ...Array.from({ length: 9 }, (_, i) => ({ active: 0, held: i + 1 })),
      // The tenth closes the batch, which starts at once: one slot, no place held.
      { active: 1, held: 0 },
    ]);
    expect(inside[0]).toMatchObject({ active: 1, pending: 0, held: 0 });
    expect(pool.status()).toMatchObject({ active: 1, pending: 0, held: 0 });
    expect(consumer.status()).toMatchObject({ inFlight: 10, batching: 0, batches: 1 });
    downstream.open();
    await until(() => consumer.status().handled === 10, 'all handled');
    await consumer.stop();
    log.expectEachOnce(ids);
    expect(pool.status()).toMatchObject({ active: 0, pending: 0, held: 0 });
    await pool.close();
  });

  it('under load with keys and failures, active + pending + held never exceeds the capacity, and active never exceeds maxConcurrency', async () => {
    const broker = new WatchedBroker();
    const pool = new WorkerPool({ maxConcurrency: 3, maxQueueSize: 30 });
    const bounds = new Bounds(pool).watch(broker);
    const n = 300;
    const ids = publishMany(broker, 'q', n, 'm', (i) => ({ k: `t${i % 4}` }));
    const random = seededRandom(12);
    const failedOnce = new Set<string>();
    const log = new CallLog();
    const running = new Running();
    const runningAboveActive: number[] = [];
    const consumer = logged(log, { broker, pool, retry: FAST_RETRY, batch: { size: 10, timeoutMs: 5, key: keyOf } }, (messages, ctx) =>
      running.during(async () => {
        if (running.now > bounds.check('handler').active) runningAboveActive.push(running.now);
        await tick(Math.floor(random() * 3));
        bounds.check('handler, later');
        for (const m of messages) {
          if (m.deliveryAttempt === 1 && random() < 0.1) {
            failedOnce.add(m.id);
            ctx.fail(m, new Error('row failed'));
          }
        }
      }),
    );
    const handled = events(consumer, 'handled');
    await runUntil(consumer, (s) => s.handled === n, `all ${n} handled`, 20_000);
    await pool.close();
    expect(failedOnce.size).toBeGreaterThan(0);
    for (const id of ids) expect(log.runsOf(id)).toBe(failedOnce.has(id) ? 2 : 1);
    expect(handled.ids).toEqual([...ids].sort());
    expect(log.sizes.every((s) => s <= 10)).toBe(true);
    expect(bounds.samples).toBeGreaterThan(n);
    expect(bounds.violations).toEqual([]);
    expect(bounds.maxActive).toBeLessThanOrEqual(3);
    // Each running call is one slot at least (a call whose settlements are still being carried out keeps it).
    expect(runningAboveActive).toEqual([]);
  });

  /**
   * Capacity 4 (2 running + 2 waiting), three places held by a gathering batch, then two messages
   * whose handlers block: one may start, the second must be refused (overloaded) or wait, never run
   * as a fifth place.
   */
  describe('a message that finds the free places held for a gathering batch does not take a fifth place', () => {
    type Handler = (m: Message) => Promise<void> | undefined;
    const gathering = { batch: { size: 4, timeoutMs: 60_000 }, batchHandler: async () => {} };
    const cases: { name: string; consumers: (broker: MemoryBroker, pool: WorkerPool, handler: Handler) => { holder: Consumer; late: Consumer; lateQueue: string } }[] = [
      {
        name: 'a plain consumer sharing the pool with a batch consumer',
        consumers: (broker, pool, handler) => ({
          holder: memoryConsumer({ broker, queue: 'a', pool, ...gathering }),
          late: memoryConsumer({ broker, queue: 'b', pool, handler }),
          lateQueue: 'b',
        }),
      },
      {
        name: 'a handler + batchHandler consumer sharing the pool with a batch consumer',
        consumers: (broker, pool, handler) => ({
          holder: memoryConsumer({ broker, queue: 'a', pool, ...gathering }),
          late: memoryConsumer({ broker, queue: 'b', pool, handler, ...gathering, batch: { size: 2, timeoutMs: 60_000 } }),
          lateQueue: 'b',
        }),
      },
      {
        name: 'one handler + batchHandler consumer whose prefetch is above the pool capacity (as when queues share a pool)',
        consumers: (broker, pool, handler) => {
          const one = memoryConsumer({ broker, queue: 'a', pool, prefetch: 8, handler, ...gathering });
          return { holder: one, late: one, lateQueue: 'a' };
        },
      },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const broker = new MemoryBroker();
        const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 2 });
        const bounds = new Bounds(pool);
        const downstream = gate();
        const runs = new Map<string, number>();
        const { holder, late, lateQueue } = c.consumers(broker, pool, (m) => {
          runs.set(m.id, (runs.get(m.id) ?? 0) + 1);
          bounds.check(`handler of ${m.id}`);
          return m.id.startsWith('late') ? downstream.opened : undefined;
        });
        publishMany(broker, 'a', 3, 'a');
        await holder.start();
        await until(() => pool.status().held === 3, 'three places held by the gathering batch');
        if (late !== holder) await late.start();
        publishMany(broker, lateQueue, 2, 'late');
        await until(() => (runs.get('late-0') ?? 0) + (runs.get('late-1') ?? 0) + late.status().overloaded >= 2, 'both late messages dispatched');
        const s = bounds.check('after both dispatches');
        downstream.open();
        await late.stop();
        if (late !== holder) await holder.stop();
        await pool.close();
        expect(s.active + s.pending + s.held).toBeLessThanOrEqual(4);
        expect(bounds.violations).toEqual([]);
        expect(runs.get('late-0')).toBe(1);
      });
    }
  });

  it('a batch consumer, a handler + batchHandler consumer and a plain consumer on one shared pool keep its bounds under load', async () => {
    const pool = new WorkerPool({ maxConcurrency: 3, maxQueueSize: 12 });
    const bounds = new Bounds(pool);
    const brokers = [new WatchedBroker(), new WatchedBroker(), new WatchedBroker()] as const;
    for (const broker of brokers) bounds.watch(broker);
    const idsA = publishMany(brokers[0], 'q', 150, 'a', (i) => ({ k: i % 6 }));
    const idsB = publishMany(brokers[1], 'q', 150, 'b');
    const idsC = publishMany(brokers[2], 'q', 150, 'c');
    const random = seededRandom(7);
    const logA = new CallLog();
    const logB = new CallLog();
    const handlerRuns = new Map<string, number>();
    const handler = async (m: Message) => {
      handlerRuns.set(m.id, (handlerRuns.get(m.id) ?? 0) + 1);
      bounds.check(`handler of ${m.id}`);
      await tick(Math.floor(random() * 2));
    };
    const batchBody = async () => {
      bounds.check('batch');
      await tick(Math.floor(random() * 3));
    };
    const consumers = [
      // Many keys and a long timeout: A keeps many places held while the others' messages arrive.
      logged(logA, { broker: brokers[0], pool, batch: { size: 5, timeoutMs: 50, key: keyOf } }, batchBody),
      logged(logB, { broker: brokers[1], pool, handler, batch: { size: 4, timeoutMs: 50 } }, batchBody),
      memoryConsumer({ broker: brokers[2], queue: 'q', pool, onOverload: 'nack', handler }),
    ];
    await Promise.all(consumers.map((x) => x.start()));
    await until(() => consumers.every((x) => x.status().handled === 150), 'all three consumers done', 25_000);
    await Promise.all(consumers.map((x) => x.stop()));
    await pool.close();
    logA.expectEachOnce(idsA);
    logB.expectEachOnce(idsB);
    expect([...handlerRuns.keys()].sort()).toEqual([...idsB, ...idsC].sort());
    expect([...handlerRuns.values()].every((n) => n === 1)).toBe(true);
    expect(bounds.maxHeld).toBeGreaterThan(0);
    expect(bounds.violations).toEqual([]);
  }, 40_000);

  it('rejects impossible batch options at construction', () => {
    const broker = new MemoryBroker();
    const batchHandler = async () => {};
    const shared = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 10 });
    const own = { maxConcurrency: 4, maxQueueSize: 20 };
    const make = (options: Partial<MemoryConsumerOptions>) => () => memoryConsumer({ broker, queue: 'q', pool: shared, batchHandler, ...options });
    expect(make({ batch: { size: 13 } })).toThrow(RangeError);
    expect(make({ batch: { size: 13 } })).toThrow(/13.*12|12.*13/);
    expect(make({ batch: { size: 13 } })).toThrow(/maxConcurrency 2.*maxQueueSize 10/);
    expect(make({ pool: { maxConcurrency: 1, maxQueueSize: 4 }, batch: { size: 6 } })).toThrow(/6.*5/);
    // Exactly the capacity is fine; the default size (100) is checked as well.
    expect(make({ batch: { size: 12 } })).not.toThrow();
    expect(make({})).toThrow(/100.*12/);

    expect(make({ pool: own, prefetch: 5, batch: { size: 10 } })).toThrow(RangeError);
    expect(make({ pool: own, prefetch: 5, batch: { size: 10 } })).toThrow(/10.*5/);
    expect(make({ pool: own, prefetch: 5, batch: { size: 10 } })).toThrow(/prefetch/);
    expect(make({ pool: own, prefetch: 10, batch: { size: 10 } })).not.toThrow();

    const handler = async () => {};
    expect(make({ batchHandler: undefined, handler, batch: { size: 2 } })).toThrow(TypeError);
    expect(make({ batchHandler: undefined, handler, batch: { size: 2 } })).toThrow(/batch.*batchHandler/);
    expect(make({ batchHandler: undefined })).toThrow(TypeError);
    expect(make({ batchHandler: undefined })).toThrow(/handler.*batchHandler/);
    expect(make({ batch: { size: 0 } })).toThrow(/batch\.size/);
    expect(make({ batch: { size: 2, timeoutMs: 0 } })).toThrow(/batch\.timeoutMs/);
    expect(make({ batch: { size: 2, key: 'tenant' as never } })).toThrow(/batch\.key/);
  });
});

describe('batch handler after a per-message handler', () => {
  it('handler runs first, once per delivery; a message it fails is retried on its own and reaches a batch only once it succeeds', async () => {
    const broker = new WatchedBroker();
    const pool = new WorkerPool({ maxConcurrency: 3, maxQueueSize: 30 });
    const bounds = new Bounds(pool).watch(broker);
    const n = 40;
    const ids = publishMany(broker, 'q', n, 'x');
    const flaky = new Set(['x-3', 'x-17']);
    const poison = 'x-29';
    let seq = 0;
    /** `${id}#${attempt}` → when the handler succeeded with that delivery. */
    const succeededAt = new Map<string, number>();
    const handlerRuns = new Map<string, number>();
    const handlerFailedAttempts: string[] = [];
    const log = new CallLog();
    const beforeItsHandler: string[] = [];
    const handler = async (m: Message) => {
      handlerRuns.set(m.id, (handlerRuns.get(m.id) ?? 0) + 1);
      bounds.check('handler');
      await tick(seq % 3);
      if (m.id === poison) throw new PermanentError('not a valid row');
      if (flaky.has(m.id) && m.deliveryAttempt < 3) {
        handlerFailedAttempts.push(`${m.id}#${m.deliveryAttempt}`);
        throw new Error('validation service flaky');
      }
      succeededAt.set(`${m.id}#${m.deliveryAttempt}`, ++seq);
    };
    const retry = { ...FAST_RETRY, maxAttempts: 4 };
    const consumer = logged(log, { broker, pool, retry, handler, batch: { size: 8, timeoutMs: 10 } }, async (messages) => {
      const at = ++seq;
      bounds.check('batch');
      for (const m of messages) {
        const ok = succeededAt.get(`${m.id}#${m.deliveryAttempt}`);
        if (ok === undefined || ok > at) beforeItsHandler.push(`${m.id}#${m.deliveryAttempt}`);
      }
      await tick(1);
    });
    await runUntil(consumer, (s) => s.handled === n - 1 && s.deadLettered === 1, 'all handled, the poison dead-lettered');
    await pool.close();
    for (const id of ids) {
      expect(handlerRuns.get(id)).toBe(flaky.has(id) ? 3 : 1);
      expect(log.runsOf(id)).toBe(id === poison ? 0 : 1);
    }
    expect(handlerFailedAttempts.sort()).toEqual(['x-17#1', 'x-17#2', 'x-3#1', 'x-3#2']);
    // A flaky message reached a batch with the delivery its handler succeeded with, and no earlier.
    for (const id of flaky) expect(log.attemptOf(id)).toBe(3);
    expect(beforeItsHandler).toEqual([]);
    expect(log.sizes.every((s) => s <= 8)).toBe(true);
    expect(deadLetters(broker).map((d) => [d.id, d.headers[DEAD_LETTER_HEADERS.attempts], d.headers[DEAD_LETTER_HEADERS.reason]])).toEqual([[poison, '1', 'permanent-error']]);
    expect(consumer.status()).toMatchObject({ handled: n - 1, deadLettered: 1, retried: 4, batching: 0, inFlight: 0 });
    expect(bounds.violations).toEqual([]);
  });
});

describe('batch handler: handlerTimeoutMs', () => {
  it('aborts ctx.signal of the call and counts each of its messages failed (retried)', async () => {
    const broker = new MemoryBroker();
    const ids = publishMany(broker, 'q', 6);
    const log = new CallLog();
    const options = { broker, pool: { maxConcurrency: 1, maxQueueSize: 10 }, retry: FAST_RETRY, handlerTimeoutMs: 50, batch: { size: 6, timeoutMs: 10 } };
    const consumer = logged(log, options, async (_messages, ctx) => {
      if (log.calls.length === 1) await aborted(ctx.signal);
    });
    const failed = events(consumer, 'failed');
    const batchEvents: ConsumerEvents['batch'][] = [];
    consumer.on('batch', (e) => void batchEvents.push(e));
    await runUntil(consumer, (s) => s.handled === 6, 'handled on the second call');
    expect(log.calls[0]!.ids).toEqual(ids);
    for (const id of ids) expect(log.runsOf(id)).toBe(2);
    expect(failed.ids).toEqual([...ids].sort());
    expect(failed.seen.every((f) => f.error instanceof TaskTimeoutError && f.next === 'retry')).toBe(true);
    expect(batchEvents[0]).toMatchObject({ size: 6, failed: 6, succeeded: 0 });
    expect(consumer.status()).toMatchObject({ handled: 6, retried: 6, deadLettered: 0 });
  });

  it('a batch handler that ignores its signal keeps its slot until it really ends', async () => {
    const broker = new MemoryBroker();
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 10 });
    const bounds = new Bounds(pool);
    const ids = publishMany(broker, 'q', 5);
    const log = new CallLog();
    const downstream = gate();
    let firstSignal: AbortSignal | undefined;
    const consumer = logged(log, { broker, pool, retry: FAST_RETRY, handlerTimeoutMs: 30, batch: { size: 5, timeoutMs: 10 } }, async (_messages, ctx) => {
      bounds.check('handler');
      if (log.calls.length > 1) return;
      firstSignal = ctx.signal;
      await downstream.opened; // ignores the signal
    });
    await consumer.start();
    await until(() => consumer.status().retried === 5, 'all five counted failed and retried');
    expect(firstSignal?.aborted).toBe(true);
    expect(firstSignal?.reason).toBeInstanceOf(TaskTimeoutError);
    expect(pool.status().active).toBe(1);
    // The retries come back and close a batch, which waits: the slot is still the first call's.
    await until(() => pool.status().pending === 1 && consumer.status().batching === 0, 'the retried batch waits for the slot');
    expect(bounds.check('while the ignored call runs')).toMatchObject({ active: 1, pending: 1, held: 4 });
    expect(log.calls).toHaveLength(1);
    downstream.open();
    await until(() => consumer.status().handled === 5, 'handled once the first call really ended');
    await consumer.stop();
    await pool.close();
    expect(log.calls).toHaveLength(2);
    for (const id of ids) expect(log.runsOf(id)).toBe(2);
    expect(bounds.violations).toEqual([]);
    expect(pool.status()).toMatchObject({ active: 0, pending: 0, held: 0 });
  });
});

describe('batch handler: stop()', () => {
  it('flushes partial batches at once and handles their messages before stop resolves', async () => {
    const broker = new MemoryBroker();
    const ids = publishMany(broker, 'q', 37, 'm', (i) => ({ k: i % 3 }));
    const log = new CallLog();
    let stopping = false;
    const calledWhileStopping: boolean[] = [];
    // Neither size nor timeout would ever close these batches.
    const consumer = logged(log, { broker, pool: { maxConcurrency: 2, maxQueueSize: 60 }, batch: { size: 50, timeoutMs: 600_000, key: keyOf } }, async () => {
      calledWhileStopping.push(stopping);
      await tick(2);
    });
    await consumer.start();
    await until(() => consumer.status().batching === 37, 'all gathered');
    expect(log.calls).toHaveLength(0);
    stopping = true;
    const result = await consumer.stop({ timeoutMs: 20_000 });
    expect(consumer.status().handled).toBe(37);
    expect(result).toEqual({ drained: true, givenBack: 0 });
    expect(calledWhileStopping).toEqual([true, true, true]);
    expect(log.calls.map((c) => c.key).sort()).toEqual(['0', '1', '2']);
    log.expectEachOnce(ids);
    expect(broker.depth('q')).toEqual(EMPTY);
  });

  it('loses nothing when stopped mid-stream: what was handled is acked once, the rest is in the queue', async () => {
    const broker = new MemoryBroker();
    const n = 200;
    const ids = publishMany(broker, 'q', n, 'm', (i) => ({ k: i % 4 }));
    const log = new CallLog();
    const consumer = logged(log, { broker, pool: { maxConcurrency: 2, maxQueueSize: 60 }, batch: { size: 25, timeoutMs: 600_000, key: keyOf } }, () => tick(2));
    const handled = events(consumer, 'handled');
    const result = await runUntil(consumer, (s) => s.handled >= 50, 'some handled', 10_000, { timeoutMs: 20_000 });
    expect(result.drained).toBe(true);
    const left = broker.drain('q').map((m) => m.id);
    expect(handled.seen.length + left.length).toBe(n);
    expect([...handled.ids, ...left].sort()).toEqual([...ids].sort());
    expect(handled.seen.length).toBe(consumer.status().handled);
    for (const id of handled.ids) expect(log.runsOf(id)).toBe(1);
    for (const id of left) expect(log.runsOf(id)).toBe(0);
    expect(broker.depth('q').unacked).toBe(0);
    expect(broker.depth('q.dlq').ready).toBe(0);
  });

  it('at the stop deadline mid-batch: ctx.signal aborts, the unfinished messages are given back, { drained: false }', async () => {
    const broker = new MemoryBroker();
    const ids = publishMany(broker, 'q', 10);
    const log = new CallLog();
    let signal: AbortSignal | undefined;
    const consumer = logged(log, { broker, pool: { maxConcurrency: 1, maxQueueSize: 20 }, batch: { size: 10, timeoutMs: 10 } }, async (_messages, ctx) => {
      signal = ctx.signal;
      await aborted(signal);
    });
    const failed = events(consumer, 'failed');
    const result = await runUntil(consumer, () => log.calls.length === 1, 'the batch runs', 10_000, { timeoutMs: 50 });
    expect(result).toEqual({ drained: false, givenBack: 10 });
    expect(signal?.aborted).toBe(true);
    expect(signal?.reason).toBeInstanceOf(ShutdownError);
    expect(failed.ids).toEqual([...ids].sort());
    expect(failed.seen.every((f) => f.next === 'give-back')).toBe(true);
    expect(broker.depth('q')).toEqual({ ready: 10, unacked: 0, delayed: 0 });
    expect(broker.drain('q').map((m) => m.id).sort()).toEqual([...ids].sort());
    for (const id of ids) expect(log.runsOf(id)).toBe(1);
    expect(consumer.status()).toMatchObject({ handled: 0, retried: 0, deadLettered: 0 });
    expect(broker.depth('q.dlq').ready).toBe(0);
  });

  it('at the stop deadline, a batch handler that ignores its signal: its messages are given back for it, and its late end settles nothing', async () => {
    const broker = new MemoryBroker();
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 10 });
    const ids = publishMany(broker, 'q', 4);
    const log = new CallLog();
    const downstream = gate();
    let ended = false;
    const consumer = logged(log, { broker, pool, batch: { size: 4, timeoutMs: 10 } }, async () => {
      await downstream.opened;
      ended = true;
    });
    const errors: unknown[] = [];
    consumer.on('error', (e) => void errors.push(e.error));
    const batchEvents: ConsumerEvents['batch'][] = [];
    consumer.on('batch', (e) => void batchEvents.push(e));
    const result = await runUntil(consumer, () => log.calls.length === 1, 'the batch runs', 10_000, { timeoutMs: 30 });
    expect(result).toEqual({ drained: false, givenBack: 4 });
    expect(broker.depth('q')).toEqual({ ready: 4, unacked: 0, delayed: 0 });
    // Its slot stays taken until the handler really ends.
    expect(pool.status().active).toBe(1);
    downstream.open();
    await until(() => ended && pool.status().active === 0, 'the ignored call ended and freed its slot');
    expect(broker.depth('q')).toEqual({ ready: 4, unacked: 0, delayed: 0 });
    expect(consumer.status().handled).toBe(0);
    expect(errors).toEqual([]);
    // The call's event must not count as succeeded the messages stop gave back (none was acked, none had a handled event).
    expect(batchEvents.reduce((sum, e) => sum + e.succeeded, 0)).toBe(consumer.status().handled);
    for (const id of ids) expect(log.runsOf(id)).toBe(1);
    await pool.close();
  });
});

describe('batch handler: events, status and flow gates', () => {
  it('emits one batch event per call, with size, succeeded and failed as the call ended; status().batches counts calls', async () => {
    const broker = new MemoryBroker();
    const ids = publishMany(broker, 'q', 23);
    const log = new CallLog();
    const failedPerCall: number[] = [];
    const index = (m: Message) => Number(m.id.slice(2));
    const batch = { size: 5, timeoutMs: 10, key: (m: Message) => (index(m) % 2 === 0 ? 'even' : 'odd') };
    const consumer = logged(log, { broker, pool: { maxConcurrency: 1, maxQueueSize: 20 }, retry: FAST_RETRY, batch }, async (messages, ctx) => {
      const marked = messages.filter((m) => m.deliveryAttempt === 1 && index(m) % 4 === 0);
      for (const m of marked) ctx.fail(m, new Error('later'));
      failedPerCall.push(marked.length);
      await tick(1);
    });
    const batchEvents: ConsumerEvents['batch'][] = [];
    consumer.on('batch', (e) => void batchEvents.push(e));
    await runUntil(consumer, (s) => s.handled === 23, 'all handled');
    // One slot: calls end in the order they start.
    expect(batchEvents).toHaveLength(log.calls.length);
    batchEvents.forEach((e, i) => {
      const call = log.calls[i]!;
      expect(e).toMatchObject({ key: call.key, size: call.ids.length, failed: failedPerCall[i], succeeded: call.ids.length - failedPerCall[i]! });
      expect(e.durationMs).toBeGreaterThanOrEqual(0);
    });
    const everyFourth = ids.filter((_, i) => i % 4 === 0);
    expect(failedPerCall.reduce((a, b) => a + b, 0)).toBe(everyFourth.length);
    expect(consumer.status().batches).toBe(log.calls.length);
    for (const id of ids) expect(log.runsOf(id)).toBe(everyFourth.includes(id) ? 2 : 1);
  });

  it('flow gates are asked for each message before it holds a place; an in-flight limit below size makes smaller batches', async () => {
    const broker = new WatchedBroker();
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 40 });
    const bounds = new Bounds(pool);
    const n = 30;
    const ids = publishMany(broker, 'q', n);
    let heldBefore = 0;
    let gatedBefore = 0;
    const askedAfterTakingPlace: string[] = [];
    const refusedButHolding: string[] = [];
    const asked: string[] = [];
    const done: string[] = [];
    const log = new CallLog();
    // Asked first: it sees the pool as it was before this delivery.
    const recorder: FlowGate = {
      name: 'recorder',
      admit: (m) => {
        asked.push(m.id);
        if (pool.status().held !== heldBefore) askedAfterTakingPlace.push(m.id);
        return { admit: true };
      },
      done: (m) => void done.push(m.id),
    };
    const flow = { gates: [recorder, new InFlightLimit({ max: 3 })] };
    const consumer = logged(log, { broker, pool, flow, batch: { size: 10, timeoutMs: 10 } }, async () => {
      bounds.check('handler');
      await tick(1);
    });
    broker.before = () => {
      heldBefore = pool.status().held;
      gatedBefore = consumer.status().gated;
      bounds.check('before dispatch');
    };
    broker.after = (m) => {
      const s = bounds.check('after dispatch');
      if (consumer.status().gated > gatedBefore && s.held > heldBefore) refusedButHolding.push(m.id);
    };
    await runUntil(consumer, (s) => s.handled === n, 'all handled');
    await pool.close();
    log.expectEachOnce(ids);
    expect(askedAfterTakingPlace).toEqual([]);
    expect(refusedButHolding).toEqual([]);
    // Every delivery asked the gates once; refused ones came again.
    expect(asked).toEqual(broker.delivered);
    expect(consumer.status().gated).toBeGreaterThan(0);
    expect(asked.length).toBe(n + consumer.status().gated);
    expect([...new Set(done)].sort()).toEqual([...ids].sort());
    expect(log.sizes.every((s) => s <= 3)).toBe(true);
    expect(bounds.maxHeld).toBeLessThanOrEqual(3);
    expect(bounds.violations).toEqual([]);
  });
});

describe('batch handler on an adaptive pool', () => {
  it('keeps the bounds while the limit moves', async () => {
    const broker = new WatchedBroker();
    const pool = new WorkerPool({ maxConcurrency: 8, maxQueueSize: 40, adaptive: { min: 1, windowMs: 20, minSamples: 3 } });
    const bounds = new Bounds(pool).watch(broker);
    const limits: number[] = [];
    pool.on('limit', ({ to }) => void limits.push(to));
    const n = 600;
    const ids = publishMany(broker, 'q', n, 'm', (i) => ({ k: i % 5 }));
    const log = new CallLog();
    const failedOnce = new Set<string>();
    const running = new Running();
    const retry = { ...FAST_RETRY, maxAttempts: 5 };
    const consumer = logged(log, { broker, pool, retry, batch: { size: 10, timeoutMs: 5, key: keyOf } }, (_messages, _ctx, call) =>
      running.during(async () => {
        bounds.check('handler');
        // A downstream that slows down with concurrency, and fails now and then as a whole.
        await tick(1 + running.now);
        bounds.check('handler, later');
        if (log.calls.indexOf(call) % 7 === 3 && call.attempts.every((a) => a === 1)) {
          for (const id of call.ids) failedOnce.add(id);
          throw new Error('downstream 503');
        }
      }),
    );
    const handled = events(consumer, 'handled');
    await consumer.start();
    await until(() => consumer.status().handled === n, `all ${n} handled`, 25_000);
    // The point is the bound while the limit moves: under a loaded machine the first 600 may not
    // move it, so more come, 200 at a time, until it has moved (a hang guard, not a speed check).
    for (let more = 0; limits.length === 0 && more < 10; more++) {
      ids.push(...publishMany(broker, 'q', 200, `more${more}`, (i) => ({ k: i % 5 })));
      await until(() => consumer.status().handled === ids.length, `all ${ids.length} handled`, 25_000);
    }
    await consumer.stop();
    await pool.close();
    expect(limits.length).toBeGreaterThan(0);
    expect(failedOnce.size).toBeGreaterThan(0);
    expect(handled.ids).toEqual([...ids].sort());
    for (const id of ids) expect(log.runsOf(id)).toBe(failedOnce.has(id) ? 2 : 1);
    expect(log.sizes.every((s) => s <= 10)).toBe(true);
    expect(bounds.violations).toEqual([]);
    expect(bounds.maxActive).toBeLessThanOrEqual(8);
  }, 40_000);
});

describe('batch handler on a fake source (runtime logic)', () => {
  function fakeSource(credit?: number) {
    const settled: string[] = [];
    const state: { context: SourceContext | undefined } = { context: undefined };
    const source: Source = {
      name: 'fake',
      capabilities: { delayedRetry: true, redelivery: true, pause: true },
      credit,
      start: async (c: SourceContext) => void (state.context = c),
      pause: async () => {},
      resume: async () => {},
      stop: async () => {},
      close: async () => {},
    };
    const delivery = (id: string, stale = false): Delivery => ({
      message: new Message({ body: new Uint8Array(0), id, source: 'fake', raw: undefined }),
      stale: () => stale,
      ack: () => void settled.push(`ack ${id}`),
      retry: async () => void settled.push(`retry ${id}`),
      deadLetter: async () => void settled.push(`dead-letter ${id}`),
      giveBack: async () => void settled.push(`give-back ${id}`),
    });
    const log = new CallLog();
    const consumer = () =>
      new Consumer(source, {
        pool: { maxConcurrency: 1, maxQueueSize: 5 },
        batch: { size: 3, timeoutMs: 60_000 },
        batchHandler: (messages, ctx) => void log.record(messages, ctx),
      });
    return { source, settled, delivery, state, log, consumer };
  }

  it('tells the source the batch size; a synchronous batch handler started inside dispatch settles nothing before dispatch returns', async () => {
    const fake = fakeSource();
    const consumer = fake.consumer();
    await consumer.start();
    const context = fake.state.context!;
    expect(context.batchSize).toBe(3);
    expect(context.dispatch(fake.delivery('a'))).toBe('accepted');
    expect(context.dispatch(fake.delivery('b'))).toBe('accepted');
    expect(fake.log.calls).toHaveLength(0);
    expect(context.dispatch(fake.delivery('c'))).toBe('accepted');
    // The third closed the batch and the handler ran inside that dispatch; the acks come after it.
    expect(fake.log.calls.map((c) => c.ids)).toEqual([['a', 'b', 'c']]);
    expect(fake.settled).toEqual([]);
    await until(() => fake.settled.length === 3, 'acked');
    expect(fake.settled).toEqual(['ack a', 'ack b', 'ack c']);
    await consumer.stop();
    expect(consumer.status()).toMatchObject({ handled: 3, batches: 1 });
  });

  it('a stale delivery is left out of the call and not settled; a credit below size throws at construction', async () => {
    expect(() => fakeSource(2).consumer()).toThrow(/3.*2/);
    const fake = fakeSource(3);
    const consumer = fake.consumer();
    await consumer.start();
    const context = fake.state.context!;
    for (const [id, stale] of [['a', false], ['b', true], ['c', false]] as const) expect(context.dispatch(fake.delivery(id, stale))).toBe('accepted');
    await until(() => fake.settled.length === 2, 'the live ones acked');
    await consumer.stop();
    expect(fake.log.calls.map((c) => c.ids)).toEqual([['a', 'c']]);
    expect(fake.settled).toEqual(['ack a', 'ack c']);
    expect(consumer.status()).toMatchObject({ handled: 2, skippedStale: 1, inFlight: 0 });
  });
});
