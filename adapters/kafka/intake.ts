import type { Commits } from './commits.js';
import type { DriverBatchPayload } from './driver.js';
import type { Group } from './group.js';
import { laneOf } from './key-scheduler.js';
import type { ResolvedKafkaOptions } from './options.js';
import type { Outcomes } from './outcomes.js';
import type { PartitionState } from './partition.js';

/**
 * Batch intake: the driver's batches (kafkajs's `eachBatch`). Each message is handed to the
 * runtime at once, or queued behind its busy key (bounded by `maxHeldPerPartition`); eachBatch
 * never waits for handlers, so the client's own loop keeps fetching and heartbeating. It waits
 * only in place — for the pool's room or for held messages to drain — with the partition paused
 * and heartbeats sent meanwhile; a refusal or a pause that cannot be waited out returns with only
 * the taken prefix resolved, and the driver fetches the rest again from there, so nothing is
 * skipped. No seek: kafkajs keeps a seek it has not applied across rebalances and applies it when
 * the partition comes back, generations later, below or above what the group committed since.
 */
export class Intake {
  #beating: Promise<undefined> | undefined;

  constructor(
    private readonly o: ResolvedKafkaOptions,
    private readonly group: Group,
    private readonly outcomes: Outcomes,
    private readonly commits: Commits,
  ) {}

  async eachBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: DriverBatchPayload): Promise<void> {
    const group = this.group;
    const state = group.state(batch.topic, batch.partition);
    if (state === undefined) return;
    const outcomes = this.outcomes;
    const context = outcomes.context;
    const max = this.o.maxHeldPerPartition;
    const ordering = this.o.ordering;
    const messages = batch.messages;
    // The driver's next fetch starts after the last resolved offset. Resolving costs a Long parse,
    // so it is done once per run of taken messages: before every wait and every return.
    let taken: string | undefined;
    const resolve = () => {
      if (taken !== undefined) {
        resolveOffset(taken);
        this.commits.wake(); // a take past a gap moves the done prefix too
      }
      taken = undefined;
    };
    // Only an await lets a rebalance or a stop in: check on entry and after each wait
    // (isStale() builds a string key per call, too costly per message).
    let check = true;
    for (let i = 0; i < messages.length; ) {
      const message = messages[i]!;
      if (check) {
        if (!isRunning() || isStale() || state.revoked) return resolve();
        check = false;
      }
      const offset = Number(message.offset);
      // Paused (by the runtime, the bound, a stop): the rest of the batch is fetched again later.
      if (state.reasons.size > 0 || group.stopped) return resolve();
      const position = state.tracker.next;
      if (position !== undefined && offset < position) {
        taken = message.offset; // taken before a rejoin reset kafkajs's position
        i++;
        continue;
      }
      const keyBytes = message.key ?? undefined;
      const key = keyBytes?.toString('utf8');
      // Its lane: one per key (a number; see laneOf), one per partition, or none.
      const lane = ordering === 'partition' ? 0 : ordering === 'key' && keyBytes !== undefined ? laneOf(keyBytes) : undefined;
      if (lane !== undefined && state.lanes.busy(lane)) {
        // Its key is busy: it waits here, counted against the partition's bound.
        if (state.held >= max) {
          resolve();
          check = true;
          // Waiting here keeps the fetched batch: returning would make the driver fetch it
          // again (and sleep maxWaitTimeInMs while every partition is paused).
          if (await this.#awaitRelease(state, heartbeat)) continue;
          return group.pause(state, 'held');
        }
        state.tracker.take(offset);
        state.lanes.enqueue(lane, { topic: batch.topic, partition: batch.partition, message, offset, key, lane, attempt: 1 });
        taken = message.offset;
        i++;
        continue;
      }
      // The pool is the credit: with no place free, wait here (the driver does not fetch this partition meanwhile).
      if (context.freeCapacity() <= 0) {
        resolve();
        check = true;
        if (await this.#awaitRoom(state, heartbeat)) continue;
        return;
      }
      state.tracker.take(offset);
      if (lane !== undefined) state.lanes.begin(lane);
      const result = outcomes.dispatch(state, { topic: batch.topic, partition: batch.partition, message, offset, key, lane, attempt: 1 });
      if (result === 'accepted') {
        taken = message.offset;
        i++;
        continue;
      }
      // Refused ('overloaded', 'gated', 'stopping'): it was never taken; give it back to Kafka.
      state.tracker.untake(offset);
      if (lane !== undefined) state.lanes.cancel(lane);
      resolve();
      check = true;
      if (result === 'overloaded' && (await this.#awaitRoom(state, heartbeat))) continue;
      return;
    }
    resolve();
    // Everything taken: also step over offsets that carry no message (transaction markers).
    state.tracker.advanceTo(Number(batch.lastOffset()) + 1);
    this.commits.wake();
  }

  /**
   * Pauses the partition until the pool has room, heartbeating meanwhile (the batch's
   * callback is what blocks the driver's loop). True when it may go on with the same batch.
   */
  async #awaitRoom(state: PartitionState, heartbeat: () => Promise<void>): Promise<boolean> {
    this.group.pause(state, 'overload');
    if (!(await this.#heartbeatUntil(this.outcomes.room(), heartbeat))) return false;
    // Paused by the runtime too (it refused a dispatch): let its resume, which waits on the same
    // pool event, run first. Otherwise go on at once, without a macrotask hop per wait.
    if (state.reasons.has('source')) await new Promise((r) => setImmediate(r));
    return state.reasons.size === 0 && !state.revoked && !this.group.stopped;
  }

  /**
   * Waits, inside the batch, until half of the partition's held messages have gone to the pool.
   * Bounded in time (a retry backing off for long must not hold the driver's loop): false when the
   * caller should pause and return instead (the rest is fetched again).
   */
  async #awaitRelease(state: PartitionState, heartbeat: () => Promise<void>): Promise<boolean> {
    // Paused meanwhile, as for the pool's room: a cheap flag in kafkajs while the batch is kept.
    this.group.pause(state, 'held');
    let timer: NodeJS.Timeout | undefined;
    const released = new Promise<boolean>((resolve) => {
      state.onRelease = () => resolve(true);
      timer = setTimeout(() => resolve(false), Math.max(1000, this.o.maxWaitTimeInMs));
    });
    const ok = await this.#heartbeatUntil(released, heartbeat);
    clearTimeout(timer);
    state.onRelease = undefined;
    return ok && state.reasons.size === 0 && !state.revoked && !this.group.stopped;
  }

  /**
   * Resolves every heartbeatInterval; shared by all waits, so that the many short waits of a busy
   * pool do not each arm and clear a timer. kafkajs's heartbeat() sends only when its interval
   * has passed, so an early beat costs nothing.
   */
  #beat(): Promise<undefined> {
    this.#beating ??= new Promise((resolve) => {
      setTimeout(() => {
        this.#beating = undefined;
        resolve(undefined);
      }, this.o.heartbeatInterval).unref();
    });
    return this.#beating;
  }

  /** Waits for `ready`, heartbeating the group meanwhile; false when ready says so or a heartbeat fails (a rebalance). */
  async #heartbeatUntil(ready: Promise<unknown>, heartbeat: () => Promise<void>): Promise<boolean> {
    const done = ready.then((value) => value !== false);
    for (;;) {
      const result = await Promise.race([done, this.#beat()]);
      if (result !== undefined) return result;
      try {
        await heartbeat();
      } catch {
        return false; // a rebalance: the client rejoins once this batch returns
      }
    }
  }
}
