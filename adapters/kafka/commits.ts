import { redactError, type SourceEvent } from '../../src/adapter/index.js';
import type { GroupMember } from './driver.js';
import type { Group } from './group.js';
import type { PartitionState } from './partition.js';

interface Due {
  state: PartitionState;
  offset: number;
}

/**
 * Commits each partition's done prefix (`DonePrefix.end()`: the first offset not finished)
 * periodically, when a rebalance starts and at close. Only partitions of the current assignment
 * are named, and only while joined; the sends go one at a time. The timer runs only while
 * something may be due: a tick that finds every done prefix confirmed stops it, and `wake()`
 * (a batch taken, a message finished) starts it again, so an idle consumer has no commit timer.
 */
export class Commits {
  #timer: NodeJS.Timeout | undefined;
  #running = false;
  #chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly group: Group,
    private readonly intervalMs: number,
    private readonly report: (event: SourceEvent) => void,
  ) {}

  start(): void {
    this.#running = true;
    this.wake();
  }

  stop(): void {
    this.#running = false;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** A done prefix may have moved: commit it within intervalMs. */
  wake(): void {
    if (this.#timer !== undefined || !this.#running) return;
    this.#timer = setInterval(this.#tick, this.intervalMs);
    this.#timer.unref();
  }

  readonly #tick = (): void => {
    const due = this.#due();
    if (due.length === 0) {
      // Everything confirmed: nothing can become due without a wake().
      clearInterval(this.#timer);
      this.#timer = undefined;
      return;
    }
    this.#commit(due);
  };

  /** What to commit is read now (a rebalance may be about to start); resolves once it was sent. */
  commit(): Promise<void> {
    return this.#commit(this.#due());
  }

  /** Every partition whose done prefix is ahead of what Kafka confirmed (a failed or skipped commit stays due). */
  #due(): Due[] {
    const due: Due[] = [];
    for (const state of this.group.states.values()) {
      const offset = state.tracker.pendingConfirm();
      if (offset !== undefined) due.push({ state, offset });
    }
    return due;
  }

  #commit(due: Due[]): Promise<void> {
    const group = this.group;
    const member = group.member;
    if (!member || !group.joined || due.length === 0) return this.#chain;
    this.#chain = this.#chain.then(() => this.#send(member, due));
    return this.#chain;
  }

  async #send(member: GroupMember, due: Due[]): Promise<void> {
    try {
      await member.commit(due.map(({ state, offset }) => ({ topic: state.topic, partition: state.partition, offset })));
      // kafkajs skips a commit silently while it restarts after a crash: count it only when still joined.
      if (this.group.joined) for (const { state, offset } of due) state.tracker.markConfirmed(offset);
    } catch (error) {
      // "The group moved on": the next owner reads from what was committed before.
      if (this.group.driver.isRebalanceError(error) || !this.group.joined) return;
      this.report({ type: 'error', error: new Error(redactError(error)), detail: 'commit' });
    }
  }
}
