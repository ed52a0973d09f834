import { withBackoff } from '../backoff.js';
import { redactError } from '../redact.js';
import { retryPolicy, type BackoffOptions, type RetryPolicy } from '../retry.js';
import type { SourceContext } from '../source.js';
import { integerOption, objectOption } from '../validate.js';

/** How an adapter connects at start and reconnects after a lost connection: the same on every broker. */
export interface RecoveryOptions {
  /** Connection attempts of `start()` before it rejects. Default 3. */
  startAttempts?: number;
  /** Backoff between connection attempts, at start and while recovering. Default 200 ms growing ×2 to 5 s, jitter 0.2. */
  backoff?: BackoffOptions;
}

export interface ResolvedRecovery {
  startAttempts: number;
  /** Unbounded attempts: recovery goes on until it succeeds or the consumer stops. */
  backoff: RetryPolicy;
}

export const RECOVERY_DEFAULTS = { startAttempts: 3, backoff: { initialMs: 200, maxMs: 5_000 } } as const;

/** Validates `recovery` (errors name `owner` and the option) and fills in the shared defaults. */
export function resolveRecovery(owner: string, value: unknown): ResolvedRecovery {
  const r = (value === undefined ? {} : objectOption(owner, 'recovery', value)) as RecoveryOptions;
  const backoff = r.backoff === undefined ? {} : (objectOption(owner, 'recovery.backoff', r.backoff) as BackoffOptions);
  return {
    startAttempts: integerOption(owner, 'recovery.startAttempts', r.startAttempts, { min: 1, fallback: RECOVERY_DEFAULTS.startAttempts }),
    backoff: retryPolicy(
      { maxAttempts: Number.MAX_SAFE_INTEGER, backoff: { ...RECOVERY_DEFAULTS.backoff, ...backoff } },
      `${owner} recovery`,
    ),
  };
}

/**
 * `start()`'s connect loop: `recovery.startAttempts` tries with `recovery.backoff` between them,
 * each failure reported, and at the end one error that names the consumer and its source, where
 * it tried to connect (`where`, password removed) and how often.
 */
export async function connectAtStart<T>(
  source: { readonly name: string },
  where: string,
  recovery: ResolvedRecovery,
  context: SourceContext,
  connect: (attempt: number) => Promise<T>,
): Promise<T> {
  const attempts = recovery.startAttempts;
  // A consumer given its own name is called by it, and by its source's name, which says what it reads.
  const who = context.name === undefined || context.name === source.name ? source.name : `consumer "${context.name}" (${source.name})`;
  try {
    return await withBackoff(connect, {
      policy: { maxAttempts: attempts, delayMs: (n) => recovery.backoff.delayMs(n) },
      signal: context.signal,
      onFailure: (error, attempt, delayMs) =>
        context.report({ type: 'error', error, detail: `${who}: connect attempt ${attempt} of ${attempts} to ${where} failed; next in ${delayMs} ms` }),
    });
  } catch (error) {
    throw new Error(`${who}: could not connect to ${where} after ${attempts} attempt(s): ${redactError(error)}`, { cause: error });
  }
}
