import type { DispatchResult, SourceContext } from '../../src/adapter/index.js';
import { KafkaDelivery, type DeliveryHooks } from './delivery.js';
import type { Group } from './group.js';
import type { ResolvedKafkaOptions } from './options.js';
import type { PartitionState, Work } from './partition.js';
import type { Commits } from './commits.js';
import type { DeadLetterProducer } from './dead-letters.js';

interface Ready {
  state: PartitionState;
  work: Work;
}

/** A held message a flow gate did not admit is offered again this much later (or at the next resume). */
const GATED_RETRY_MS = 100;

/**
 * What becomes of a message after the batch loop handed it over: finished (acked or
 * dead-lettered) marks its offset done and releases its key's next message; a retry, a deferral
 * or a give-back keeps the offset open and holds the message here until it is dispatched again.
 * Held messages (next heads of key lanes, retries and deferrals due, given back) go to the pool
 * as room allows, outside it meanwhile, counted against the partition's held bound.
 */
export class Outcomes implements DeliveryHooks {
  context!: SourceContext;
  /** The dead-letter producer, made at start. */
  dlq: DeadLetterProducer | undefined;
  #ready: Ready[] = [];
  #readyHead = 0;
  #flushScheduled = false;
  #flushTimer: NodeJS.Timeout | undefined;
  #room: Promise<void> | undefined;

  constructor(
    private readonly o: ResolvedKafkaOptions,
    private readonly group: Group,
    private readonly name: string,
    private readonly commits: Commits,
  ) {}

  /** Hands a message to the runtime. Anything but 'accepted' is a refusal the caller gives back (leave it unresolved, to be fetched again, or keep holding). */
  dispatch(state: PartitionState, work: Work): DispatchResult {
    return this.context.dispatch(new KafkaDelivery(state, work, this));
  }

  // --- DeliveryHooks ----------------------------------------------------------------------

  finished(state: PartitionState, work: Work): void {
    if (state.revoked) return;
    if (state.tracker.done(work.offset)) this.commits.wake();
    const next = work.lane === undefined ? undefined : state.lanes.next(work.lane);
    if (next !== undefined) this.hold(state, next);
    this.release(state);
  }

  later(state: PartitionState, work: Work, delayMs: number, attempt: number): void {
    // In process, not republished: the offset stays open (a crash redelivers it) and the key's
    // lane stays busy (its followers keep waiting: order per key holds across retries).
    if (state.revoked || this.group.stopped) return;
    state.waiting++;
    const timer = setTimeout(() => {
      state.timers.delete(timer);
      state.waiting--;
      if (!state.revoked && !this.group.stopped) this.hold(state, attempt === work.attempt ? work : { ...work, attempt });
    }, delayMs);
    state.timers.add(timer);
  }

  givenBack(state: PartitionState, work: Work): void {
    // Accepted, then not processed (a closed pool, a cancelled task): dispatch it again when
    // there is room. At shutdown it is left open instead: uncommitted, Kafka delivers it again.
    if (state.revoked || this.group.stopped) return;
    this.hold(state, work);
    void this.room();
  }

  async publishDeadLetter(topic: string, message: { key: Buffer | null; value: Buffer | null; headers: Record<string, string> }): Promise<void> {
    if (!this.dlq) throw new Error(`${this.name}: no dead-letter producer (the source is closed)`);
    await this.dlq.publish(topic, [message]);
  }

  deadLetterTopic(topic: string): string {
    return this.o.deadLetterTopic(topic);
  }

  report(error: Error, detail: string): void {
    this.context.report({ type: 'error', error, detail });
  }

  // --- held messages ----------------------------------------------------------------------

  /** Queues a message for the pool, outside it (counted in `waiting`) until there is room. */
  hold(state: PartitionState, work: Work): void {
    state.waiting++;
    this.#ready.push({ state, work });
    this.scheduleFlush();
  }

  /**
   * Flushes on the next turn: after the current task has left its pool slot (dispatching from
   * inside an ack would find the pool one place shorter than it is) or the runtime's resume ended.
   */
  scheduleFlush(): void {
    if (this.#flushScheduled || this.#readyHead >= this.#ready.length) return;
    this.#flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /** Dispatches held messages in order while the pool has room. */
  flush(): void {
    this.#flushScheduled = false;
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    const context = this.context;
    while (this.#readyHead < this.#ready.length) {
      if (this.group.stopped) return;
      const item = this.#ready[this.#readyHead]!;
      if (!item.state.revoked) {
        if (context.freeCapacity() <= 0) return void this.room();
        const result = this.dispatch(item.state, item.work);
        if (result === 'overloaded') return void this.room();
        if (result === 'stopping') return;
        if (result === 'gated') {
          this.#flushTimer = setTimeout(() => this.flush(), GATED_RETRY_MS);
          return;
        }
        item.state.waiting--;
        this.release(item.state);
      }
      this.#ready[this.#readyHead++] = undefined as never;
    }
    this.#ready = [];
    this.#readyHead = 0;
  }

  /** One wait for the pool's low-water mark, shared by every paused partition and held message. */
  room(): Promise<void> {
    if (this.#room) return this.#room;
    const context = this.context;
    this.#room = context
      .whenAvailable(context.signal)
      .then(async () => {
        // A closed or resized pool can say "available" with no place free: do not spin.
        if (context.freeCapacity() <= 0) await new Promise((r) => setTimeout(r, 20));
      })
      .then(
        () => {
          this.#room = undefined;
          this.group.unpauseAll('overload');
          this.flush();
        },
        () => void (this.#room = undefined),
      );
    return this.#room;
  }

  /** A message left the adapter's hands: once half of the bound is free, wake the batch waiting on it, or lift its pause. */
  release(state: PartitionState): void {
    if (state.held > this.o.maxHeldPerPartition / 2) return;
    const wake = state.onRelease;
    state.onRelease = undefined;
    wake?.();
    if (state.reasons.has('held')) this.group.unpause(state, 'held');
  }

  /** Stopping for good: no more timed flushes (held messages stay uncommitted). */
  stop(): void {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
  }
}
