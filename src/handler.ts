import type { Message } from './message.js';

export interface HandlerContext {
  /** Aborted when the handler times out or the consumer's stop deadline passes. */
  signal: AbortSignal;
  /** 1-based attempt number of this run. */
  attempt: number;
}

export type Handler<Raw = unknown> = (message: Message<Raw>, context: HandlerContext) => Promise<void> | void;
