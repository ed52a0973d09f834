import type { DeadLetterInfo } from './dead-letter.js';

/** Why a message went back unprocessed. */
export type GiveBackReason = 'overload' | 'gated' | 'shutdown' | 'failure-policy' | 'excused';

/**
 * What is to become of a delivered message: the value the runtime computes from a handler's
 * outcome and then carries out, once, through the delivery's acknowledger (settle.ts).
 */
export type Settlement =
  | { readonly type: 'ack' }
  | { readonly type: 'retry'; readonly delayMs: number; readonly nextAttempt: number }
  | { readonly type: 'dead-letter'; readonly info: DeadLetterInfo }
  | { readonly type: 'give-back'; readonly reason: GiveBackReason };

export const ACK: Settlement = { type: 'ack' };
