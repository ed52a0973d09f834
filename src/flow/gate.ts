import type { Message } from '../message.js';

/** What a gate says about one delivered message, before it may take a pool slot. */
export type GateDecision =
  | { readonly admit: true }
  /**
   * Not now. The message is refused (the adapter gives it back) without taking a slot, and the
   * consumer pauses at the broker, under the gate's name as reason, until `resumeAfterMs` has
   * passed or `resumeWhen` settles; with neither, for a short growing pause (the consumer's
   * `overloadBackoff`: 50 ms → 2 s), so that it does not spin on the broker's redelivery.
   */
  | { readonly admit: false; readonly resumeAfterMs?: number; readonly resumeWhen?: Promise<unknown> };

export const ADMIT: GateDecision = Object.freeze({ admit: true });

/** The consumer as a gate sees it. */
export interface GatedConsumer {
  readonly name: string;
  /** Its messages accepted and not yet settled. */
  readonly inFlight: number;
}

/** How an admitted message ended, for gates that learn from outcomes (breakers, adaptive limits). */
export interface GateOutcome {
  /** `'skipped'`: it never ran (stale, or refused after this gate admitted it). */
  readonly result: 'succeeded' | 'failed' | 'skipped';
  readonly error?: unknown;
  /** The handler's run time; 0 when it did not run. */
  readonly durationMs: number;
}

/**
 * A flow gate: asked for every delivered message before it takes a pool slot, so that waiting for
 * a gate never holds a slot of a shared pool (Broadway's rate limiter sits before work is taken,
 * too). Gates are checked in order; the first that does not admit decides. One gate object may
 * serve many consumers (one rate limit over every queue that calls the same downstream).
 */
export interface FlowGate {
  /** Names the gate in events, `status().pausedBy` and errors, e.g. `rate-limit`. */
  readonly name: string;
  /**
   * Synchronous and cheap: it runs for every message. Must not throw; if it does, the consumer
   * reports it (`error`, during `'gate'`) and treats it as a refusal.
   */
  admit(message: Message, consumer: GatedConsumer): GateDecision;
  /** Called once for every admitted message when it is settled (or skipped). */
  done?(message: Message, outcome: GateOutcome, consumer: GatedConsumer): void;
  /**
   * Whether a handler's failure is this gate's business rather than the message's (a circuit
   * breaker that is open: the downstream is down). True: the message is given back without
   * counting the attempt, so an outage never walks healthy messages into the dead-letter queue.
   * Asked before `failurePolicy`; must be cheap and must not throw.
   */
  excuses?(error: unknown, message: Message, consumer: GatedConsumer): boolean;
  /** How many more messages this gate would admit now, for pull-based brokers sizing a pull. Absent: no limit. */
  capacity?(consumer: GatedConsumer): number;
}
