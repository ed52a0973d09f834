import type { PoolJob } from './job.js';
import { IntrusiveQueue } from './linked-queue.js';

/**
 * One consumer's share of a WorkerPool it shares with others (the consumer option `share:
 * { weight }`): its own FIFO of waiting jobs and its count of running ones. Made once per
 * consumer and referenced from every job it submits (`PoolJob.share`), so fair sharing costs
 * no allocation per message. A job without a share belongs to the pool's default share (weight 1).
 *
 * When several shares have jobs waiting, a freed slot goes to the one with the fewest running
 * per unit of weight, so each holds at least its weighted part of the running slots; when the
 * waiting room is full, a share below its weighted part of the room takes a place from the
 * newest waiting job of the share most above its part (see WorkerPool, fair sharing).
 */
export class PoolShare {
  /** Its waiting jobs, oldest first. */
  readonly queue = new IntrusiveQueue<PoolJob>();
  /** Its jobs running now. */
  active = 0;
  /** Jobs of it that had to give their waiting place to a share below its part. */
  displaced = 0;

  constructor(
    /** Shown in status and errors. */
    readonly name: string,
    /** Relative weight (> 0): a share of weight 2 gets twice the slots of one of weight 1 when both are backlogged. */
    readonly weight: number,
  ) {}

  get pending(): number {
    return this.queue.size;
  }
}

/** The reason a waiting job gets when a share below its part of the waiting room takes its place. */
export class PoolDisplacedError extends Error {
  override readonly name = 'PoolDisplacedError';
  constructor(readonly share: string) {
    super(`the worker pool's waiting room was full and this task's place went to a share below its weighted part (share "${share}" was above its part)`);
  }
}
