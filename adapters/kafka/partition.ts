import { KeyScheduler } from './key-scheduler.js';
import { DonePrefix } from '../../src/adapter/index.js';
import type { KafkaRecord } from './options.js';

/** Why a partition is paused; it fetches again only when no reason is left. */
export type PauseReason = 'source' | 'overload' | 'held' | 'stopped';

/** One message on its way through the adapter; itself the `KafkaRecord` a handler sees as `msg.raw` (one object less per message). */
export interface Work extends KafkaRecord {
  offset: number;
  /** The message key as UTF-8 (`msg.key`). */
  key: string | undefined;
  /** Its ordering lane (a number for its key, 0 for the whole partition); undefined = unordered. */
  lane: number | undefined;
  attempt: number;
}

/**
 * What the adapter knows about one assigned partition. A new object per assignment: a state
 * that was revoked stays revoked, so work from an older assignment can never mark or commit
 * anything of a newer one (the assignment epoch is the object's identity).
 */
export class PartitionState {
  readonly id: string;
  /** `topic/partition/`: a message's id is this and its offset (when it has no message-id header). */
  readonly idPrefix: string;
  readonly tracker = new DonePrefix();
  readonly lanes = new KeyScheduler<Work, number>();
  readonly reasons = new Set<PauseReason>();
  /** What kafkajs was last told (it keeps pause state across rebalances, so we re-apply it on every join). */
  pausedInClient = false;
  /** Held outside the pool besides lane followers: retries and deferrals waiting out their delay, messages waiting for room. */
  waiting = 0;
  /** No longer assigned (or the source closed): this epoch's deliveries are stale and can mark, release or commit nothing. */
  revoked = false;
  /** Set while the batch loop waits for held messages to go to the pool (see #awaitRelease). */
  onRelease: (() => void) | undefined;
  /** Retries and deferrals waiting out their delay. */
  readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    readonly topic: string,
    readonly partition: number,
  ) {
    this.id = partitionId(topic, partition);
    this.idPrefix = `${topic}/${partition}/`;
  }

  /** Messages of this partition held by the adapter outside the pool. */
  get held(): number {
    return this.lanes.queued + this.waiting;
  }

  revoke(): void {
    this.revoked = true;
    this.clearTimers();
    this.lanes.clear();
  }

  /** Abandons the retries and deferrals waiting here: their offsets stay uncommitted, so Kafka delivers them again. */
  clearTimers(): void {
    for (const timer of this.timers) clearTimeout(timer);
    this.waiting -= this.timers.size;
    this.timers.clear();
  }
}

export const partitionId = (topic: string, partition: number) => `${topic}\u0000${partition}`;
