/** The one policy for broker actions that fail (src/settle.ts) and its use by the runtime, on the memory broker and a fake source. */
import { describe, expect, it } from 'vitest';
import { MemoryBroker, memoryConsumer } from '../../adapters/memory/index.js';
import { Consumer, DEAD_LETTER_HEADERS, Message, PermanentError, SettlementError, WorkerPool } from '../../src/index.js';
import type { Delivery, Source, SourceCapabilities, SourceContext } from '../../src/adapter/index.js';
import { carryOut, type SettlePolicy } from '../../src/settle.js';
import { tick, until } from '../helpers/wait.js';

const policy: SettlePolicy = { tries: 3, backoff: { maxAttempts: 3, delayMs: () => 1 }, deferMs: 5 };
const caps: SourceCapabilities = { delayedRetry: true, redelivery: true, pause: true };
const info = { error: { name: 'Error', message: 'x' }, attempts: 1, source: 'q', reason: 'permanent-error' as const, at: new Date(0) };

/** A delivery that records calls; `fail` says how often each action fails before it works (Infinity: always). */
function fakeDelivery(fail: Partial<Record<'ack' | 'retry' | 'deadLetter' | 'giveBack' | 'defer', number>> = {}, stale = () => false) {
  const calls: string[] = [];
  const left = { ...fail };
  const act = (name: keyof typeof fail, detail = '') => {
    calls.push(name + detail);
    if ((left[name] ?? 0) > 0) {
      left[name]!--;
      throw new Error(`${name} refused`);
    }
  };
  const delivery: Delivery = {
    message: new Message({ body: new Uint8Array(0), id: 'm-1', source: 'q', raw: undefined, deliveryAttempt: 2 }),
    stale,
    ack: () => act('ack'),
    retry: async (d, n) => act('retry', `(${d},${n})`),
    deadLetter: async () => act('deadLetter'),
    giveBack: async () => act('giveBack'),
    defer: async (d) => act('defer', `(${d})`),
  };
  return { delivery, calls };
}

describe('carryOut: a failing broker action', () => {
  it('is tried again with backoff and reported each time; success ends it', async () => {
    const { delivery, calls } = fakeDelivery({ deadLetter: 2 });
    const failures: string[] = [];
    const r = await carryOut(delivery, { type: 'dead-letter', info }, caps, policy, { failed: (d, _e, n) => void failures.push(`${d}#${n}`) });
    expect(r.result).toBe('done');
    expect(calls).toEqual(['deadLetter', 'deadLetter', 'deadLetter']);
    expect(failures).toEqual(['dead-letter#1', 'dead-letter#2']);
  });

  it('that keeps refusing sets the message aside (defer), attempt unchanged; a retry too', async () => {
    const dl = fakeDelivery({ deadLetter: Infinity });
    expect((await carryOut(dl.delivery, { type: 'dead-letter', info }, caps, policy, { failed: () => {} })).result).toBe('deferred');
    expect(dl.calls).toEqual(['deadLetter', 'deadLetter', 'deadLetter', 'defer(5)']);
    const rt = fakeDelivery({ retry: Infinity });
    const r = await carryOut(rt.delivery, { type: 'retry', delayMs: 7, nextAttempt: 3 }, caps, policy, { failed: () => {} });
    expect(r.result).toBe('deferred');
    expect(r.error).toBeInstanceOf(Error);
    expect(rt.calls).toEqual(['retry(7,3)', 'retry(7,3)', 'retry(7,3)', 'defer(5)']);
  });

  it('without defer uses retry with the same attempt; then give-back; then abandoned', async () => {
    const noDefer = fakeDelivery({ deadLetter: Infinity, retry: Infinity });
    delete (noDefer.delivery as { defer?: unknown }).defer;
    const r = await carryOut(noDefer.delivery, { type: 'dead-letter', info }, caps, policy, { failed: () => {} });
    expect(r.result).toBe('given-back');
    expect(noDefer.calls).toEqual(['deadLetter', 'deadLetter', 'deadLetter', 'retry(5,2)', 'giveBack']);
    const nothing = fakeDelivery({ deadLetter: Infinity, defer: Infinity, giveBack: Infinity });
    expect((await carryOut(nothing.delivery, { type: 'dead-letter', info }, caps, policy, { failed: () => {} })).result).toBe('abandoned');
    // A failing ack or give-back has no fallback: the broker redelivers it.
    const ack = fakeDelivery({ ack: Infinity });
    expect((await carryOut(ack.delivery, { type: 'ack' }, caps, policy, { failed: () => {} })).result).toBe('abandoned');
    expect(ack.calls).toEqual(['ack', 'ack', 'ack']);
  });

  it('stops at once when the delivery turns stale: the broker delivers it again by itself', async () => {
    let stale = false;
    const { delivery, calls } = fakeDelivery({ deadLetter: Infinity }, () => stale);
    const r = await carryOut(delivery, { type: 'dead-letter', info }, caps, policy, {
      failed: () => {
        stale = true;
      },
    });
    expect(r.result).toBe('stale');
    expect(calls).toEqual(['deadLetter']);
  });

  it('does not wait out a backoff for a delivery that is already stale: its slot is freed at once', async () => {
    // A backoff no test would wait for: the result must come without any of it.
    const slow: SettlePolicy = { tries: 3, backoff: { maxAttempts: 3, delayMs: () => 3_600_000 }, deferMs: 5 };
    const ackThrew = fakeDelivery({}, () => true);
    const failures: string[] = [];
    const first = carryOut(ackThrew.delivery, { type: 'ack' }, caps, slow, { failed: (d, _e, n) => void failures.push(`${d}#${n}`) }, { error: new Error('channel lost') });
    const settled = await Promise.race([first.then((r) => r.result), tick(50).then(() => 'still waiting')]);
    expect(settled).toBe('stale');
    expect(ackThrew.calls).toEqual([]); // not tried again on a dead channel
    expect(failures).toEqual(['ack#1']); // the failure is still reported
    let stale = false;
    const inLoop = fakeDelivery({ retry: Infinity }, () => stale);
    const second = carryOut(inLoop.delivery, { type: 'retry', delayMs: 0, nextAttempt: 2 }, caps, slow, { failed: () => void (stale = true) });
    expect(await Promise.race([second.then((r) => r.result), tick(50).then(() => 'still waiting')])).toBe('stale');
    expect(inLoop.calls).toEqual(['retry(0,2)']);
  });

  it('calls retry with delay 0 for a source without delayedRetry (the runtime waited)', async () => {
    const { delivery, calls } = fakeDelivery();
    await carryOut(delivery, { type: 'retry', delayMs: 50, nextAttempt: 3 }, { ...caps, delayedRetry: false }, policy, { failed: () => {} });
    expect(calls).toEqual(['retry(0,3)']);
  });
});

describe('the runtime when the dead-letter destination refuses (memory broker)', () => {
  it('keeps healthy messages flowing, loses no failing one, and delivers them once it accepts again', async () => {
    const broker = new MemoryBroker();
    broker.refusePublishes('q.dlq');
    for (let i = 0; i < 20; i++) broker.publishJson('q', { poison: i < 6 }, { id: `m-${i}` });
    const runs = new Map<string, number>();
    const consumer = memoryConsumer({
      broker,
      queue: 'q',
      pool: { maxConcurrency: 2, maxQueueSize: 2 },
      settlement: { tries: 2, backoff: { initialMs: 1, maxMs: 2 }, deferMs: 5 },
      handler: async (m) => {
        runs.set(m.id, (runs.get(m.id) ?? 0) + 1);
        if (m.json<{ poison: boolean }>().poison) throw new PermanentError('bad card');
      },
    });
    const errors: unknown[] = [];
    consumer.on('error', (e) => errors.push(e.error));
    await consumer.start();
    await until(() => consumer.status().handled === 14 && consumer.status().deferred >= 6, 'healthy handled, poison set aside');
    expect(consumer.health()).toMatchObject({ status: 'degraded' });
    expect(consumer.health().details.reasons.join()).toMatch(/refuses retries or dead letters/);
    expect(errors.some((e) => e instanceof SettlementError && e.fallback === 'deferred')).toBe(true);
    broker.refusePublishes('q.dlq', false);
    await until(() => consumer.status().deadLettered === 6, 'all six dead-lettered');
    await consumer.stop();
    const dead = broker.drain('q.dlq');
    expect(dead.map((m) => m.id).sort()).toEqual(['m-0', 'm-1', 'm-2', 'm-3', 'm-4', 'm-5']);
    expect(dead[0]!.headers[DEAD_LETTER_HEADERS.reason]).toBe('permanent-error');
    // A remembered dead letter does not run its handler again when it comes back.
    for (let i = 0; i < 6; i++) expect(runs.get(`m-${i}`)).toBe(1);
    for (let i = 6; i < 20; i++) expect(runs.get(`m-${i}`)).toBe(1);
    expect(consumer.health().details.settlementFailing).toBe(false);
    expect(broker.depth('q')).toEqual({ ready: 0, unacked: 0, delayed: 0 });
  });

  it('a retry whose republish keeps failing is set aside and handled later, nothing lost', async () => {
    const broker = new MemoryBroker();
    broker.publishJson('q', {}, { id: 'flaky' });
    const realRetry = broker.retryLater.bind(broker);
    let refuse = 3;
    broker.retryLater = (queue, tag, delayMs, attempt) => {
      // The first tries of the real retry are refused; the deferral (same attempt) goes through.
      if (attempt === 2 && refuse-- > 0) throw new Error('republish nacked');
      realRetry(queue, tag, delayMs, attempt);
    };
    let runs = 0;
    const consumer = memoryConsumer({
      broker,
      queue: 'q',
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      retry: { maxAttempts: 3, backoff: { initialMs: 1, jitter: 0 } },
      settlement: { tries: 2, backoff: { initialMs: 1 }, deferMs: 1 },
      handler: async () => {
        if (++runs < 3) throw new Error('transient');
      },
    });
    await consumer.start();
    await until(() => consumer.status().handled === 1, 'handled in the end');
    await consumer.stop();
    expect(consumer.status()).toMatchObject({ deferred: 1, deadLettered: 0, abandoned: 0 });
    expect(broker.depth('q')).toEqual({ ready: 0, unacked: 0, delayed: 0 });
  });
});

/** A source whose deliveries the test makes by hand. */
function fakeSource(capabilities: SourceCapabilities = caps) {
  let context!: SourceContext;
  const log: string[] = [];
  const source: Source = {
    name: 'fake',
    capabilities,
    start: async (c) => void (context = c),
    pause: async () => void log.push('pause'),
    resume: async () => void log.push('resume'),
    stop: async () => void log.push('stop'),
    close: async () => void log.push('close'),
  };
  return { source, log, dispatch: (d: Delivery) => context.dispatch(d) };
}

describe('the runtime when a refused retry or dead letter is handed back', () => {
  it('pauses consumption before the message comes back to fail the same way, longer while it lasts; a dead letter that goes through ends it', async () => {
    const { source, log, dispatch } = fakeSource();
    const consumer = new Consumer(source, {
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      settlement: { tries: 1, backoff: { initialMs: 1 }, deferMs: 5 },
      overloadBackoff: { initialMs: 30, maxMs: 1000, jitter: 0 },
      handler: async () => {
        throw new PermanentError('poison');
      },
    });
    const paused: number[] = [];
    consumer.on('paused', ({ reason }) => void (reason === 'settlement' && paused.push(Date.now())));
    await consumer.start();
    // The broker refuses the dead letter and its deferral (every publish blocked): handed back.
    const refused = fakeDelivery({ deadLetter: Infinity, defer: Infinity });
    expect(dispatch(refused.delivery)).toBe('accepted');
    await until(() => consumer.status().pausedBy.includes('settlement'), 'paused after the hand-back');
    expect(refused.calls).toEqual(['deadLetter', 'defer(5)', 'giveBack']);
    expect(log).toContain('pause');
    await until(() => !consumer.status().pausedBy.includes('settlement'), 'resumed after the backoff');
    expect(log.at(-1)).toBe('resume');
    // It comes back and is refused again: a longer pause (the streak grows).
    const again = fakeDelivery({ deadLetter: Infinity, defer: Infinity });
    const second = Date.now();
    expect(dispatch(again.delivery)).toBe('accepted');
    await until(() => consumer.status().pausedBy.includes('settlement'), 'paused again');
    await until(() => !consumer.status().pausedBy.includes('settlement'), 'resumed again');
    expect(Date.now() - second, "the second pause is the backoff's second step (60 ms)").toBeGreaterThanOrEqual(55);
    // A dead letter that goes through ends the streak, and nothing pauses.
    const accepted = fakeDelivery();
    expect(dispatch(accepted.delivery)).toBe('accepted');
    await until(() => consumer.status().deadLettered === 1, 'dead-lettered');
    expect(consumer.status().pausedBy).toEqual([]);
    expect(paused).toHaveLength(2);
    expect(consumer.status()).toMatchObject({ givenBack: 2, deadLettered: 1 });
    await consumer.stop();
  });
});

describe('the runtime and stale deliveries', () => {
  it('never starts a delivery that went stale while it waited for a slot, and counts it', async () => {
    const { source, dispatch } = fakeSource();
    let release!: () => void;
    const blocker = new Promise<void>((r) => (release = r));
    const started: string[] = [];
    const consumer = new Consumer(source, {
      pool: { maxConcurrency: 1, maxQueueSize: 10 },
      handler: (m) => {
        started.push(m.id);
        return m.id === 'first' ? blocker : undefined;
      },
    });
    await consumer.start();
    let channelAlive = true;
    const first = fakeDelivery();
    (first.delivery as { message: Message }).message = new Message({ body: new Uint8Array(0), id: 'first', source: 'q', raw: undefined });
    expect(dispatch(first.delivery)).toBe('accepted');
    const queued = Array.from({ length: 5 }, (_, i) => {
      const d = fakeDelivery({}, () => !channelAlive);
      (d.delivery as { message: Message }).message = new Message({ body: new Uint8Array(0), id: `q-${i}`, source: 'q', raw: undefined });
      expect(dispatch(d.delivery)).toBe('accepted');
      return d;
    });
    channelAlive = false; // the channel of the queued five closes
    release();
    await until(() => consumer.status().skippedStale === 5, 'five skipped');
    expect(started).toEqual(['first']);
    for (const d of queued) expect(d.calls).toEqual([]);
    expect(consumer.status()).toMatchObject({ failed: 0, inFlight: 0, handled: 1 });
    await consumer.stop();
  });
});

describe('the runtime holds retry delays for a broker that cannot', () => {
  it('waits off the pool, calls retry(0, n), and stop() cuts the wait short', async () => {
    const { source, dispatch } = fakeSource({ delayedRetry: false, redelivery: true, pause: true });
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    const consumer = new Consumer(source, {
      pool,
      retry: { maxAttempts: 3, backoff: { initialMs: 60_000, jitter: 0 } },
      handler: async () => {
        throw new Error('transient');
      },
    });
    await consumer.start();
    const d = fakeDelivery();
    expect(dispatch(d.delivery)).toBe('accepted');
    await until(() => consumer.status().delayedRetries === 1, 'retry waiting');
    // Off the pool: the slot is free while the retry waits.
    expect(pool.status().active).toBe(0);
    expect(d.calls).toEqual([]);
    const stopped = await consumer.stop({ timeoutMs: 5_000 });
    expect(stopped.drained).toBe(true);
    expect(d.calls).toEqual(['retry(0,3)']);
    expect(consumer.status()).toMatchObject({ retried: 1, delayedRetries: 0 });
  });
});

describe('failurePolicy', () => {
  it('can dead-letter at once, choose a retry delay, or give back without counting an attempt', async () => {
    const broker = new MemoryBroker();
    broker.publishJson('q', { kind: 'invalid' }, { id: 'invalid' });
    broker.publishJson('q', { kind: 'throttled' }, { id: 'throttled' });
    broker.publishJson('q', { kind: 'down' }, { id: 'down' });
    const seen: string[] = [];
    let downCalls = 0;
    const consumer = memoryConsumer({
      broker,
      queue: 'q',
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      retry: { maxAttempts: 5, backoff: { initialMs: 10_000 } },
      handler: async (m) => {
        const { kind } = m.json<{ kind: string }>();
        seen.push(`${kind}@${m.deliveryAttempt}`);
        if (kind === 'down' && ++downCalls > 2) return;
        if (kind !== 'throttled' || m.deliveryAttempt === 1) throw Object.assign(new Error(kind), { kind });
      },
      failurePolicy: (error) => {
        const kind = (error as { kind?: string }).kind;
        if (kind === 'invalid') return { action: 'dead-letter' };
        if (kind === 'throttled') return { action: 'retry', delayMs: 5 }; // e.g. Retry-After
        if (kind === 'down') return { action: 'give-back' };
        return undefined;
      },
    });
    await consumer.start();
    await until(() => consumer.status().handled === 2 && consumer.status().deadLettered === 1, 'all three settled');
    await consumer.stop();
    expect(broker.drain('q.dlq').map((m) => [m.id, m.headers[DEAD_LETTER_HEADERS.reason]])).toEqual([['invalid', 'failure-policy']]);
    expect(seen.filter((s) => s.startsWith('throttled'))).toEqual(['throttled@1', 'throttled@2']);
    // Given back twice, the attempt never counted.
    expect(seen.filter((s) => s.startsWith('down'))).toEqual(['down@1', 'down@1', 'down@1']);
  });
});

describe('pause(reason) / resume(reason)', () => {
  it('pauses the source once for any number of reasons and resumes when the last is lifted', async () => {
    const { source, log } = fakeSource();
    const consumer = new Consumer(source, { pool: { maxConcurrency: 1, maxQueueSize: 0 }, handler: async () => {} });
    const events: string[] = [];
    consumer.on('paused', (e) => events.push(`paused:${e.reason}`));
    consumer.on('resumed', (e) => events.push(`resumed:${e.reason}`));
    await consumer.start();
    await consumer.pause();
    await consumer.pause('maintenance');
    await consumer.pause('maintenance');
    expect(consumer.status()).toMatchObject({ paused: true, pausedBy: ['user', 'maintenance'] });
    await consumer.resume();
    expect(consumer.status().paused).toBe(true);
    expect(log).toEqual(['pause']);
    await consumer.resume('maintenance');
    await consumer.resume('never-held');
    expect(log).toEqual(['pause', 'resume']);
    expect(consumer.status()).toMatchObject({ paused: false, pausedBy: [] });
    expect(events).toEqual(['paused:user', 'paused:maintenance', 'resumed:user', 'resumed:maintenance']);
    await consumer.pause();
    await consumer.stop();
    // Stopping never resumes the source.
    await consumer.resume();
    await tick(5);
    expect(log).toEqual(['pause', 'resume', 'pause', 'stop', 'close']);
  });

  it('on the memory broker: nothing is delivered while paused by the user, everything after', async () => {
    const broker = new MemoryBroker();
    const consumer = memoryConsumer({ broker, queue: 'q', pool: { maxConcurrency: 2, maxQueueSize: 2 }, handler: async () => {} });
    await consumer.start();
    await consumer.pause();
    for (let i = 0; i < 10; i++) broker.publishJson('q', { i });
    await tick(20);
    expect(consumer.status().handled).toBe(0);
    expect(broker.depth('q').ready).toBe(10);
    await consumer.resume();
    await until(() => consumer.status().handled === 10, 'all handled after resume');
    await consumer.stop();
  });
});
