import type { DeadLetterInfo } from './dead-letter.js';
import type { Message } from './message.js';
import type { PoolStatus } from './pool/types.js';
import type { GiveBackReason, Settlement } from './settlement.js';

export type ConsumerState = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

export interface ConsumerEvents {
  /** The handler succeeded and the message was acknowledged. */
  handled: { message: Message; attempt: number; durationMs: number };
  /** The handler failed (threw, rejected or timed out); `next` says what happens to the message. */
  failed: { message: Message; error: unknown; attempt: number; durationMs: number; next: 'retry' | 'dead-letter' | 'give-back' };
  retried: { message: Message; nextAttempt: number; delayMs: number };
  deadLettered: { message: Message; info: DeadLetterInfo };
  /** Handed back unprocessed to the broker (refused at dispatch, or accepted and not processed). */
  givenBack: { message: Message; reason: GiveBackReason };
  /**
   * A batch handler call ended: `size` messages, of which `succeeded` succeeded and `failed`
   * failed (each also has its own `handled` / `failed` event); messages given back by stop()'s
   * deadline while it ran are in neither. `key`: the batch key, if any.
   */
  batch: { key: string | undefined; size: number; durationMs: number; succeeded: number; failed: number };
  /** The pool had no room for a delivered message. */
  overloaded: { message: Message; policy: 'nack' | 'pause'; pool: PoolStatus };
  /** A flow gate did not admit a delivered message: it was refused without taking a pool slot. */
  gated: { message: Message; gate: string };
  /** A retry or dead-letter kept failing: the message was set aside (broker credit freed) to come back later. */
  deferred: { message: Message; settlement: Settlement['type']; error: Error };
  /** Consumption stopped at the broker for `reason` ('overload', 'user', a gate's name, 'pool-closed'); others may still hold. */
  paused: { reason: string };
  /** `reason` was lifted after `pausedMs`; consumption resumes once no reason holds. */
  resumed: { reason: string; pausedMs: number };
  /** Messages are in flight but none completed for `stallTimeoutMs`. */
  stalled: { inFlight: number; sinceMs: number };
  /** Progress again after `stalled`. */
  unstalled: { stalledMs: number };
  connection: { state: 'connected' | 'disconnected' | 'recovered'; detail?: string | undefined; error?: unknown };
  /** Something went wrong outside a handler (an ack on a dead channel, a failed pause): logged, not fatal. */
  error: { error: unknown; during: string; message?: Message };
  state: { state: ConsumerState };
}

export interface ConsumerStatus {
  name: string;
  state: ConsumerState;
  /** Paused at the broker for at least one reason. */
  paused: boolean;
  /** The reasons held now. */
  pausedBy: string[];
  stalled: boolean;
  /** Accepted by the pool and not yet settled (running or waiting in the pool's queue). */
  inFlight: number;
  /** Retries the runtime is waiting out off the pool (brokers that cannot delay a redelivery). */
  delayedRetries: number;
  /** Messages gathered into batches that have not been handed to the pool yet (also counted in inFlight). */
  batching: number;
  handled: number;
  failed: number;
  retried: number;
  deadLettered: number;
  givenBack: number;
  overloaded: number;
  /** Refused by a flow gate. */
  gated: number;
  /** Not started, or not settled, because their delivery could no longer be settled (the broker redelivers them). */
  skippedStale: number;
  /** Broker actions that failed (each try counts). */
  settlementFailures: number;
  /** Retries and dead letters set aside after their broker action kept failing. */
  deferred: number;
  /** Settlements nothing could carry out; left to the broker's redelivery. */
  abandoned: number;
  /** Batch handler calls started. */
  batches: number;
  pool: PoolStatus;
}

export interface StopOptions {
  /** How long in-flight work may take to finish. Default: the consumer's `stopTimeoutMs`. */
  timeoutMs?: number;
}

export interface StopResult {
  /** True when every in-flight message finished by itself before the deadline. */
  drained: boolean;
  /** Messages handed back because they had not finished by the deadline. */
  givenBack: number;
}

export type HealthStatus = 'ok' | 'degraded' | 'down';

export interface ConsumerHealth {
  status: HealthStatus;
  /** Connected, running and not draining: fit to receive traffic. */
  ready: boolean;
  details: {
    name: string;
    state: ConsumerState;
    connection: 'unknown' | 'connected' | 'disconnected';
    paused: boolean;
    stalled: boolean;
    consecutiveFailures: number;
    /** A retry or dead-letter had to be set aside and none has succeeded since. */
    settlementFailing: boolean;
    inFlight: number;
    /** Why the status is not ok, in words. */
    reasons: string[];
  };
}
