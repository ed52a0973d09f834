import type { Message } from './message.js';

export interface HandlerContext {
  /** Aborted when the handler times out or the consumer's stop deadline passes. */
  signal: AbortSignal;
  /** 1-based attempt number of this run. */
  attempt: number;
}

/** `Data`: the output type of the consumer's `schema` (`message.data`). */
export type Handler<Raw = unknown, Data = unknown> = (message: Message<Raw, Data>, context: HandlerContext) => Promise<void> | void;

/** What a batch handler's `ctx` offers. */
export interface BatchContext {
  /** Aborted when the batch call times out (`handlerTimeoutMs`) or the consumer's stop deadline passes. */
  signal: AbortSignal;
  /** The batch key (`batch.key`) these messages share; undefined without a key. */
  key: string | undefined;
  /**
   * Marks one message of this batch failed: it goes through the same retry / dead-letter path as
   * a single message's failure (a `PermanentError` dead-letters it at once); the others succeed
   * unless marked too. Throws a TypeError for a message that is not in this batch.
   */
  fail(message: Message, error: unknown): void;
}

/**
 * What a batch handler may return instead of calling `ctx.fail`: the messages that failed, each
 * with its error. Returning nothing means every message not marked failed succeeded.
 */
export interface BatchResult {
  failed?: Iterable<{ message: Message; error: unknown }>;
}

/**
 * Handles many messages in one call (one pool slot). Return nothing: all succeeded (but those
 * marked with `ctx.fail`); throw or reject: all failed with that error (those marked keep theirs).
 */
export type BatchHandler<Raw = unknown, Data = unknown> = (
  messages: Message<Raw, Data>[],
  context: BatchContext,
) => Promise<BatchResult | void> | BatchResult | void;
