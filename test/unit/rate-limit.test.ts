/** RateLimiter (a flow gate): the bound over every window, bursts, tokens of refused messages, and two consumers sharing one limit on the memory broker. Fake timers throughout. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MemoryBroker, memoryConsumer } from '../../adapters/memory/index.js';
import { Message, RateLimiter, WorkerPool, type GatedConsumer } from '../../src/index.js';
import { maxInWindow } from '../helpers/windows.js';

const consumerView: GatedConsumer = { name: 'c', inFlight: 0 };
const message = new Message({ body: new Uint8Array(), id: 'm', source: 'q', raw: undefined });


/** The fewest admissions in any window of windowMs starting at an admission and ending before `end`. */
function minInWindow(times: readonly number[], windowMs: number, end: number): number {
  let fewest = Infinity;
  for (let i = 0, j = 0; i < times.length && times[i]! + windowMs <= end; i++) {
    while (j < times.length && times[j]! <= times[i]! + windowMs) j++;
    fewest = Math.min(fewest, j - i);
  }
  return fewest;
}

const WINDOWS_MS = [1, 10, 50, 100, 250, 500, 1000, 2000, 3000];

describe('RateLimiter options', () => {
  it('rejects bad options at construction, naming the option and the value', () => {
    expect(() => new RateLimiter({ perSecond: 0 })).toThrow(/"perSecond" must be > 0, got 0/);
    expect(() => new RateLimiter({ perSecond: -5 })).toThrow(RangeError);
    expect(() => new RateLimiter({ perSecond: Number.NaN })).toThrow(/"perSecond".*NaN/);
    expect(() => new RateLimiter({ perSecond: Infinity })).toThrow(/"perSecond"/);
    expect(() => new RateLimiter({} as never)).toThrow(/"perSecond".*undefined/);
    expect(() => new RateLimiter(undefined as never)).toThrow(/perSecond/);
    expect(() => new RateLimiter({ perSecond: 10, burst: 0 })).toThrow(/"burst".*0/);
    expect(() => new RateLimiter({ perSecond: 10, burst: 2.5 })).toThrow(/"burst" must be an integer/);
    expect(() => new RateLimiter({ perSecond: 10, burst: 4, initialTokens: 5 })).toThrow(/"initialTokens" must be between 0 and 4, got 5/);
    expect(() => new RateLimiter({ perSecond: 10, name: '' })).toThrow(/"name"/);
  });

  it('defaults: a tenth of a second of burst (at least 1), a full bucket, named rate-limit', () => {
    expect(new RateLimiter({ perSecond: 100 }).burst).toBe(10);
    expect(new RateLimiter({ perSecond: 3 }).burst).toBe(1);
    expect(new RateLimiter({ perSecond: 0.5 }).burst).toBe(1);
    const limiter = new RateLimiter({ perSecond: 1000 });
    expect(limiter.name).toBe('rate-limit');
    expect(limiter.capacity()).toBe(100);
  });
});

describe('RateLimiter', () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it('admits a full burst at once, then one token per interval; a refusal says when half a burst is back', () => {
    const limiter = new RateLimiter({ perSecond: 100, burst: 10 });
    for (let i = 0; i < 10; i++) expect(limiter.admit()).toEqual({ admit: true });
    expect(limiter.capacity()).toBe(0);
    // Half a burst (5 tokens) takes 50 ms; +1 ms for timers that fire early.
    expect(limiter.admit()).toEqual({ admit: false, resumeAfterMs: 51 });
    vi.advanceTimersByTime(10);
    expect(limiter.capacity()).toBe(1);
    expect(limiter.admit().admit).toBe(true);
    expect(limiter.admit()).toEqual({ admit: false, resumeAfterMs: 51 });
    vi.advanceTimersByTime(51);
    expect(limiter.capacity()).toBe(5);
    // A long quiet spell never fills it beyond the burst.
    vi.advanceTimersByTime(60_000);
    expect(limiter.capacity()).toBe(10);
  });

  it('with burst 1 spaces messages exactly and resumes when the next token is due', () => {
    const limiter = new RateLimiter({ perSecond: 4, burst: 1 });
    expect(limiter.admit().admit).toBe(true);
    // No headroom above one token: no margin either, so a pause costs nothing beyond its wake-up.
    expect(limiter.admit()).toEqual({ admit: false, resumeAfterMs: 250 });
    vi.advanceTimersByTime(249);
    expect(limiter.admit()).toEqual({ admit: false, resumeAfterMs: 1 });
    vi.advanceTimersByTime(1);
    expect(limiter.admit().admit).toBe(true);
  });

  it('initialTokens 0 starts at the rate without a first burst', () => {
    const limiter = new RateLimiter({ perSecond: 10, burst: 5, initialTokens: 0 });
    expect(limiter.admit().admit).toBe(false);
    vi.advanceTimersByTime(100);
    expect(limiter.admit().admit).toBe(true);
    expect(limiter.admit().admit).toBe(false);
  });

  it('gives the token back for a message it admitted that never ran, never beyond a full bucket', () => {
    const limiter = new RateLimiter({ perSecond: 10, burst: 2 });
    expect(limiter.admit().admit).toBe(true);
    expect(limiter.admit().admit).toBe(true);
    expect(limiter.capacity()).toBe(0);
    limiter.done(message, { result: 'skipped', durationMs: 0 });
    expect(limiter.capacity()).toBe(1);
    limiter.done(message, { result: 'succeeded', durationMs: 3 });
    limiter.done(message, { result: 'failed', error: new Error('x'), durationMs: 3 });
    expect(limiter.capacity()).toBe(1);
    limiter.done(message, { result: 'skipped', durationMs: 0 });
    limiter.done(message, { result: 'skipped', durationMs: 0 });
    expect(limiter.tokens()).toBe(2);
  });

  it('over any window admits at most rate·t + burst, and from the start of a backlog at least 95 % of it (random arrivals, random refunds)', () => {
    const seeds = [1, 2, 3, 4, 5];
    for (const seed of seeds) {
      let state = seed;
      const random = () => ((state = (state * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
      const perSecond = [7, 50, 333, 1000, 2.5][seed - 1]!;
      const burst = [1, 5, 40, 100, 3][seed - 1]!;
      const limiter = new RateLimiter({ perSecond, burst });
      const start = performance.now();
      const times: number[] = [];
      // A backlog: a message is offered whenever the consumer is not paused; paused consumers wait out resumeAfterMs.
      let resumeAt = start;
      const durationMs = 4000 + (seed % 3) * 1000;
      while (performance.now() - start < durationMs) {
        const now = performance.now();
        if (now >= resumeAt) {
          const d = limiter.admit(message, consumerView);
          if (d.admit) {
            // Now and then the pool is full after all: the token comes back.
            if (random() < 0.05) limiter.done(message, { result: 'skipped', durationMs: 0 });
            else times.push(now - start);
            continue;
          }
          resumeAt = now + (d.resumeAfterMs ?? 0);
          expect(d.resumeAfterMs).toBeGreaterThan(0);
        }
        // Time moves on by a random fraction of a millisecond (deliveries take time).
        vi.advanceTimersByTime(random() * 0.8 + 0.01);
      }
      for (const w of WINDOWS_MS) {
        const allowed = (perSecond * w) / 1000 + burst;
        expect(maxInWindow(times, w), `seed ${seed}, window ${w} ms`).toBeLessThanOrEqual(Math.floor(allowed + 1e-9));
        if (w >= 1000) {
          // From the backlog's start: the burst and then the rate.
          const fromStart = times.filter((t) => t <= w).length;
          expect(fromStart, `seed ${seed}, first ${w} ms`).toBeGreaterThanOrEqual(Math.floor(0.95 * allowed));
        }
      }
      // Within the backlog, any 2 s holds at least 95 % of the rate's share (pauses last half a burst at most).
      expect(minInWindow(times, 2000, durationMs)).toBeGreaterThanOrEqual(Math.floor(0.95 * perSecond * 2));
    }
  });
});

describe('one RateLimiter shared by two consumers on the memory broker', () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it('holds their sum to the limit, pauses each at the broker under "rate-limit", never takes a pool slot for a refused message, and loses nothing', async () => {
    const broker = new MemoryBroker();
    const perSecond = 200;
    const burst = 20;
    const total = 600;
    for (let i = 0; i < total / 2; i++) {
      broker.publishJson('a', { i }, { id: `a-${i}` });
      broker.publishJson('b', { i }, { id: `b-${i}` });
    }
    const limiter = new RateLimiter({ perSecond, burst });
    const pool = new WorkerPool({ maxConcurrency: 8, maxQueueSize: 0 });
    const started: number[] = [];
    const seen = new Map<string, number>();
    let busyWhileRefused = 0;
    const handler = async (m: Message) => {
      started.push(performance.now());
      seen.set(m.id, (seen.get(m.id) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, 2));
    };
    const consumers = ['a', 'b'].map((queue) => memoryConsumer({ broker, queue, pool, prefetch: 16, flow: { gates: [limiter] }, handler }));
    const pauses: string[] = [];
    for (const c of consumers) {
      c.on('paused', (e) => pauses.push(`${c.name}:${e.reason}`));
      // A refused message never holds a slot: whatever runs was admitted.
      c.on('gated', () => (busyWhileRefused = Math.max(busyWhileRefused, pool.status().active - limiter.burst)));
    }
    let sawPausedByRateLimit = false;
    await Promise.all(consumers.map((c) => c.start()));
    const t0 = performance.now();
    for (let step = 0; step < 20_000 && consumers.reduce((n, c) => n + c.status().handled, 0) < total; step++) {
      await vi.advanceTimersByTimeAsync(1);
      if (consumers.some((c) => c.status().pausedBy.includes('rate-limit'))) sawPausedByRateLimit = true;
    }
    const end = performance.now();
    const stopping = Promise.all(consumers.map((c) => c.stop({ timeoutMs: 1000 })));
    await vi.advanceTimersByTimeAsync(100);
    await stopping;
    await pool.close();

    expect(consumers.map((c) => c.status().handled)).toEqual([total / 2, total / 2]);
    expect(seen.size).toBe(total);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    for (const q of ['a', 'b', 'a.dlq', 'b.dlq']) expect(broker.depth(q)).toEqual({ ready: 0, unacked: 0, delayed: 0 });
    expect(busyWhileRefused).toBeLessThanOrEqual(0);
    expect(sawPausedByRateLimit).toBe(true);
    expect(pauses).toContain('memory:a:rate-limit');
    expect(pauses).toContain('memory:b:rate-limit');
    expect(consumers.every((c) => c.status().gated > 0)).toBe(true);

    const times = started.map((t) => t - t0).sort((x, y) => x - y);
    for (const w of WINDOWS_MS) {
      const allowed = (perSecond * w) / 1000 + burst;
      expect(maxInWindow(times, w), `window ${w} ms`).toBeLessThanOrEqual(Math.floor(allowed + 1e-9));
    }
    // The backlog took as long as the limit says, within 5 %: (total − burst) / rate.
    const elapsed = end - t0;
    const ideal = ((total - burst) / perSecond) * 1000;
    expect(elapsed).toBeGreaterThanOrEqual(ideal);
    expect(elapsed).toBeLessThanOrEqual(ideal / 0.95);
    for (const w of [1000, 2000]) expect(times.filter((t) => t <= w).length).toBeGreaterThanOrEqual(0.95 * ((perSecond * w) / 1000 + burst));
  });

  it('gives tokens back for messages the pool refused, so a full pool does not spend the budget', async () => {
    const broker = new MemoryBroker();
    for (let i = 0; i < 40; i++) broker.publishJson('q', { i }, { id: `m-${i}` });
    const limiter = new RateLimiter({ perSecond: 1, burst: 100 });
    let running = 0;
    const consumer = memoryConsumer({
      broker,
      queue: 'q',
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      prefetch: 10,
      flow: { gates: [limiter] },
      handler: async () => {
        running++;
        await new Promise((r) => setTimeout(r, 50));
      },
    });
    await consumer.start();
    await vi.advanceTimersByTimeAsync(1);
    // One runs; the others the pool refused (overload) had their tokens returned: one token spent of a full bucket (not 10).
    expect(running).toBe(1);
    expect(consumer.status().overloaded).toBeGreaterThan(0);
    expect(limiter.capacity()).toBe(99);
    const stopping = consumer.stop({ timeoutMs: 1000 });
    await vi.advanceTimersByTimeAsync(1100);
    await stopping;
  });
});
