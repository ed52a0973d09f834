import { integerOption, numberOption, objectOption, oneOfOption } from '../validate.js';
import type { AdaptiveLimitStatus, AdaptiveOptions, LimitAlgorithm } from './types.js';

/**
 * The adaptive limit of a WorkerPool (the `adaptive` option): where the pool's effective
 * concurrency sits between `min` and `maxConcurrency`, moved once per window from the latency and
 * the failures of the jobs it ran. After Netflix concurrency-limits (Gradient2Limit, AIMDLimit,
 * VegasLimit) and Envoy's adaptive concurrency filter; see docs/flow-control.md#adaptive-concurrency.
 *
 * Latency is the mean run time of the jobs in a window, from Little's law: the pool integrates its
 * running count over time (`area`) and counts completions, so mean run time = area / completions.
 * That is exact for the mean in steady state, needs no per-job field or clock read of its own, and
 * — unlike a mean of finished jobs only — it sees a stuck job's time while it is still running.
 *
 * Pure: the pool passes the clock's readings in, so it runs on fake time in tests.
 */

interface Resolved {
  algorithm: LimitAlgorithm;
  min: number;
  initial: number;
  windowMs: number;
  minSamples: number;
  tolerance: number;
  smoothing: number;
  headroom: number | undefined;
  backoffRatio: number;
  increase: number;
  failureThreshold: number;
}

/** A window at the floor in which latency stayed high: after this many in a row, the no-load latency is measured again. */
const STUCK_AT_MIN_WINDOWS = 5;
/** The limit fell to this fraction of a reference and the latency did not follow: the latency is not ours. */
const SHRINK_STEP = 0.75;
/** Latency within this factor either way counts as flat. */
const FLAT = 1.15;

export function resolveAdaptive(owner: string, value: unknown, maxConcurrency: number): Resolved {
  const o = objectOption(owner, 'adaptive', value) as AdaptiveOptions;
  const algorithm = oneOfOption(owner, 'adaptive.algorithm', o.algorithm, ['gradient', 'aimd'] as const, 'gradient');
  const min = integerOption(owner, 'adaptive.min', o.min, { min: 1, max: maxConcurrency, fallback: 1 });
  const gradient = algorithm === 'gradient';
  return {
    algorithm,
    min,
    initial: integerOption(owner, 'adaptive.initial', o.initial, { min, max: maxConcurrency, fallback: min }),
    windowMs: numberOption(owner, 'adaptive.windowMs', o.windowMs, { min: 1, fallback: 100 }),
    minSamples: integerOption(owner, 'adaptive.minSamples', o.minSamples, { min: 1, fallback: 10 }),
    tolerance: numberOption(owner, 'adaptive.tolerance', o.tolerance, { min: 1, fallback: gradient ? 1.1 : 1.25 }),
    smoothing: numberOption(owner, 'adaptive.smoothing', o.smoothing, { min: 0.01, max: 1, fallback: 0.5 }),
    headroom: o.headroom === undefined ? undefined : numberOption(owner, 'adaptive.headroom', o.headroom, { min: 0 }),
    backoffRatio: numberOption(owner, 'adaptive.backoffRatio', o.backoffRatio, { min: 0.5, max: 0.99, fallback: 0.9 }),
    increase: numberOption(owner, 'adaptive.increase', o.increase, { min: 0.01, fallback: 1 }),
    failureThreshold: numberOption(owner, 'adaptive.failureThreshold', o.failureThreshold, { min: 0, max: 1, fallback: 0.1 }),
  };
}

export class AdaptiveLimit {
  readonly #o: Resolved;
  #max: number;
  /** The estimate (fractional); the pool's limit is its rounding. */
  #estimate: number;
  #limit: number;
  #noLoadMs: number | undefined = undefined;
  #lastMs: number | undefined = undefined;
  #windows = 0;
  // The window being measured.
  #windowStart: number | undefined = undefined;
  #lastChange = 0;
  #area = 0;
  #completions = 0;
  #failures = 0;
  #peak = 0;
  #waited = false;
  // No-load re-measurement.
  #reference: { concurrency: number; latencyMs: number } | undefined = undefined;
  #atMinHigh = 0;

  constructor(options: Resolved, maxConcurrency: number) {
    this.#o = options;
    this.#max = maxConcurrency;
    this.#estimate = options.initial;
    this.#limit = options.initial;
  }

  get limit(): number {
    return this.#limit;
  }

  get min(): number {
    return this.#o.min;
  }

  /** A new ceiling (resize): the limit is clamped into [min, max]. */
  setMax(max: number): void {
    this.#max = max;
    this.#estimate = Math.min(this.#estimate, max);
    this.#limit = Math.min(this.#limit, max);
  }

  /** Integrates the running count up to `now`; called before every change of it. */
  observe(now: number, active: number): void {
    if (this.#windowStart === undefined) {
      this.#windowStart = now;
    } else {
      this.#area += active * (now - this.#lastChange);
    }
    this.#lastChange = now;
  }

  /** A job is about to start with `active` running before it. */
  started(now: number, active: number): void {
    this.observe(now, active);
    if (active + 1 > this.#peak) this.#peak = active + 1;
  }

  /** A job had to wait (or was refused) because the limit was reached: demand is above the limit. */
  waited(): void {
    this.#waited = true;
  }

  /**
   * A job ended (`active` counts it still). Returns the new limit when this ended a window and
   * the limit moved, else undefined.
   */
  finished(now: number, active: number, failed: boolean): number | undefined {
    this.observe(now, active);
    this.#completions++;
    if (failed) this.#failures++;
    if (now - this.#windowStart! < this.#o.windowMs || this.#completions < this.#o.minSamples) return undefined;
    const before = this.#limit;
    this.#update(this.#area / (now - this.#windowStart!));
    this.#windowStart = now;
    this.#area = 0;
    this.#completions = 0;
    this.#failures = 0;
    this.#peak = active - 1;
    this.#waited = false;
    return this.#limit === before ? undefined : this.#limit;
  }

  status(): AdaptiveLimitStatus {
    return {
      algorithm: this.#o.algorithm,
      min: this.#o.min,
      estimate: Math.round(this.#estimate * 100) / 100,
      latencyMs: this.#lastMs,
      noLoadLatencyMs: this.#noLoadMs,
      windows: this.#windows,
    };
  }

  get latencyMs(): number | undefined {
    return this.#lastMs;
  }

  get noLoadLatencyMs(): number | undefined {
    return this.#noLoadMs;
  }

  /** `concurrency`: the window's mean running count. */
  #update(concurrency: number): void {
    const o = this.#o;
    this.#windows++;
    const sample = this.#area / this.#completions;
    this.#lastMs = sample;
    const limit = this.#limit;
    let estimate = this.#estimate;
    if (this.#failures / this.#completions > o.failureThreshold) {
      // Overload the jobs report as failures (503s, timeouts): back off; fast failures say nothing about latency.
      estimate *= o.backoffRatio;
      this.#reference = undefined;
    } else if (this.#peak * 2 < limit && !this.#waited) {
      // App-limited (less than half the limit ever used): neither the latency nor the limit means much now.
      return;
    } else {
      if (this.#noLoadMs === undefined || sample < this.#noLoadMs) this.#noLoadMs = sample;
      if (sample > this.#noLoadMs * o.tolerance) this.#remeasure(sample, concurrency);
      else {
        this.#reference = undefined;
        this.#atMinHigh = 0;
      }
      // After a re-measurement this window is no longer queueing.
      const queueing = sample > this.#noLoadMs * o.tolerance;
      const busy = this.#waited || this.#peak >= limit;
      if (o.algorithm === 'gradient') {
        // Envoy's gradient, with Netflix's clamp: limit × clamp(tolerance × noLoad / sample, 0.5, 1) + headroom.
        const gradient = Math.max(0.5, Math.min(1, (o.tolerance * this.#noLoadMs) / sample));
        const headroom = o.headroom ?? Math.sqrt(estimate) / 2;
        const target = estimate * gradient + headroom;
        // Growth only when the limit was reached (an idle limit does not creep up), and at once;
        // a decrease only `smoothing` of the way (one noisy window does not halve the limit).
        if (target > estimate) {
          if (!busy) return;
          estimate = target;
        } else {
          estimate += o.smoothing * (target - estimate);
        }
      } else if (queueing) {
        estimate *= o.backoffRatio;
      } else if (busy) {
        estimate += o.increase;
      }
    }
    this.#estimate = Math.max(o.min, Math.min(this.#max, estimate));
    this.#limit = Math.max(o.min, Math.min(this.#max, Math.round(this.#estimate)));
  }

  /**
   * The no-load latency is the lowest window mean seen; it must also be able to rise (a downstream
   * that became slower for everyone). Queueing we cause falls with the limit; latency that does not
   * fall when the limit does is not ours: then this window's latency is the new no-load latency.
   * By Little's law a saturated downstream's latency is proportional to the concurrency we apply
   * (W = N / X), so two signs of it: the mean running count fell to 3/4 of a reference point with
   * the latency flat (within 15 %: a window's mean is noisy at low concurrency) — a window whose latency rose starts a new reference, so a
   * window that straddles a change of the downstream is not mistaken for one (the running count, not the limit: it lags the limit while the jobs
   * started before a shrink finish, and so does their latency), or
   * the limit sat at `min` for 5 windows with the latency still high (as Envoy re-measures its
   * minRTT when the limit stays at its floor).
   */
  #remeasure(sample: number, concurrency: number): void {
    const ref = this.#reference;
    if (this.#limit <= this.#o.min) {
      if (++this.#atMinHigh >= STUCK_AT_MIN_WINDOWS) return this.#rebase(sample);
    } else {
      this.#atMinHigh = 0;
    }
    // No reference yet, or latency still rising (the downstream is changing under us): start from here.
    if (ref === undefined || sample > ref.latencyMs * FLAT) {
      this.#reference = { concurrency, latencyMs: sample };
      return;
    }
    if (concurrency <= ref.concurrency * SHRINK_STEP) {
      if (sample * FLAT >= ref.latencyMs) return this.#rebase(sample);
      this.#reference = { concurrency, latencyMs: sample };
    }
  }

  #rebase(sample: number): void {
    this.#noLoadMs = sample;
    this.#reference = undefined;
    this.#atMinHigh = 0;
  }
}
