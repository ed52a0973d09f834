/** Polling helpers for tests: wait for a condition, never for a fixed time as a proof. */

export const tick = (ms = 5) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Resolves once `condition()` is true; fails with `what` after `limitMs` (a hang guard, not a speed check);
 * a function `what` is called then, to say the state the wait ended in.
 * With `refresh`, each round first awaits it (to re-read broker-side state the condition looks at) and
 * rounds are 100 ms apart instead of 5.
 */
export async function until(condition: () => boolean, what: string | (() => string), limitMs = 10_000, refresh?: () => Promise<unknown>): Promise<void> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    if (refresh) await refresh();
    if (condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${typeof what === 'function' ? what() : what}`);
    await tick(refresh ? 100 : 5);
  }
}
