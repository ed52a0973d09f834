import type { DeadLetterInfo } from './dead-letter.js';
import type { Message } from './message.js';

/**
 * One received message with its own acknowledger (Broadway's idea): the adapter says how each
 * outcome maps to its broker, the runtime decides which outcome applies and calls exactly one
 * of these, exactly once.
 */
export interface Delivery<Raw = unknown> {
  readonly message: Message<Raw>;
  /**
   * Processed: remove it from the broker. May finish synchronously (return nothing, throw on
   * failure) when the broker call is a local one (a buffered ack): no promise per message then.
   */
  ack(): void | Promise<void>;
  /**
   * Failed with attempts left: have it delivered again after `delayMs`, counted as attempt
   * `nextAttempt`. Must not lose it: the original is released only once the retry is safe.
   */
  retry(delayMs: number, nextAttempt: number): Promise<void>;
  /** Failed for good: publish to the dead-letter destination (confirmed), then remove the original. */
  deadLetter(info: DeadLetterInfo): Promise<void>;
  /** Not processed (overload or shutdown): hand it back unchanged, so that it is delivered again. */
  giveBack(): Promise<void>;
}

/** What the runtime decided about a dispatched delivery, at once. */
export type DispatchResult = 'accepted' | 'overloaded' | 'stopping';

/** Events an adapter reports about its connection; the consumer re-emits them. */
export type SourceEvent =
  | { type: 'connected'; detail?: string }
  | { type: 'disconnected'; error?: unknown; detail?: string }
  | { type: 'recovered'; detail?: string; attempts: number }
  | { type: 'error'; error: unknown; detail?: string };

/** What the runtime gives an adapter when it starts. */
export interface SourceContext {
  /** Hands a message to the runtime, which settles it. Never throws. */
  dispatch(delivery: Delivery): DispatchResult;
  /** Places the pool has right now (free slots + free queue places): what a pull-based source may ask for. */
  freeCapacity(): number;
  /** Resolves when the pool has room again; rejects when `signal` aborts. */
  whenAvailable(signal?: AbortSignal): Promise<void>;
  /** Aborted when the consumer starts stopping. */
  readonly signal: AbortSignal;
  report(event: SourceEvent): void;
}

/**
 * The adapter contract: a thin translation of one broker's consume primitives. Policies (retry,
 * dead-letter decisions, overload, timeouts, shutdown) live in the runtime, not here.
 */
export interface Source {
  /** e.g. `rabbitmq:payments`; used in errors, events and metrics labels. */
  readonly name: string;
  /** Connects and begins pulling. Rejects with a clear error if the broker cannot be reached. */
  start(context: SourceContext): Promise<void>;
  /** Stops new deliveries; deliveries already handed out stay settle-able. */
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Stops pulling for good; deliveries already handed out stay settle-able. */
  stop(): Promise<void>;
  /** Releases connections; called after every delivery has been settled or abandoned. */
  close(): Promise<void>;
}
