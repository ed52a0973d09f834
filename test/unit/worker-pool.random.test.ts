import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TaskTimeoutError } from '../../src/errors.js';
import type { PoolStatus, SubmitAwaitResult } from '../../src/pool/types.js';
import { WorkerPool } from '../../src/pool/worker-pool.js';
import { seededRandom as prng } from '../helpers/random.js';

// Randomized model check of WorkerPool. Every run is reproducible from its seed: the PRNG is
// seeded and the clock is vitest's fake clock, so the same seed replays the same interleaving.

const realSetImmediate = globalThis.setImmediate;
async function flush(): Promise<void> {
  for (let i = 0; i < 2; i++) await new Promise<void>((resolve) => realSetImmediate(resolve));
}


type Behaviour = 'sync-ok' | 'sync-throw' | 'async-ok' | 'async-fail' | 'abortable' | 'stubborn';

interface Rec {
  id: number;
  via: 'submit' | 'submitAwait';
  behaviour: Behaviour;
  durationMs: number;
  error: Error;
  controller: AbortController | undefined;
  accepted: boolean | undefined;
  started: boolean;
  signal: AbortSignal | undefined;
  /** Removed from the queue (abort, timeout, pre-aborted): must never start. */
  removed: boolean;
  /** fn's own outcome, as the task saw it. */
  outcome: 'ok' | 'fail' | undefined;
  answer: SubmitAwaitResult<number> | undefined;
  taskSettled: { ok: boolean; value: unknown } | undefined;
}

interface RunSummary {
  submissions: number;
  accepted: number;
  overloaded: number;
  started: number;
  completed: number;
  failed: number;
  cancelled: number;
  timedOut: number;
  resizes: number;
  shrinks: number;
  saturatedEvents: number;
  maxActiveSeen: number;
}

async function run(seed: number, submissions: number): Promise<RunSummary> {
  const rand = prng(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)]!;

  const pool = new WorkerPool({ name: `random-${seed}`, maxConcurrency: int(1, 5), maxQueueSize: int(0, 8) });
  const violations: string[] = [];
  const violate = (message: string) => {
    if (violations.length < 20) violations.push(`[seed ${seed}] ${message}`);
  };

  const recs: Rec[] = [];
  let lastStarted = -1;
  let startedCount = 0;
  let modelCompleted = 0;
  let modelFailed = 0;
  let submitOverloaded = 0;
  let resizes = 0;
  let shrinks = 0;
  let maxActiveSeen = 0;
  let explicitLowWaterMark: number | undefined;
  // After a shrink, tasks already running may exceed the new limits until they finish.
  let activeCeiling = pool.status().maxConcurrency;
  let pendingCeiling = pool.status().maxQueueSize;
  const levelEvents: string[] = [];

  const capacityOf = (s: PoolStatus) => s.maxConcurrency + s.maxQueueSize;

  const checkNow = (where: string) => {
    const s = pool.status();
    maxActiveSeen = Math.max(maxActiveSeen, s.active);
    if (s.active > activeCeiling) violate(`${where}: active ${s.active} > allowed ${activeCeiling} (max ${s.maxConcurrency})`);
    if (s.pending > pendingCeiling) violate(`${where}: pending ${s.pending} > allowed ${pendingCeiling} (max ${s.maxQueueSize})`);
    activeCeiling = Math.max(s.maxConcurrency, Math.min(activeCeiling, s.active));
    pendingCeiling = Math.max(s.maxQueueSize, Math.min(pendingCeiling, s.pending));
    if (s.active < 0 || s.pending < 0) violate(`${where}: negative count ${JSON.stringify(s)}`);
    const used = s.active + s.pending;
    if (used >= capacityOf(s) && !s.saturated) violate(`${where}: full (${used}/${capacityOf(s)}) but not saturated`);
    if (pool.freeCapacity !== Math.max(0, capacityOf(s) - used)) violate(`${where}: freeCapacity ${pool.freeCapacity} for ${used}/${capacityOf(s)}`);
    // Queued work never waits while a slot is free.
    if (s.pending > 0 && s.active < s.maxConcurrency) violate(`${where}: ${s.pending} waiting with ${s.active}/${s.maxConcurrency} running`);
  };

  /** Valid only when no microtask is outstanding (after flush): the books must balance exactly. */
  const checkBooks = (where: string) => {
    const s = pool.status();
    let awaitOverloaded = 0;
    let awaitClosed = 0;
    let awaitTimeouts = 0;
    let accepted = 0;
    let modelInFlight = 0;
    let modelRemoved = 0;
    for (const r of recs) {
      if (r.via === 'submitAwait') {
        // An overloaded/closed answer is already in by now; anything else means it was accepted.
        if (r.answer && !r.answer.ok && r.answer.error === 'overloaded') awaitOverloaded++;
        else if (r.answer && !r.answer.ok && r.answer.error === 'closed') awaitClosed++;
        else r.accepted = true;
        if (r.answer && !r.answer.ok && r.answer.error === 'timeout') awaitTimeouts++;
      }
      if (!r.accepted) continue;
      accepted++;
      if (r.removed) modelRemoved++;
      else if (!r.started || r.outcome === undefined) modelInFlight++;
    }
    const line = `${where}: ${JSON.stringify(s)} accepted=${accepted}`;
    if (s.completed + s.failed + s.cancelled + s.active + s.pending !== accepted) violate(`books do not add up ${line}`);
    if (s.rejected !== submitOverloaded + awaitOverloaded) violate(`rejected ${s.rejected} != overloaded answers ${submitOverloaded + awaitOverloaded}`);
    if (s.timedOut !== awaitTimeouts) violate(`timedOut ${s.timedOut} != timeout answers ${awaitTimeouts}`);
    if (awaitClosed !== 0) violate(`${awaitClosed} 'closed' answers before close`);
    if (s.completed !== modelCompleted) violate(`completed ${s.completed} != tasks that fulfilled ${modelCompleted}`);
    if (s.failed !== modelFailed) violate(`failed ${s.failed} != tasks that threw/rejected ${modelFailed}`);
    if (s.cancelled !== modelRemoved) violate(`cancelled ${s.cancelled} != removed before running ${modelRemoved}`);
    if (s.active + s.pending !== modelInFlight) violate(`in flight ${s.active + s.pending} != model ${modelInFlight} ${line}`);
  };

  pool.on('saturated', (s) => {
    if (levelEvents.at(-1) === 'saturated') violate('saturated twice without available');
    levelEvents.push('saturated');
    if (!s.saturated) violate('saturated event with saturated=false');
    checkNow('saturated event');
  });
  pool.on('available', (s) => {
    if (levelEvents.at(-1) !== 'saturated') violate('available without a saturated before it');
    levelEvents.push('available');
    if (s.saturated) violate('available event with saturated=true');
    if (s.active + s.pending >= capacityOf(s)) violate(`available while full ${JSON.stringify(s)}`);
    checkNow('available event');
  });
  let idleEvents = 0;
  pool.on('idle', (s) => {
    idleEvents++;
    if (s.active !== 0 || s.pending !== 0) violate(`idle event while busy ${JSON.stringify(s)}`);
  });

  const makeFn = (r: Rec) => (signal: AbortSignal): number | Promise<number> => {
    if (r.started) violate(`task ${r.id} started twice`);
    if (r.removed) violate(`task ${r.id} started after it was removed (abort/timeout)`);
    r.started = true;
    r.signal = signal;
    startedCount++;
    if (r.id <= lastStarted) violate(`FIFO: task ${r.id} started after task ${lastStarted}`);
    lastStarted = r.id;
    const s = pool.status();
    if (s.active > s.maxConcurrency) violate(`task ${r.id} started with ${s.active} running > max ${s.maxConcurrency}`);
    if (!(signal instanceof AbortSignal)) violate(`task ${r.id} got no AbortSignal`);
    maxActiveSeen = Math.max(maxActiveSeen, s.active);
    switch (r.behaviour) {
      case 'sync-ok':
        r.outcome = 'ok';
        modelCompleted++;
        return r.id;
      case 'sync-throw':
        r.outcome = 'fail';
        modelFailed++;
        throw r.error;
      default: {
        const p = new Promise<number>((resolve, reject) => {
          const timer = setTimeout(() => {
            signal.removeEventListener('abort', onAbort);
            if (r.behaviour === 'async-fail') reject(r.error);
            else resolve(r.id);
          }, r.durationMs);
          const onAbort = () => {
            clearTimeout(timer);
            reject(signal.reason);
          };
          if (r.behaviour === 'abortable') {
            if (signal.aborted) onAbort();
            else signal.addEventListener('abort', onAbort, { once: true });
          }
        });
        // Registered before the pool's own handler: the model is up to date first.
        p.then(
          () => {
            r.outcome = 'ok';
            modelCompleted++;
          },
          () => {
            r.outcome = 'fail';
            modelFailed++;
          },
        );
        return p;
      }
    }
  };

  const newRec = (via: Rec['via']): Rec => {
    const behaviour = pick<Behaviour>(['sync-ok', 'sync-ok', 'sync-throw', 'async-ok', 'async-ok', 'async-ok', 'async-fail', 'abortable', 'abortable', 'stubborn']);
    const r: Rec = {
      id: recs.length,
      via,
      behaviour,
      durationMs: behaviour === 'stubborn' ? int(0, 40) : int(0, 15),
      error: new Error(`task ${recs.length} failed`),
      controller: undefined,
      accepted: undefined,
      started: false,
      signal: undefined,
      removed: false,
      outcome: undefined,
      answer: undefined,
      taskSettled: undefined,
    };
    recs.push(r);
    return r;
  };

  const doSubmit = () => {
    const r = newRec('submit');
    const before = pool.status();
    const roll = rand();
    let signal: AbortSignal | undefined;
    if (roll < 0.25) {
      r.controller = new AbortController();
      if (roll < 0.02) r.controller.abort(new Error(`task ${r.id} aborted before submit`));
      signal = r.controller.signal;
    }
    const preAborted = signal?.aborted === true;
    const result = pool.submit(makeFn(r), signal ? { signal } : undefined);
    const runsAtOnce = before.active < before.maxConcurrency && before.pending === 0;
    const overloadExpected = !runsAtOnce && before.pending >= before.maxQueueSize;
    if (!result.ok) {
      r.accepted = false;
      if (result.error !== 'overloaded') violate(`submit ${r.id} answered ${result.error}`);
      else submitOverloaded++;
      if (!overloadExpected || preAborted) violate(`submit ${r.id} overloaded with ${JSON.stringify(before)}`);
      if (r.started) violate(`overloaded task ${r.id} ran`);
      return;
    }
    r.accepted = true;
    if (preAborted) {
      r.removed = true;
      if (r.started) violate(`pre-aborted task ${r.id} ran`);
    } else {
      if (overloadExpected) violate(`submit ${r.id} accepted although full: ${JSON.stringify(before)}`);
      if (runsAtOnce !== r.started) violate(`submit ${r.id}: ran at once=${r.started}, expected ${runsAtOnce}`);
      if (!runsAtOnce && pool.pending !== before.pending + 1) {
        violate(`submit ${r.id} queued but pending went ${before.pending} → ${pool.pending}`);
      }
    }
    result.task.then(
      (value) => {
        r.taskSettled = { ok: true, value };
      },
      (reason: unknown) => {
        r.taskSettled = { ok: false, value: reason };
      },
    );
  };

  const doSubmitAwait = () => {
    const r = newRec('submitAwait');
    const timeoutMs = int(0, 25);
    pool.submitAwait(makeFn(r), timeoutMs).then(
      (answer) => {
        r.answer = answer;
        if (!answer.ok && answer.error === 'timeout') {
          if (!r.started) r.removed = true;
          else if (r.outcome === undefined) {
            if (!r.signal!.aborted || !(r.signal!.reason instanceof TaskTimeoutError)) violate(`timed-out task ${r.id} was not signalled`);
          }
        }
      },
      (error: unknown) => violate(`submitAwait ${r.id} rejected: ${String(error)}`),
    );
  };

  const doAbort = () => {
    const live = recs.filter((r) => r.controller && !r.controller.signal.aborted && r.accepted && r.outcome === undefined && !r.removed);
    if (live.length === 0) return;
    const r = pick(live);
    const wasQueued = !r.started;
    const pendingBefore = pool.pending;
    const reason = new Error(`task ${r.id} aborted by its caller`);
    r.controller!.abort(reason);
    if (wasQueued) {
      r.removed = true;
      if (pool.pending !== pendingBefore - 1) violate(`abort of queued ${r.id}: pending ${pendingBefore} → ${pool.pending}`);
    } else if (!r.signal!.aborted || r.signal!.reason !== reason) {
      violate(`abort of running ${r.id} did not reach its signal`);
    }
  };

  const doResize = () => {
    const before = pool.status();
    if (rand() < 0.1) {
      const bad = pick([{ maxConcurrency: 0 }, { maxQueueSize: -1 }, { maxConcurrency: 1.5 }, { lowWaterMark: capacityOf(before) + 5 }, { maxQueueSize: Number.NaN }]);
      try {
        pool.resize(bad);
        violate(`invalid resize ${JSON.stringify(bad)} was accepted`);
      } catch (error) {
        if (!(error instanceof TypeError || error instanceof RangeError)) violate(`invalid resize threw ${String(error)}`);
      }
      if (JSON.stringify(pool.status()) !== JSON.stringify(before)) violate(`invalid resize changed the pool`);
      return;
    }
    const maxConcurrency = int(1, 6);
    const maxQueueSize = int(0, 8);
    const capacity = maxConcurrency + maxQueueSize;
    const options: { maxConcurrency: number; maxQueueSize: number; lowWaterMark?: number } = { maxConcurrency, maxQueueSize };
    if (rand() < 0.3) options.lowWaterMark = int(0, capacity - 1);
    const lowWaterMark = options.lowWaterMark ?? explicitLowWaterMark;
    if (lowWaterMark !== undefined && lowWaterMark > capacity - 1) {
      // An explicit low-water mark is kept across resizes; one the new capacity cannot hold is refused.
      expect(() => pool.resize(options)).toThrow(RangeError);
      if (JSON.stringify(pool.status()) !== JSON.stringify(before)) violate(`refused resize changed the pool`);
      return;
    }
    explicitLowWaterMark = lowWaterMark;
    resizes++;
    if (maxConcurrency < before.maxConcurrency) shrinks++;
    const startedBefore = startedCount;
    // Set before the call: listeners and starts inside resize() are checked against the new limits.
    activeCeiling = Math.max(maxConcurrency, before.active);
    pendingCeiling = Math.max(maxQueueSize, before.pending);
    const after = pool.resize(options);
    const startable = Math.max(0, Math.min(before.pending, maxConcurrency - before.active));
    if (startedCount - startedBefore !== startable) {
      violate(`resize ${JSON.stringify(options)} from ${JSON.stringify(before)} started ${startedCount - startedBefore}, expected ${startable}`);
    }
    if (after.maxConcurrency !== maxConcurrency || after.maxQueueSize !== maxQueueSize) violate('resize did not apply');
  };

  const doAdvance = async () => {
    await vi.advanceTimersByTimeAsync(int(0, 6));
    await flush();
    checkNow('after advance');
    checkBooks('after advance');
  };

  let submitted = 0;
  while (submitted < submissions) {
    const roll = rand();
    if (roll < 0.5) {
      doSubmit();
      submitted++;
    } else if (roll < 0.72) {
      doSubmitAwait();
      submitted++;
    } else if (roll < 0.78) doAbort();
    else if (roll < 0.8) doResize();
    else await doAdvance();
    checkNow(`step ${recs.length}`);
    if (violations.length > 0) break;
  }

  // Let everything finish on its own: the pool must end idle.
  for (let i = 0; i < 1000 && pool.active + pool.pending > 0; i++) await doAdvance();
  await flush();
  checkBooks('end');
  const final = pool.status();
  expect(violations).toEqual([]);
  expect(final).toMatchObject({ active: 0, pending: 0 });
  expect(idleEvents).toBeGreaterThan(0);

  // Every accepted task either ran or was removed; every task promise settled consistently.
  for (const r of recs) {
    if (r.via === 'submitAwait') expect(r.answer, `answer of ${r.id}`).toBeDefined();
    if (!r.accepted) {
      expect(r.started, `task ${r.id} not accepted but ran`).toBe(false);
      continue;
    }
    expect(r.started !== r.removed, `task ${r.id}: started=${r.started} removed=${r.removed}`).toBe(true);
    if (r.via === 'submit') {
      expect(r.taskSettled, `task promise ${r.id}`).toBeDefined();
      if (r.removed) expect(r.taskSettled!.ok).toBe(false);
      else expect(r.taskSettled!.ok, `task ${r.id} (${r.behaviour})`).toBe(r.outcome === 'ok');
      if (r.outcome === 'ok') expect(r.taskSettled!.value).toBe(r.id);
      if (r.behaviour === 'sync-throw' || r.behaviour === 'async-fail') {
        if (r.started && r.outcome === 'fail' && r.behaviour === 'sync-throw') expect(r.taskSettled!.value).toBe(r.error);
      }
    } else {
      const answer = r.answer!;
      if (answer.ok) expect(answer.value).toBe(r.id);
      else if (answer.error === 'failed') expect(r.outcome).toBe('fail');
      else expect(answer.error).toBe('timeout');
    }
  }

  const closed = await pool.close();
  expect(closed).toEqual({ drained: true, cancelled: 0, stillRunning: 0 });
  const accepted = recs.filter((r) => r.accepted).length;
  return {
    submissions: recs.length,
    accepted,
    overloaded: final.rejected,
    started: startedCount,
    completed: final.completed,
    failed: final.failed,
    cancelled: final.cancelled,
    timedOut: final.timedOut,
    resizes,
    shrinks,
    saturatedEvents: levelEvents.filter((e) => e === 'saturated').length,
    maxActiveSeen,
  };
}

describe('WorkerPool randomized model check', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it.each([1, 7, 20240611, 424242])('seed %i: bounds, FIFO, books and idle end hold over 3000 random submissions', async (seed) => {
    const summary = await run(seed, 3000);
    // The schedule must really exercise the pool, or the checks above prove little.
    expect(summary.submissions).toBe(3000);
    expect(summary.overloaded).toBeGreaterThan(50);
    expect(summary.completed).toBeGreaterThan(500);
    expect(summary.failed).toBeGreaterThan(100);
    expect(summary.cancelled).toBeGreaterThan(10);
    expect(summary.timedOut).toBeGreaterThan(10);
    expect(summary.resizes).toBeGreaterThan(10);
    expect(summary.shrinks).toBeGreaterThan(3);
    expect(summary.saturatedEvents).toBeGreaterThan(5);
    expect(summary.started + summary.cancelled).toBe(summary.accepted);
  });

  it('the same seed replays the same run', async () => {
    const a = await run(99, 800);
    const b = await run(99, 800);
    expect(b).toEqual(a);
  });
});

