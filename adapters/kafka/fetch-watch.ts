import type { SourceEvent } from '../../src/adapter/index.js';

/**
 * Tells the runtime when the consumer cannot consume although its client stays in the group. A
 * partition leader that died or cannot be reached (a broker killed, a network cut) does not crash
 * kafkajs: it retries its fetches and refreshes metadata on its own, silently, until the
 * partitions have a leader it reaches. A member that wants to fetch (some assigned partition not
 * paused, the adapter not waiting inside a batch for room) gets a fetch answer at least every
 * `maxWaitTimeInMs` (an empty fetch is answered after that long), so when none came for `afterMs`
 * (a few of those) the source reports `disconnected` (health down, a `connection` event); the
 * next answer reports `recovered`. Only a member that can fetch nothing is reported: while some
 * broker answers, some partitions are consumed. Fed by the driver's `fetchAnswered()`; a driver
 * that does not report answers is never judged.
 */
export class FetchWatch {
  #timer: NodeJS.Timeout | undefined;
  #armed = false;
  #last = 0;
  #down = false;

  constructor(
    /** Joined, not stopped, some assigned partition not paused, the adapter not waiting inside a batch: answers are due. */
    private readonly due: () => boolean,
    private readonly afterMs: number,
    private readonly name: string,
    private readonly report: (event: SourceEvent) => void,
  ) {}

  start(): void {
    this.#last = performance.now();
    this.#timer ??= setInterval(this.#check, Math.max(50, Math.floor(this.afterMs / 4)));
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** A broker answered a fetch (empty answers too). */
  answered(): void {
    this.#armed = true;
    this.#last = performance.now();
    if (this.#down) {
      this.#down = false;
      this.report({ type: 'recovered', detail: `${this.name}: fetching again`, attempts: 1 });
    }
  }

  readonly #check = (): void => {
    if (!this.#armed || this.#down) return;
    const now = performance.now();
    // Only time during which answers were due counts.
    if (!this.due()) return void (this.#last = now);
    if (now - this.#last < this.afterMs) return;
    this.#down = true;
    this.report({
      type: 'disconnected',
      detail: `${this.name}: no fetch answered for ${this.afterMs} ms (the partition leaders down or unreachable); the client keeps retrying`,
    });
  };
}
