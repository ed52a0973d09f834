/** A unit of work. It receives a signal that aborts on timeout, on caller abort, or on a non-draining close. */
export type PoolTask<T> = (signal: AbortSignal) => T | PromiseLike<T>;

export interface WorkerPoolOptions {
  /** Shown in errors and status; useful when one process runs several pools. */
  name?: string;
  /** How many tasks run at once. Integer >= 1. */
  maxConcurrency: number;
  /** How many tasks may wait for a slot. Integer >= 0; past it `submit` answers `overloaded`. */
  maxQueueSize: number;
  /**
   * After `saturated`, `available` fires once occupied places (running + waiting) fall to
   * this number or below. Default: half the capacity (rounded down), so that pause/resume
   * does not flap at the edge.
   */
  lowWaterMark?: number;
  /**
   * Adaptive concurrency: the limit moves between `adaptive.min` and `maxConcurrency` from the
   * latency and failures of what the pool runs (see AdaptiveOptions). Default: none, the limit
   * is `maxConcurrency`.
   */
  adaptive?: AdaptiveOptions;
}

export type LimitAlgorithm = 'gradient' | 'aimd';

/**
 * How an adaptive pool moves its limit. Once per window (at least `windowMs` and `minSamples`
 * jobs ended) it takes the jobs' mean run time (`latency`) and compares it with the lowest it has
 * seen (`no-load latency`, measured again when latency stops following the limit down):
 * - `'gradient'` (default; Envoy's gradient controller with Netflix Gradient2's clamp):
 *   target = limit × clamp(tolerance × noLoad / latency, 0.5, 1) + headroom, approached by
 *   `smoothing`; it settles just above the downstream's knee, where latency starts to grow.
 * - `'aimd'` (Netflix AIMDLimit with a latency signal): + `increase` per window while latency ≤
 *   tolerance × noLoad and the limit was reached, × `backoffRatio` when above.
 * Both: a window where more than `failureThreshold` of the jobs failed multiplies the limit by
 * `backoffRatio`; the limit grows only when it was reached (an idle pool's limit does not creep up).
 */
export interface AdaptiveOptions {
  /** The lowest the limit goes. Integer between 1 and maxConcurrency. Default 1. */
  min?: number;
  /** Default `'gradient'`. */
  algorithm?: LimitAlgorithm;
  /** The limit at construction. Integer between `min` and maxConcurrency. Default `min`. */
  initial?: number;
  /** A window lasts at least this long, in ms (> 0). Default 100. */
  windowMs?: number;
  /** …and until this many jobs ended in it (integer ≥ 1). Default 10. */
  minSamples?: number;
  /** Latency up to noLoad × tolerance is not queueing (≥ 1). Default 1.1 for gradient, 1.25 for aimd. */
  tolerance?: number;
  /** gradient: the fraction of the way to a lower target taken per window (0.01–1; growth is taken at once). Default 0.5. */
  smoothing?: number;
  /** gradient: slots added to the target so it can probe past the knee (≥ 0). Default √limit / 2. */
  headroom?: number;
  /** aimd on latency, both on failures: the multiplicative decrease (0.5–0.99). Default 0.9. */
  backoffRatio?: number;
  /** aimd: the additive increase per window (> 0). Default 1. */
  increase?: number;
  /** The fraction of failed jobs in a window (0–1) above which the window counts as overload. Default 0.1. */
  failureThreshold?: number;
}

/** An adaptive pool's estimates, in `status().adaptive`. */
export interface AdaptiveLimitStatus {
  algorithm: LimitAlgorithm;
  min: number;
  /** The fractional estimate the limit is rounded from. */
  estimate: number;
  /** Mean run time of the jobs of the last window, ms; undefined before the first window. */
  latencyMs: number | undefined;
  /** The latency taken as no queueing, ms. */
  noLoadLatencyMs: number | undefined;
  /** Windows measured so far. */
  windows: number;
}

/** The `limit` event: an adaptive pool's limit moved. */
export interface LimitChange {
  from: number;
  to: number;
  /** The last window's mean run time and the no-load latency, ms. */
  latencyMs: number | undefined;
  noLoadLatencyMs: number | undefined;
}

export interface SubmitOptions {
  /** Aborting removes the task if it still waits, or signals it if it already runs. */
  signal?: AbortSignal;
}

export type SubmitResult<T> =
  | { ok: true; task: Promise<T> }
  | { ok: false; error: 'overloaded' | 'closed' };

export type SubmitAwaitResult<T> =
  | { ok: true; value: T }
  | { ok: false; error: 'overloaded' | 'timeout' | 'closed' }
  | { ok: false; error: 'failed'; cause: unknown };

export interface PoolStatus {
  name: string | undefined;
  /** Tasks running now; never above maxConcurrency. */
  active: number;
  /** Tasks waiting for a slot; never above maxQueueSize (except after a shrinking resize). */
  pending: number;
  /** Places held for messages a consumer gathers into batches (not jobs yet); they count against the capacity like waiting tasks. */
  held: number;
  maxConcurrency: number;
  /** How many may run now: maxConcurrency, or an adaptive pool's current limit (active ≤ limit except after a shrink). */
  limit: number;
  maxQueueSize: number;
  /** True from `saturated` until `available`. */
  saturated: boolean;
  closed: boolean;
  /** Tasks that settled by fulfilling. */
  completed: number;
  /** Tasks that threw or rejected. */
  failed: number;
  /** Submissions answered `overloaded`. */
  rejected: number;
  /** submitAwait calls that timed out. */
  timedOut: number;
  /** Queued tasks removed before running (caller abort, timeout or non-draining close). */
  cancelled: number;
  /** Waiting jobs whose place went to a share below its weighted part of the waiting room (also counted in `cancelled`). */
  displaced: number;
  /** Present on adaptive pools: the algorithm's estimates. */
  adaptive?: AdaptiveLimitStatus;
}

export interface ResizeOptions {
  maxConcurrency?: number;
  maxQueueSize?: number;
  lowWaterMark?: number;
}

export interface CloseOptions {
  /** Wait for running and queued work (default). false: cancel queued work and signal running work. */
  drain?: boolean;
  /** With drain: how long to wait before falling back to cancel-and-signal. Without: how long to wait for running work to settle. */
  timeoutMs?: number;
}

export interface CloseResult {
  /** True when every accepted task settled on its own, nothing was cancelled or cut short. */
  drained: boolean;
  /** Queued tasks that never ran. */
  cancelled: number;
  /** Tasks still running when the timeout ended the wait. */
  stillRunning: number;
}

export interface PoolEvents {
  /** No room left: the next submit would be `overloaded`. */
  saturated: PoolStatus;
  /** Room again, after falling to the low-water mark since `saturated`. */
  available: PoolStatus;
  /** Nothing running and nothing waiting. */
  idle: PoolStatus;
  /** An adaptive pool's limit moved (brokers' credit can follow it). */
  limit: LimitChange;
}
