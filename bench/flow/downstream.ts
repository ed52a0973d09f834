/**
 * A simulated downstream with a real knee, for the flow benchmarks (outage, and later adaptive
 * concurrency and fair share).
 *
 * Model: at most `capacity` calls are *in service* at once, each for `latencyMs` (± `jitter`);
 * the rest wait inside the downstream, first come first served, so a caller sees
 * `wait + latencyMs`: flat up to `capacity` concurrent calls, then growing linearly with the
 * load (throughput is capped at `capacity / latencyMs`). That is the knee an adaptive limit must
 * find: beyond it, more concurrency buys only latency.
 *
 * A schedule changes it at times relative to `start()`: `{ atMs, capacity?, latencyMs?,
 * failing? }`, each field kept from the phase before when absent. While `failing`, every call
 * (new or waiting) fails after `failLatencyMs` with a `DownstreamUnavailableError` and takes no
 * service place; calls already in service when it starts failing finish normally. A lower
 * capacity lets the calls in service finish and starts no new one until below it; a higher one
 * starts waiting calls at once.
 *
 *   const ds = new Downstream({ capacity: 16, latencyMs: 20, schedule: [
 *     { atMs: 10_000, failing: true }, { atMs: 20_000, failing: false },  // a 10 s outage
 *     { atMs: 25_000, capacity: 4 },                                    // then a slower downstream
 *   ] });
 *   ds.start();                                 // the schedule's clock starts here
 *   const ms = await ds.call(signal);            // resolves with the latency the caller saw; rejects while failing
 *   ds.stats();                                  // counters since start
 *   ds.on((phase, atMs) => ...);                 // hear each phase as it begins
 *   ds.stop();                                   // cancels the schedule; waiting calls fail
 *
 * `call(signal)` honours an abort: a waiting call leaves the queue and rejects with the signal's
 * reason; a call in service keeps its place until its service time ends (the work was sent), then
 * rejects. Time is `performance.now()`; the schedule's timers are unref'd (a pending call keeps the
 * process alive, the schedule does not).
 */

/** One change of the downstream, `atMs` after `start()`. Absent fields keep their current value. */
export interface DownstreamPhase {
  readonly atMs: number;
  /** Calls served at once (≥ 1). */
  readonly capacity?: number;
  /** Service time of one call, in ms (≥ 0). */
  readonly latencyMs?: number;
  /** True: every call fails (after `failLatencyMs`) until a later phase says false. */
  readonly failing?: boolean;
}

export interface DownstreamOptions {
  /** Calls served at once at the start. */
  readonly capacity: number;
  /** Service time of one call at the start, in ms. */
  readonly latencyMs: number;
  /** Each service time is latencyMs × (1 ± jitter × uniform), 0 ≤ jitter < 1. Default 0. */
  readonly jitter?: number;
  /** How long a call takes to fail while failing, in ms (a fast 503). Default 1. */
  readonly failLatencyMs?: number;
  /** Phases in order of `atMs`. */
  readonly schedule?: readonly DownstreamPhase[];
  /** A deterministic random source for the jitter; default Math.random. */
  readonly random?: () => number;
}

/** What the downstream is now. */
export interface DownstreamState {
  readonly capacity: number;
  readonly latencyMs: number;
  readonly failing: boolean;
}

export interface DownstreamStats extends DownstreamState {
  /** Every call() since start. */
  readonly calls: number;
  readonly succeeded: number;
  /** Failed because the downstream was failing. */
  readonly failed: number;
  /** Rejected by the caller's signal. */
  readonly aborted: number;
  /** In service now / waiting now / the most that ever waited. */
  readonly inService: number;
  readonly waiting: number;
  readonly maxWaiting: number;
  /** The most calls in service + waiting at once (the concurrency the callers applied). */
  readonly maxConcurrent: number;
}

/** What a call gets while the downstream is failing. */
export class DownstreamUnavailableError extends Error {
  override readonly name = 'DownstreamUnavailableError';
  constructor() {
    super('503 Service Unavailable (simulated downstream)');
  }
}

interface Waiter {
  resolve: (latencyMs: number) => void;
  reject: (error: unknown) => void;
  arrived: number;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined;
}

export class Downstream {
  readonly #jitter: number;
  readonly #failLatencyMs: number;
  readonly #schedule: readonly DownstreamPhase[];
  readonly #random: () => number;
  readonly #listeners: ((phase: DownstreamPhase, atMs: number) => void)[] = [];
  #state: DownstreamState;
  #startedAt: number | undefined;
  #timers: NodeJS.Timeout[] = [];
  readonly #queue: Waiter[] = [];
  #head = 0;
  #inService = 0;
  #stats = { calls: 0, succeeded: 0, failed: 0, aborted: 0, maxWaiting: 0, maxConcurrent: 0 };

  constructor(options: DownstreamOptions) {
    if (!(Number.isInteger(options.capacity) && options.capacity >= 1)) throw new RangeError(`Downstream: capacity must be an integer >= 1, got ${options.capacity}`);
    if (!(options.latencyMs >= 0)) throw new RangeError(`Downstream: latencyMs must be >= 0, got ${options.latencyMs}`);
    this.#jitter = options.jitter ?? 0;
    if (!(this.#jitter >= 0 && this.#jitter < 1)) throw new RangeError(`Downstream: jitter must be in [0, 1), got ${this.#jitter}`);
    this.#failLatencyMs = options.failLatencyMs ?? 1;
    this.#schedule = [...(options.schedule ?? [])].sort((a, b) => a.atMs - b.atMs);
    this.#random = options.random ?? Math.random;
    this.#state = { capacity: options.capacity, latencyMs: options.latencyMs, failing: false };
  }

  /** Starts the schedule's clock (idempotent). Calls before start() are served with the initial state. */
  start(): this {
    if (this.#startedAt !== undefined) return this;
    this.#startedAt = performance.now();
    for (const phase of this.#schedule) {
      const timer = setTimeout(() => this.#apply(phase), phase.atMs);
      timer.unref();
      this.#timers.push(timer);
    }
    return this;
  }

  /** Cancels the schedule; waiting calls fail with `DownstreamUnavailableError`. */
  stop(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers = [];
    while (this.#head < this.#queue.length) this.#fail(this.#take());
  }

  /** Hears every phase as it begins (after it is applied). */
  on(listener: (phase: DownstreamPhase, atMs: number) => void): this {
    this.#listeners.push(listener);
    return this;
  }

  /** Milliseconds since start() (0 before). */
  elapsedMs(): number {
    return this.#startedAt === undefined ? 0 : performance.now() - this.#startedAt;
  }

  get state(): DownstreamState {
    return this.#state;
  }

  stats(): DownstreamStats {
    return { ...this.#state, ...this.#stats, inService: this.#inService, waiting: this.#queue.length - this.#head };
  }

  /** One request. Resolves with the latency the caller saw (wait + service), in ms; rejects while failing or on abort. */
  call(signal?: AbortSignal): Promise<number> {
    this.#stats.calls++;
    if (signal?.aborted) {
      this.#stats.aborted++;
      return Promise.reject(signal.reason);
    }
    return new Promise<number>((resolve, reject) => {
      const waiter: Waiter = { resolve, reject, arrived: performance.now(), signal, onAbort: undefined };
      if (this.#state.failing) return this.#fail(waiter);
      this.#queue.push(waiter);
      const concurrent = this.#inService + this.#queue.length - this.#head;
      if (concurrent > this.#stats.maxConcurrent) this.#stats.maxConcurrent = concurrent;
      if (signal) {
        waiter.onAbort = () => {
          const i = this.#queue.indexOf(waiter, this.#head);
          if (i < 0) return; // in service already: it ends with its service time
          this.#queue.splice(i, 1);
          this.#stats.aborted++;
          reject(signal.reason);
        };
        signal.addEventListener('abort', waiter.onAbort, { once: true });
      }
      this.#dispatch();
      const waiting = this.#queue.length - this.#head;
      if (waiting > this.#stats.maxWaiting) this.#stats.maxWaiting = waiting;
    });
  }

  #apply(phase: DownstreamPhase): void {
    const s = this.#state;
    this.#state = { capacity: phase.capacity ?? s.capacity, latencyMs: phase.latencyMs ?? s.latencyMs, failing: phase.failing ?? s.failing };
    if (this.#state.failing) while (this.#head < this.#queue.length) this.#fail(this.#take());
    else this.#dispatch();
    const at = this.elapsedMs();
    for (const l of this.#listeners) l(phase, at);
  }

  #take(): Waiter {
    const w = this.#queue[this.#head]!;
    this.#queue[this.#head++] = undefined as unknown as Waiter;
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue.splice(0, this.#head);
      this.#head = 0;
    }
    if (w.onAbort) w.signal!.removeEventListener('abort', w.onAbort);
    return w;
  }

  #fail(w: Waiter): void {
    setTimeout(() => {
      this.#stats.failed++;
      w.reject(new DownstreamUnavailableError());
    }, this.#failLatencyMs);
  }

  #dispatch(): void {
    while (this.#inService < this.#state.capacity && this.#head < this.#queue.length) {
      const w = this.#take();
      this.#inService++;
      const { latencyMs } = this.#state;
      const service = this.#jitter === 0 ? latencyMs : latencyMs * (1 + this.#jitter * (2 * this.#random() - 1));
      setTimeout(() => {
        this.#inService--;
        if (w.signal?.aborted) {
          this.#stats.aborted++;
          w.reject(w.signal.reason);
        } else {
          this.#stats.succeeded++;
          w.resolve(performance.now() - w.arrived);
        }
        this.#dispatch();
      }, service);
    }
  }
}
