/**
 * Batch handlers (`batchHandler` + `batch`) on a real Kafka: every id once in batches within
 * `size`, the `timeoutMs` flush, grouping by `batch.key`, key order across batches, per-message
 * failures (retry only those, dead letters once, commits only over the done prefix), a stop in
 * the middle of a batch, and the pool bound with held places. Exact outcomes by message id.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ORIGIN_HEADERS, type KafkaConsumer, type KafkaRecord } from '../../adapters/kafka/index.js';
import { DEAD_LETTER_HEADERS, PermanentError, WorkerPool, type BatchContext, type BatchHandler, type BatchResult, type Message } from '../../src/index.js';
import { kafkaFixture, type KafkaFixture, type Sent } from '../helpers/kafka.js';
import { seededRandom } from '../helpers/random.js';
import { until } from '../helpers/wait.js';

let kafka: KafkaFixture;

beforeAll(async () => {
  kafka = await kafkaFixture();
});

afterAll(async () => {
  await kafka?.close();
});

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const body = (m: Message<KafkaRecord>) => m.json<Sent>();
const offsetOf = (m: Message<KafkaRecord>) => Number(m.raw.message.offset);
const sorted = (ids: Iterable<string>) => [...ids].sort();

type KafkaMessage = Message<KafkaRecord>;

/** One batchHandler call as the log saw it; `started` and `ended` are steps of one counter shared by all calls. */
interface Call {
  n: number;
  key: string | undefined;
  messages: KafkaMessage[];
  started: number;
  ended: number | undefined;
}

/**
 * Wraps a batch handler: records every call (its messages, ctx.key, start and end on one step
 * counter), counts calls per message id, and checks the pool's bound at each call's start and end.
 */
class BatchLog {
  readonly calls: Call[] = [];
  /** Handler calls per message id. */
  readonly seen = new Map<string, number>();
  /** Where each id was read (partition, offset), from its first call. */
  readonly where = new Map<string, { partition: number; offset: number }>();
  /** Every pool status at a call's start or end that broke active + pending + held ≤ maxConcurrency + maxQueueSize. */
  readonly breaches: string[] = [];
  maxHeld = 0;
  maxUsed = 0;
  #step = 0;

  constructor(private readonly pool: WorkerPool) {}

  handler(
    work: (messages: KafkaMessage[], ctx: BatchContext, call: Call) => Promise<BatchResult | void> | BatchResult | void = () => undefined,
  ): BatchHandler<KafkaRecord> {
    return async (messages, ctx) => {
      this.#checkBound('start');
      const call: Call = { n: this.calls.length, key: ctx.key, messages, started: ++this.#step, ended: undefined };
      this.calls.push(call);
      for (const m of messages) {
        this.seen.set(m.id, (this.seen.get(m.id) ?? 0) + 1);
        if (!this.where.has(m.id)) this.where.set(m.id, { partition: m.raw.partition, offset: offsetOf(m) });
      }
      try {
        return await work(messages, ctx, call);
      } finally {
        call.ended = ++this.#step;
        this.#checkBound('end');
      }
    };
  }

  get sizes(): number[] {
    return this.calls.map((c) => c.messages.length);
  }

  #checkBound(when: string): void {
    const s = this.pool.status();
    const used = s.active + s.pending + s.held;
    this.maxHeld = Math.max(this.maxHeld, s.held);
    this.maxUsed = Math.max(this.maxUsed, used);
    if (used > s.maxConcurrency + s.maxQueueSize) {
      this.breaches.push(`call ${this.calls.length} ${when}: active ${s.active} + pending ${s.pending} + held ${s.held} > ${s.maxConcurrency} + ${s.maxQueueSize}`);
    }
  }
}

/** Waits until the group's committed offsets equal `expected(end)` per partition; returns the offsets it saw. */
async function committedAt(groupId: string, topic: string, expected: (end: number[]) => number[], what: string) {
  let offsets = await kafka.offsets(groupId, topic);
  await until(
    () => offsets.committed.length === offsets.end.length && offsets.committed.every((o, p) => o === expected(offsets.end)[p]),
    what,
    30_000,
    async () => (offsets = await kafka.offsets(groupId, topic)),
  );
  return offsets;
}

const toEnd = (groupId: string, topic: string) => committedAt(groupId, topic, (end) => end, 'committed offsets at the end of each partition');

/** Messages in a topic (all partitions), from the broker's offsets. */
async function topicSize(topic: string): Promise<number> {
  const partitions = await kafka.admin.fetchTopicOffsets(topic);
  return partitions.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
}

/** Nothing running, waiting or held in the pool: every place a batch held was given back. */
async function poolEmpty(pool: WorkerPool, c: KafkaConsumer) {
  await until(() => {
    const s = pool.status();
    return s.active + s.pending + s.held === 0 && c.status().batching === 0;
  }, 'the pool empty and nothing batching', 30_000);
}

describe('batch handlers on a real Kafka', () => {
  it('1000 messages over 3 partitions, 500 keys, size 100: every id in exactly one call, no call above size, committed to the end', async () => {
    const name = await kafka.topic(3, 'sluice-kb');
    const sent = await kafka.fill(name, 1000, 500);
    const pool = new WorkerPool({ maxConcurrency: 4, maxQueueSize: 400 });
    const log = new BatchLog(pool);
    const groupId = kafka.group();
    const events: { size: number; succeeded: number; failed: number }[] = [];
    const c = kafka.consumer({
      groupId,
      topics: [name],
      pool,
      batch: { size: 100, timeoutMs: 2000 },
      batchHandler: log.handler(() => sleep(5)),
    });
    c.on('batch', ({ size, succeeded, failed }) => events.push({ size, succeeded, failed }));
    await c.start();
    await until(() => log.seen.size === sent.length, 'every id in a batch call', 60_000);
    await toEnd(groupId, name);
    await poolEmpty(pool, c);
    await c.stop();

    expect(sorted(log.seen.keys())).toEqual(sorted(sent.map((s) => s.id)));
    expect(sent.filter((s) => log.seen.get(s.id) !== 1).map((s) => `${s.id} x${log.seen.get(s.id)}`)).toEqual([]);
    expect(log.sizes.filter((n) => n > 100 || n < 1)).toEqual([]);
    expect(Math.max(...log.sizes)).toBe(100); // batches really filled to size
    expect(log.sizes.reduce((a, b) => a + b, 0)).toBe(1000);
    expect(events.map((e) => e.size)).toEqual(log.sizes);
    expect(events.every((e) => e.failed === 0 && e.succeeded === e.size)).toBe(true);
    expect(c.status().batches).toBe(log.calls.length);
    expect(c.status().handled).toBe(1000);
    expect(log.breaches).toEqual([]);
    await pool.close();
  }, 120_000);

  it('timeoutMs flushes a partial batch: gathered, not handed over, then handled without reaching size', async () => {
    const name = await kafka.topic(1, 'sluice-kb');
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 200 });
    const log = new BatchLog(pool);
    const groupId = kafka.group();
    const c = kafka.consumer({
      groupId,
      topics: [name],
      pool,
      batch: { size: 100, timeoutMs: 1500 },
      batchHandler: log.handler(),
    });
    await c.start();
    const first = await kafka.fill(name, 3, 3, 'a');
    // Gathered and held by the batch, no call yet: the batch waits (for size or its timeout).
    await until(() => c.status().batching === 3, 'the 3 messages gathered', 30_000);
    expect(log.calls.length).toBe(0);
    expect(pool.status().held).toBe(3);
    await until(() => log.calls.length === 1, 'the partial batch flushed', 30_000);
    expect(sorted(log.calls[0]!.messages.map((m) => m.id))).toEqual(sorted(first.map((s) => s.id)));
    // A second partial batch after the first one: flushed on its own timer too.
    const second = await kafka.fill(name, 4, 4, 'b');
    await until(() => log.seen.size === 7, 'the second partial batch flushed', 30_000);
    await toEnd(groupId, name);
    await poolEmpty(pool, c);
    await c.stop();

    expect(log.calls.map((call) => sorted(call.messages.map((m) => m.id)))).toEqual([sorted(first.map((s) => s.id)), sorted(second.map((s) => s.id))]);
    expect([...log.seen.values()]).toEqual([1, 1, 1, 1, 1, 1, 1]);
    expect(log.breaches).toEqual([]);
    await pool.close();
  }, 90_000);

  it('batch.key groups by a header: every call holds one key (ctx.key); a message without the header is dead-lettered', async () => {
    const name = await kafka.topic(2, 'sluice-kb');
    const tenants = ['acme', 'globex', 'initech'];
    const random = seededRandom(12);
    const messages = Array.from({ length: 300 }, (_, i) => ({ id: `t-${i}`, tenant: tenants[Math.floor(random() * tenants.length)]! }));
    const headless = 't-headless';
    await kafka.publisher.publish(name, [
      ...messages.map((m) => ({ key: m.id, value: JSON.stringify(m), headers: { 'message-id': m.id, tenant: m.tenant } })),
      { key: headless, value: JSON.stringify({ id: headless }), headers: { 'message-id': headless } },
    ]);
    const pool = new WorkerPool({ maxConcurrency: 3, maxQueueSize: 60 });
    const log = new BatchLog(pool);
    const groupId = kafka.group();
    const c = kafka.consumer({
      groupId,
      topics: [name],
      pool,
      batch: { size: 20, timeoutMs: 200, key: (m) => m.header('tenant') as string },
      batchHandler: log.handler(() => sleep(2)),
    });
    const dead: { id: string; reason: string }[] = [];
    c.on('deadLettered', ({ message, info }) => dead.push({ id: message.id, reason: info.reason }));
    await c.start();
    await until(() => log.seen.size === messages.length && dead.length === 1, 'every tenant message in a call and the headless one dead-lettered', 60_000);
    await toEnd(groupId, name);
    await poolEmpty(pool, c);
    await c.stop();

    const mixed = log.calls.filter((call) => call.key === undefined || call.messages.some((m) => m.header('tenant') !== call.key));
    expect(mixed.map((call) => `${call.key}: ${call.messages.map((m) => m.header('tenant')).join(',')}`)).toEqual([]);
    expect(sorted(new Set(log.calls.map((call) => call.key!)))).toEqual(sorted(tenants));
    expect(log.sizes.filter((n) => n > 20)).toEqual([]);
    expect(Math.max(...log.sizes)).toBeGreaterThan(1);
    expect(sorted(log.seen.keys())).toEqual(sorted(messages.map((m) => m.id)));
    expect([...log.seen.values()].every((n) => n === 1)).toBe(true);
    expect(dead).toEqual([{ id: headless, reason: 'permanent-error' }]);
    expect(await topicSize(`${name}.dlq`)).toBe(1);
    const [dl] = await kafka.readTopic(`${name}.dlq`, 1);
    expect(dl!.headers[DEAD_LETTER_HEADERS.messageId]).toBe(headless);
    expect(dl!.headers[DEAD_LETTER_HEADERS.error]).toMatch(/batch\.key/);
    expect(log.breaches).toEqual([]);
    await pool.close();
  }, 90_000);

  it("key order across batches ('key', 6 keys): per key in offset order, and a key's next message only in a batch started after the previous one's ended", async () => {
    const name = await kafka.topic(3, 'sluice-kb');
    const sent = await kafka.fill(name, 90, 6);
    const pool = new WorkerPool({ maxConcurrency: 4, maxQueueSize: 40 });
    const log = new BatchLog(pool);
    const random = seededRandom(4);
    const groupId = kafka.group();
    const c = kafka.consumer({
      groupId,
      topics: [name],
      pool,
      batch: { size: 3, timeoutMs: 30 },
      batchHandler: log.handler(() => sleep(1 + Math.floor(random() * 20))),
    });
    await c.start();
    await until(() => log.seen.size === sent.length, 'every id in a batch call', 60_000);
    await toEnd(groupId, name);
    await poolEmpty(pool, c);
    await c.stop();

    expect([...log.seen.values()].every((n) => n === 1)).toBe(true);
    expect(log.seen.size).toBe(90);
    // The call each message was in, per key, in the order the calls started.
    const byKey = new Map<string, { seq: number; offset: number; call: Call }[]>();
    for (const call of log.calls) {
      for (const m of call.messages) {
        const { key, seq } = body(m);
        let list = byKey.get(key);
        if (!list) byKey.set(key, (list = []));
        list.push({ seq, offset: offsetOf(m), call });
      }
    }
    expect(byKey.size).toBe(6);
    const violations: string[] = [];
    for (const [key, list] of byKey) {
      list.sort((a, b) => a.call.started - b.call.started);
      list.forEach((item, i) => {
        if (item.seq !== i) violations.push(`${key}: call ${item.call.n} has seq ${item.seq} at place ${i}`);
        const previous = list[i - 1];
        if (previous === undefined) return;
        if (item.offset <= previous.offset) violations.push(`${key}: offset ${item.offset} handled after ${previous.offset}`);
        if (previous.call.ended === undefined || item.call.started <= previous.call.ended) {
          violations.push(`${key} seq ${item.seq}: call ${item.call.n} started (step ${item.call.started}) before call ${previous.call.n} of seq ${previous.seq} ended (step ${previous.call.ended})`);
        }
      });
    }
    expect(violations).toEqual([]);
    // Calls did overlap (else the order check above would hold trivially).
    const overlapping = log.calls.filter((call, i) => log.calls.slice(0, i).some((earlier) => earlier.ended! > call.started));
    expect(overlapping.length).toBeGreaterThan(0);
    expect(log.breaches).toEqual([]);
    await pool.close();
  }, 90_000);

  it('a batch with failed messages: only they are retried, poison ones reach the dead-letter topic once with the sluice headers, the healthy ones run once', async () => {
    const name = await kafka.topic(2, 'sluice-kb');
    const sent = await kafka.fill(name, 120, 120); // a key per message: a retrying message delays no other
    const transient = new Set(sent.filter((_, i) => i % 10 === 3).map((s) => s.id)); // fails its first attempt (returned `failed`)
    const permanent = new Set(sent.filter((_, i) => i % 20 === 7).map((s) => s.id)); // ctx.fail with a PermanentError
    const exhausted = new Set(sent.filter((_, i) => i % 30 === 11).map((s) => s.id)); // fails every attempt (returned `failed`)
    const healthy = sent.filter((s) => !transient.has(s.id) && !permanent.has(s.id) && !exhausted.has(s.id));
    const poison = new Set([...permanent, ...exhausted]);
    expect(transient.size + permanent.size + exhausted.size + healthy.length).toBe(120);
    const attempts = new Map<string, number[]>();
    const succeeded = new Map<string, number>();
    const pool = new WorkerPool({ maxConcurrency: 3, maxQueueSize: 60 });
    const log = new BatchLog(pool);
    const groupId = kafka.group();
    const c = kafka.consumer({
      groupId,
      topics: [name],
      pool,
      retry: { maxAttempts: 3, backoff: { initialMs: 50, maxMs: 100, jitter: 0 } },
      batch: { size: 25, timeoutMs: 100 },
      batchHandler: log.handler(async (messages, ctx) => {
        await sleep(2);
        const failed: { message: KafkaMessage; error: unknown }[] = [];
        for (const m of messages) {
          const list = attempts.get(m.id) ?? [];
          attempts.set(m.id, [...list, m.deliveryAttempt]);
          if (permanent.has(m.id)) ctx.fail(m, new PermanentError(`declined ${m.id}`));
          else if (exhausted.has(m.id) || (transient.has(m.id) && m.deliveryAttempt === 1)) failed.push({ message: m, error: new Error(`broken ${m.id}`) });
          else succeeded.set(m.id, (succeeded.get(m.id) ?? 0) + 1);
        }
        return { failed };
      }),
    });
    const dead: { id: string; attempts: number; reason: string }[] = [];
    c.on('deadLettered', ({ message, info }) => dead.push({ id: message.id, attempts: info.attempts, reason: info.reason }));
    let failedInBatches = 0;
    c.on('batch', ({ failed }) => (failedInBatches += failed));
    await c.start();
    const wanted = healthy.length + transient.size;
    await until(() => succeeded.size === wanted && dead.length === poison.size, 'healthy and transient handled, poison dead-lettered', 60_000);
    await toEnd(groupId, name);
    await poolEmpty(pool, c);
    await c.stop();

    const attemptsOf = (ids: Iterable<string>) => [...ids].map((id) => `${id}:${(attempts.get(id) ?? []).join(',')}`);
    expect(attemptsOf(healthy.map((s) => s.id))).toEqual(healthy.map((s) => `${s.id}:1`));
    expect(attemptsOf(transient)).toEqual([...transient].map((id) => `${id}:1,2`));
    expect(attemptsOf(permanent)).toEqual([...permanent].map((id) => `${id}:1`));
    expect(attemptsOf(exhausted)).toEqual([...exhausted].map((id) => `${id}:1,2,3`));
    expect([...succeeded.values()].every((n) => n === 1)).toBe(true);
    expect(sorted(succeeded.keys())).toEqual(sorted([...healthy.map((s) => s.id), ...transient]));
    // The batch events counted each failed attempt once.
    expect(failedInBatches).toBe(transient.size + permanent.size + 3 * exhausted.size);
    expect(sorted(dead.map((d) => d.id))).toEqual(sorted(poison));
    for (const d of dead) {
      expect(d).toEqual(permanent.has(d.id) ? { id: d.id, attempts: 1, reason: 'permanent-error' } : { id: d.id, attempts: 3, reason: 'max-attempts' });
    }
    expect(c.status().deadLettered).toBe(poison.size);
    // In the dead-letter topic exactly once each, with the sluice headers and the original message.
    const dlq = `${name}.dlq`;
    expect(await topicSize(dlq)).toBe(poison.size);
    const records = await kafka.readTopic(dlq, poison.size);
    expect(sorted(records.map((r) => r.headers[DEAD_LETTER_HEADERS.messageId]!))).toEqual(sorted(poison));
    const byId = new Map(sent.map((s) => [s.id, s]));
    for (const r of records) {
      const id = r.headers[DEAD_LETTER_HEADERS.messageId]!;
      const isPermanent = permanent.has(id);
      expect(r.headers[DEAD_LETTER_HEADERS.error]).toBe(isPermanent ? `declined ${id}` : `broken ${id}`);
      expect(r.headers[DEAD_LETTER_HEADERS.errorName]).toBe(isPermanent ? 'PermanentError' : 'Error');
      expect(r.headers[DEAD_LETTER_HEADERS.attempts]).toBe(isPermanent ? '1' : '3');
      expect(r.headers[DEAD_LETTER_HEADERS.reason]).toBe(isPermanent ? 'permanent-error' : 'max-attempts');
      expect(r.headers[DEAD_LETTER_HEADERS.source]).toBe(name);
      expect(r.headers[DEAD_LETTER_HEADERS.key]).toBe(byId.get(id)!.key);
      expect(r.headers[DEAD_LETTER_HEADERS.at]).toMatch(/^\d{4}-\d\d-\d\dT/);
      expect(r.headers[ORIGIN_HEADERS.topic]).toBe(name);
      expect(r.headers[ORIGIN_HEADERS.partition]).toBe(String(log.where.get(id)!.partition));
      expect(r.headers[ORIGIN_HEADERS.offset]).toBe(String(log.where.get(id)!.offset));
      expect(r.headers['message-id']).toBe(id);
      expect(r.key).toBe(byId.get(id)!.key);
      expect(JSON.parse(r.value)).toEqual(byId.get(id));
    }
    expect(log.breaches).toEqual([]);
    await pool.close();
  }, 120_000);

  it("a failed message waiting for its retry holds its partition's commit: no commit passes it until it succeeds", async () => {
    const name = await kafka.topic(2, 'sluice-kb');
    const sent = await kafka.fill(name, 100, 100);
    const stuck = new Set([sent[30]!.id, sent[71]!.id]);
    const healthy = sent.filter((s) => !stuck.has(s.id));
    let released = false;
    const attempts = new Map<string, number>();
    const succeeded = new Map<string, number>();
    const pool = new WorkerPool({ maxConcurrency: 3, maxQueueSize: 60 });
    const log = new BatchLog(pool);
    const groupId = kafka.group();
    const c = kafka.consumer({
      groupId,
      topics: [name],
      pool,
      // Enough attempts that it is still retrying (never dead-lettered) while the commits are watched.
      retry: { maxAttempts: 10_000, backoff: { initialMs: 20, maxMs: 50, jitter: 0 } },
      batch: { size: 10, timeoutMs: 50 },
      batchHandler: log.handler((messages, ctx) => {
        for (const m of messages) {
          if (stuck.has(m.id)) attempts.set(m.id, (attempts.get(m.id) ?? 0) + 1);
          if (stuck.has(m.id) && !released) ctx.fail(m, new Error(`not yet ${m.id}`));
          else succeeded.set(m.id, (succeeded.get(m.id) ?? 0) + 1);
        }
      }),
    });
    await c.start();
    // Every commit the adapter sends, with whether the stuck messages were released then.
    const commits: { partition: number; offset: number; released: boolean }[] = [];
    kafka.watch(c).on('commit', (offsets) => {
      for (const p of offsets) if (p.topic === name) commits.push({ partition: p.partition, offset: p.offset, released });
    });
    await until(() => healthy.every((s) => succeeded.has(s.id)) && [...stuck].every((id) => log.where.has(id)), 'the healthy messages handled', 60_000);
    const stuckAt = (partition: number) => Math.min(...[...stuck].map((id) => log.where.get(id)!).filter((w) => w.partition === partition).map((w) => w.offset));
    // The commit reaches the done prefix: up to the first stuck message of each partition, never past it.
    const held = await committedAt(groupId, name, (end) => end.map((e, p) => Math.min(e, stuckAt(p))), 'the done prefix committed up to the stuck messages');
    expect(held.committed.some((o, p) => o < held.end[p]!)).toBe(true);
    // Still retrying, and still not committed past, after more retries (the commit timer sleeps
    // while every done prefix is confirmed, so a later commit would only come from a prefix that moved).
    const attemptsThen = Math.min(...[...stuck].map((id) => attempts.get(id)!));
    await until(() => Math.min(...[...stuck].map((id) => attempts.get(id)!)) >= attemptsThen + 10, 'ten more retries of each stuck message', 30_000);
    expect((await kafka.offsets(groupId, name)).committed).toEqual(held.committed);
    expect(c.status().deadLettered).toBe(0);
    released = true;
    await until(() => [...stuck].every((id) => succeeded.has(id)), 'the stuck messages handled once released', 30_000);
    await toEnd(groupId, name);
    await poolEmpty(pool, c);
    await c.stop();

    const passed = commits.filter((k) => !k.released && k.offset > stuckAt(k.partition));
    expect(passed).toEqual([]);
    expect(commits.filter((k) => !k.released).length).toBeGreaterThan(0);
    expect([...attempts.values()].every((n) => n >= 12)).toBe(true);
    // Only the failed messages were retried: every other id was in one call.
    expect(healthy.filter((s) => log.seen.get(s.id) !== 1).map((s) => s.id)).toEqual([]);
    expect([...succeeded.values()].every((n) => n === 1)).toBe(true);
    expect(succeeded.size).toBe(100);
    expect(log.breaches).toEqual([]);
    await pool.close();
  }, 120_000);

  it('stop({ timeoutMs }) in the middle of a slow batch loses nothing: a second member handles the rest, and nothing committed is handled again', async () => {
    const name = await kafka.topic(3, 'sluice-kb');
    const sent = await kafka.fill(name, 600, 600);
    const groupId = kafka.group();
    const poolA = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 100 });
    const logA = new BatchLog(poolA);
    const handledA = new Map<string, number>();
    const abortedA = new Set<string>();
    let blocking = 0;
    const a = kafka.consumer({
      groupId,
      topics: [name],
      pool: poolA,
      batch: { size: 50, timeoutMs: 200 },
      batchHandler: logA.handler(async (messages, ctx, call) => {
        if (call.n < 3) {
          await sleep(2);
          for (const m of messages) handledA.set(m.id, (handledA.get(m.id) ?? 0) + 1);
          return;
        }
        // From the fourth call on: a slow downstream that only the stop deadline ends.
        blocking++;
        const { signal } = ctx;
        await new Promise<void>((resolve) => (signal.aborted ? resolve() : signal.addEventListener('abort', () => resolve(), { once: true })));
        for (const m of messages) abortedA.add(m.id);
        throw signal.reason;
      }),
    });
    await a.start();
    await until(() => handledA.size === 150 && blocking > 0, 'three calls handled and a slow one running', 60_000);
    const stopped = await a.stop({ timeoutMs: 300 });
    expect(stopped.drained).toBe(false);
    expect(stopped.givenBack).toBeGreaterThan(0);
    expect(abortedA.size).toBeGreaterThan(0);
    expect(poolA.status().held).toBe(0);
    const { committed } = await kafka.offsets(groupId, name);
    const at = (id: string) => logA.where.get(id)!;
    // The commit never passes a message the first member did not finish.
    const committedUnhandled = sent.filter((s) => logA.where.has(s.id) && at(s.id).offset < committed[at(s.id).partition]! && !handledA.has(s.id));
    expect(committedUnhandled.map((s) => s.id)).toEqual([]);
    expect([...abortedA].filter((id) => handledA.has(id))).toEqual([]);

    const poolB = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 100 });
    const logB = new BatchLog(poolB);
    const b = kafka.consumer({
      groupId,
      topics: [name],
      pool: poolB,
      batch: { size: 50, timeoutMs: 200 },
      batchHandler: logB.handler(),
    });
    await b.start();
    const all = () => new Set([...handledA.keys(), ...logB.seen.keys()]);
    await until(() => all().size === sent.length, 'every id handled by one of the two members', 60_000);
    await toEnd(groupId, name);
    await poolEmpty(poolB, b);
    await b.stop();

    expect(sorted(all())).toEqual(sorted(sent.map((s) => s.id)));
    expect([...handledA.values()].every((n) => n === 1)).toBe(true);
    expect([...logB.seen.values()].every((n) => n === 1)).toBe(true);
    // The second member starts at the committed offsets: what the first committed is not handled again…
    const handledAgain = [...handledA.keys()].filter((id) => logB.seen.has(id) && at(id).offset < committed[at(id).partition]!);
    expect(handledAgain).toEqual([]);
    for (const [id, w] of logB.where) expect(w.offset, id).toBeGreaterThanOrEqual(committed[w.partition]!);
    // …and what the stop abandoned comes back to it.
    expect([...abortedA].filter((id) => !logB.seen.has(id))).toEqual([]);
    expect(logA.breaches).toEqual([]);
    expect(logB.breaches).toEqual([]);
    await poolA.close();
    await poolB.close();
  }, 150_000);

  it('the pool bound with held places: active + pending + held ≤ maxConcurrency + maxQueueSize at every call, under pressure; size above the capacity throws', async () => {
    const name = await kafka.topic(2, 'sluice-kb');
    const sent = await kafka.fill(name, 600, 600);
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 20 });
    const log = new BatchLog(pool);
    const groupId = kafka.group();
    const c = kafka.consumer({
      groupId,
      topics: [name],
      pool,
      batch: { size: 10, timeoutMs: 100 },
      batchHandler: log.handler(() => sleep(3)),
    });
    await c.start();
    await until(() => log.seen.size === sent.length, 'every id in a batch call', 90_000);
    await toEnd(groupId, name);
    await poolEmpty(pool, c);
    const { pauses } = c.source.status();
    await c.stop();

    expect(log.breaches).toEqual([]);
    expect(log.maxUsed).toBeLessThanOrEqual(22);
    expect(log.maxHeld).toBeGreaterThan(0); // messages were gathered under held places while calls ran
    expect(pauses).toBeGreaterThan(0); // the bound was reached: partitions paused for room
    expect([...log.seen.values()].every((n) => n === 1)).toBe(true);
    expect(log.sizes.filter((n) => n > 10)).toEqual([]);
    expect(() =>
      kafka.consumer({ groupId: kafka.group(), topics: [name], pool, batch: { size: 23 }, batchHandler: () => undefined }),
    ).toThrow(/"batch\.size" 23 .*capacity 22 \(maxConcurrency 2 \+ maxQueueSize 20\)/);
    await pool.close();
  }, 150_000);
});
