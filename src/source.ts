import type { DeadLetterInfo } from './dead-letter.js';
import type { Message } from './message.js';

/**
 * One received message with its own acknowledger (Broadway's idea). The adapter says how each
 * settlement maps to its broker; the runtime decides which one applies and carries it out: an
 * action that succeeded is never called again, one that threw may be called again, or followed by
 * `defer` / `giveBack` (settle.ts). So an action that throws must leave the delivery settle-able.
 */
export interface Delivery<Raw = unknown> {
  readonly message: Message<Raw>;
  /**
   * True once this delivery can no longer be settled (its channel closed, its partition revoked):
   * the broker will deliver it again by itself. Read when the pool gives it a slot (a stale one is
   * never started) and before each broker action. Must be cheap. Absent: never stale.
   */
  stale?(): boolean;
  /**
   * Processed: remove it from the broker. May finish synchronously (return nothing, throw on
   * failure) when the broker call is a local one (a buffered ack): no promise per message then.
   */
  ack(): void | Promise<void>;
  /**
   * Failed with attempts left: have it delivered again after `delayMs`, counted as attempt
   * `nextAttempt`. Must not lose it: the original is released only once the retry is safe.
   * Sources without `capabilities.delayedRetry` are always called with `delayMs` 0: the runtime
   * has waited out the delay itself, off the pool.
   */
  retry(delayMs: number, nextAttempt: number): Promise<void>;
  /** Failed for good: publish to the dead-letter destination (confirmed), then remove the original. */
  deadLetter(info: DeadLetterInfo): Promise<void>;
  /**
   * Accepted but not processed (stop deadline, a closed pool): hand it back unchanged, so that it
   * is delivered again. Never called for a message the runtime refused at dispatch: the refusal
   * is `dispatch`'s return value, and the adapter gives that message back itself.
   */
  giveBack(): Promise<void>;
  /**
   * The last resort when a retry or a dead-letter keeps failing (settle.ts): set the message aside
   * so that it no longer holds the broker's credit, without losing it, to be delivered again no
   * sooner than `delayMs` with its attempt unchanged (RabbitMQ: confirmed republish to the tail of
   * its queue, then ack; JetStream: `nak(delay)`). Absent: the runtime uses `retry(delayMs, attempt)`.
   */
  defer?(delayMs: number): Promise<void>;
}

/**
 * What the runtime decided about a dispatched delivery, at once. Anything but `'accepted'` is a
 * refusal: the adapter gives the message back to its broker (or, where it can, keeps it and
 * offers it again later) and the runtime never touches that delivery again.
 * - `'overloaded'`: the pool had no room.
 * - `'gated'`: a flow gate (rate limit, circuit breaker, ...) did not admit it.
 * - `'stopping'`: the consumer is stopping or its pool is closed.
 */
export type DispatchResult = 'accepted' | 'overloaded' | 'gated' | 'stopping';

/** Events an adapter reports about its connection; the consumer re-emits them. */
export type SourceEvent =
  | { type: 'connected'; detail?: string }
  | { type: 'disconnected'; error?: unknown; detail?: string }
  | { type: 'recovered'; detail?: string; attempts: number }
  | { type: 'error'; error: unknown; detail?: string };

/** What the runtime gives an adapter when it starts. */
export interface SourceContext {
  /** The consumer's name (its `name` option; by default the source's name): what errors call it. */
  readonly name: string;
  /** Hands a message to the runtime, which settles it. Never throws. */
  dispatch(delivery: Delivery): DispatchResult;
  /**
   * Messages this consumer may be handed right now (free pool places, less what its gates hold
   * back): what a pull-based source may ask for.
   */
  freeCapacity(): number;
  /** Resolves when the pool has room again; rejects when `signal` aborts. */
  whenAvailable(signal?: AbortSignal): Promise<void>;
  /** Aborted when the consumer starts stopping. */
  readonly signal: AbortSignal;
  report(event: SourceEvent): void;
  /**
   * The most messages the runtime gathers for one batch handler call (1 without one). A source
   * that learns its broker's credit only at start (a JetStream durable's `max_ack_pending`) and
   * finds it below this rejects `start()` with an error naming both numbers: such a batch could
   * never fill.
   */
  readonly batchSize: number;
}

/** What a broker can do, so that the runtime knows what it must do itself. */
export interface SourceCapabilities {
  /**
   * `retry(delayMs)` has the broker (or the adapter) hold the message for the delay without
   * holding anything of the runtime's (JetStream `nak(delay)`). False: the runtime waits the delay
   * off the pool, then calls `retry(0, nextAttempt)`; `stop()` cuts those waits short.
   */
  readonly delayedRetry: boolean;
  /** A message given back is delivered again (false on core NATS: it is answered or dropped). */
  readonly redelivery: boolean;
  /** `pause()` stops deliveries at the broker (false: it may only slow them, see the adapter's docs). */
  readonly pause: boolean;
}

/**
 * The adapter contract: a thin translation of one broker's consume primitives. Policies (retry,
 * dead-letter decisions, overload, gates, timeouts, shutdown, failed broker actions) live in the
 * runtime, not here.
 */
export interface Source {
  /** e.g. `rabbitmq:payments`; used in errors, events and metrics labels. */
  readonly name: string;
  readonly capabilities: SourceCapabilities;
  /**
   * The most deliveries the broker lets this source hold unsettled, when it is known before start
   * (a RabbitMQ `prefetch` given explicitly). A consumer whose `batch.size` is larger throws at
   * construction, naming both. Absent: no such limit, or known only at start (see
   * `SourceContext.batchSize`).
   */
  readonly credit?: number | undefined;
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
