/**
 * Fair sharing of one WorkerPool: jobs carrying a PoolShare (the consumer option `share`) get
 * at least their weighted part of the running slots and of the waiting room when several shares
 * are backlogged; an idle share's part goes to the others; FIFO holds within a share; the
 * pool's bounds hold throughout. Then two consumers on one pool on the memory broker.
 */
import { describe, expect, it } from 'vitest';
import { MemoryBroker, memoryConsumer } from '../../adapters/memory/index.js';
import { WorkerPool } from '../../src/index.js';
import { RUN_JOB, type FinishJob, type PoolJob } from '../../src/pool/job.js';
import { PoolDisplacedError, PoolShare } from '../../src/pool/share.js';
import { until } from '../helpers/wait.js';

/** A pool job that runs until the test ends it. */
class Job implements PoolJob {
  state: PoolJob['state'] = 'new';
  queuePrev: PoolJob | undefined = undefined;
  queueNext: PoolJob | undefined = undefined;
  finish: FinishJob | undefined = undefined;
  cancelledWith: unknown = undefined;

  constructor(
    readonly log: Log,
    readonly id: string,
    readonly share: PoolShare | undefined,
  ) {}

  start(_signal: AbortSignal, finish: FinishJob): void {
    this.finish = finish;
    this.log.started.push(this);
    this.log.check();
  }

  cancel(reason: unknown): void {
    this.cancelledWith = reason;
    this.log.cancelled.push(this);
  }

  end(): void {
    const finish = this.finish!;
    this.finish = undefined;
    finish(this, false);
  }
}

class Log {
  started: Job[] = [];
  cancelled: Job[] = [];
  violations: string[] = [];
  constructor(readonly pool: WorkerPool) {}

  submit(share: PoolShare | undefined, id: string): { job: Job; result: ReturnType<WorkerPool[typeof RUN_JOB]> } {
    const job = new Job(this, id, share);
    const result = this.pool[RUN_JOB](job);
    this.check();
    return { job, result };
  }

  /** The pool's bounds after every step. */
  check(): void {
    const s = this.pool.status();
    if (s.active > s.limit) this.violations.push(`active ${s.active} > limit ${s.limit}`);
    if (s.pending > s.maxQueueSize) this.violations.push(`pending ${s.pending} > maxQueueSize ${s.maxQueueSize}`);
  }

  running(): Job[] {
    return this.started.filter((j) => j.finish !== undefined);
  }

  runningOf(share: PoolShare | undefined): number {
    return this.running().filter((j) => j.share === share).length;
  }

  /** Ends the oldest running job. */
  endOldest(): void {
    this.running()[0]!.end();
    this.check();
  }
}

describe('fair sharing: running slots', () => {
  it('a flooded share cannot starve a trickling one: once both are backlogged each holds half the slots', () => {
    const pool = new WorkerPool({ maxConcurrency: 4, maxQueueSize: 100 });
    const log = new Log(pool);
    const flood = new PoolShare('flood', 1);
    const trickle = new PoolShare('trickle', 1);
    for (let i = 0; i < 60; i++) log.submit(flood, `f${i}`);
    expect(log.runningOf(flood)).toBe(4);
    for (let i = 0; i < 6; i++) expect(log.submit(trickle, `t${i}`).result).toBe('queued');
    // Without fairness the trickle would wait behind 56 flood jobs; here each freed slot goes to the share with fewer running.
    log.endOldest();
    log.endOldest();
    expect(log.runningOf(trickle)).toBe(2);
    expect(log.runningOf(flood)).toBe(2);
    for (let i = 0; i < 8; i++) {
      log.endOldest();
      if (trickle.pending > 0) expect(log.runningOf(trickle)).toBeGreaterThanOrEqual(2);
    }
    expect(log.violations).toEqual([]);
  });

  it('weights are respected: weight 3 and weight 1 backlogged on 8 slots hold 6 and 2', () => {
    const pool = new WorkerPool({ maxConcurrency: 8, maxQueueSize: 200 });
    const log = new Log(pool);
    const heavy = new PoolShare('heavy', 3);
    const light = new PoolShare('light', 1);
    for (let i = 0; i < 100; i++) log.submit(light, `l${i}`);
    for (let i = 0; i < 100; i++) log.submit(heavy, `h${i}`);
    // Turn every running job over a few times.
    for (let i = 0; i < 40; i++) log.endOldest();
    expect(log.runningOf(heavy)).toBe(6);
    expect(log.runningOf(light)).toBe(2);
    // Over the last 24 starts, 3 : 1.
    const recent = log.started.slice(-24);
    expect(recent.filter((j) => j.share === heavy).length).toBe(18);
    expect(log.violations).toEqual([]);
  });

  it('an idle share gives its part to the others: alone, a share takes every slot and the whole waiting room', () => {
    const pool = new WorkerPool({ maxConcurrency: 4, maxQueueSize: 6 });
    const log = new Log(pool);
    const busy = new PoolShare('busy', 1);
    new PoolShare('idle', 5); // exists, never submits: takes nothing
    for (let i = 0; i < 10; i++) expect(log.submit(busy, `b${i}`).result).toBe(i < 4 ? 'started' : 'queued');
    expect(log.submit(busy, 'b10').result).toBe('overloaded');
    expect(pool.status()).toMatchObject({ active: 4, pending: 6, displaced: 0 });
  });

  it('FIFO within each share, whatever the interleaving between shares', () => {
    const pool = new WorkerPool({ maxConcurrency: 3, maxQueueSize: 100 });
    const log = new Log(pool);
    const shares = [new PoolShare('a', 1), new PoolShare('b', 2), undefined];
    for (let i = 0; i < 90; i++) log.submit(shares[(i * 7) % 3], `${(i * 7) % 3}-${i}`);
    while (log.running().length > 0) log.endOldest();
    expect(log.started).toHaveLength(90);
    for (const share of shares) {
      const order = log.started.filter((j) => j.share === share).map((j) => Number(j.id.split('-')[1]));
      expect(order).toEqual([...order].sort((x, y) => x - y));
    }
    expect(log.violations).toEqual([]);
  });

  it('jobs without a share (submit()) are one more share of weight 1', async () => {
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 50 });
    const log = new Log(pool);
    const share = new PoolShare('s', 1);
    const releases: (() => void)[] = [];
    const tasks = Array.from({ length: 20 }, () => pool.submit(() => new Promise<void>((r) => releases.push(r))));
    for (let i = 0; i < 5; i++) log.submit(share, `s${i}`);
    expect(log.runningOf(share)).toBe(0);
    releases.shift()!();
    await until(() => log.runningOf(share) === 1, 'the share takes the freed slot');
    releases.shift()!();
    await new Promise((r) => setTimeout(r, 0));
    // The default share now has 1 running, the share 1: next free slot goes round robin, never two in a row to one side.
    expect(pool.active).toBe(2);
    while (releases.length > 0 || log.running().length > 0) {
      if (releases.length > 0) releases.shift()!();
      if (log.running().length > 0) log.endOldest();
      await new Promise((r) => setTimeout(r, 0));
    }
    await Promise.all(tasks.map((t) => (t.ok ? t.task : undefined)));
    expect(pool.status()).toMatchObject({ completed: 25, active: 0, pending: 0 });
  });
});

describe('fair sharing: the waiting room', () => {
  it('a share below its part takes a place from the newest job of the share most above its part; FIFO of the rest kept', () => {
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 10 });
    const log = new Log(pool);
    const flood = new PoolShare('flood', 1);
    const trickle = new PoolShare('trickle', 1);
    const floodJobs = Array.from({ length: 12 }, (_, i) => log.submit(flood, `f${i}`));
    expect(log.submit(flood, 'f12').result).toBe('overloaded');
    // The trickle's arrival: the room is full, it holds 0 < 5, the flood holds 10 > 5.
    for (let i = 0; i < 5; i++) expect(log.submit(trickle, `t${i}`).result).toBe('queued');
    expect(log.cancelled.map((j) => j.id)).toEqual(['f11', 'f10', 'f9', 'f8', 'f7']);
    expect(log.cancelled[0]!.cancelledWith).toBeInstanceOf(PoolDisplacedError);
    expect(floodJobs[11]!.job.state).toBe('done');
    // Now each holds its part (5 of 10): neither may take more.
    expect(log.submit(trickle, 't5').result).toBe('overloaded');
    expect(log.submit(flood, 'f13').result).toBe('overloaded');
    expect(pool.status()).toMatchObject({ pending: 10, displaced: 5, cancelled: 5, rejected: 3 });
    expect(flood.displaced).toBe(5);
    while (log.running().length > 0) log.endOldest();
    const floodOrder = log.started.filter((j) => j.share === flood).map((j) => j.id);
    expect(floodOrder).toEqual(['f0', 'f1', 'f2', 'f3', 'f4', 'f5', 'f6']);
    expect(log.violations).toEqual([]);
  });

  it('weights split the room too (3 : 1 of 12 → 9 and 3), and nothing ping-pongs at a tiny room', () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 12 });
    const log = new Log(pool);
    const heavy = new PoolShare('heavy', 3);
    const light = new PoolShare('light', 1);
    for (let i = 0; i < 13; i++) log.submit(light, `l${i}`);
    for (let i = 0; i < 12; i++) log.submit(heavy, `h${i}`);
    expect(heavy.pending).toBe(9);
    expect(light.pending).toBe(3);
    expect(log.violations).toEqual([]);

    const tiny = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const t = new Log(tiny);
    const a = new PoolShare('a', 1);
    const b = new PoolShare('b', 1);
    t.submit(a, 'a0');
    t.submit(a, 'a1');
    // b holds 0 < ½, but a would fall below its ½ by giving up its only place: refused, no displacement.
    expect(t.submit(b, 'b0').result).toBe('overloaded');
    expect(t.cancelled).toEqual([]);
  });

  it('close() without drain cancels the waiting jobs of every share', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 10 });
    const log = new Log(pool);
    const a = new PoolShare('a', 1);
    const b = new PoolShare('b', 1);
    for (let i = 0; i < 4; i++) log.submit(a, `a${i}`);
    for (let i = 0; i < 3; i++) log.submit(b, `b${i}`);
    const closing = pool.close({ drain: false, timeoutMs: 10 });
    expect(log.cancelled).toHaveLength(6);
    expect(pool.pending).toBe(0);
    log.endOldest();
    await expect(closing).resolves.toMatchObject({ cancelled: 6 });
  });
});

describe('fair sharing: two consumers on one pool (memory broker)', () => {
  it('a trickling queue keeps flowing while a flooded one fills the pool: every trickle message handled before the flood is done', async () => {
    const broker = new MemoryBroker();
    const pool = new WorkerPool({ maxConcurrency: 4, maxQueueSize: 8 });
    for (let i = 0; i < 400; i++) broker.publishJson('bulk', { i }, { id: `b-${i}` });
    const handled = { bulk: 0, trickle: 0 };
    const handler = (queue: 'bulk' | 'trickle') => async () => {
      await new Promise((r) => setTimeout(r, 2));
      handled[queue]++;
    };
    const bulk = memoryConsumer({ broker, queue: 'bulk', pool, handler: handler('bulk'), share: { weight: 1 }, onOverload: 'pause' });
    const trickle = memoryConsumer({ broker, queue: 'trickle', pool, handler: handler('trickle'), share: { weight: 1 }, onOverload: 'pause' });
    const displacedReasons = new Set<string>();
    bulk.on('givenBack', (e) => displacedReasons.add(e.reason));
    await bulk.start();
    await trickle.start();
    await until(() => pool.saturated, 'the flood fills the pool');
    for (let i = 0; i < 20; i++) {
      broker.publishJson('trickle', { i }, { id: `t-${i}` });
      await until(() => handled.trickle > i, `trickle message ${i} handled`);
    }
    // Without shares the trickle waits for the flood to end (bench/flow fair: 1 of 200 handled); with them it is done first.
    expect(handled.bulk).toBeLessThan(400);
    expect(pool.status().displaced).toBeGreaterThan(0);
    // A displaced entry is given back for overload, not as if the consumer were shutting down.
    expect([...displacedReasons]).not.toContain('shutdown');
    expect(displacedReasons.has('overload')).toBe(true);
    await until(() => handled.bulk === 400, 'the flood done too');
    // Nothing lost or doubled: the displaced flood entries went back to their queue.
    expect(bulk.status().handled).toBe(400);
    expect(trickle.status().handled).toBe(20);
    await bulk.stop();
    await trickle.stop();
    await pool.close();
  });

  it('share options are checked at construction, naming the option', () => {
    const broker = new MemoryBroker();
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const make = (share: unknown) => () => memoryConsumer({ broker, queue: 'q', pool, handler: async () => {}, share: share as never });
    expect(make(5)).toThrow(/option "share" must be an object/);
    expect(make({ weight: 0 })).toThrow(/option "share\.weight" must be/);
    expect(make({ weight: -1 })).toThrow(/option "share\.weight"/);
    expect(make({ weight: Infinity })).toThrow(/option "share\.weight"/);
    expect(make({})).not.toThrow();
  });
});
