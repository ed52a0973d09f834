import type { DeadLetterInfo } from './dead-letter.js';
import type { Message } from './message.js';
import type { PoolStatus } from './pool/types.js';

export type ConsumerState = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

export interface ConsumerEvents {
  /** The handler succeeded and the message was acknowledged. */
  handled: { message: Message; attempt: number; durationMs: number };
  /** The handler failed (threw, rejected or timed out); `next` says what happens to the message. */
  failed: { message: Message; error: unknown; attempt: number; durationMs: number; next: 'retry' | 'dead-letter' | 'give-back' };
  retried: { message: Message; nextAttempt: number; delayMs: number };
  deadLettered: { message: Message; info: DeadLetterInfo };
  /** Handed back unprocessed to the broker. */
  givenBack: { message: Message; reason: 'overload' | 'shutdown' };
  /** The pool had no room for a delivered message. */
  overloaded: { message: Message; policy: 'nack' | 'pause'; pool: PoolStatus };
  paused: { reason: 'overload' };
  resumed: { pausedMs: number };
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
  paused: boolean;
  stalled: boolean;
  /** Accepted by the pool and not yet settled (running or waiting in the pool's queue). */
  inFlight: number;
  handled: number;
  failed: number;
  retried: number;
  deadLettered: number;
  givenBack: number;
  overloaded: number;
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
    inFlight: number;
    /** Why the status is not ok, in words. */
    reasons: string[];
  };
}
