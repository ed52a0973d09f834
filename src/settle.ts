import { abortableDelay } from './backoff.js';
import type { RetryPolicy } from './retry.js';
import type { Settlement } from './settlement.js';
import type { Delivery, SourceCapabilities } from './source.js';

/** How the runtime carries out a settlement whose broker action fails. */
export interface SettlePolicy {
  /** Tries of the action itself before the fallback. */
  readonly tries: number;
  /** Waits between tries. */
  readonly backoff: RetryPolicy;
  /** The fallback's redelivery delay (`Delivery.defer`). */
  readonly deferMs: number;
}

/**
 * - `done`: the action succeeded.
 * - `stale`: the delivery can no longer be settled; the broker delivers it again by itself.
 * - `deferred`: the action kept failing; the message was set aside (credit freed, nothing lost).
 * - `given-back`: the action and the deferral failed; the message was handed back unchanged.
 * - `abandoned`: nothing worked; the broker redelivers it when the delivery's channel or lease ends.
 */
export type SettleResult = 'done' | 'stale' | 'deferred' | 'given-back' | 'abandoned';

export interface SettleHooks {
  /** One failed broker action (`during`: the settlement's type, or `defer`). */
  failed(during: string, error: unknown, tryNumber: number): void;
  /** Aborted: no more waiting between tries (the stop deadline); the fallback runs at once. */
  readonly signal?: AbortSignal | undefined;
}

/** The one policy for a broker action that fails, the same on every broker (see ARCHITECTURE.md). */
export async function carryOut(
  delivery: Delivery,
  settlement: Settlement,
  capabilities: SourceCapabilities,
  policy: SettlePolicy,
  hooks: SettleHooks,
  /** A first try that already failed outside (a synchronous ack): its error; the loop goes on from the second try. */
  firstFailure?: { error: unknown },
): Promise<{ result: SettleResult; error?: unknown }> {
  let error: unknown;
  let first = 1;
  if (firstFailure !== undefined) {
    error = firstFailure.error;
    hooks.failed(settlement.type, error, 1);
    // Its channel or partition is gone (the usual reason a synchronous ack throws): no wait, the slot is freed now.
    if (delivery.stale?.() === true) return { result: 'stale', error };
    first = 2;
    if (policy.tries > 1) await abortableDelay(policy.backoff.delayMs(1), hooks.signal).catch(() => {});
  }
  for (let n = first; n <= policy.tries; n++) {
    if (delivery.stale?.() === true) return { result: 'stale' };
    try {
      await act(delivery, settlement, capabilities);
      return { result: 'done' };
    } catch (e) {
      error = e;
      hooks.failed(settlement.type, e, n);
    }
    if (delivery.stale?.() === true) return { result: 'stale', error };
    if (n === policy.tries || hooks.signal?.aborted) break;
    try {
      await abortableDelay(policy.backoff.delayMs(n), hooks.signal);
    } catch {
      break;
    }
  }
  if (delivery.stale?.() === true) return { result: 'stale', error };
  // A retry or dead letter that cannot be carried out must not keep holding the broker's credit
  // (a full dead-letter queue would otherwise stop the whole consumer): set it aside instead.
  if (settlement.type === 'retry' || settlement.type === 'dead-letter') {
    try {
      if (delivery.defer) await delivery.defer(policy.deferMs);
      else await delivery.retry(capabilities.delayedRetry ? policy.deferMs : 0, attemptOf(delivery, settlement));
      return { result: 'deferred', error };
    } catch (e) {
      hooks.failed('defer', e, 1);
    }
    if (delivery.stale?.() === true) return { result: 'stale', error };
    try {
      await delivery.giveBack();
      return { result: 'given-back', error };
    } catch (e) {
      hooks.failed('give-back', e, 1);
    }
  }
  return { result: 'abandoned', error };
}

function act(delivery: Delivery, settlement: Settlement, capabilities: SourceCapabilities): void | Promise<void> {
  switch (settlement.type) {
    case 'ack':
      return delivery.ack();
    case 'retry':
      // Without broker-side delays the runtime has already waited the delay.
      return delivery.retry(capabilities.delayedRetry ? settlement.delayMs : 0, settlement.nextAttempt);
    case 'dead-letter':
      return delivery.deadLetter(settlement.info);
    case 'give-back':
      return delivery.giveBack();
  }
}

/** The attempt a set-aside message keeps: the one that just ran. */
function attemptOf(delivery: Delivery, settlement: Settlement): number {
  return settlement.type === 'retry' ? settlement.nextAttempt - 1 : delivery.message.deliveryAttempt;
}

/** Dead letters set aside by `defer`, by message id, so a redelivery goes to dead-letter without running the handler again. */
export class PendingDeadLetters<Info> {
  readonly #byId = new Map<string, Info>();
  constructor(readonly max = 10_000) {}

  get size(): number {
    return this.#byId.size;
  }

  remember(id: string, info: Info): void {
    this.#byId.delete(id);
    this.#byId.set(id, info);
    // Bounded: the oldest is forgotten first (its redelivery then runs the handler again, which is at-least-once).
    if (this.#byId.size > this.max) this.#byId.delete(this.#byId.keys().next().value!);
  }

  take(id: string): Info | undefined {
    const info = this.#byId.get(id);
    if (info !== undefined) this.#byId.delete(id);
    return info;
  }
}
