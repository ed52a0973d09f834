import { integerOption, numberOption, stringOption } from '../validate.js';
import { ADMIT, type FlowGate, type GateDecision, type GateOutcome } from './gate.js';

/** Options of `new RateLimiter(...)`. Every field but `perSecond` has a default. */
export interface RateLimiterOptions {
  /**
   * Messages admitted per second on average, over every consumer this limiter serves. Required:
   * a finite number > 0; fractions are fine (`0.5` is one message every two seconds).
   */
  perSecond: number;
  /**
   * How many may pass at once after a quiet spell: the bucket's size. Over any window of t
   * seconds at most `perSecond × t + burst` messages are admitted. An integer ≥ 1.
   * Default: a tenth of a second's worth, `Math.max(1, Math.ceil(perSecond / 10))`.
   */
  burst?: number;
  /**
   * Tokens in the bucket at construction, an integer between 0 and `burst`. Default: `burst` (a
   * full bucket: the first `burst` messages pass at once). 0 makes a new limiter start at the rate
   * without a first burst.
   */
  initialTokens?: number;
  /** The gate's name: the pause reason in `status().pausedBy`, `paused` and `gated` events. Default `'rate-limit'`. */
  name?: string;
}

/** Default of `burst`: a tenth of a second's worth of tokens, at least one. */
export function defaultBurst(perSecond: number): number {
  return Math.max(1, Math.ceil(perSecond / 10));
}

/** `perSecond` checked: a finite number > 0. */
export function perSecondOption(owner: string, value: unknown): number {
  const perSecond = numberOption(owner, 'perSecond', value, { min: 0 });
  if (perSecond === 0) throw new RangeError(`${owner}: option "perSecond" must be > 0, got 0`);
  return perSecond;
}

/**
 * A rate limit as a flow gate: a token bucket of `burst` tokens refilled at `perSecond`, kept as
 * GCRA (one "theoretical arrival time" on the monotonic clock, `performance.now()`), so there is
 * no refill timer and every answer is exact. One limiter object may serve any number of consumers:
 * they share its budget.
 *
 * A message without a token is refused before it takes a pool slot (the adapter gives it back)
 * and that consumer pauses at the broker until the bucket holds half a burst again (at least one
 * token) — never longer, so tokens never overflow a full bucket while a backlog waits, and a
 * pause/resume cycle admits a batch rather than one message. A message that this limiter admitted
 * but that never ran (the pool was full, a later gate refused it, it went stale) gets its token
 * back. `capacity()` tells pull-based brokers how many tokens there are now, so they pull no more.
 */
export class RateLimiter implements FlowGate {
  readonly name: string;
  readonly perSecond: number;
  readonly burst: number;
  /** Milliseconds between two tokens. */
  readonly #interval: number;
  /** How far ahead of now the theoretical arrival time may run: burst × interval. */
  readonly #tolerance: number;
  /** Tokens the bucket holds again when a refused consumer resumes. */
  readonly #resumeLevel: number;
  /** Added to a pause: Node's timers may fire up to a millisecond early; never more than half the headroom above #resumeLevel. */
  readonly #margin: number;
  /** GCRA's theoretical arrival time, in performance.now() milliseconds: the bucket is full when it is ≤ now. */
  #tat: number;

  constructor(options: RateLimiterOptions) {
    const owner = 'RateLimiter';
    if (options === null || typeof options !== 'object') throw new TypeError(`${owner}: options must be an object with "perSecond"`);
    this.perSecond = perSecondOption(owner, options.perSecond);
    this.burst = integerOption(owner, 'burst', options.burst, { min: 1, fallback: defaultBurst(this.perSecond) });
    const initial = integerOption(owner, 'initialTokens', options.initialTokens, { min: 0, max: this.burst, fallback: this.burst });
    this.name = stringOption(owner, 'name', options.name, 'rate-limit');
    this.#interval = 1000 / this.perSecond;
    this.#tolerance = this.burst * this.#interval;
    this.#resumeLevel = Math.max(1, Math.floor(this.burst / 2));
    this.#margin = Math.min(1, ((this.burst - this.#resumeLevel) * this.#interval) / 2);
    this.#tat = performance.now() + (this.burst - initial) * this.#interval;
  }

  admit(_message?: unknown, _consumer?: unknown): GateDecision {
    const now = performance.now();
    const tat = this.#tat > now ? this.#tat : now;
    // One token is there when taking it keeps the arrival time within the tolerance (a hair of slack for float error).
    if (tat + this.#interval - now <= this.#tolerance + 1e-9 * this.#interval) {
      this.#tat = tat + this.#interval;
      return ADMIT;
    }
    // Pause until the bucket holds #resumeLevel tokens (it cannot overflow before then: nothing is lost while paused).
    const due = tat - this.#tolerance + this.#resumeLevel * this.#interval - now;
    return { admit: false, resumeAfterMs: Math.max(1, Math.ceil(due + this.#margin)) };
  }

  /** A message admitted here that never ran gets its token back. */
  done(_message: unknown, outcome: GateOutcome): void {
    if (outcome.result !== 'skipped') return;
    const now = performance.now();
    // The same as tokens = min(burst, tokens + 1): a full bucket stays full.
    this.#tat = Math.max(now, this.#tat - this.#interval);
  }

  /** Whole tokens in the bucket now. */
  capacity(): number {
    return Math.floor(this.tokens());
  }

  /** Tokens in the bucket now, with the fraction of the next one. */
  tokens(now = performance.now()): number {
    return Math.max(0, this.#tolerance - Math.max(0, this.#tat - now)) / this.#interval;
  }

  /** Milliseconds until the next whole token is there (0: one is there now). */
  nextTokenInMs(now = performance.now()): number {
    const tat = this.#tat > now ? this.#tat : now;
    return Math.max(0, tat + this.#interval - this.#tolerance - now);
  }
}
