import type { QueueLinks } from './linked-queue.js';
import type { PoolShare } from './share.js';

/**
 * A unit of work as the pool drives it. `submit()` wraps a function in one; the consumer
 * runtime implements it directly on its per-message entry, so that handing a message to the
 * pool costs no closure, no job object and no promise of the pool's own (per message those
 * were most of what the runtime allocated, and in a consumer every allocation makes the
 * garbage collector copy the broker client's fetched batch once more). Internal: not exported
 * from the package.
 */
export interface PoolJob extends QueueLinks<PoolJob> {
  /** Pool bookkeeping: where the job is. */
  state: 'new' | 'queued' | 'running' | 'done';
  /**
   * Pool bookkeeping: its neighbours in the queue while queued. The queue is intrusive, so a
   * waiting job costs no node object. An implementation should declare both links, initialised
   * to undefined, so that its objects keep one shape when the pool sets them.
   */
  queuePrev: PoolJob | undefined;
  queueNext: PoolJob | undefined;
  /**
   * The job has a slot. It must call `finish(this, failed)` exactly once when it has ended;
   * until then the slot stays taken. `signal` aborts when the pool closes without draining.
   */
  start(signal: AbortSignal, finish: FinishJob): void;
  /**
   * The consumer's share of a shared pool (fair sharing), or undefined: the pool's default share.
   * Made once per consumer; an implementation should declare it so its objects keep one shape.
   */
  readonly share?: PoolShare | undefined;
  /** Removed while queued (a non-draining close, its caller's abort, its place given to a fairer share): it never starts. */
  cancel(reason: unknown): void;
  /** Called just before it joins the queue (before any event about it is emitted). */
  queued?(): void;
  /**
   * Places of the waiting room this job brings with it (a batch: its messages were held while it
   * gathered, `pool[HOLD_PLACE]`). Such a job is never refused for overload; its places are given
   * up when it starts (a running batch takes one slot) or is cancelled. Absent or 0: an ordinary job.
   */
  heldPlaces?: number;
}

/**
 * Ends a running job. `keepPlace`: the job's message stays with the runtime, waiting to be
 * batched; its slot becomes a held place (`pool[HOLD_PLACE]`) instead of being given up.
 */
export type FinishJob = (job: PoolJob, failed: boolean, keepPlace?: boolean) => void;

/** `pool[RUN_JOB](job)`: the runtime's way into a WorkerPool, past `submit()`'s function and promise. */
export const RUN_JOB: unique symbol = Symbol('sluice.runJob');

/**
 * `pool[HOLD_PLACE]()`: takes one place of the pool for a message the runtime holds while it
 * gathers a batch, so that batching never lets a consumer hold more than the pool's capacity;
 * false when the pool is full or closed. `pool[RELEASE_PLACES](n)` gives places back (messages that
 * left without their batch starting). A batch job brings its places along (`heldPlaces`).
 */
export const HOLD_PLACE: unique symbol = Symbol('sluice.holdPlace');
export const RELEASE_PLACES: unique symbol = Symbol('sluice.releasePlaces');

/** What `pool[RUN_JOB]` did with a job. */
export type RunJobResult = 'started' | 'queued' | 'overloaded' | 'closed';
