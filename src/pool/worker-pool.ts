import { TypedEmitter } from '../emitter.js';
import { PoolClosedError, TaskTimeoutError } from '../errors.js';
import { integerOption, numberOption } from '../validate.js';
import { AdaptiveLimit, resolveAdaptive } from './adaptive.js';
import { HOLD_PLACE, RELEASE_PLACES, RUN_JOB, type FinishJob, type PoolJob, type RunJobResult } from './job.js';
import { IntrusiveQueue } from './linked-queue.js';
import { PoolDisplacedError, PoolShare } from './share.js';
import type {
  CloseOptions,
  CloseResult,
  PoolEvents,
  PoolStatus,
  PoolTask,
  ResizeOptions,
  SubmitAwaitResult,
  SubmitOptions,
  SubmitResult,
  WorkerPoolOptions,
} from './types.js';

const noop = () => {};
const OWNER = 'WorkerPool';

/** The executor shared by every promise the pool settles itself (no closure per promise): it hands out `resolve`. */
let handedOut: ((value: unknown) => void) | undefined;
const keepResolve = (resolve: (value: unknown) => void) => {
  handedOut = resolve;
};

/** A new pending promise; take its `resolve` at once with takeResolve() (no reject kept, no object per promise). */
function pending(): Promise<unknown> {
  return new Promise(keepResolve);
}

function takeResolve(): (value: unknown) => void {
  const resolve = handedOut!;
  handedOut = undefined;
  return resolve;
}

/** Rejected with `reason`, already handled: what a cancelled task's promise adopts. */
function rejection(reason: unknown): Promise<never> {
  const rejected = Promise.reject(reason);
  rejected.catch(noop);
  return rejected;
}

/**
 * submit()'s job: a function, and the promise of its outcome. A waiting one is this object and
 * its promise with `resolve`, nothing more: the queue links are its own fields, the promise's
 * executor is shared, a rejection is adopted (no `reject` kept), and the promise is marked
 * handled only when it is about to reject.
 */
class TaskJob implements PoolJob {
  state: PoolJob['state'] = 'new';
  queuePrev: PoolJob | undefined = undefined;
  queueNext: PoolJob | undefined = undefined;
  /** fn's own promise once it started at once; while it waits in the queue, the caller's promise settled through #resolve. */
  task: Promise<unknown> | undefined = undefined;
  #resolve: ((value: unknown) => void) | undefined = undefined;

  constructor(readonly fn: PoolTask<unknown>) {}

  queued(): void {
    this.task = pending();
    this.#resolve = takeResolve();
  }

  start(signal: AbortSignal, finish: FinishJob): void {
    let result: Promise<unknown>;
    try {
      result = Promise.resolve(this.fn(this.signal(signal)));
    } catch (error) {
      result = Promise.reject(error);
    }
    // Registered first, so the slot is free before any caller's continuation runs.
    result.then(
      (value) => {
        this.detach();
        finish(this, false);
        this.fulfilled(value);
      },
      (error: unknown) => {
        this.detach();
        finish(this, true);
        this.rejected(error, result);
      },
    );
    this.task ??= result;
  }

  cancel(reason: unknown): void {
    this.detach();
    this.rejected(reason, undefined);
  }

  /** fn fulfilled: a queued task's promise resolves with its value. */
  fulfilled(value: unknown): void {
    this.#resolve?.(value);
  }

  /**
   * fn rejected (`result` is its rejected promise) or the job was cancelled: a queued task's
   * promise adopts the rejection. Nobody has to await a task, so it is marked handled; an
   * awaiting caller still sees the rejection.
   */
  rejected(reason: unknown, result: Promise<unknown> | undefined): void {
    if (!this.#resolve) return;
    this.task!.catch(noop);
    this.#resolve(result ?? rejection(reason));
  }

  /** The signal `fn` receives: the pool's lifetime signal, unless the job has its own. */
  signal(poolSignal: AbortSignal): AbortSignal {
    return poolSignal;
  }

  /** Ends whatever ties the job to a signal; nothing for a job without one of its own. */
  detach(): void {}
}

/** What a SignalJob needs of its pool. */
interface SignalJobOwner {
  /** The running jobs with a signal of their own: a non-draining close aborts them one by one (no listener per task on the pool's lifetime signal). */
  readonly linked: Set<SignalJob>;
  cancelQueued(job: PoolJob, reason: unknown): void;
  /** Counts a submitAwait that timed out. */
  timedOut(): void;
}

/**
 * A task that can be cut short on its own (a caller's signal, submitAwait's timeout). Its
 * AbortController is made when it starts, not while it waits; it listens to the caller's
 * signal itself (`handleEvent`), with no closure per task.
 */
class SignalJob extends TaskJob {
  controller: AbortController | undefined = undefined;

  constructor(
    fn: PoolTask<unknown>,
    readonly owner: SignalJobOwner,
    /** The caller's signal, if any; listened to from acceptance until the job ends. */
    readonly callerSignal: AbortSignal | undefined,
  ) {
    super(fn);
  }

  override signal(): AbortSignal {
    this.controller = new AbortController();
    this.owner.linked.add(this);
    return this.controller.signal;
  }

  override detach(): void {
    this.owner.linked.delete(this);
    this.callerSignal?.removeEventListener('abort', this);
  }

  /** Aborts it now: a queued job leaves the queue and never runs, a running one is signalled. */
  abort(reason: unknown): void {
    if (this.state === 'queued') this.owner.cancelQueued(this, reason);
    else this.controller?.abort(reason);
  }

  /** Listens to the caller's signal once accepted; a signal that aborted meanwhile (fn aborted it, or an event listener did) acts at once. */
  listen(): void {
    const signal = this.callerSignal!;
    if (this.state === 'done') return;
    if (signal.aborted) return this.abort(signal.reason);
    signal.addEventListener('abort', this, { once: true });
  }

  /** The caller's signal aborted. */
  handleEvent(): void {
    this.abort(this.callerSignal!.reason);
  }
}

/** Ends an AwaitJob's wait (a timer's callback shared by all, the job passed as its argument). */
function awaitTimedOut(job: AwaitJob, timeoutMs: number): void {
  job.timedOut(timeoutMs);
}

/**
 * submitAwait()'s job: its promise is the caller's answer, settled once by whichever comes
 * first, fn's outcome or the timeout (no race, no async function, no closure per call).
 */
class AwaitJob extends SignalJob {
  readonly answer: Promise<SubmitAwaitResult<unknown>>;
  #answer: ((result: SubmitAwaitResult<unknown>) => void) | undefined;
  #timer: NodeJS.Timeout | undefined = undefined;

  constructor(fn: PoolTask<unknown>, owner: SignalJobOwner) {
    super(fn, owner, undefined);
    this.answer = pending() as Promise<SubmitAwaitResult<unknown>>;
    this.#answer = takeResolve();
  }

  /** Its promise exists from the start: nothing to make when it waits. */
  override queued(): void {}

  /** Waits at most `timeoutMs` (Infinity: no timer) from now. */
  wait(timeoutMs: number): void {
    if (timeoutMs !== Infinity && this.#answer) this.#timer = setTimeout(awaitTimedOut, timeoutMs, this, timeoutMs);
  }

  override fulfilled(value: unknown): void {
    this.#end({ ok: true, value });
  }

  override rejected(cause: unknown): void {
    this.#end(cause instanceof PoolClosedError ? { ok: false, error: 'closed' } : { ok: false, error: 'failed', cause });
  }

  /** A queued task is removed (it never runs); a running one is signalled and keeps its slot until it really settles. */
  timedOut(timeoutMs: number): void {
    if (!this.#answer) return;
    this.owner.timedOut();
    this.#end({ ok: false, error: 'timeout' });
    this.abort(new TaskTimeoutError(timeoutMs));
  }

  #end(result: SubmitAwaitResult<unknown>): void {
    const answer = this.#answer;
    if (!answer) return;
    this.#answer = undefined;
    clearTimeout(this.#timer);
    answer(result);
  }
}

/**
 * A bounded pool: at most `maxConcurrency` tasks run, at most `maxQueueSize` wait, and
 * anything beyond is answered `overloaded` instead of growing memory. The TypeScript port
 * of the Elixir WorkerPool (submit / submit_await / status) with resize, close and events.
 */
export class WorkerPool extends TypedEmitter<PoolEvents> implements AsyncDisposable {
  readonly name: string | undefined;
  #maxConcurrency: number;
  /** How many may run now: maxConcurrency, or the adaptive limit. */
  #limit: number;
  readonly #adaptive: AdaptiveLimit | undefined;
  #maxQueueSize: number;
  /** In effect: the value given (clamped below the current capacity), or half the capacity. */
  #lowWaterMark: number;
  /** The value given, when one was (validated against the largest capacity). */
  #lowWaterMarkGiven: number | undefined;
  #lowWaterMarkSet: boolean;
  #active = 0;
  /** Places held for messages gathering into batches (and by batch jobs waiting for a slot): counted like waiting jobs. */
  #held = 0;
  /** The default share's waiting jobs (every job without a share): with no shares in use, the pool's only queue. */
  #queue = new IntrusiveQueue<PoolJob>();
  /** Jobs waiting in the queues of shares (fair sharing); 0 when none is in use, and then nothing below differs from a plain FIFO. */
  #sharedPending = 0;
  /** Jobs of shares running now (the default share's: #active − this). */
  #sharedActive = 0;
  /** Shares with jobs waiting, in the order they became backlogged. */
  readonly #backlogged: PoolShare[] = [];
  /** Where the next tie-break among equally served shares starts (round robin). */
  #turn = 0;
  #displaced = 0;
  /** True while #startQueued starts queued jobs: a job finishing inside start() leaves the starting to that loop. */
  #startingQueued = false;
  #saturated = false;
  #busy = false;
  #closed = false;
  #closing: Promise<CloseResult> | undefined;
  /** Shared by every task without a controller of its own; aborted by a non-draining close. */
  #lifetime = new AbortController();
  /** How a SignalJob reaches its pool: the running ones are in `linked`, a non-draining close aborts them one by one. */
  readonly #signalJobs: SignalJobOwner = {
    linked: new Set(),
    cancelQueued: (job, reason) => this.#cancelQueued(job, reason),
    timedOut: () => void this.#timedOut++,
  };
  #completed = 0;
  #failed = 0;
  #rejected = 0;
  #timedOut = 0;
  #cancelled = 0;

  constructor(options: WorkerPoolOptions) {
    super();
    if (options === null || typeof options !== 'object') {
      throw new TypeError(`${OWNER}: options must be an object with maxConcurrency and maxQueueSize, got ${String(options)}`);
    }
    if (options.name !== undefined && typeof options.name !== 'string') {
      throw new TypeError(`${OWNER}: option "name" must be a string, got ${typeof options.name}`);
    }
    this.name = options.name;
    const owner = this.#owner();
    this.#maxConcurrency = integerOption(owner, 'maxConcurrency', options.maxConcurrency, { min: 1 });
    this.#maxQueueSize = integerOption(owner, 'maxQueueSize', options.maxQueueSize, { min: 0 });
    this.#adaptive = options.adaptive === undefined ? undefined : new AdaptiveLimit(resolveAdaptive(owner, options.adaptive, this.#maxConcurrency), this.#maxConcurrency);
    this.#limit = this.#adaptive?.limit ?? this.#maxConcurrency;
    this.#lowWaterMarkSet = options.lowWaterMark !== undefined;
    this.#lowWaterMark = this.#checkLowWaterMark(options.lowWaterMark);
  }

  /** Runs `fn` in a free slot now, or queues it; answers `overloaded` when both are full. Never throws for overload. */
  submit<T>(fn: PoolTask<T>, options?: SubmitOptions): SubmitResult<T> {
    if (typeof fn !== 'function') throw new TypeError(`${this.#owner()}: submit() needs a function, got ${typeof fn}`);
    const signal = options?.signal;
    if (signal === undefined) return this.#submit(new TaskJob(fn)) as SubmitResult<T>;
    if (signal.aborted) {
      if (this.#closed) return { ok: false, error: 'closed' };
      // Accepted and removed before running: it belongs in the books like any other cancelled task.
      this.#cancelled++;
      return { ok: true, task: rejection(signal.reason) };
    }
    const job = new SignalJob(fn, this.#signalJobs, signal);
    const result = this.#submit(job);
    if (result.ok) job.listen();
    return result as SubmitResult<T>;
  }

  /**
   * Submits and waits at most `timeoutMs` for the result. On timeout a queued task is removed
   * (it never runs); a running task is signalled and keeps its slot until it really settles.
   */
  submitAwait<T>(fn: PoolTask<T>, timeoutMs = 5000): Promise<SubmitAwaitResult<T>> {
    try {
      if (typeof fn !== 'function') throw new TypeError(`${this.#owner()}: submitAwait() needs a function, got ${typeof fn}`);
      numberOption(this.#owner(), 'timeoutMs', timeoutMs === Infinity ? 0 : timeoutMs, { min: 0 });
    } catch (error) {
      return Promise.reject(error);
    }
    const job = new AwaitJob(fn, this.#signalJobs);
    const accepted = this.#accept(job);
    if (accepted === 'closed' || accepted === 'overloaded') return Promise.resolve({ ok: false, error: accepted });
    job.wait(timeoutMs);
    return job.answer as Promise<SubmitAwaitResult<T>>;
  }

  status(): PoolStatus {
    return {
      name: this.name,
      active: this.#active,
      pending: this.#queue.size + this.#sharedPending,
      held: this.#held,
      maxConcurrency: this.#maxConcurrency,
      limit: this.#limit,
      maxQueueSize: this.#maxQueueSize,
      saturated: this.#saturated,
      closed: this.#closed,
      completed: this.#completed,
      failed: this.#failed,
      rejected: this.#rejected,
      timedOut: this.#timedOut,
      cancelled: this.#cancelled,
      displaced: this.#displaced,
      ...(this.#adaptive && { adaptive: this.#adaptive.status() }),
    };
  }

  /** How many may run now: maxConcurrency, or an adaptive pool's current limit. */
  get limit(): number {
    return this.#limit;
  }

  get active(): number {
    return this.#active;
  }

  get pending(): number {
    return this.#queue.size + this.#sharedPending;
  }

  /** Places left before `overloaded`: free slots plus free queue places. */
  get freeCapacity(): number {
    return Math.max(0, this.#capacity() - this.#active - this.#queue.size - this.#sharedPending - this.#held);
  }

  get saturated(): boolean {
    return this.#saturated;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Resolves when the pool is not saturated (at once if it is not now); rejects if the signal aborts. */
  whenAvailable(signal?: AbortSignal): Promise<void> {
    if (!this.#saturated || this.#closed) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        off();
        reject(signal!.reason);
      };
      const off = this.once('available', () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      });
      if (signal) {
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
      }
    });
  }

  /** Changes the limits at runtime. Growing starts queued work at once; shrinking lets running work finish. */
  resize(options: ResizeOptions): PoolStatus {
    const owner = this.#owner();
    if (options === null || typeof options !== 'object') throw new TypeError(`${owner}: resize() needs an object with maxConcurrency, maxQueueSize or lowWaterMark, got ${String(options)}`);
    const maxConcurrency = integerOption(owner, 'maxConcurrency', options.maxConcurrency, { min: 1, fallback: this.#maxConcurrency });
    const maxQueueSize = integerOption(owner, 'maxQueueSize', options.maxQueueSize, { min: 0, fallback: this.#maxQueueSize });
    const adaptive = this.#adaptive;
    if (adaptive && maxConcurrency < adaptive.min) {
      throw new RangeError(`${owner}: option "maxConcurrency" must be >= adaptive.min (${adaptive.min}) on an adaptive pool, got ${maxConcurrency}`);
    }
    const previous = [this.#maxConcurrency, this.#maxQueueSize] as const;
    this.#maxConcurrency = maxConcurrency;
    this.#maxQueueSize = maxQueueSize;
    try {
      this.#lowWaterMark = this.#checkLowWaterMark(options.lowWaterMark ?? (this.#lowWaterMarkSet ? this.#lowWaterMarkGiven : undefined));
    } catch (error) {
      [this.#maxConcurrency, this.#maxQueueSize] = previous;
      throw error;
    }
    // Only once the value is accepted: a refused lowWaterMark must not pin the default.
    if (options.lowWaterMark !== undefined) this.#lowWaterMarkSet = true;
    if (adaptive) {
      const from = this.#limit;
      adaptive.setMax(maxConcurrency);
      this.#setLimit(from, adaptive.limit);
    } else {
      this.#limit = maxConcurrency;
      this.#lowWaterMark = this.#effectiveLowWaterMark();
    }
    this.#startQueued();
    this.#checkLevels();
    return this.status();
  }

  /**
   * Stops accepting work. With `drain` (default) waits for running and queued work; after
   * `timeoutMs` (or at once without drain) cancels queued work and signals running work.
   */
  close(options: CloseOptions = {}): Promise<CloseResult> {
    // Bad options are refused before anything changes: the pool can still be closed properly.
    if (options.timeoutMs !== undefined && this.#closing === undefined) {
      try {
        numberOption(this.#owner(), 'timeoutMs', options.timeoutMs, { min: 0 });
      } catch (error) {
        return Promise.reject(error);
      }
    }
    this.#closed = true;
    this.#closing ??= this.#close(options.drain ?? true, options.timeoutMs);
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // --- internals -------------------------------------------------------------------------

  /** The runtime's entry (see job.ts): a job of its own, no function or promise of the pool's. */
  [RUN_JOB](job: PoolJob): RunJobResult {
    return this.#accept(job);
  }

  [HOLD_PLACE](): boolean {
    if (this.#closed) return false;
    if (this.#active + this.#queue.size + this.#sharedPending + this.#held >= this.#capacity()) {
      this.#rejected++;
      this.#checkLevels();
      return false;
    }
    this.#held++;
    this.#checkLevels();
    return true;
  }

  [RELEASE_PLACES](n: number): void {
    if (n <= 0) return;
    this.#held = Math.max(0, this.#held - n);
    this.#checkLevels();
  }

  #submit(job: TaskJob): SubmitResult<unknown> {
    const result = this.#accept(job);
    if (result === 'closed' || result === 'overloaded') return { ok: false, error: result };
    return { ok: true, task: job.task! };
  }

  #accept(job: PoolJob): RunJobResult {
    if (this.#closed) return 'closed';
    const pending = this.#queue.size + this.#sharedPending;
    const held = this.#held;
    const brought = job.heldPlaces ?? 0;
    // Places held for gathering batches count too: a free slot is no room when they fill the capacity.
    if (this.#active < this.#limit && pending === 0 && (held === 0 || brought > 0 || this.#active + held < this.#capacity())) {
      this.#start(job);
      this.#checkLevels();
      return 'started';
    }
    this.#adaptive?.waited();
    const share = job.share;
    let displaced: PoolJob | undefined;
    // A job that brings held places (a batch) already has its room; held places count like waiting jobs.
    if (brought === 0 && (pending >= this.#maxQueueSize || (held > 0 && this.#active + pending + held >= this.#capacity()))) {
      // Full. With shares in use, a share below its part of the room may take a place (fair sharing).
      displaced = share === undefined && this.#sharedPending === 0 ? undefined : this.#displaceFor(share);
      if (displaced === undefined) {
        this.#rejected++;
        this.#checkLevels();
        return 'overloaded';
      }
    }
    job.state = 'queued';
    if (brought > 0) {
      // Its place in the queue is one of the places it brought.
      job.heldPlaces = brought - 1;
      this.#held--;
    }
    job.queued?.();
    if (share === undefined) this.#queue.push(job);
    else this.#enqueueShared(share, job);
    // The displaced job hears it last, once the pool's books are straight (its owner may call back in).
    if (displaced !== undefined) displaced.cancel(new PoolDisplacedError(displaced.share?.name ?? 'default'));
    this.#checkLevels();
    return 'queued';
  }

  #enqueueShared(share: PoolShare, job: PoolJob): void {
    if (share.queue.size === 0) this.#backlogged.push(share);
    share.queue.push(job);
    this.#sharedPending++;
  }

  /** Takes `job` out of its share's queue; false when it was not there. */
  #dequeueShared(share: PoolShare, job: PoolJob): boolean {
    if (!share.queue.remove(job)) return false;
    this.#sharedPending--;
    if (share.queue.size === 0) this.#backlogged.splice(this.#backlogged.indexOf(share), 1);
    return true;
  }

  /**
   * The waiting room is full and a job of `share` (undefined: the default share) arrives. Each
   * share with jobs waiting (and this one) has a part of the room in proportion to its weight.
   * If this share holds less than its part, the newest waiting job of the share most above its
   * part (that stays at or above it after losing one: no ping-pong) leaves the queue, and is
   * returned; else nothing changes (the arrival is refused).
   */
  #displaceFor(share: PoolShare | undefined): PoolJob | undefined {
    const room = this.#maxQueueSize;
    const dflt = this.#queue.size;
    let weights = dflt > 0 || share === undefined ? 1 : 0;
    for (const s of this.#backlogged) weights += s.weight;
    if (share !== undefined && share.queue.size === 0) weights += share.weight;
    const part = (weight: number) => (room * weight) / weights;
    if ((share?.queue.size ?? dflt) >= part(share?.weight ?? 1)) return undefined;
    let victim: PoolShare | undefined;
    let victimIsDefault = false;
    let most = 0;
    if (share !== undefined && dflt - 1 >= part(1) && dflt - part(1) > most) {
      most = dflt - part(1);
      victimIsDefault = true;
    }
    for (const s of this.#backlogged) {
      if (s === share) continue;
      const over = s.queue.size - part(s.weight);
      if (s.queue.size - 1 >= part(s.weight) && over > most) {
        most = over;
        victim = s;
        victimIsDefault = false;
      }
    }
    let job: PoolJob | undefined;
    // A waiting batch brought its places with it: its messages are taken already, it is not displaced.
    const tail = victimIsDefault ? this.#queue.tail : victim?.queue.tail;
    if (tail?.heldPlaces !== undefined) return undefined;
    if (victimIsDefault) {
      job = this.#queue.tail!;
      this.#queue.remove(job);
    } else if (victim !== undefined) {
      job = victim.queue.tail!;
      this.#dequeueShared(victim, job);
      victim.displaced++;
    } else {
      return undefined;
    }
    job.state = 'done';
    this.#cancelled++;
    this.#displaced++;
    return job;
  }

  /**
   * The next job to start. With no shares waiting: the default queue's head (FIFO, as a pool
   * without shares always is). Else the head of the backlogged share with the fewest running per
   * unit of weight (the default share has weight 1); ties go round robin.
   */
  #next(): PoolJob | undefined {
    if (this.#sharedPending === 0) return this.#queue.shift();
    const backlogged = this.#backlogged;
    let best: PoolShare | undefined;
    let bestScore = this.#queue.size > 0 ? this.#active - this.#sharedActive : Infinity;
    const n = backlogged.length;
    let at = 0;
    for (let i = 0; i < n; i++) {
      const k = (this.#turn + i) % n;
      const s = backlogged[k]!;
      const score = s.active / s.weight;
      if (score < bestScore) {
        bestScore = score;
        best = s;
        at = k;
      }
    }
    if (best === undefined) return this.#queue.shift();
    this.#turn = at + 1;
    const job = best.queue.head!;
    this.#dequeueShared(best, job);
    return job;
  }

  #start(job: PoolJob): void {
    job.state = 'running';
    const brought = job.heldPlaces;
    if (brought !== undefined && brought > 0) {
      job.heldPlaces = 0;
      this.#held -= brought;
    }
    this.#adaptive?.started(performance.now(), this.#active);
    this.#active++;
    const share = job.share;
    if (share !== undefined) {
      share.active++;
      this.#sharedActive++;
    }
    job.start(this.#lifetime.signal, this.#finish);
  }

  /** Every job's end (one function for all, not a closure per job); a second call for the same job is ignored. */
  readonly #finish: FinishJob = (job, failed, keepPlace) => {
    if (job.state !== 'running') return;
    job.state = 'done';
    if (keepPlace === true) this.#held++;
    if (failed) this.#failed++;
    else this.#completed++;
    const adaptive = this.#adaptive;
    if (adaptive !== undefined) {
      const to = adaptive.finished(performance.now(), this.#active, failed);
      if (to !== undefined) this.#setLimit(this.#limit, to);
    }
    this.#active--;
    const share = job.share;
    if (share !== undefined) {
      share.active--;
      this.#sharedActive--;
    }
    this.#startQueued();
    this.#checkLevels();
  };

  #startQueued(): void {
    if (this.#startingQueued) return;
    this.#startingQueued = true;
    try {
      while (this.#active < this.#limit && this.#queue.size + this.#sharedPending > 0) this.#start(this.#next()!);
    } finally {
      this.#startingQueued = false;
    }
  }

  #cancelQueued(job: PoolJob, reason: unknown): void {
    if (job.state !== 'queued') return;
    const share = job.share;
    if (!(share === undefined ? this.#queue.remove(job) : this.#dequeueShared(share, job))) return;
    job.state = 'done';
    this.#cancelled++;
    this.#giveUpHeld(job);
    job.cancel(reason);
    this.#checkLevels();
  }

  /** A queued job with held places that will never start gives them up. */
  #giveUpHeld(job: PoolJob): void {
    const brought = job.heldPlaces;
    if (brought === undefined || brought === 0) return;
    job.heldPlaces = 0;
    this.#held -= brought;
  }

  #checkLevels(): void {
    const used = this.#active + this.#queue.size + this.#sharedPending + this.#held;
    if (!this.#saturated) {
      if (used >= this.#capacity()) {
        this.#saturated = true;
        this.emit('saturated', this.status());
      }
    } else if (used <= this.#lowWaterMark || this.#closed) {
      this.#saturated = false;
      this.emit('available', this.status());
    }
    if (used > 0) this.#busy = true;
    else if (this.#busy) {
      this.#busy = false;
      this.emit('idle', this.status());
    }
  }

  async #close(drain: boolean, timeoutMs: number | undefined): Promise<CloseResult> {
    this.#checkLevels(); // wakes whenAvailable() waiters: a closed pool has nothing to wait for
    if (drain && (await this.#idleWithin(timeoutMs))) return { drained: true, cancelled: 0, stillRunning: 0 };
    const reason = new PoolClosedError();
    let cancelled = 0;
    const queued = this.#queue.drain();
    for (const share of this.#backlogged.splice(0)) queued.push(...share.queue.drain());
    this.#sharedPending = 0;
    for (const job of queued) {
      job.state = 'done';
      this.#giveUpHeld(job);
      job.cancel(reason);
      cancelled++;
    }
    this.#cancelled += cancelled;
    const signalled = this.#active;
    this.#lifetime.abort(reason);
    for (const job of [...this.#signalJobs.linked]) job.controller!.abort(reason);
    this.#checkLevels();
    if (!drain) await this.#idleWithin(timeoutMs);
    return { drained: cancelled === 0 && signalled === 0, cancelled, stillRunning: this.#active };
  }

  /** True once nothing runs or waits; false if `timeoutMs` passes first. */
  #idleWithin(timeoutMs: number | undefined): Promise<boolean> {
    if (this.#active + this.#queue.size + this.#sharedPending + this.#held === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const off = this.once('idle', () => {
        clearTimeout(timer);
        resolve(true);
      });
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => {
          off();
          resolve(false);
        }, timeoutMs);
      }
    });
  }

  /** An adaptive limit moved from `from` to `to`: levels follow the new capacity, and the brokers' credit can (the `limit` event). */
  #setLimit(from: number, to: number): void {
    this.#limit = to;
    this.#lowWaterMark = this.#effectiveLowWaterMark();
    if (from === to) return;
    const adaptive = this.#adaptive!;
    this.emit('limit', { from, to, latencyMs: adaptive.latencyMs, noLoadLatencyMs: adaptive.noLoadLatencyMs });
  }

  /** Places that may be taken now: the current limit plus the waiting room. */
  #capacity(): number {
    return this.#limit + this.#maxQueueSize;
  }

  /** A given lowWaterMark is checked against the largest capacity (maxConcurrency + maxQueueSize) and used below the current one. */
  #checkLowWaterMark(value: number | undefined): number {
    this.#lowWaterMarkGiven =
      value === undefined ? undefined : integerOption(this.#owner(), 'lowWaterMark', value, { min: 0, max: this.#maxConcurrency + this.#maxQueueSize - 1 });
    return this.#effectiveLowWaterMark();
  }

  #effectiveLowWaterMark(): number {
    const capacity = this.#capacity();
    const given = this.#lowWaterMarkGiven;
    return given === undefined ? Math.floor(capacity / 2) : Math.min(given, capacity - 1);
  }

  #owner(): string {
    return this.name ? `WorkerPool "${this.name}"` : OWNER;
  }
}
