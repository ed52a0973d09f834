/**
 * Reports a stall: messages in flight but nothing completed for `timeoutMs`. The classic
 * silent failure of consumers (a hung downstream, a lost ack) becomes an event.
 */
export class StallWatchdog {
  #timer: NodeJS.Timeout | undefined;
  /**
   * Progress is counted, not timed: `progress()` runs once per message, and a clock read there
   * was a visible share of the per-message cost. `check()` notes when the count last moved, so a
   * stall is seen at most one check interval late.
   */
  #progressCount = 0;
  #seenCount = 0;
  #lastProgress = performance.now();
  #stalledAt: number | undefined;
  #enabled = false;

  constructor(
    private readonly timeoutMs: number,
    private readonly inFlight: () => number,
    private readonly on: {
      stalled: (e: { inFlight: number; sinceMs: number }) => void;
      unstalled: (e: { stalledMs: number }) => void;
    },
  ) {}

  get stalled(): boolean {
    return this.#stalledAt !== undefined;
  }

  /** Watches from now on; the timer runs only while messages are in flight (an idle consumer costs no wake-ups). */
  start(): void {
    if (this.timeoutMs === 0) return;
    this.#enabled = true;
    this.#lastProgress = performance.now();
    if (this.inFlight() > 0) this.#arm();
  }

  stop(): void {
    this.#enabled = false;
    this.#disarm();
  }

  /** Work arrived at an idle consumer: progress, and the timer runs again. */
  busy(): void {
    this.progress();
    this.#arm();
  }

  #arm(): void {
    if (!this.#enabled || this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.check(), Math.max(10, Math.min(this.timeoutMs / 2, 5000)));
    this.#timer.unref();
  }

  #disarm(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  progress(): void {
    this.#progressCount++;
    if (this.#stalledAt !== undefined) {
      const stalledMs = performance.now() - this.#stalledAt;
      this.#stalledAt = undefined;
      this.on.unstalled({ stalledMs });
    }
  }

  check(now = performance.now()): void {
    if (this.#progressCount !== this.#seenCount) {
      this.#seenCount = this.#progressCount;
      this.#lastProgress = now;
    }
    const inFlight = this.inFlight();
    if (inFlight === 0 && this.#stalledAt === undefined) return this.#disarm();
    if (this.#stalledAt !== undefined || inFlight === 0) return;
    const sinceMs = now - this.#lastProgress;
    if (sinceMs >= this.timeoutMs) {
      this.#stalledAt = now;
      this.on.stalled({ inFlight, sinceMs });
    }
  }
}
