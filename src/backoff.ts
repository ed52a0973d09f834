import type { RetryPolicy } from './retry.js';

export interface WithRetriesOptions {
  /** Delays between tries; `maxAttempts` is the number of tries (Infinity-like values allowed). */
  policy: RetryPolicy;
  signal?: AbortSignal;
  /** Called before each wait, with the error that made the try fail. */
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Runs `attempt` until it succeeds, waiting the policy's backoff between tries. Every adapter
 * connects and recovers through this, so "how long and how often" is one policy, not four loops.
 * Rejects with the last error after `maxAttempts` tries, or with the signal's reason.
 */
export async function withRetries<T>(attempt: (n: number) => Promise<T>, options: WithRetriesOptions): Promise<T> {
  const { policy, signal, onRetry } = options;
  for (let n = 1; ; n++) {
    signal?.throwIfAborted();
    try {
      return await attempt(n);
    } catch (error) {
      if (n >= policy.maxAttempts || signal?.aborted) throw error;
      const delayMs = policy.delayMs(n);
      onRetry?.(error, n, delayMs);
      await abortableDelay(delayMs, signal);
    }
  }
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
export function abortableDelay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
