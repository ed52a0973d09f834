/**
 * Batch handlers on the real JetStream server: every id handled exactly once in batches of at most
 * `size`; a partial batch flushed by `timeoutMs`; key grouping; per-message failures inside a batch
 * (only those retried, poison ones dead-lettered once to the default dead-letter subject); stop in
 * the middle of a slow batch losing nothing, and a batch given back there counting one delivery;
 * the pool's and the server's bounds while batches gather; a durable whose max_ack_pending is below
 * batch.size refused at start(). Counted by id.
 */
import { AckPolicy, type JsMsg, type StoredMsg } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsConsumer } from '../../adapters/nats/index.js';
import { DEAD_LETTER_HEADERS, PermanentError, WorkerPool, type BatchContext, type Consumer, type Message } from '../../src/index.js';
import { natsFixture, type NatsFixture } from '../helpers/nats.js';
import { tick, until } from '../helpers/wait.js';

let nats: NatsFixture;
/** Streams made here besides the fixture's (a stream on the default dead-letter subject). */
const ownStreams: string[] = [];
beforeAll(async () => {
  nats = await natsFixture();
});
afterAll(async () => {
  for (const s of ownStreams) await nats?.jsm.streams.delete(s).catch(() => {});
  await nats?.close();
});

interface BatchCall {
  ids: string[];
  attempts: number[];
  subjects: string[];
  key: string | undefined;
  /** The consumer's state when the call began: 'running' unless stop() flushed it. */
  state: string;
}

/** Every batch handler call, and every run of every id with its delivery attempt. */
function batchLog() {
  const calls: BatchCall[] = [];
  const runs = new Map<string, number[]>();
  return {
    calls,
    runs,
    record(messages: Message<JsMsg>[], ctx: BatchContext, consumer?: Consumer<JsMsg>): BatchCall {
      const call: BatchCall = {
        ids: messages.map((m) => m.id),
        attempts: messages.map((m) => m.deliveryAttempt),
        subjects: messages.map((m) => m.key ?? ''),
        key: ctx.key,
        state: consumer?.state ?? 'unknown',
      };
      calls.push(call);
      for (const m of messages) runs.set(m.id, [...(runs.get(m.id) ?? []), m.deliveryAttempt]);
      return call;
    },
    get sizes() {
      return calls.map((c) => c.ids.length);
    },
  };
}

/** Ids that were run other than exactly once. */
const notOnce = (runs: Map<string, number[]>, ids: string[]) => ids.filter((id) => runs.get(id)?.length !== 1);

/** Waits until the durable has nothing unacked and nothing undelivered, and returns that info. */
async function settledAtServer(stream: string, durable: string) {
  let info = await nats.jsm.consumers.info(stream, durable);
  await until(() => info.num_ack_pending === 0 && info.num_pending === 0, `${durable}: nothing unacked or pending at the server`, 60_000, async () => {
    info = await nats.jsm.consumers.info(stream, durable);
  });
  return info;
}

/** What a stream holds, by sequence. */
async function storedIn(stream: string): Promise<StoredMsg[]> {
  const { state } = await nats.jsm.streams.info(stream);
  const seqs = Array.from({ length: state.messages }, (_, i) => state.first_seq + i);
  return Promise.all(seqs.map((seq) => nats.jsm.streams.getMessage(stream, { seq })));
}

/** A downstream that never answers: rejects with the signal's reason once it is aborted. */
const untilAborted = (signal: AbortSignal) =>
  new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true }));

/** What every consumer here shares: the fixture's server, and a durable created (with the pool's credit) on its stream. */
const durableOn = (stream: string, durable: string, dlq: string) => ({ servers: nats.url, stream, durable, consumerConfig: {}, deadLetter: { subject: dlq } });

const tenantOf = (m: Message) => m.key!.slice(m.key!.lastIndexOf('.') + 1);

describe('natsConsumer (JetStream) with a batchHandler', () => {
  it('1000 messages, size 100, pool 4 + 400: every id handled exactly once, no call above size, nothing left at the server', async () => {
    const { stream, subject, dlq } = await nats.stream('batch-all');
    const ids = await nats.fill(subject, 1000);
    const log = batchLog();
    const consumer = natsConsumer({
      ...durableOn(stream, 'batched', dlq),
      pool: { maxConcurrency: 4, maxQueueSize: 400 },
      batch: { size: 100, timeoutMs: 200 },
      batchHandler: async (messages, ctx) => {
        log.record(messages, ctx);
        await tick(5); // the downstream's bulk write
      },
    });
    const batchEvents: number[] = [];
    consumer.on('batch', ({ size, failed }) => batchEvents.push(size - failed));
    await consumer.start();
    await until(() => consumer.status().handled === 1000, '1000 handled', 120_000);
    await consumer.stop();

    expect([...log.runs.keys()].sort()).toEqual([...ids].sort());
    expect(notOnce(log.runs, ids)).toEqual([]);
    expect(log.sizes.every((n) => n >= 1 && n <= 100)).toBe(true);
    // The backlog was there before start: batches did fill, so this is batching, not one call per message.
    expect(Math.max(...log.sizes)).toBe(100);
    expect(batchEvents.reduce((s, n) => s + n, 0)).toBe(1000);
    expect(consumer.status()).toMatchObject({ handled: 1000, failed: 0, retried: 0, deadLettered: 0, batching: 0, batches: log.calls.length });
    const info = await settledAtServer(stream, 'batched');
    expect(info.num_redelivered).toBe(0);
  }, 150_000);

  it('timeoutMs flushes a partial batch while the consumer runs', async () => {
    const { stream, subject, dlq } = await nats.stream('batch-partial');
    const ids = await nats.fill(subject, 7, 'partial');
    const log = batchLog();
    const consumer: Consumer<JsMsg> = natsConsumer({
      ...durableOn(stream, 'partial', dlq),
      pool: { maxConcurrency: 4, maxQueueSize: 400 },
      batch: { size: 100, timeoutMs: 1500 },
      batchHandler: async (messages, ctx) => void log.record(messages, ctx, consumer),
    });
    await consumer.start();
    // Gathered and held back first: seven of a hundred do not make a batch.
    await until(() => consumer.status().batching === 7, 'seven gathered', 30_000);
    expect(log.calls).toHaveLength(0);
    await until(() => consumer.status().handled === 7, 'the partial batch handled after its timeout', 30_000);
    expect(consumer.state).toBe('running'); // not flushed by stop()
    await consumer.stop();

    expect(log.calls).toHaveLength(1);
    expect(log.calls[0]!.state).toBe('running');
    expect([...log.calls[0]!.ids].sort()).toEqual([...ids].sort());
    expect(consumer.status().batching).toBe(0);
    await settledAtServer(stream, 'partial');
  }, 60_000);

  it('batch.key groups by subject token: every call holds one key; a key that throws dead-letters its message', async () => {
    const { stream, subject, dlq } = await nats.stream('batch-key');
    const tenants = ['north', 'south', 'east'];
    const ids: string[] = [];
    const publishes: Promise<unknown>[] = [];
    for (let i = 0; i < 90; i++) {
      const tenant = tenants[i % 3]!;
      const id = `${tenant}-${i}`;
      ids.push(id);
      publishes.push(nats.publisher.publishJson(`${subject}.${tenant}`, { id }, { id }));
    }
    await Promise.all(publishes);
    await nats.publisher.publishJson(`${subject}.nowhere`, { id: 'keyless' }, { id: 'keyless' });
    const log = batchLog();
    const consumer = natsConsumer({
      ...durableOn(stream, 'keyed', dlq),
      pool: { maxConcurrency: 4, maxQueueSize: 400 },
      batch: {
        size: 20,
        timeoutMs: 300,
        key: (m) => {
          const tenant = tenantOf(m);
          if (!tenants.includes(tenant)) throw new Error(`no tenant "${tenant}"`);
          return tenant;
        },
      },
      batchHandler: async (messages, ctx) => void log.record(messages, ctx),
    });
    const eventKeys: (string | undefined)[] = [];
    consumer.on('batch', ({ key }) => eventKeys.push(key));
    await consumer.start();
    await until(() => consumer.status().handled === 90 && consumer.status().deadLettered === 1, '90 handled, the keyless one dead-lettered', 60_000);
    await consumer.stop();

    expect([...log.runs.keys()].sort()).toEqual([...ids].sort());
    expect(notOnce(log.runs, ids)).toEqual([]);
    for (const call of log.calls) {
      expect(tenants).toContain(call.key);
      expect(new Set(call.subjects)).toEqual(new Set([`${subject}.${call.key}`]));
      expect(call.ids.every((id) => id.startsWith(`${call.key}-`))).toBe(true);
      expect(call.ids.length).toBeLessThanOrEqual(20);
    }
    expect(new Set(log.calls.map((c) => c.key))).toEqual(new Set(tenants));
    expect(Math.max(...log.sizes)).toBe(20); // 30 per tenant: a full batch each, then a partial one
    expect(eventKeys).toEqual(log.calls.map((c) => c.key));
    const dead = await storedIn(`${stream}_DLQ`);
    expect(dead).toHaveLength(1);
    expect(dead[0]!.header.get(DEAD_LETTER_HEADERS.messageId)).toBe('keyless');
    expect(dead[0]!.header.get(DEAD_LETTER_HEADERS.errorName)).toBe('PermanentError');
    expect(dead[0]!.header.get(DEAD_LETTER_HEADERS.error)).toMatch(/batch\.key failed for message keyless: no tenant "nowhere"/);
    await settledAtServer(stream, 'keyed');
  }, 90_000);

  it('failed messages of a batch are retried alone (attempt 2), poison ones dead-lettered once to the default subject, healthy ones handled once', async () => {
    const { stream, subject } = await nats.stream('batch-fail');
    const durable = 'failing';
    // No deadLetter option: the default subject, which a stream must capture (docs/nats.md).
    const dlqStream = `${stream}_DEFAULT_DLQ`;
    await nats.jsm.streams.add({ name: dlqStream, subjects: [`sluice.dlq.${stream}.${durable}`] });
    ownStreams.push(dlqStream);
    const kinds = { healthy: 20, flaky: 5, poison: 3, permanent: 2 };
    const order: string[] = [];
    for (let i = 0; i < 20; i++) {
      for (const [kind, n] of Object.entries(kinds)) if (i < n) order.push(`${kind}-${i}`);
    }
    // One at a time: the stream sequence order is the order above, so failing ones share batches with healthy ones.
    for (const id of order) await nats.publisher.publishJson(`${subject}.in`, { id }, { id });
    const idsOf = (kind: string) => order.filter((id) => id.startsWith(`${kind}-`));
    const log = batchLog();
    const consumer = natsConsumer({
      servers: nats.url,
      stream,
      durable,
      consumerConfig: {},
      pool: { maxConcurrency: 2, maxQueueSize: 20 },
      retry: { maxAttempts: 3, backoff: { initialMs: 20, maxMs: 50 } },
      batch: { size: 10, timeoutMs: 100 },
      batchHandler: async (messages, ctx) => {
        log.record(messages, ctx);
        const failed: { message: Message; error: unknown }[] = [];
        for (const m of messages) {
          const kind = m.id.slice(0, m.id.indexOf('-'));
          if (kind === 'flaky' && m.deliveryAttempt === 1) ctx.fail(m, new Error('ledger busy'));
          else if (kind === 'permanent') ctx.fail(m, new PermanentError('unknown currency'));
          else if (kind === 'poison') failed.push({ message: m, error: new Error('no such account') });
        }
        return { failed };
      },
    });
    const deadLetteredEvents: string[] = [];
    consumer.on('deadLettered', ({ message }) => deadLetteredEvents.push(message.id));
    await consumer.start();
    await until(() => consumer.status().handled === 25 && consumer.status().deadLettered === 5, '25 handled, 5 dead-lettered', 60_000);
    await settledAtServer(stream, durable);
    await consumer.stop();

    for (const id of idsOf('healthy')) expect(log.runs.get(id), id).toEqual([1]);
    for (const id of idsOf('flaky')) expect(log.runs.get(id), id).toEqual([1, 2]);
    for (const id of idsOf('poison')) expect(log.runs.get(id), id).toEqual([1, 2, 3]);
    for (const id of idsOf('permanent')) expect(log.runs.get(id), id).toEqual([1]);
    // The failures were per message inside mixed batches, and only they came back.
    expect(log.calls.some((c) => c.ids.some((id) => id.startsWith('healthy-')) && c.ids.some((id) => id.startsWith('poison-')))).toBe(true);
    const rerun = log.calls.flatMap((c) => c.ids.filter((_, i) => c.attempts[i]! > 1));
    expect(new Set(rerun)).toEqual(new Set([...idsOf('flaky'), ...idsOf('poison')]));
    expect(consumer.status()).toMatchObject({ handled: 25, retried: 5 + 3 * 2, deadLettered: 5 });

    const poisoned = [...idsOf('poison'), ...idsOf('permanent')];
    expect([...deadLetteredEvents].sort()).toEqual([...poisoned].sort());
    const dead = await storedIn(dlqStream);
    expect(dead.map((d) => d.header.get(DEAD_LETTER_HEADERS.messageId)).sort()).toEqual([...poisoned].sort());
    for (const d of dead) {
      const id = d.header.get(DEAD_LETTER_HEADERS.messageId);
      const permanent = id.startsWith('permanent-');
      expect(JSON.parse(new TextDecoder().decode(d.data))).toEqual({ id });
      expect(d.header.get(DEAD_LETTER_HEADERS.error)).toBe(permanent ? 'unknown currency' : 'no such account');
      expect(d.header.get(DEAD_LETTER_HEADERS.errorName)).toBe(permanent ? 'PermanentError' : 'Error');
      expect(d.header.get(DEAD_LETTER_HEADERS.attempts)).toBe(permanent ? '1' : '3');
      expect(d.header.get(DEAD_LETTER_HEADERS.reason)).toBe(permanent ? 'permanent-error' : 'max-attempts');
      expect(d.header.get(DEAD_LETTER_HEADERS.source)).toBe(stream);
      expect(d.header.get(DEAD_LETTER_HEADERS.key)).toBe(`${subject}.in`);
      expect(d.header.get('x-sluice-subject')).toBe(`${subject}.in`);
      expect(d.header.get('x-sluice-stream-sequence')).toBe(String(order.indexOf(id) + 1));
    }
  }, 90_000);

  it('stop() in the middle of a slow batch loses nothing: a second consumer on the durable handles the rest', async () => {
    const { stream, subject, dlq } = await nats.stream('batch-stop');
    const ids = await nats.fill(subject, 100, 'stop');
    const durable = 'interrupted';
    // Short pulls: what is given back while stopping waits for the open ones to expire (docs/nats.md, Recovery and stop).
    const options = { servers: nats.url, stream, durable, deadLetter: { subject: dlq }, pool: { maxConcurrency: 2, maxQueueSize: 22 }, pullExpiresMs: 2000 };
    const first = batchLog();
    let slow: BatchCall | undefined;
    let slowEnded = false;
    const c1: Consumer<JsMsg> = natsConsumer({
      ...options,
      consumerConfig: {},
      // Only full batches before stop: the rest gathers and waits.
      batch: { size: 8, timeoutMs: 600_000 },
      batchHandler: async (messages, ctx) => {
        const call = first.record(messages, ctx, c1);
        if (first.calls.length !== 2) return;
        // The second call is the slow downstream: it honours its signal, which the stop deadline aborts.
        slow = call;
        await untilAborted(ctx.signal).finally(() => {
          slowEnded = true;
        });
      },
    });
    const handledByFirst = new Set<string>();
    c1.on('handled', ({ message }) => handledByFirst.add(message.id));
    await c1.start();
    // Everything else handled or gathering: the slow batch holds its slot and the remainder waits for a full batch.
    await until(
      () => slow !== undefined && handledByFirst.size + slow.ids.length + c1.status().batching === 100,
      'all but the slow batch handled or gathering',
      60_000,
    );
    const gathering = c1.status().batching;
    expect(gathering).toBeGreaterThan(0);
    expect(slowEnded).toBe(false);
    const result = await c1.stop({ timeoutMs: 1000 });
    expect(slowEnded).toBe(true);
    expect(result.drained).toBe(false);
    expect(result.givenBack).toBeGreaterThanOrEqual(slow!.ids.length);
    // The gathering remainder was handed over at stop rather than waiting for its size.
    const flushedAtStop = first.calls.filter((c) => c.state === 'stopping');
    expect(flushedAtStop.flatMap((c) => c.ids)).toHaveLength(gathering);
    for (const id of slow!.ids) expect(handledByFirst.has(id), id).toBe(false);

    const second = batchLog();
    const c2 = natsConsumer({
      ...options, // the durable exists now: no consumerConfig
      batch: { size: 8, timeoutMs: 200 },
      batchHandler: async (messages, ctx) => void second.record(messages, ctx),
    });
    const handledBySecond = new Set<string>();
    c2.on('handled', ({ message }) => handledBySecond.add(message.id));
    await c2.start();
    await until(() => handledByFirst.size + handledBySecond.size >= 100, 'the rest handled by the second consumer', 60_000);
    await settledAtServer(stream, durable);
    await c2.stop();

    expect([...new Set([...handledByFirst, ...handledBySecond])].sort()).toEqual([...ids].sort());
    // What the first one acked did not come again; what it gave back was handled once by the second.
    expect([...handledByFirst].filter((id) => handledBySecond.has(id))).toEqual([]);
    expect(notOnce(second.runs, [...handledBySecond])).toEqual([]);
    // Given back, not acked: delivered again (the exact attempt is the next test's subject).
    for (const id of slow!.ids) expect(second.runs.get(id)?.[0], id).toBeGreaterThanOrEqual(2);
  }, 120_000);

  it('a batch given back at the stop deadline is given back once: its next delivery is attempt 2', async () => {
    const { stream, subject, dlq } = await nats.stream('batch-giveback');
    // Room for twice the batch: the pull sent at start asks for 8, so it is still open when the 4 are
    // given back. Short pulls: a give-back while stopping waits for the open ones to expire.
    const options = { servers: nats.url, stream, durable: 'given-back', deadLetter: { subject: dlq }, pool: { maxConcurrency: 1, maxQueueSize: 7 }, pullExpiresMs: 2000 };
    let running = false;
    const c1 = natsConsumer({
      ...options,
      consumerConfig: {},
      batch: { size: 4, timeoutMs: 600_000 },
      batchHandler: async (_messages, ctx) => {
        running = true;
        await untilAborted(ctx.signal);
      },
    });
    const givenBack = new Map<string, number>();
    c1.on('givenBack', ({ message }) => givenBack.set(message.id, (givenBack.get(message.id) ?? 0) + 1));
    await c1.start();
    const ids = await nats.fill(subject, 4, 'back');
    await until(() => running, 'the batch running', 30_000);
    const result = await c1.stop({ timeoutMs: 200 });

    const next = batchLog();
    const c2 = natsConsumer({ ...options, batch: { size: 4, timeoutMs: 100 }, batchHandler: async (messages, ctx) => void next.record(messages, ctx) });
    await c2.start();
    await until(() => c2.status().handled === 4, 'the four handled by the next consumer', 30_000);
    await settledAtServer(stream, 'given-back');
    await c2.stop();

    expect([...next.runs.keys()].sort()).toEqual([...ids].sort());
    // One give-back is one delivery more. Each extra bounce through the stopping consumer would burn
    // an attempt (deliveryCount is the attempt) and walk healthy messages towards the dead-letter queue.
    expect({
      givenBackAtStop: Object.fromEntries(givenBack),
      attemptsOfNextConsumer: Object.fromEntries(ids.map((id) => [id, next.runs.get(id)])),
    }).toEqual({
      givenBackAtStop: Object.fromEntries(ids.map((id) => [id, 1])),
      attemptsOfNextConsumer: Object.fromEntries(ids.map((id) => [id, [2]])),
    });
    expect(result.givenBack).toBe(4);
  }, 60_000);

  it('bounds: active + pending + held within the pool at every call; unacked at the server within capacity + running batches + one pull', async () => {
    const { stream, subject, dlq } = await nats.stream('batch-bounds');
    const total = 6000;
    await nats.fill(subject, total, 'bound');
    const maxConcurrency = 4;
    const maxQueueSize = 400;
    const size = 100;
    const capacity = maxConcurrency + maxQueueSize;
    const pool = new WorkerPool({ maxConcurrency, maxQueueSize });
    const log = batchLog();
    const overPool: string[] = [];
    let maxUsedAtCall = 0;
    const consumer = natsConsumer({
      ...durableOn(stream, 'bounded', dlq),
      // Far above the pool: the server does not cap what is unacked, so the bound below is sluice's own.
      consumerConfig: { max_ack_pending: 10_000 },
      pool,
      batch: { size, timeoutMs: 200 },
      batchHandler: async (messages, ctx) => {
        log.record(messages, ctx);
        const s = pool.status();
        if (s.active + s.pending + s.held > capacity || s.active > maxConcurrency) overPool.push(JSON.stringify(s));
        maxUsedAtCall = Math.max(maxUsedAtCall, s.active + s.pending + s.held);
        await tick(40); // slow enough that batches overlap and more gathers meanwhile
      },
    });
    await consumer.start();
    expect((await nats.jsm.consumers.info(stream, 'bounded')).config.max_ack_pending).toBe(10_000);
    let maxAckPending = 0;
    let maxHeld = 0;
    let samples = 0;
    const deadline = Date.now() + 120_000;
    while (consumer.status().handled < total && Date.now() < deadline) {
      const info = await nats.jsm.consumers.info(stream, 'bounded');
      maxAckPending = Math.max(maxAckPending, info.num_ack_pending);
      maxHeld = Math.max(maxHeld, pool.status().held);
      samples++;
    }
    await until(() => consumer.status().handled === total, `${total} handled`, 10_000);
    await consumer.stop();
    await pool.close();

    expect(log.calls.length).toBeGreaterThan(0);
    expect(overPool).toEqual([]);
    expect(notOnce(log.runs, [...log.runs.keys()])).toEqual([]);
    expect(log.runs.size).toBe(total);
    expect(samples).toBeGreaterThan(5);
    expect(maxHeld).toBeGreaterThan(0); // messages did gather under held places
    expect(maxHeld).toBeLessThanOrEqual(capacity);
    // Pulls ask for the pool's free places, and a running batch takes one slot for up to `size`
    // messages that stay unacked until it ends: capacity + maxConcurrency × (size − 1). Plus one
    // pull's worth (at most the capacity): the pull sent right after a turn's acks may be served by
    // the server before it has processed those acks. Without the pulls' bound it would go to 6000.
    const bound = capacity + maxConcurrency * (size - 1) + capacity;
    expect(maxAckPending).toBeGreaterThan(0);
    expect(maxAckPending, `num_ack_pending peaked at ${maxAckPending} (capacity ${capacity})`).toBeLessThanOrEqual(bound);
    console.log(`[nats-batch bounds] num_ack_pending peak ${maxAckPending}, capacity ${capacity}, bound ${bound}, held peak ${maxHeld}, used peak at calls ${maxUsedAtCall}, ${samples} samples, ${log.calls.length} calls`);
    await settledAtServer(stream, 'bounded');
  }, 180_000);

  it('a durable whose max_ack_pending is below batch.size makes start() reject, naming both numbers', async () => {
    const { stream, subject, dlq } = await nats.stream('batch-credit');
    await nats.fill(subject, 5, 'credit');
    await nats.jsm.consumers.add(stream, { durable_name: 'narrow', ack_policy: AckPolicy.Explicit, max_ack_pending: 50 });
    let calls = 0;
    const base = {
      servers: nats.url,
      stream,
      deadLetter: { subject: dlq },
      pool: { maxConcurrency: 4, maxQueueSize: 400 },
      batch: { size: 100, timeoutMs: 100 },
      recovery: { startAttempts: 1 },
      batchHandler: async (messages: Message<JsMsg>[]) => {
        calls += messages.length;
      },
    };
    const narrow = natsConsumer({ ...base, durable: 'narrow' });
    const error = await narrow.start().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(RangeError);
    expect(error?.message).toMatch(/max_ack_pending 50\b/);
    expect(error?.message).toMatch(/batch\.size 100\b/);
    expect(narrow.state).toBe('stopped');
    const untouched = await nats.jsm.consumers.info(stream, 'narrow');
    expect(untouched.config.max_ack_pending).toBe(50);
    expect(untouched.num_ack_pending).toBe(0);
    expect(untouched.num_pending).toBe(5);
    expect(calls).toBe(0);

    // With consumerConfig the durable's max_ack_pending is raised to the consumer's credit (the pool's
    // capacity 404 plus room for running batches, 4 × 99), and it starts.
    const raised = natsConsumer({ ...base, durable: 'raised', consumerConfig: { max_ack_pending: 50 } });
    await raised.start();
    expect((await nats.jsm.consumers.info(stream, 'raised')).config.max_ack_pending).toBe(404 + 4 * 99);
    await until(() => raised.status().handled === 5, 'the five handled by the raised durable', 30_000);
    await raised.stop();
    expect(calls).toBe(5);
  }, 60_000);
});
