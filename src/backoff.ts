import type { RetryPolicy } from './retry.js';

export interface WithBackoffOptions {
  /** Delays between tries; `maxAttempts` is the number of tries. */
  policy: RetryPolicy;
  signal?: AbortSignal;
  /** Called before each wait, with the error that made the try fail. */
  onFailure?: (error: unknown, attempt: number, delayMs: number) => void;
}

/**
 * Runs `attempt` until it succeeds, waiting the policy's backoff between tries: connecting,
 * recovering and carrying out a settlement all go through this one loop. Rejects with the last
 * error after `maxAttempts` tries, or with the signal's reason.
 */
export async function withBackoff<T>(attempt: (n: number) => Promise<T>, options: WithBackoffOptions): Promise<T> {
  const { policy, signal, onFailure } = options;
  for (let n = 1; ; n++) {
    signal?.throwIfAborted();
    try {
      return await attempt(n);
    } catch (error) {
      if (n >= policy.maxAttempts || signal?.aborted) throw error;
      const delayMs = policy.delayMs(n);
      onFailure?.(error, n, delayMs);
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
