/**
 * The adaptive limit (WorkerPool's `adaptive` option) against the simulated downstream of
 * bench/flow/downstream.ts (at most C in service at a base latency, the rest queue inside it),
 * on fake time: setTimeout and performance.now are both faked, so nothing here depends on the
 * machine's speed.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { WorkerPool } from '../../src/index.js';
import type { LimitChange, PoolStatus, WorkerPoolOptions } from '../../src/index.js';
import { Downstream, type DownstreamPhase } from '../../bench/flow/downstream.js';
import { seededRandom as seeded } from '../helpers/random.js';

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'performance', 'Date'] });
});
afterEach(() => {
  vi.useRealTimers();
});


interface Run {
  pool: WorkerPool;
  downstream: Downstream;
  /** Every limit the pool reported (its `limit` events' `to`), and the most that ran at once. */
  limits: number[];
  maxActive: number;
  /** active > limit seen right after a job started (outside a shrink). */
  overLimitStarts: number;
  /** The limit sampled every 100 ms of fake time. */
  timeline: { atMs: number; limit: number; status: PoolStatus }[];
  /** Successful calls per second over [fromMs, toMs). */
  goodput(fromMs: number, toMs: number): number;
  stop(): void;
}

/**
 * Keeps `pool` backlogged (its free capacity refilled on every completion) with calls to a
 * downstream of capacity C and latency L, and records what the limit did.
 */
function saturate(poolOptions: WorkerPoolOptions, capacity: number, latencyMs: number, schedule: DownstreamPhase[] = []): Run {
  const pool = new WorkerPool(poolOptions);
  const downstream = new Downstream({ capacity, latencyMs, jitter: 0.1, random: seeded(7), schedule });
  const run: Run = {
    pool,
    downstream,
    limits: [pool.limit],
    maxActive: 0,
    overLimitStarts: 0,
    timeline: [],
    goodput: (from, to) => completions.filter((t) => t >= from && t < to).length / ((to - from) / 1000),
    stop: () => {
      stopped = true;
      clearInterval(sampler);
    },
  };
  const completions: number[] = [];
  let stopped = false;
  let shrunkTo = pool.limit;
  pool.on('limit', (change: LimitChange) => {
    expect(change.from).not.toBe(change.to);
    run.limits.push(change.to);
    shrunkTo = Math.min(shrunkTo, change.to);
  });
  const started = performance.now();
  const task = async (signal: AbortSignal) => {
    // The bound as the pool promises it: a new start never takes active above the limit.
    if (pool.active > pool.limit) run.overLimitStarts++;
    run.maxActive = Math.max(run.maxActive, pool.active);
    await downstream.call(signal);
    completions.push(performance.now() - started);
  };
  const fill = () => {
    while (!stopped && pool.freeCapacity > 0) {
      const r = pool.submit(task);
      if (!r.ok) break;
      r.task.then(fill, fill);
    }
  };
  const sampler = setInterval(() => run.timeline.push({ atMs: performance.now() - started, limit: pool.limit, status: pool.status() }), 100);
  downstream.start();
  fill();
  return run;
}

/** The limits sampled in [fromMs, toMs). */
function limitsBetween(run: Run, fromMs: number, toMs: number): number[] {
  return run.timeline.filter((s) => s.atMs >= fromMs && s.atMs < toMs).map((s) => s.limit);
}

/** Fake time forward in steps of 100 ms (one long advanceTimersByTimeAsync over thousands of timers is far slower). */
async function advance(ms: number): Promise<void> {
  for (let t = 0; t < ms; t += 100) await vi.advanceTimersByTimeAsync(Math.min(100, ms - t));
}

/** Closes a pool whose jobs wait on fake time: the time they need is advanced while it closes. */
async function closeOnFakeTime(pool: WorkerPool, drain = false): Promise<void> {
  const closing = pool.close({ drain });
  while (pool.active + pool.pending > 0) await vi.advanceTimersByTimeAsync(100);
  await closing;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

describe.each(['gradient', 'aimd'] as const)('adaptive limit (%s) on a downstream with a knee', (algorithm) => {
  it('converges near the knee (C = 16), never leaves [min, max], and the bound holds for the current limit', async () => {
    const run = saturate({ maxConcurrency: 64, maxQueueSize: 64, adaptive: { algorithm, min: 2 } }, 16, 20);
    await advance(10_000);
    run.stop();
    const settled = limitsBetween(run, 5_000, 10_000);
    // Near the knee: at least C (so the downstream is kept busy) and well below max.
    expect(median(settled)).toBeGreaterThanOrEqual(16);
    expect(median(settled)).toBeLessThanOrEqual(28);
    // Goodput near the downstream's C / L = 800/s.
    expect(run.goodput(5_000, 10_000)).toBeGreaterThan(0.9 * 800);
    expect(Math.min(...run.limits)).toBeGreaterThanOrEqual(2);
    expect(Math.max(...run.limits)).toBeLessThanOrEqual(64);
    expect(run.overLimitStarts).toBe(0);
    const status = run.pool.status();
    expect(status.limit).toBe(run.pool.limit);
    expect(status.adaptive).toMatchObject({ algorithm, min: 2 });
    expect(status.adaptive!.noLoadLatencyMs).toBeGreaterThan(15);
    expect(status.adaptive!.noLoadLatencyMs).toBeLessThan(25);
    await closeOnFakeTime(run.pool);
  });

  it('shrinks when the downstream gets slower (C → C/4) and grows back when it is faster (→ 2C)', async () => {
    const run = saturate({ maxConcurrency: 64, maxQueueSize: 64, adaptive: { algorithm, min: 1 } }, 16, 20, [
      { atMs: 5_000, capacity: 4 },
      { atMs: 10_000, capacity: 32 },
    ]);
    await advance(15_000);
    run.stop();
    const full = median(limitsBetween(run, 3_000, 5_000));
    const slow = median(limitsBetween(run, 8_000, 10_000));
    const fast = median(limitsBetween(run, 13_000, 15_000));
    expect(slow).toBeLessThan(full / 2);
    expect(slow).toBeGreaterThanOrEqual(4);
    expect(slow).toBeLessThanOrEqual(9);
    expect(fast).toBeGreaterThanOrEqual(32);
    expect(fast).toBeLessThanOrEqual(52);
    expect(run.goodput(13_000, 15_000)).toBeGreaterThan(0.9 * 1600);
    expect(Math.min(...run.limits)).toBeGreaterThanOrEqual(1);
    expect(Math.max(...run.limits)).toBeLessThanOrEqual(64);
    expect(run.overLimitStarts).toBe(0);
    await closeOnFakeTime(run.pool);
  });

  it('a downstream whose own latency doubles: the limit falls, then the no-load latency is measured again and the limit returns near the knee', async () => {
    const run = saturate({ maxConcurrency: 64, maxQueueSize: 64, adaptive: { algorithm, min: 1 } }, 16, 20, [{ atMs: 5_000, latencyMs: 40 }]);
    await advance(15_000);
    run.stop();
    const after = median(limitsBetween(run, 12_000, 15_000));
    expect(after).toBeGreaterThanOrEqual(16);
    expect(after).toBeLessThanOrEqual(28);
    expect(run.pool.status().adaptive!.noLoadLatencyMs).toBeGreaterThan(35);
    expect(run.goodput(12_000, 15_000)).toBeGreaterThan(0.9 * 400);
    await closeOnFakeTime(run.pool);
  });

  it('stays within [min, max] at both ends: a tiny downstream holds it at min, an unbounded one at max', async () => {
    const low = saturate({ maxConcurrency: 32, maxQueueSize: 32, adaptive: { algorithm, min: 3 } }, 1, 20);
    await advance(8_000);
    low.stop();
    expect(Math.min(...low.limits)).toBeGreaterThanOrEqual(3);
    expect(median(limitsBetween(low, 4_000, 8_000))).toBeLessThanOrEqual(5);
    await closeOnFakeTime(low.pool);

    const high = saturate({ maxConcurrency: 12, maxQueueSize: 12, adaptive: { algorithm, min: 1 } }, 1000, 20);
    await advance(8_000);
    high.stop();
    expect(Math.max(...high.limits)).toBeLessThanOrEqual(12);
    expect(high.pool.limit).toBe(12);
    await closeOnFakeTime(high.pool);
  });
});

describe('adaptive limit: failures, idle, resize', () => {
  it('failures above failureThreshold back the limit off; an idle pool does not grow', async () => {
    const pool = new WorkerPool({ maxConcurrency: 32, maxQueueSize: 0, adaptive: { min: 1, initial: 20, windowMs: 10, minSamples: 5 } });
    const changes: LimitChange[] = [];
    pool.on('limit', (c) => changes.push(c));
    // Half of each batch fails: every window is overload, × 0.9 each.
    for (let round = 0; round < 10; round++) {
      const tasks = Array.from({ length: 20 }, (_, i) => pool.submit(() => new Promise((resolve, reject) => setTimeout(i % 2 ? resolve : () => reject(new Error('503')), 5))));
      await vi.advanceTimersByTimeAsync(20);
      await Promise.allSettled(tasks.map((t) => (t.ok ? t.task : undefined)));
    }
    expect(pool.limit).toBeLessThan(10);
    expect(changes.every((c) => c.to < c.from)).toBe(true);
    // One at a time, never near the limit: app-limited, so no growth.
    const before = pool.limit;
    for (let i = 0; i < 100; i++) {
      const r = pool.submit(() => new Promise((resolve) => setTimeout(resolve, 5)));
      await vi.advanceTimersByTimeAsync(6);
      expect(r.ok).toBe(true);
    }
    if (before > 2) expect(pool.limit).toBeLessThanOrEqual(before);
    await closeOnFakeTime(pool, true);
  });

  it('a shrink lets running jobs finish (active may exceed the new limit), and nothing new starts until below it', async () => {
    const pool = new WorkerPool({ maxConcurrency: 8, maxQueueSize: 100, adaptive: { min: 1, initial: 8, windowMs: 10, minSamples: 1 } });
    let running = 0;
    let startedAbove = 0;
    const task = (ms: number) => () => {
      if (++running > pool.limit) startedAbove++;
      return new Promise<void>((r) => setTimeout(() => (running--, r()), ms));
    };
    // 8 slow jobs establish a no-load latency of 10 ms, then 8 very slow ones: latency climbs, the limit shrinks.
    let shrankUnderRunning = 0;
    pool.on('limit', (c) => {
      if (c.to < c.from && pool.active > c.to) shrankUnderRunning++;
    });
    for (let i = 0; i < 8; i++) pool.submit(task(10));
    await vi.advanceTimersByTimeAsync(11);
    for (let i = 0; i < 60; i++) pool.submit(task(10 + i * 10));
    await advance(5_000);
    expect(pool.status().adaptive!.windows).toBeGreaterThan(3);
    expect(shrankUnderRunning).toBeGreaterThan(0);
    expect(startedAbove).toBe(0);
    await closeOnFakeTime(pool, true);
    expect(pool.status().completed).toBe(68);
    expect(startedAbove).toBe(0);
  });

  it('resize moves the ceiling: the limit is clamped, and maxConcurrency below adaptive.min is refused naming the option', () => {
    const pool = new WorkerPool({ maxConcurrency: 16, maxQueueSize: 4, adaptive: { min: 4, initial: 12 } });
    const changes: LimitChange[] = [];
    pool.on('limit', (c) => changes.push(c));
    expect(pool.limit).toBe(12);
    expect(pool.freeCapacity).toBe(16);
    pool.resize({ maxConcurrency: 8 });
    expect(pool.limit).toBe(8);
    expect(changes).toEqual([{ from: 12, to: 8, latencyMs: undefined, noLoadLatencyMs: undefined }]);
    expect(pool.status()).toMatchObject({ maxConcurrency: 8, limit: 8 });
    expect(() => pool.resize({ maxConcurrency: 3 })).toThrow(/"maxConcurrency" must be >= adaptive\.min \(4\)/);
    expect(pool.limit).toBe(8);
  });

  it('a pool without adaptive: limit is maxConcurrency, no adaptive status', () => {
    const pool = new WorkerPool({ maxConcurrency: 5, maxQueueSize: 1 });
    expect(pool.limit).toBe(5);
    expect(pool.status().limit).toBe(5);
    expect(pool.status().adaptive).toBeUndefined();
    pool.resize({ maxConcurrency: 7 });
    expect(pool.status().limit).toBe(7);
  });
});

describe('adaptive options', () => {
  const base = { maxConcurrency: 16, maxQueueSize: 4 };
  it.each([
    [{ adaptive: null }, /option "adaptive" must be an object/],
    [{ adaptive: { algorithm: 'vegas' } }, /option "adaptive\.algorithm" must be one of 'gradient' \| 'aimd', got "vegas"/],
    [{ adaptive: { min: 0 } }, /option "adaptive\.min" must be between 1 and 16, got 0/],
    [{ adaptive: { min: 17 } }, /option "adaptive\.min" must be between 1 and 16, got 17/],
    [{ adaptive: { min: 1.5 } }, /option "adaptive\.min" must be an integer/],
    [{ adaptive: { min: 4, initial: 2 } }, /option "adaptive\.initial" must be between 4 and 16, got 2/],
    [{ adaptive: { windowMs: 0 } }, /option "adaptive\.windowMs" must be >= 1/],
    [{ adaptive: { minSamples: 0 } }, /option "adaptive\.minSamples"/],
    [{ adaptive: { tolerance: 0.9 } }, /option "adaptive\.tolerance" must be >= 1, got 0\.9/],
    [{ adaptive: { smoothing: 2 } }, /option "adaptive\.smoothing" must be between 0\.01 and 1, got 2/],
    [{ adaptive: { headroom: -1 } }, /option "adaptive\.headroom"/],
    [{ adaptive: { backoffRatio: 1 } }, /option "adaptive\.backoffRatio" must be between 0\.5 and 0\.99, got 1/],
    [{ adaptive: { increase: 0 } }, /option "adaptive\.increase"/],
    [{ adaptive: { failureThreshold: 1.5 } }, /option "adaptive\.failureThreshold" must be between 0 and 1/],
  ])('%j throws naming the option', (extra, message) => {
    expect(() => new WorkerPool({ ...base, ...(extra as object) } as WorkerPoolOptions)).toThrow(message);
  });

  it('defaults: gradient, min 1, starting at min', () => {
    const pool = new WorkerPool({ ...base, adaptive: {} });
    expect(pool.limit).toBe(1);
    expect(pool.status().adaptive).toEqual({ algorithm: 'gradient', min: 1, estimate: 1, latencyMs: undefined, noLoadLatencyMs: undefined, windows: 0 });
  });
});

