/** Polling helpers for tests: wait for a condition, never for a fixed time as a proof. */

export const tick = (ms = 5) => new Promise<void>((r) => setTimeout(r, ms));

/** Resolves once `condition()` is true; fails with `what` after `limitMs` (a hang guard, not a speed check). */
export async function until(condition: () => boolean, what: string, limitMs = 10_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await tick();
  }
}
