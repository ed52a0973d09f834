import type { ValidationIssue } from './schema.js';
/** Thrown (or rejected) where work was abandoned because its pool closed. */
export class PoolClosedError extends Error {
  override readonly name = 'PoolClosedError';
  constructor(message = 'the worker pool was closed before this task ran') {
    super(message);
  }
}

/** The reason an AbortSignal carries when a handler or task ran past its time limit. */
export class TaskTimeoutError extends Error {
  override readonly name = 'TaskTimeoutError';
  constructor(readonly timeoutMs: number) {
    super(`timed out after ${timeoutMs} ms`);
  }
}

/**
 * A failure that retrying cannot fix: the runtime sends the message straight to the
 * dead-letter path instead of spending the remaining attempts.
 */
export class PermanentError extends Error {
  override readonly name: string = 'PermanentError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The message body could not be decoded (e.g. not JSON). Permanent: it goes to dead-letter. */
export class DecodeError extends PermanentError {
  override readonly name = 'DecodeError';
}

/** A message whose body failed the consumer's `schema`: dead-lettered at once, with its issues in a header. */
export class ValidationError extends PermanentError {
  override readonly name = 'ValidationError';
  constructor(
    message: string,
    /** Each issue's dotted path and message, as the schema library gave them. */
    readonly issues: ValidationIssue[],
  ) {
    super(message);
  }
}

/** The reason carried by a consumer's signals when it is shutting down. */
export class ShutdownError extends Error {
  override readonly name = 'ShutdownError';
  constructor(message = 'the consumer is shutting down') {
    super(message);
  }
}

/**
 * A broker action that kept failing (a dead-letter destination refusing publishes, a retry
 * republish nacked): what the `error` event carries once the runtime stops trying it and sets the
 * message aside instead (settle.ts). `cause` is the broker's last error.
 */
export class SettlementError extends Error {
  override readonly name = 'SettlementError';
  constructor(
    message: string,
    readonly settlement: 'ack' | 'retry' | 'dead-letter' | 'give-back',
    readonly tries: number,
    readonly fallback: 'deferred' | 'given-back' | 'abandoned',
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
