import { getEventListeners } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi, type MockInstance } from 'vitest';
import { PoolClosedError, TaskTimeoutError } from '../../src/errors.js';
import type { PoolStatus, WorkerPoolOptions } from '../../src/pool/types.js';
import { WorkerPool } from '../../src/pool/worker-pool.js';
import { RUN_JOB, type FinishJob, type PoolJob } from '../../src/pool/job.js';

// Captured before any test fakes the timers: lets every queued microtask and nextTick run,
// whatever the fake clock says. It waits for the event loop, never for a wall-clock time.
const realSetImmediate = globalThis.setImmediate;
async function flush(turns = 2): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => realSetImmediate(resolve));
}

/** Moves the fake clock, then lets the promise chains that the fired timers started run to the end. */
async function advance(ms: number): Promise<void> {
  await vi.advanceTimersByTimeAsync(ms);
  await flush();
}

interface Deferred<T> {
  promise: Promise<T>;
  resolve: (value: T) => void;
  reject: (reason: unknown) => void;
}
function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A task the test finishes by hand; records its start and the signal it was given. */
interface Gate {
  started: boolean;
  signal: AbortSignal | undefined;
  fn: (signal: AbortSignal) => Promise<string>;
  finish: (value?: string) => Promise<void>;
  fail: (error: unknown) => Promise<void>;
}
function gate(label = 'gate', log?: string[]): Gate {
  const d = deferred<string>();
  const g: Gate = {
    started: false,
    signal: undefined,
    fn: (signal) => {
      g.started = true;
      g.signal = signal;
      log?.push(label);
      return d.promise;
    },
    finish: async (value = label) => {
      d.resolve(value);
      await flush();
    },
    fail: async (error) => {
      d.reject(error);
      await flush();
    },
  };
  return g;
}

/** Submits and asserts acceptance; returns the task promise. */
function accept<T>(pool: WorkerPool, fn: (signal: AbortSignal) => T | PromiseLike<T>, signal?: AbortSignal): Promise<T> {
  const result = pool.submit(fn, signal ? { signal } : undefined);
  if (!result.ok) throw new Error(`expected the pool to accept, got ${result.error}`);
  return result.task;
}

/** Submits a task that only records that it ran; returns its promise and that record. */
function acceptProbe(pool: WorkerPool, signal?: AbortSignal): { task: Promise<void>; ran: boolean } {
  const probe = { task: Promise.resolve(), ran: false };
  probe.task = accept(
    pool,
    () => {
      probe.ran = true;
    },
    signal,
  );
  return probe;
}

/** Settles-or-not probe for a promise, without awaiting it. */
function track<T>(promise: Promise<T>): { settled: boolean; value?: T; error?: unknown } {
  const state: { settled: boolean; value?: T; error?: unknown } = { settled: false };
  promise.then(
    (value) => Object.assign(state, { settled: true, value }),
    (error: unknown) => Object.assign(state, { settled: true, error }),
  );
  return state;
}

function catchError(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a throw, nothing was thrown');
}

const STATUS_KEYS = [
  'active',
  'cancelled',
  'closed',
  'completed',
  'displaced',
  'failed',
  'held',
  'limit',
  'maxConcurrency',
  'maxQueueSize',
  'name',
  'pending',
  'rejected',
  'saturated',
  'timedOut',
];

let warnings: MockInstance<typeof process.emitWarning>;
beforeEach(() => {
  vi.useFakeTimers();
  // Throwing listeners are reported through process.emitWarning; keep the output quiet and observable.
  warnings = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
});
afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

// ---------------------------------------------------------------------------------------------

describe('constructor options', () => {
  type Case = [label: string, options: unknown, errorClass: typeof TypeError | typeof RangeError, option: string, shown: string];
  const cases: Case[] = [
    ['maxConcurrency missing', { maxQueueSize: 1 }, TypeError, 'maxConcurrency', 'undefined'],
    ['maxConcurrency 0', { maxConcurrency: 0, maxQueueSize: 1 }, RangeError, 'maxConcurrency', '0'],
    ['maxConcurrency negative', { maxConcurrency: -3, maxQueueSize: 1 }, RangeError, 'maxConcurrency', '-3'],
    ['maxConcurrency fractional', { maxConcurrency: 1.5, maxQueueSize: 1 }, TypeError, 'maxConcurrency', '1.5'],
    ['maxConcurrency NaN', { maxConcurrency: Number.NaN, maxQueueSize: 1 }, TypeError, 'maxConcurrency', 'NaN'],
    ['maxConcurrency Infinity', { maxConcurrency: Infinity, maxQueueSize: 1 }, TypeError, 'maxConcurrency', 'Infinity'],
    ['maxConcurrency string', { maxConcurrency: '4', maxQueueSize: 1 }, TypeError, 'maxConcurrency', '"4"'],
    ['maxConcurrency null', { maxConcurrency: null, maxQueueSize: 1 }, TypeError, 'maxConcurrency', 'null'],
    ['maxQueueSize missing', { maxConcurrency: 1 }, TypeError, 'maxQueueSize', 'undefined'],
    ['maxQueueSize negative', { maxConcurrency: 1, maxQueueSize: -1 }, RangeError, 'maxQueueSize', '-1'],
    ['maxQueueSize fractional', { maxConcurrency: 1, maxQueueSize: 2.5 }, TypeError, 'maxQueueSize', '2.5'],
    ['maxQueueSize NaN', { maxConcurrency: 1, maxQueueSize: Number.NaN }, TypeError, 'maxQueueSize', 'NaN'],
    ['maxQueueSize string', { maxConcurrency: 1, maxQueueSize: '10' }, TypeError, 'maxQueueSize', '"10"'],
    ['lowWaterMark negative', { maxConcurrency: 2, maxQueueSize: 2, lowWaterMark: -1 }, RangeError, 'lowWaterMark', '-1'],
    ['lowWaterMark = capacity', { maxConcurrency: 2, maxQueueSize: 2, lowWaterMark: 4 }, RangeError, 'lowWaterMark', '4'],
    ['lowWaterMark fractional', { maxConcurrency: 2, maxQueueSize: 2, lowWaterMark: 1.5 }, TypeError, 'lowWaterMark', '1.5'],
    ['lowWaterMark NaN', { maxConcurrency: 2, maxQueueSize: 2, lowWaterMark: Number.NaN }, TypeError, 'lowWaterMark', 'NaN'],
    ['lowWaterMark string', { maxConcurrency: 2, maxQueueSize: 2, lowWaterMark: '1' }, TypeError, 'lowWaterMark', '"1"'],
  ];

  it.each(cases)('%s throws a %O naming the option and the value', (_label, options, errorClass, option, shown) => {
    const error = catchError(() => new WorkerPool(options as WorkerPoolOptions));
    expect(error).toBeInstanceOf(errorClass);
    expect(error.message).toContain(`"${option}"`);
    expect(error.message).toContain(`got ${shown}`);
  });

  it.each([
    ['undefined', undefined],
    ['null', null],
    ['a number', 5],
    ['a string', 'fast'],
  ])('options that are %s throw a TypeError naming options and the value', (_label, options) => {
    const error = catchError(() => new WorkerPool(options as unknown as WorkerPoolOptions));
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toContain('options');
    expect(error.message).toContain(`got ${String(options)}`);
  });

  it('a name that is not a string throws a TypeError', () => {
    const error = catchError(() => new WorkerPool({ name: 42 as unknown as string, maxConcurrency: 1, maxQueueSize: 0 }));
    expect(error).toBeInstanceOf(TypeError);
    expect(error.message).toContain('"name"');
  });

  it('puts the pool name in option errors', () => {
    const error = catchError(() => new WorkerPool({ name: 'payments', maxConcurrency: 0, maxQueueSize: 1 }));
    expect(error.message).toContain('payments');
    expect(error.message).toContain('"maxConcurrency"');
  });

  it('accepts the boundary values: maxConcurrency 1, maxQueueSize 0, lowWaterMark 0 and capacity - 1', () => {
    const a = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    expect(a.status()).toMatchObject({ maxConcurrency: 1, maxQueueSize: 0, active: 0, pending: 0 });
    expect(() => new WorkerPool({ maxConcurrency: 2, maxQueueSize: 2, lowWaterMark: 0 })).not.toThrow();
    expect(() => new WorkerPool({ maxConcurrency: 2, maxQueueSize: 2, lowWaterMark: 3 })).not.toThrow();
  });
});

// ---------------------------------------------------------------------------------------------

describe('submit', () => {
  it('runs fn at once, synchronously inside submit, when a slot is free', async () => {
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 2 });
    const log: string[] = [];
    const result = pool.submit(() => {
      log.push('ran');
      return 42;
    });
    log.push('after submit');
    expect(log).toEqual(['ran', 'after submit']);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.task).toBeInstanceOf(Promise);
    await expect(result.task).resolves.toBe(42);
  });

  it('calls fn with an AbortSignal that is not aborted', () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    let seen: unknown;
    accept(pool, (signal) => {
      seen = signal;
    });
    expect(seen).toBeInstanceOf(AbortSignal);
    expect((seen as AbortSignal).aborted).toBe(false);
  });

  it('queues when every slot is taken, and starts queued work by itself, FIFO, as slots free', async () => {
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 3 });
    const log: string[] = [];
    const gates = ['a', 'b', 'c', 'd', 'e'].map((label) => gate(label, log));
    const tasks = gates.map((g) => accept(pool, g.fn));
    expect(log).toEqual(['a', 'b']);
    expect(pool.status()).toMatchObject({ active: 2, pending: 3 });

    await gates[1]!.finish();
    expect(log).toEqual(['a', 'b', 'c']);
    expect(pool.status()).toMatchObject({ active: 2, pending: 2 });

    await gates[0]!.finish();
    expect(log).toEqual(['a', 'b', 'c', 'd']);
    await gates[2]!.finish();
    expect(log).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(pool.status()).toMatchObject({ active: 2, pending: 0 });

    await gates[3]!.finish();
    await gates[4]!.finish();
    expect(await Promise.all(tasks)).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(pool.status()).toMatchObject({ active: 0, pending: 0, completed: 5 });
  });

  it('a queued task starts at once (within the settling of the previous one) even if nobody awaits anything', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const first = gate('first');
    const second = gate('second');
    accept(pool, first.fn);
    accept(pool, second.fn);
    expect(second.started).toBe(false);
    await first.finish();
    expect(second.started).toBe(true);
  });

  it('answers overloaded (without throwing or calling fn) when maxConcurrency run and maxQueueSize wait', async () => {
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 1 });
    const gates = [gate('a'), gate('b'), gate('c')];
    for (const g of gates) accept(pool, g.fn);
    let called = false;
    const result = pool.submit(() => {
      called = true;
    });
    expect(result).toEqual({ ok: false, error: 'overloaded' });
    expect(called).toBe(false);
    expect(pool.status()).toMatchObject({ active: 2, pending: 1, rejected: 1 });

    expect(pool.submit(() => {})).toEqual({ ok: false, error: 'overloaded' });
    expect(pool.status().rejected).toBe(2);

    // Room again once a slot frees (the queued one moves up, its place in the queue frees).
    await gates[0]!.finish();
    expect(pool.submit(() => 'late').ok).toBe(true);
  });

  it('with maxQueueSize 0, the submission after the last slot is overloaded', () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    accept(pool, gate().fn);
    expect(pool.submit(() => 1)).toEqual({ ok: false, error: 'overloaded' });
    expect(pool.pending).toBe(0);
  });

  it('answers closed after close, without calling fn or counting a rejection', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    await pool.close();
    let called = false;
    expect(
      pool.submit(() => {
        called = true;
      }),
    ).toEqual({ ok: false, error: 'closed' });
    const controller = new AbortController();
    expect(pool.submit(() => {}, { signal: controller.signal })).toEqual({ ok: false, error: 'closed' });
    controller.abort();
    expect(pool.submit(() => {}, { signal: controller.signal })).toEqual({ ok: false, error: 'closed' });
    expect(called).toBe(false);
    expect(pool.status()).toMatchObject({ closed: true, rejected: 0 });
  });

  it('the task promise carries fn’s value, sync or async', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 2 });
    const blocker = gate();
    accept(pool, blocker.fn);
    const queuedSync = accept(pool, () => 'sync');
    const queuedAsync = accept(pool, async () => 'async');
    await blocker.finish();
    await expect(queuedSync).resolves.toBe('sync');
    await expect(queuedAsync).resolves.toBe('async');
    await expect(accept(pool, () => ({ n: 1 }))).resolves.toEqual({ n: 1 });
  });

  it.each([
    ['ran at once', false],
    ['queued first', true],
  ])('a caller who awaits sees a sync throw and an async rejection (%s)', async (_label, queueFirst) => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 2 });
    const blocker = gate();
    if (queueFirst) accept(pool, blocker.fn);
    const syncError = new Error('sync boom');
    const asyncError = new Error('async boom');
    const syncTask = accept(pool, () => {
      throw syncError;
    });
    const asyncTask = accept(pool, async () => {
      await Promise.resolve();
      throw asyncError;
    });
    if (queueFirst) {
      expect(pool.pending).toBe(2);
      await blocker.finish();
    }
    await expect(syncTask).rejects.toBe(syncError);
    await expect(asyncTask).rejects.toBe(asyncError);
    await flush();
    expect(pool.status()).toMatchObject({ active: 0, pending: 0, failed: 2, completed: queueFirst ? 1 : 0 });
  });

  it.each([
    ['ran at once', false],
    ['queued first', true],
  ])('the slot is already free when an awaiting caller resumes (%s)', async (_label, queueFirst) => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const blocker = gate();
    if (queueFirst) accept(pool, blocker.fn);
    const d = deferred<number>();
    const task = accept(pool, () => d.promise);
    if (queueFirst) await blocker.finish();
    expect(pool.active).toBe(1);
    d.resolve(7);
    expect(await task).toBe(7);
    expect(pool.active).toBe(0);
    expect(pool.status().completed).toBe(queueFirst ? 2 : 1);
  });

  it('throws a TypeError for a fn that is not a function', () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    expect(() => pool.submit(42 as never)).toThrow(TypeError);
    expect(pool.status()).toMatchObject({ active: 0, pending: 0, rejected: 0 });
  });

  it('a task submitted from inside a running task keeps FIFO order behind work already queued', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 3 });
    const log: string[] = [];
    const first = gate('first', log);
    accept(pool, first.fn);
    accept(pool, () => {
      log.push('second');
      accept(pool, () => log.push('nested'));
    });
    accept(pool, () => log.push('third'));
    await first.finish();
    await flush();
    expect(log).toEqual(['first', 'second', 'third', 'nested']);
    expect(pool.status()).toMatchObject({ active: 0, pending: 0, completed: 4 });
  });
});

// ---------------------------------------------------------------------------------------------

describe('no unhandled rejection for tasks nobody awaits', () => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => {
    unhandled.push(reason);
  };
  beforeEach(() => {
    unhandled.length = 0;
    process.on('unhandledRejection', onUnhandled);
  });
  afterEach(() => {
    process.off('unhandledRejection', onUnhandled);
  });

  it.each([
    ['sync throw', 'ran at once'],
    ['sync throw', 'queued first'],
    ['async rejection', 'ran at once'],
    ['async rejection', 'queued first'],
  ])('%s, %s: no unhandledRejection, and the pool counts the failure', async (kind, where) => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const blocker = gate();
    if (where === 'queued first') accept(pool, blocker.fn);
    const error = new Error(`${kind} ${where}`);
    const fn =
      kind === 'sync throw'
        ? () => {
            throw error;
          }
        : async () => {
            await Promise.resolve();
            throw error;
          };
    const result = pool.submit(fn);
    expect(result.ok).toBe(true);
    if (where === 'queued first') {
      expect(pool.pending).toBe(1);
      await blocker.finish();
    }
    await flush(3);
    expect(unhandled).toEqual([]);
    expect(pool.status()).toMatchObject({ failed: 1, active: 0, pending: 0 });
    // A caller who awaits later still sees the rejection.
    if (result.ok) await expect(result.task).rejects.toBe(error);
  });

  it('with a caller signal: neither a sync throw nor a rejection goes unhandled', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const controller = new AbortController();
    pool.submit(
      () => {
        throw new Error('sync with signal');
      },
      { signal: controller.signal },
    );
    pool.submit(async () => Promise.reject(new Error('async with signal')), { signal: controller.signal });
    await flush(3);
    expect(unhandled).toEqual([]);
    expect(pool.status().failed).toBe(2);
  });

  it('queued tasks removed by a caller abort, by a pre-aborted signal, by a timeout or by close do not go unhandled', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 3 });
    const blocker = gate();
    accept(pool, blocker.fn);
    const aborted = new AbortController();
    pool.submit(() => 'aborted later', { signal: aborted.signal });
    const preAborted = new AbortController();
    preAborted.abort(new Error('pre'));
    pool.submit(() => 'pre-aborted', { signal: preAborted.signal });
    void pool.submitAwait(() => 'times out', 10);
    pool.submit(() => 'closed');
    aborted.abort(new Error('caller gave up'));
    await advance(10);
    expect(pool.pending).toBe(1);
    const closing = pool.close({ drain: false });
    await blocker.finish();
    await closing;
    await flush(3);
    expect(unhandled).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('submitAwait', () => {
  it('answers ok with the value, sync or async', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    await expect(pool.submitAwait(() => 3)).resolves.toEqual({ ok: true, value: 3 });
    await expect(pool.submitAwait(async () => 'x')).resolves.toEqual({ ok: true, value: 'x' });
    expect(pool.status()).toMatchObject({ completed: 2, failed: 0, active: 0 });
  });

  it('answers failed with the cause when fn throws or rejects', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const syncError = new Error('sync');
    const asyncError = new Error('async');
    await expect(
      pool.submitAwait(() => {
        throw syncError;
      }),
    ).resolves.toEqual({ ok: false, error: 'failed', cause: syncError });
    await expect(pool.submitAwait(() => Promise.reject(asyncError))).resolves.toEqual({ ok: false, error: 'failed', cause: asyncError });
    expect(pool.status().failed).toBe(2);
  });

  it('answers overloaded without calling fn when the pool is full', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    accept(pool, gate().fn);
    accept(pool, gate().fn);
    let called = false;
    await expect(
      pool.submitAwait(() => {
        called = true;
      }),
    ).resolves.toEqual({ ok: false, error: 'overloaded' });
    expect(called).toBe(false);
    expect(pool.status()).toMatchObject({ rejected: 1, timedOut: 0 });
  });

  it('answers closed after close', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    await pool.close();
    await expect(pool.submitAwait(() => 1)).resolves.toEqual({ ok: false, error: 'closed' });
  });

  it('answers closed for a queued task that a close cancels', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const blocker = gate();
    accept(pool, blocker.fn);
    let ran = false;
    const answer = pool.submitAwait(() => {
      ran = true;
    });
    const closing = pool.close({ drain: false });
    await expect(answer).resolves.toEqual({ ok: false, error: 'closed' });
    await blocker.finish();
    await closing;
    expect(ran).toBe(false);
  });

  it('times out after the default 5000 ms and signals the task with a TaskTimeoutError', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const g = gate();
    const answer = track(pool.submitAwait(g.fn));
    await advance(4999);
    expect(answer.settled).toBe(false);
    expect(g.signal!.aborted).toBe(false);
    await advance(1);
    expect(answer).toEqual({ settled: true, value: { ok: false, error: 'timeout' } });
    expect(g.signal!.aborted).toBe(true);
    expect(g.signal!.reason).toBeInstanceOf(TaskTimeoutError);
    expect((g.signal!.reason as TaskTimeoutError).timeoutMs).toBe(5000);
    expect(pool.status().timedOut).toBe(1);
  });

  it('a finished task clears its timer: no timeout afterwards, no timer left behind', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    await expect(pool.submitAwait(() => 'fast', 100)).resolves.toEqual({ ok: true, value: 'fast' });
    expect(vi.getTimerCount()).toBe(0);
    await advance(1000);
    expect(pool.status().timedOut).toBe(0);
  });

  it('a queued task that times out leaves the queue at once and never runs', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 2 });
    const blocker = gate();
    accept(pool, blocker.fn);
    let ran = false;
    const answer = track(
      pool.submitAwait(() => {
        ran = true;
      }, 50),
    );
    const behind = gate('behind');
    accept(pool, behind.fn);
    expect(pool.pending).toBe(2);
    await advance(50);
    expect(answer.value).toEqual({ ok: false, error: 'timeout' });
    expect(pool.pending).toBe(1);
    expect(pool.status()).toMatchObject({ timedOut: 1, cancelled: 1 });
    await blocker.finish();
    // The next in line is the one behind: the timed-out task was skipped for good.
    expect(behind.started).toBe(true);
    await behind.finish();
    await advance(10_000);
    expect(ran).toBe(false);
    expect(pool.status()).toMatchObject({ active: 0, pending: 0, completed: 2, failed: 0, cancelled: 1 });
  });

  it('a running task that times out is signalled but keeps its slot until it really settles', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const g = gate('slow');
    const answer = track(pool.submitAwait(g.fn, 20));
    const next = gate('next');
    accept(pool, next.fn);
    await advance(20);
    expect(answer.value).toEqual({ ok: false, error: 'timeout' });
    expect(g.signal!.aborted).toBe(true);
    expect(g.signal!.reason).toBeInstanceOf(TaskTimeoutError);
    expect(pool.status()).toMatchObject({ active: 1, pending: 1, timedOut: 1, cancelled: 0 });
    expect(next.started).toBe(false);
    await advance(60_000);
    expect(next.started).toBe(false);
    await g.finish('late anyway');
    expect(next.started).toBe(true);
    expect(pool.status()).toMatchObject({ active: 1, pending: 0, completed: 1 });
  });

  it('active never exceeds maxConcurrency whatever times out', async () => {
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 10 });
    let running = 0;
    let maxRunning = 0;
    const finishers: (() => void)[] = [];
    const stubborn = () =>
      new Promise<void>((resolve) => {
        running++;
        maxRunning = Math.max(maxRunning, running);
        finishers.push(() => {
          running--;
          resolve();
        });
      });
    const answers = Array.from({ length: 8 }, () => pool.submitAwait(stubborn, 10));
    await advance(10);
    const results = await Promise.all(answers);
    expect(results.every((r) => !r.ok && r.error === 'timeout')).toBe(true);
    expect(pool.status()).toMatchObject({ active: 2, pending: 0, timedOut: 8, cancelled: 6 });
    // New work queues behind the stubborn tasks instead of overrunning the limit.
    for (let i = 0; i < 5; i++) void pool.submitAwait(stubborn, 10);
    expect(pool.status()).toMatchObject({ active: 2, pending: 5 });
    for (let round = 0; round < 10 && (finishers.length > 0 || pool.pending > 0); round++) {
      expect(pool.active).toBeLessThanOrEqual(2);
      for (const finish of finishers.splice(0)) finish();
      await flush();
    }
    expect(maxRunning).toBe(2);
    expect(pool.status()).toMatchObject({ active: 0, pending: 0 });
  });

  it('timeoutMs Infinity never times out', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    const g = gate();
    const answer = track(pool.submitAwait(g.fn, Infinity));
    expect(vi.getTimerCount()).toBe(0);
    await advance(1e9);
    expect(answer.settled).toBe(false);
    await g.finish('done');
    expect(answer.value).toEqual({ ok: true, value: 'done' });
  });

  it.each([
    [-1, RangeError],
    [Number.NaN, TypeError],
    ['100', TypeError],
  ])('rejects an invalid timeoutMs %O with a %O naming it, before accepting anything', async (timeoutMs, errorClass) => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    let called = false;
    const answer = pool.submitAwait(() => {
      called = true;
    }, timeoutMs as number);
    await expect(answer).rejects.toBeInstanceOf(errorClass);
    await expect(answer).rejects.toThrow(/"timeoutMs"/);
    expect(called).toBe(false);
    expect(pool.status()).toMatchObject({ active: 0, pending: 0, completed: 0 });
  });
});

// ---------------------------------------------------------------------------------------------

describe('caller signal', () => {
  it('aborting removes a queued task at once: it never runs, its task rejects with the reason', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 2 });
    const blocker = gate();
    accept(pool, blocker.fn);
    const controller = new AbortController();
    const probe = acceptProbe(pool, controller.signal);
    expect(pool.pending).toBe(1);
    const reason = new Error('caller gave up');
    controller.abort(reason);
    expect(pool.pending).toBe(0);
    await expect(probe.task).rejects.toBe(reason);
    expect(pool.status()).toMatchObject({ cancelled: 1, failed: 0 });
    await blocker.finish();
    expect(probe.ran).toBe(false);
    expect(pool.status()).toMatchObject({ active: 0, pending: 0, completed: 1 });
  });

  it('aborting signals a running task with the reason; it keeps its slot until it settles', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const controller = new AbortController();
    const g = gate('running');
    const task = track(accept(pool, g.fn, controller.signal));
    const next = gate('next');
    accept(pool, next.fn);
    expect(g.signal).not.toBe(controller.signal); // the pool's own signal, linked to the caller's
    const reason = new Error('stop');
    controller.abort(reason);
    expect(g.signal!.aborted).toBe(true);
    expect(g.signal!.reason).toBe(reason);
    await flush();
    expect(pool.status()).toMatchObject({ active: 1, pending: 1, cancelled: 0 });
    expect(next.started).toBe(false);
    expect(task.settled).toBe(false);
    await g.fail(g.signal!.reason);
    expect(task).toEqual({ settled: true, error: reason });
    expect(next.started).toBe(true);
    expect(pool.status()).toMatchObject({ failed: 1, cancelled: 0 });
  });

  it('a caller abort that happens while fn runs synchronously (inside submit) still reaches the task signal', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const controller = new AbortController();
    const reason = new Error('stopped from inside the task');
    let taskSignal: AbortSignal | undefined;
    const task = track(
      accept(
        pool,
        (signal) => {
          taskSignal = signal;
          controller.abort(reason); // e.g. the task triggers a shutdown that aborts its own caller signal
          return new Promise<never>((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason)));
        },
        controller.signal,
      ),
    );
    expect(taskSignal!.aborted).toBe(true);
    expect(taskSignal!.reason).toBe(reason);
    await flush();
    expect(task).toEqual({ settled: true, error: reason });
    expect(pool.status()).toMatchObject({ active: 0, failed: 1 });
  });

  it('a signal that is already aborted: fn never runs, the task rejects with the reason, the pool counts it cancelled', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const controller = new AbortController();
    const reason = new Error('already');
    controller.abort(reason);
    const probe = acceptProbe(pool, controller.signal);
    await expect(probe.task).rejects.toBe(reason);
    expect(probe.ran).toBe(false);
    // Accepted (ok: true) and never run: it must show up in the books as cancelled.
    expect(pool.status()).toMatchObject({ active: 0, pending: 0, cancelled: 1, completed: 0, failed: 0 });
  });

  it('aborting after the task settled changes nothing, and the pool leaves no listener on the caller signal', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 3 });
    const controller = new AbortController();
    const blocker = gate();
    accept(pool, blocker.fn, controller.signal);
    const tasks = [accept(pool, () => 1, controller.signal), accept(pool, async () => 2, controller.signal)];
    expect(getEventListeners(controller.signal, 'abort').length).toBe(3);
    await blocker.finish();
    await Promise.all(tasks);
    expect(getEventListeners(controller.signal, 'abort').length).toBe(0);
    controller.abort(new Error('too late'));
    await flush();
    expect(pool.status()).toMatchObject({ completed: 3, failed: 0, cancelled: 0, active: 0, pending: 0 });
  });

  it('a removed queued task also drops its listener from the caller signal', () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 2 });
    accept(pool, gate().fn);
    const shared = new AbortController();
    const own = new AbortController();
    accept(pool, () => {}, shared.signal);
    const task = accept(pool, () => {}, own.signal);
    task.catch(() => {});
    own.abort();
    expect(getEventListeners(own.signal, 'abort').length).toBe(0);
    expect(getEventListeners(shared.signal, 'abort').length).toBe(1);
    expect(pool.pending).toBe(1);
  });

  it('a task that waited gets a signal of its own when it starts: a caller abort then reaches it, not its neighbours', async () => {
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 1 });
    const blocker = gate('blocker');
    const other = gate('other');
    accept(pool, blocker.fn);
    accept(pool, other.fn);
    const controller = new AbortController();
    const waited = gate('waited');
    const task = track(accept(pool, waited.fn, controller.signal));
    await blocker.finish();
    expect(waited.started).toBe(true);
    expect(waited.signal).not.toBe(other.signal);
    const reason = new Error('caller gave up');
    controller.abort(reason);
    expect(waited.signal!.reason).toBe(reason);
    expect(other.signal!.aborted).toBe(false);
    await waited.fail(waited.signal!.reason);
    expect(task).toEqual({ settled: true, error: reason });
    expect(getEventListeners(controller.signal, 'abort').length).toBe(0);
    await other.finish();
    expect(pool.status()).toMatchObject({ active: 0, pending: 0, completed: 2, failed: 1, cancelled: 0 });
  });

  it('a caller abort from a saturated listener, while the task joins the queue: it is removed and never runs', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    accept(pool, gate().fn);
    const controller = new AbortController();
    const reason = new Error('saturated: give up');
    pool.on('saturated', () => controller.abort(reason));
    const probe = acceptProbe(pool, controller.signal);
    expect(pool.status()).toMatchObject({ pending: 0, cancelled: 1 });
    await expect(probe.task).rejects.toBe(reason);
    expect(probe.ran).toBe(false);
    expect(getEventListeners(controller.signal, 'abort').length).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------

describe('status and getters', () => {
  it('reports every field', async () => {
    const pool = new WorkerPool({ name: 'orders', maxConcurrency: 2, maxQueueSize: 2 });
    const initial = pool.status();
    expect(Object.keys(initial).sort()).toEqual(STATUS_KEYS);
    expect(initial).toEqual({
      name: 'orders',
      active: 0,
      pending: 0,
      held: 0,
      maxConcurrency: 2,
      limit: 2,
      maxQueueSize: 2,
      saturated: false,
      closed: false,
      completed: 0,
      failed: 0,
      rejected: 0,
      timedOut: 0,
      cancelled: 0,
      displaced: 0,
    });

    const a = gate('a');
    const b = gate('b');
    accept(pool, a.fn);
    accept(pool, b.fn);
    const controller = new AbortController();
    accept(pool, () => {}, controller.signal).catch(() => {});
    const timing = pool.submitAwait(() => {}, 5);
    expect(pool.submit(() => {})).toEqual({ ok: false, error: 'overloaded' });
    expect(pool.status()).toMatchObject({ active: 2, pending: 2, saturated: true, rejected: 1 });
    expect(pool.active).toBe(2);
    expect(pool.pending).toBe(2);
    expect(pool.saturated).toBe(true);
    expect(pool.freeCapacity).toBe(0);

    controller.abort();
    await advance(5);
    await timing;
    await a.finish();
    await b.fail(new Error('b failed'));
    const closing = pool.close();
    expect(pool.closed).toBe(true);
    await closing;
    expect(pool.status()).toEqual({
      name: 'orders',
      active: 0,
      pending: 0,
      held: 0,
      maxConcurrency: 2,
      limit: 2,
      maxQueueSize: 2,
      saturated: false,
      closed: true,
      completed: 1,
      failed: 1,
      rejected: 1,
      timedOut: 1,
      cancelled: 2,
      displaced: 0,
    });
  });

  it('name is undefined when not given', () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    expect(pool.name).toBeUndefined();
    expect(pool.status().name).toBeUndefined();
  });

  it('status() is a snapshot, not a live view', () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    const before = pool.status();
    accept(pool, gate().fn);
    expect(before.active).toBe(0);
    expect(pool.status().active).toBe(1);
  });

  it('freeCapacity counts free slots plus free queue places', async () => {
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 3 });
    expect(pool.freeCapacity).toBe(5);
    const gates = [gate(), gate(), gate()];
    for (const g of gates) accept(pool, g.fn);
    expect(pool.freeCapacity).toBe(2);
    await gates[0]!.finish();
    expect(pool.freeCapacity).toBe(3);
    pool.resize({ maxQueueSize: 0 });
    expect(pool.freeCapacity).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------

describe('resize', () => {
  it('growing maxConcurrency starts queued work at once, in order', () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 5 });
    const log: string[] = [];
    for (const label of ['a', 'b', 'c', 'd']) accept(pool, gate(label, log).fn);
    expect(log).toEqual(['a']);
    const status = pool.resize({ maxConcurrency: 3 });
    expect(log).toEqual(['a', 'b', 'c']);
    expect(status).toMatchObject({ active: 3, pending: 1, maxConcurrency: 3 });
  });

  it('growing maxQueueSize makes room for more waiting work', () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    accept(pool, gate().fn);
    accept(pool, gate().fn);
    expect(pool.submit(() => {}).ok).toBe(false);
    pool.resize({ maxQueueSize: 3 });
    expect(pool.submit(() => {}).ok).toBe(true);
    expect(pool.submit(() => {}).ok).toBe(true);
    expect(pool.submit(() => {})).toEqual({ ok: false, error: 'overloaded' });
    expect(pool.status()).toMatchObject({ active: 1, pending: 3, maxQueueSize: 3 });
  });

  it('shrinking maxConcurrency lets running work finish and starts nothing new until active < the new max', async () => {
    const pool = new WorkerPool({ maxConcurrency: 3, maxQueueSize: 3 });
    const log: string[] = [];
    const running = ['r1', 'r2', 'r3'].map((label) => gate(label, log));
    for (const g of running) accept(pool, g.fn);
    const queued = ['q1', 'q2'].map((label) => gate(label, log));
    for (const g of queued) accept(pool, g.fn);
    expect(pool.resize({ maxConcurrency: 1 })).toMatchObject({ active: 3, pending: 2, maxConcurrency: 1 });
    expect(running.every((g) => !g.signal!.aborted)).toBe(true);

    await running[0]!.finish();
    expect(pool.status()).toMatchObject({ active: 2, pending: 2 });
    await running[1]!.finish();
    expect(pool.status()).toMatchObject({ active: 1, pending: 2 });
    expect(queued[0]!.started).toBe(false);
    await running[2]!.finish();
    expect(pool.status()).toMatchObject({ active: 1, pending: 1 });
    expect(log).toEqual(['r1', 'r2', 'r3', 'q1']);
    await queued[0]!.finish();
    expect(log).toEqual(['r1', 'r2', 'r3', 'q1', 'q2']);
    // And a new submit waits too, since the one slot is taken.
    expect(pool.submit(() => {}).ok).toBe(true);
    expect(pool.status()).toMatchObject({ active: 1, pending: 1 });
  });

  it('shrinking maxQueueSize below the waiting count keeps the waiting work but accepts no more until it drains', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 3 });
    const head = gate('head');
    accept(pool, head.fn);
    const waiting = [gate('w1'), gate('w2'), gate('w3')];
    for (const g of waiting) accept(pool, g.fn);
    pool.resize({ maxQueueSize: 1 });
    expect(pool.status()).toMatchObject({ pending: 3, maxQueueSize: 1, saturated: true });
    expect(pool.submit(() => {})).toEqual({ ok: false, error: 'overloaded' });
    await head.finish();
    await waiting[0]!.finish();
    expect(pool.pending).toBe(1);
    expect(pool.submit(() => {})).toEqual({ ok: false, error: 'overloaded' });
    await waiting[1]!.finish();
    expect(pool.pending).toBe(0);
    expect(pool.submit(() => {}).ok).toBe(true);
    expect(waiting[2]!.started).toBe(true);
  });

  it.each([
    ['maxConcurrency 0', { maxConcurrency: 0 }, RangeError, 'maxConcurrency'],
    ['maxConcurrency 2.5', { maxConcurrency: 2.5 }, TypeError, 'maxConcurrency'],
    ['maxConcurrency NaN', { maxConcurrency: Number.NaN }, TypeError, 'maxConcurrency'],
    ['maxConcurrency string', { maxConcurrency: '8' }, TypeError, 'maxConcurrency'],
    ['maxQueueSize -1', { maxQueueSize: -1 }, RangeError, 'maxQueueSize'],
    ['maxQueueSize null', { maxQueueSize: null }, TypeError, 'maxQueueSize'],
    ['a valid maxConcurrency with an invalid maxQueueSize', { maxConcurrency: 8, maxQueueSize: -5 }, RangeError, 'maxQueueSize'],
    ['lowWaterMark above the capacity', { lowWaterMark: 99 }, RangeError, 'lowWaterMark'],
    ['a valid growth with an invalid lowWaterMark', { maxConcurrency: 8, maxQueueSize: 8, lowWaterMark: 99 }, RangeError, 'lowWaterMark'],
    ['lowWaterMark fractional', { lowWaterMark: 0.5 }, TypeError, 'lowWaterMark'],
  ])('%s throws and leaves the pool unchanged', async (_label, options, errorClass, option) => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 3 });
    const head = gate('head');
    accept(pool, head.fn);
    const queued = gate('queued');
    accept(pool, queued.fn);
    const before = pool.status();
    const error = catchError(() => pool.resize(options as never));
    expect(error).toBeInstanceOf(errorClass);
    expect(error.message).toContain(`"${option}"`);
    expect(pool.status()).toEqual(before);
    expect(queued.started).toBe(false);
    expect(pool.freeCapacity).toBe(2);
    // The limits still in force are the old ones.
    accept(pool, () => {});
    accept(pool, () => {});
    expect(pool.submit(() => {})).toEqual({ ok: false, error: 'overloaded' });
    await head.finish();
    expect(pool.active).toBe(1);
  });

  it('a rejected lowWaterMark does not pin the low-water mark: later resizes still use the default half of the capacity', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    expect(() => pool.resize({ lowWaterMark: 5 })).toThrow(RangeError);
    pool.resize({ maxConcurrency: 5, maxQueueSize: 5 }); // capacity 10 → default low-water mark 5
    const available: number[] = [];
    pool.on('available', (s) => available.push(s.active + s.pending));
    const gates = Array.from({ length: 10 }, () => gate());
    for (const g of gates) accept(pool, g.fn);
    expect(pool.saturated).toBe(true);
    for (const g of gates.slice(0, 5)) await g.finish();
    expect(available).toEqual([5]);
  });

  it('lowWaterMark can be changed, and an explicit one is kept across later resizes', async () => {
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 2 });
    pool.resize({ lowWaterMark: 3 });
    pool.resize({ maxQueueSize: 6 }); // capacity 8; the explicit 3 stays (default would be 4)
    const available: number[] = [];
    pool.on('available', (s) => available.push(s.active + s.pending));
    const gates = Array.from({ length: 8 }, () => gate());
    for (const g of gates) accept(pool, g.fn);
    expect(pool.saturated).toBe(true);
    for (const g of gates.slice(0, 4)) await g.finish();
    expect(available).toEqual([]);
    await gates[4]!.finish();
    expect(available).toEqual([3]);
  });

  it('without an explicit lowWaterMark, the default follows the new capacity', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    pool.resize({ maxConcurrency: 4, maxQueueSize: 4 }); // capacity 8 → 4
    const available: number[] = [];
    pool.on('available', (s) => available.push(s.active + s.pending));
    const gates = Array.from({ length: 8 }, () => gate());
    for (const g of gates) accept(pool, g.fn);
    for (const g of gates.slice(0, 3)) await g.finish();
    expect(available).toEqual([]);
    await gates[3]!.finish();
    expect(available).toEqual([4]);
  });

  it('a shrink that fills the pool emits saturated; a growth that leaves it at or below the low-water mark emits available', () => {
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 2 });
    const events: string[] = [];
    pool.on('saturated', () => events.push('saturated'));
    pool.on('available', () => events.push('available'));
    accept(pool, gate().fn);
    accept(pool, gate().fn);
    expect(events).toEqual([]);
    pool.resize({ maxQueueSize: 0 });
    expect(events).toEqual(['saturated']);
    expect(pool.saturated).toBe(true);
    pool.resize({ maxConcurrency: 4, maxQueueSize: 4 }); // capacity 8, low-water mark 4, used 2
    expect(events).toEqual(['saturated', 'available']);
    expect(pool.saturated).toBe(false);
  });
});

// ---------------------------------------------------------------------------------------------

describe('close', () => {
  it('on an idle pool resolves drained at once and stops accepting', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    await expect(pool.close()).resolves.toEqual({ drained: true, cancelled: 0, stillRunning: 0 });
    expect(pool.closed).toBe(true);
    expect(pool.submit(() => {})).toEqual({ ok: false, error: 'closed' });
  });

  it('stops accepting at once, before the close promise settles', () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    accept(pool, gate().fn);
    void pool.close();
    expect(pool.status().closed).toBe(true);
    expect(pool.submit(() => {})).toEqual({ ok: false, error: 'closed' });
  });

  it('with drain (the default) waits for running and queued work, which still runs', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 2 });
    const log: string[] = [];
    const gates = ['a', 'b', 'c'].map((label) => gate(label, log));
    const tasks = gates.map((g) => accept(pool, g.fn));
    const closing = track(pool.close());
    await flush();
    expect(closing.settled).toBe(false);
    await gates[0]!.finish();
    await gates[1]!.finish();
    expect(closing.settled).toBe(false);
    await gates[2]!.finish();
    expect(closing.value).toEqual({ drained: true, cancelled: 0, stillRunning: 0 });
    expect(log).toEqual(['a', 'b', 'c']);
    await expect(Promise.all(tasks)).resolves.toEqual(['a', 'b', 'c']);
    expect(gates.every((g) => !g.signal!.aborted)).toBe(true);
  });

  it('with drain and timeoutMs: when it passes, cancels queued work (PoolClosedError) and signals running work', async () => {
    const pool = new WorkerPool({ maxConcurrency: 3, maxQueueSize: 3 });
    const plain = gate('plain');
    const withSignal = gate('with signal');
    const awaited = gate('awaited');
    accept(pool, plain.fn);
    accept(pool, withSignal.fn, new AbortController().signal);
    const awaitedAnswer = track(pool.submitAwait(awaited.fn, 60_000));
    let queuedRan = false;
    const queuedTasks = [
      accept(pool, () => {
        queuedRan = true;
      }),
      accept(
        pool,
        () => {
          queuedRan = true;
        },
        new AbortController().signal,
      ),
    ];
    const queuedAwait = pool.submitAwait(() => {
      queuedRan = true;
    }, 60_000);

    const closing = track(pool.close({ timeoutMs: 100 }));
    await advance(99);
    expect(closing.settled).toBe(false);
    expect(pool.pending).toBe(3);
    expect(plain.signal!.aborted).toBe(false);

    await advance(1);
    expect(closing.value).toEqual({ drained: false, cancelled: 3, stillRunning: 3 });
    expect(pool.status()).toMatchObject({ pending: 0, active: 3, cancelled: 3 });
    for (const task of queuedTasks) await expect(task).rejects.toBeInstanceOf(PoolClosedError);
    await expect(queuedAwait).resolves.toEqual({ ok: false, error: 'closed' });
    for (const g of [plain, withSignal, awaited]) {
      expect(g.signal!.aborted).toBe(true);
      expect(g.signal!.reason).toBeInstanceOf(PoolClosedError);
    }
    // Running work still settles on its own terms and frees its slot.
    await plain.finish();
    await withSignal.fail(new Error('aborted'));
    await awaited.finish('awaited');
    expect(awaitedAnswer.value).toEqual({ ok: true, value: 'awaited' });
    expect(queuedRan).toBe(false);
    expect(pool.status()).toMatchObject({ active: 0, pending: 0, completed: 2, failed: 1 });
  });

  it('with drain and a timeoutMs that work beats: drained, and the timer is cleared', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const g = gate();
    accept(pool, g.fn);
    const closing = track(pool.close({ timeoutMs: 1000 }));
    await g.finish();
    expect(closing.value).toEqual({ drained: true, cancelled: 0, stillRunning: 0 });
    expect(vi.getTimerCount()).toBe(0);
    expect(g.signal!.aborted).toBe(false);
  });

  it('without drain: cancels queued and signals running at once, then waits for running work to settle', async () => {
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 2 });
    const a = gate('a');
    const b = gate('b');
    accept(pool, a.fn);
    accept(pool, b.fn);
    let queuedRan = false;
    const queued = [
      accept(pool, () => {
        queuedRan = true;
      }),
      accept(pool, () => {
        queuedRan = true;
      }),
    ];
    const closing = track(pool.close({ drain: false }));
    // At once: queue emptied, running signalled.
    expect(pool.status()).toMatchObject({ pending: 0, active: 2, cancelled: 2 });
    expect(a.signal!.aborted).toBe(true);
    expect(a.signal!.reason).toBeInstanceOf(PoolClosedError);
    expect(b.signal!.aborted).toBe(true);
    for (const task of queued) await expect(task).rejects.toBeInstanceOf(PoolClosedError);
    await advance(1e6);
    expect(closing.settled).toBe(false);
    await a.finish();
    expect(closing.settled).toBe(false);
    await b.fail(new Error('stopped'));
    expect(closing.value).toEqual({ drained: false, cancelled: 2, stillRunning: 0 });
    expect(queuedRan).toBe(false);
  });

  it('without drain and with timeoutMs: reports the tasks still running when the wait ends', async () => {
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 0 });
    const stubborn = gate('ignores its signal');
    const polite = gate('stops');
    accept(pool, stubborn.fn);
    accept(pool, polite.fn);
    const closing = track(pool.close({ drain: false, timeoutMs: 50 }));
    await polite.fail(polite.signal!.reason);
    await advance(49);
    expect(closing.settled).toBe(false);
    await advance(1);
    expect(closing.value).toEqual({ drained: false, cancelled: 0, stillRunning: 1 });
    await stubborn.finish();
    expect(pool.active).toBe(0);
  });

  it('without drain on an idle pool: drained', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    await pool.submitAwait(() => 1);
    await expect(pool.close({ drain: false })).resolves.toEqual({ drained: true, cancelled: 0, stillRunning: 0 });
  });

  it('calling close twice returns the same promise (the second call’s options are ignored)', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const g = gate();
    accept(pool, g.fn);
    const queued = gate('queued');
    accept(pool, queued.fn);
    const first = pool.close();
    const second = pool.close({ drain: false });
    expect(second).toBe(first);
    expect(queued.started).toBe(false);
    expect(g.signal!.aborted).toBe(false);
    expect(pool.pending).toBe(1);
    await g.finish();
    await queued.finish();
    await expect(first).resolves.toEqual({ drained: true, cancelled: 0, stillRunning: 0 });
    expect(pool.close()).toBe(first);
  });

  it('a closed pool wakes whenAvailable waiters', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    const g = gate();
    accept(pool, g.fn);
    const waiting = track(pool.whenAvailable());
    await flush();
    expect(waiting.settled).toBe(false);
    const closing = pool.close();
    await flush();
    expect(waiting).toEqual({ settled: true, value: undefined });
    await g.finish();
    await closing;
  });

  it('await using closes (and drains) the pool when the block ends', async () => {
    let inside: WorkerPool | undefined;
    const g = gate();
    const log: string[] = [];
    const scope = track(
      (async () => {
        await using pool = new WorkerPool({ name: 'scoped', maxConcurrency: 1, maxQueueSize: 1 });
        inside = pool;
        accept(pool, g.fn);
        accept(pool, () => log.push('queued ran'));
        log.push('block end');
      })(),
    );
    await flush();
    expect(log).toEqual(['block end']);
    expect(inside!.closed).toBe(true);
    expect(inside!.submit(() => {})).toEqual({ ok: false, error: 'closed' });
    expect(scope.settled).toBe(false); // disposal waits for the work
    await g.finish();
    expect(scope).toEqual({ settled: true, value: undefined });
    expect(log).toEqual(['block end', 'queued ran']);
    expect(inside!.status()).toMatchObject({ active: 0, pending: 0, completed: 2 });
  });

  it('await using in a plain block: the pool is closed and drained right after the block', async () => {
    const log: string[] = [];
    let outer: WorkerPool | undefined;
    {
      await using pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
      outer = pool;
      accept(pool, async () => {
        await Promise.resolve();
        log.push('first');
      });
      accept(pool, () => log.push('second'));
      expect(pool.closed).toBe(false);
      expect(log).toEqual([]);
    }
    expect(outer.closed).toBe(true);
    expect(log).toEqual(['first', 'second']);
    expect(outer.status()).toMatchObject({ active: 0, pending: 0, completed: 2 });
  });

  it('await using also closes the pool when the block throws', async () => {
    let inside: WorkerPool | undefined;
    const boom = new Error('block failed');
    await expect(
      (async () => {
        await using pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
        inside = pool;
        throw boom;
      })(),
    ).rejects.toBe(boom);
    expect(inside!.closed).toBe(true);
  });

  it('Symbol.asyncDispose is the same close', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    await pool[Symbol.asyncDispose]();
    expect(pool.closed).toBe(true);
    await expect(pool.close()).resolves.toEqual({ drained: true, cancelled: 0, stillRunning: 0 });
  });
});

// ---------------------------------------------------------------------------------------------

describe('events', () => {
  it('on() returns an unsubscribe function', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    const seen: string[] = [];
    const off = pool.on('idle', () => seen.push('idle'));
    accept(pool, () => {});
    await flush();
    expect(seen).toEqual(['idle']);
    off();
    accept(pool, () => {});
    await flush();
    expect(seen).toEqual(['idle']);
    expect(pool.status().completed).toBe(2);
  });

  it('saturated fires once when no room is left (the next submit would be overloaded)', () => {
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 1 });
    const payloads: PoolStatus[] = [];
    pool.on('saturated', (s) => payloads.push(s));
    accept(pool, gate().fn);
    accept(pool, gate().fn);
    expect(payloads).toEqual([]);
    accept(pool, gate().fn);
    expect(payloads).toHaveLength(1);
    expect(payloads[0]).toMatchObject({ active: 2, pending: 1, saturated: true });
    expect(pool.submit(() => {}).ok).toBe(false);
    expect(pool.submit(() => {}).ok).toBe(false);
    expect(payloads).toHaveLength(1);
  });

  it('available fires once used places fall to the default low-water mark floor(capacity / 2)', async () => {
    const pool = new WorkerPool({ maxConcurrency: 3, maxQueueSize: 4 }); // capacity 7 → 3
    const events: string[] = [];
    const payloads: PoolStatus[] = [];
    pool.on('saturated', () => events.push('saturated'));
    pool.on('available', (s) => {
      events.push('available');
      payloads.push(s);
    });
    const gates = Array.from({ length: 7 }, () => gate());
    for (const g of gates) accept(pool, g.fn);
    expect(events).toEqual(['saturated']);
    for (const g of gates.slice(0, 3)) await g.finish();
    expect(pool.active + pool.pending).toBe(4);
    expect(pool.saturated).toBe(true);
    expect(events).toEqual(['saturated']);
    await gates[3]!.finish();
    expect(events).toEqual(['saturated', 'available']);
    expect(payloads[0]).toMatchObject({ active: 3, pending: 0, saturated: false });
    expect(pool.saturated).toBe(false);
    for (const g of gates.slice(4)) await g.finish();
    expect(events).toEqual(['saturated', 'available']);
  });

  it('does not flap: hovering near the top gives one saturated and no available/saturated ping-pong', async () => {
    const pool = new WorkerPool({ maxConcurrency: 4, maxQueueSize: 4 }); // capacity 8, low-water mark 4
    const events: string[] = [];
    pool.on('saturated', () => events.push('saturated'));
    pool.on('available', () => events.push('available'));
    const live: Gate[] = [];
    const fill = () => {
      while (pool.freeCapacity > 0) {
        const g = gate();
        live.push(g);
        accept(pool, g.fn);
      }
    };
    fill();
    expect(events).toEqual(['saturated']);
    // 50 rounds of: one or two running tasks finish (used 6 or 7, above the low-water mark), then refill to the top.
    for (let round = 0; round < 50; round++) {
      const finishing = live.filter((g) => g.started).slice(0, round % 2 === 0 ? 2 : 1);
      for (const g of finishing) {
        await g.finish();
        live.splice(live.indexOf(g), 1);
      }
      expect(pool.active + pool.pending).toBeGreaterThan(4);
      fill();
      expect(pool.freeCapacity).toBe(0);
    }
    expect(events).toEqual(['saturated']);
    expect(pool.status().rejected).toBe(0);
  });

  it('a custom lowWaterMark sets where available fires', async () => {
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 2, lowWaterMark: 3 });
    const events: number[] = [];
    pool.on('available', (s) => events.push(s.active + s.pending));
    const gates = Array.from({ length: 4 }, () => gate());
    for (const g of gates) accept(pool, g.fn);
    await gates[0]!.finish();
    expect(events).toEqual([3]);
  });

  it('lowWaterMark 0 waits until everything is done', async () => {
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 0, lowWaterMark: 0 });
    const events: string[] = [];
    pool.on('available', () => events.push('available'));
    pool.on('idle', () => events.push('idle'));
    const a = gate();
    const b = gate();
    accept(pool, a.fn);
    accept(pool, b.fn);
    await a.finish();
    expect(events).toEqual([]);
    await b.finish();
    expect(events).toEqual(['available', 'idle']);
  });

  it('idle fires when nothing runs or waits, and not before', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 2 });
    const idle: PoolStatus[] = [];
    pool.on('idle', (s) => idle.push(s));
    const gates = [gate(), gate(), gate()];
    for (const g of gates) accept(pool, g.fn);
    await gates[0]!.finish();
    await gates[1]!.finish();
    expect(idle).toEqual([]);
    await gates[2]!.finish();
    expect(idle).toHaveLength(1);
    expect(idle[0]).toMatchObject({ active: 0, pending: 0, completed: 3 });
  });

  it('removing queued work (abort, timeout) does not fire idle while a task runs; idle comes when it ends', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 2 });
    let idle = 0;
    pool.on('idle', () => idle++);
    const head = gate();
    accept(pool, head.fn);
    const controller = new AbortController();
    accept(pool, () => {}, controller.signal).catch(() => {});
    void pool.submitAwait(() => {}, 10);
    controller.abort();
    await advance(10);
    expect(pool.pending).toBe(0);
    expect(idle).toBe(0);
    await head.finish();
    expect(idle).toBe(1);
  });

  it('a listener that throws breaks neither the pool nor the other listeners', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const seen: string[] = [];
    for (const event of ['saturated', 'available', 'idle'] as const) {
      pool.on(event, () => {
        throw new Error(`bad ${event} listener`);
      });
      pool.on(event, () => seen.push(event));
    }
    const a = gate();
    const r1 = pool.submit(a.fn);
    const r2 = pool.submit(() => 'second');
    expect(r1.ok && r2.ok).toBe(true);
    expect(pool.submit(() => {})).toEqual({ ok: false, error: 'overloaded' });
    await a.finish();
    if (r2.ok) await expect(r2.task).resolves.toBe('second');
    await flush();
    expect(seen).toEqual(['saturated', 'available', 'idle']);
    expect(pool.status()).toMatchObject({ active: 0, pending: 0, completed: 2, failed: 0 });
    await expect(pool.submitAwait(() => 'still works')).resolves.toEqual({ ok: true, value: 'still works' });
    // The errors are reported, not swallowed silently.
    const messages = warnings.mock.calls.map((call) => String(call[0]));
    expect(messages.some((m) => m.includes('bad saturated listener'))).toBe(true);
    expect(messages.some((m) => m.includes('bad idle listener'))).toBe(true);
  });

  it('a throwing idle listener does not stop close from resolving', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    pool.on('idle', () => {
      throw new Error('bad');
    });
    const g = gate();
    accept(pool, g.fn);
    const closing = track(pool.close());
    await g.finish();
    expect(closing.value).toEqual({ drained: true, cancelled: 0, stillRunning: 0 });
  });
});

// ---------------------------------------------------------------------------------------------

describe('whenAvailable', () => {
  it('resolves at once when the pool is not saturated', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    accept(pool, gate().fn);
    const waiting = track(pool.whenAvailable());
    await flush();
    expect(waiting).toEqual({ settled: true, value: undefined });
  });

  it('waits while saturated and resolves on available (not before the low-water mark)', async () => {
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 2 }); // low-water mark 2
    const gates = Array.from({ length: 4 }, () => gate());
    for (const g of gates) accept(pool, g.fn);
    const waiting = track(pool.whenAvailable());
    await gates[0]!.finish();
    expect(pool.freeCapacity).toBe(1);
    expect(waiting.settled).toBe(false);
    await gates[1]!.finish();
    expect(waiting).toEqual({ settled: true, value: undefined });
  });

  it('rejects with the reason when the signal aborts, and stops listening', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    const g = gate();
    accept(pool, g.fn);
    const controller = new AbortController();
    const before = pool.listenerCount('available');
    const waiting = track(pool.whenAvailable(controller.signal));
    expect(pool.listenerCount('available')).toBe(before + 1);
    const reason = new Error('no longer waiting');
    controller.abort(reason);
    await flush();
    expect(waiting).toEqual({ settled: true, error: reason });
    expect(pool.listenerCount('available')).toBe(before);
    expect(getEventListeners(controller.signal, 'abort').length).toBe(0);
  });

  it('rejects at once for a signal already aborted while saturated', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    accept(pool, gate().fn);
    const controller = new AbortController();
    controller.abort(new Error('already'));
    await expect(pool.whenAvailable(controller.signal)).rejects.toThrow('already');
    expect(pool.listenerCount('available')).toBe(0);
  });

  it('resolving removes the abort listener from the signal', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    const g = gate();
    accept(pool, g.fn);
    const controller = new AbortController();
    const waiting = track(pool.whenAvailable(controller.signal));
    await g.finish();
    expect(waiting.settled).toBe(true);
    expect(getEventListeners(controller.signal, 'abort').length).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------

describe('one pool shared by many submitters', () => {
  it('keeps the global bound across producers that wait for room and retry', async () => {
    const maxConcurrency = 3;
    const pool = new WorkerPool({ maxConcurrency, maxQueueSize: 4 });
    let running = 0;
    let maxRunning = 0;
    let maxQueued = 0;
    const done: string[] = [];
    const work = (id: string, ms: number) => async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      expect(pool.active).toBeLessThanOrEqual(maxConcurrency);
      await new Promise((resolve) => setTimeout(resolve, ms));
      running--;
      done.push(id);
    };
    let overloaded = 0;
    const producer = async (name: string, count: number) => {
      for (let i = 0; i < count; i++) {
        for (;;) {
          const result = pool.submit(work(`${name}-${i}`, 1 + ((i * 7 + name.length) % 5)));
          maxQueued = Math.max(maxQueued, pool.pending);
          if (result.ok) break;
          overloaded++;
          await pool.whenAvailable();
          // A few rounds of waiting let other producers race for the same room.
          await Promise.resolve();
        }
      }
    };
    const producers = Promise.all(['alpha', 'beta', 'gamma', 'delta', 'epsilon'].map((name) => producer(name, 40)));
    for (let i = 0; i < 1000 && done.length < 200; i++) await advance(1);
    await producers;
    await pool.close();
    expect(done).toHaveLength(200);
    expect(new Set(done).size).toBe(200);
    expect(maxRunning).toBe(maxConcurrency);
    expect(maxQueued).toBeLessThanOrEqual(4);
    expect(overloaded).toBeGreaterThan(0);
    expect(pool.status()).toMatchObject({ completed: 200, rejected: overloaded, active: 0, pending: 0 });
  });
});

describe('option errors leave the pool usable', () => {
  it('a refused close timeout does not half-close the pool', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    await expect(pool.close({ timeoutMs: -1 })).rejects.toThrow(/timeoutMs.*-1/);
    expect(pool.closed).toBe(false);
    expect(pool.submit(async () => 1).ok).toBe(true);
    await expect(pool.close()).resolves.toEqual({ drained: true, cancelled: 0, stillRunning: 0 });
  });

  it('resize() without an object names what it needs', () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    expect(() => pool.resize(undefined as never)).toThrow(/resize\(\) needs an object/);
  });
});

describe('the runtime job path (pool[RUN_JOB])', () => {
  class TestJob implements PoolJob {
    state: PoolJob['state'] = 'new';
    queuePrev: PoolJob | undefined = undefined;
    queueNext: PoolJob | undefined = undefined;
    cancelledWith: unknown = undefined;
    finish: FinishJob | undefined;
    constructor(
      readonly id: number,
      readonly log: number[],
      readonly endAtOnce: boolean,
    ) {}
    start(_signal: AbortSignal, finish: FinishJob): void {
      this.log.push(this.id);
      this.finish = finish;
      if (this.endAtOnce) finish(this, false);
    }
    cancel(reason: unknown): void {
      this.cancelledWith = reason;
    }
  }

  it('jobs that end inside start() are started by the one start loop, in order, without recursion', () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 20_000 });
    const log: number[] = [];
    const blocker = new TestJob(-1, log, false);
    expect(pool[RUN_JOB](blocker)).toBe('started');
    // 20,000 queued jobs that each end synchronously: a recursive start loop would overflow the stack.
    for (let i = 0; i < 20_000; i++) expect(pool[RUN_JOB](new TestJob(i, log, true))).toBe('queued');
    expect(pool[RUN_JOB](new TestJob(99_999, log, true))).toBe('overloaded');
    blocker.finish!(blocker, false);
    expect(log).toEqual([-1, ...Array.from({ length: 20_000 }, (_, i) => i)]);
    expect(pool.status()).toMatchObject({ active: 0, pending: 0, completed: 20_001, rejected: 1 });
    // A second finish of the same job is ignored: the books stay right.
    blocker.finish!(blocker, true);
    expect(pool.status()).toMatchObject({ active: 0, completed: 20_001, failed: 0 });
  });

  it('a close without drain cancels queued jobs through cancel(); a closed pool answers closed', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 2 });
    const log: number[] = [];
    const running = new TestJob(0, log, false);
    const queued = new TestJob(1, log, false);
    pool[RUN_JOB](running);
    pool[RUN_JOB](queued);
    const closing = pool.close({ drain: false });
    expect(queued.cancelledWith).toBeInstanceOf(PoolClosedError);
    expect(pool[RUN_JOB](new TestJob(2, log, false))).toBe('closed');
    running.finish!(running, false);
    await expect(closing).resolves.toMatchObject({ cancelled: 1, stillRunning: 0 });
    expect(log).toEqual([0]);
  });
});

describe('a saturated listener acting on the submit that saturated the pool', () => {
  it('closing the pool then, for a submitAwait: it answers closed and leaves no timer behind', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const first = deferred();
    pool.submit(() => first.promise);
    pool.on('saturated', () => void pool.close({ drain: false }));
    let ran = false;
    const answer = pool.submitAwait(() => {
      ran = true;
    }, 1000);
    expect(vi.getTimerCount()).toBe(0);
    await expect(answer).resolves.toEqual({ ok: false, error: 'closed' });
    expect(ran).toBe(false);
    expect(pool.status()).toMatchObject({ cancelled: 1, timedOut: 0 });
    first.resolve();
  });

  it('closing the pool then: the task is there and rejects with PoolClosedError', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const first = deferred();
    pool.submit(() => first.promise);
    pool.on('saturated', () => void pool.close({ drain: false }));
    const second = pool.submit(async () => 'ran');
    expect(second.ok).toBe(true);
    if (!second.ok) return;
    await expect(second.task).rejects.toBeInstanceOf(PoolClosedError);
    first.resolve();
  });

  it('growing the pool then: the task starts at once and resolves with its value', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 1 });
    const first = deferred();
    pool.submit(() => first.promise);
    pool.on('saturated', () => void pool.resize({ maxConcurrency: 2 }));
    const second = pool.submit(async () => 'ran');
    expect(pool.status()).toMatchObject({ active: 2, pending: 0 });
    expect(second.ok && (await second.task)).toBe('ran');
    first.resolve();
  });
});
