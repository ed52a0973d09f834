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
  maxConcurrency: number;
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
}
