import { integerOption, numberOption, objectOption } from './validate.js';

export interface BackoffOptions {
  /** Delay before the second attempt. Default 200 ms. */
  initialMs?: number;
  /** Upper bound of any delay. Default 30 s. */
  maxMs?: number;
  /** Growth per attempt. Default 2. */
  multiplier?: number;
  /** Fraction of the delay that is randomised (0 = none, 1 = full jitter). Default 0.2. */
  jitter?: number;
}

export interface RetryOptions {
  /** Total handler runs per message, the first included. Default 3; 1 means no retry. */
  maxAttempts?: number;
  backoff?: BackoffOptions;
}

export interface RetryPolicy {
  readonly maxAttempts: number;
  /** The delay before attempt `attempt + 1`, after attempt `attempt` (1-based) failed. */
  delayMs(attempt: number, random?: () => number): number;
}

/** Exponential backoff with jitter, validated at construction. */
export function retryPolicy(options: RetryOptions | undefined, owner: string): RetryPolicy {
  const o = options === undefined ? {} : objectOption(owner, 'retry', options);
  const maxAttempts = integerOption(owner, 'retry.maxAttempts', o.maxAttempts, { min: 1, fallback: 3 });
  const b = o.backoff === undefined ? {} : objectOption(owner, 'retry.backoff', o.backoff);
  const initialMs = numberOption(owner, 'retry.backoff.initialMs', b.initialMs, { min: 0, fallback: 200 });
  const maxMs = numberOption(owner, 'retry.backoff.maxMs', b.maxMs, { min: initialMs, fallback: Math.max(30_000, initialMs) });
  const multiplier = numberOption(owner, 'retry.backoff.multiplier', b.multiplier, { min: 1, fallback: 2 });
  const jitter = numberOption(owner, 'retry.backoff.jitter', b.jitter, { min: 0, max: 1, fallback: 0.2 });
  return {
    maxAttempts,
    delayMs(attempt, random = Math.random) {
      const base = Math.min(maxMs, initialMs * multiplier ** Math.max(0, attempt - 1));
      return Math.round(base * (1 - jitter * random()));
    },
  };
}
