/** What the pause controller needs of the consumer. */
export interface PauseHost {
  /** Stops / restarts deliveries at the broker; failures are reported by the host, never thrown. */
  pauseSource(): Promise<void>;
  resumeSource(): Promise<void>;
  /** Whether consumption may resume now (false while stopping). */
  mayResume(): boolean;
  paused(reason: string): void;
  resumed(reason: string, pausedMs: number): void;
}

/**
 * Reason-counted pause: the broker is paused while any reason holds (overload, user, a gate's
 * name, ...), and resumed only when the last one is lifted. Source calls happen only on those two
 * transitions, one at a time and in order, so a quick pause-resume-pause cannot reorder them.
 */
export class PauseReasons {
  readonly #since = new Map<string, number>();
  #chain: Promise<void> = Promise.resolve();
  /** What the source was last asked to be. */
  #sourcePaused = false;

  constructor(private readonly host: PauseHost) {}

  get paused(): boolean {
    return this.#since.size > 0;
  }

  has(reason: string): boolean {
    return this.#since.has(reason);
  }

  reasons(): string[] {
    return [...this.#since.keys()];
  }

  /** Adds a reason; resolves once the source is paused. A reason already held changes nothing. */
  pause(reason: string): Promise<void> {
    if (this.#since.has(reason)) return this.#chain;
    this.#since.set(reason, performance.now());
    this.host.paused(reason);
    return this.#reconcile();
  }

  /** Lifts a reason; resolves once the source is in its wanted state. Lifting one not held changes nothing. */
  resume(reason: string): Promise<void> {
    const since = this.#since.get(reason);
    if (since === undefined) return this.#chain;
    this.#since.delete(reason);
    this.host.resumed(reason, performance.now() - since);
    return this.#reconcile();
  }

  /**
   * Brings the source in line with the reasons held; never resumes a consumer that is stopping.
   * The wanted state is taken when the reasons change, not when the call's turn comes: a reason
   * added and lifted while an earlier call runs still pauses and then resumes the source, so an
   * adapter that keeps refused deliveries to offer again on resume always hears the resume.
   */
  #reconcile(): Promise<void> {
    const wanted = this.#since.size > 0;
    this.#chain = this.#chain.then(async () => {
      if (wanted === this.#sourcePaused || (!wanted && !this.host.mayResume())) return;
      this.#sourcePaused = wanted;
      if (wanted) await this.host.pauseSource();
      else await this.host.resumeSource();
    });
    return this.#chain;
  }
}
