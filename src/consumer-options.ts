import type { FlowGate } from './flow/gate.js';
import type { BatchHandler, Handler } from './handler.js';
import type { StandardSchemaV1 } from './schema.js';
import type { Message } from './message.js';
import { PoolShare } from './pool/share.js';
import { WorkerPool } from './pool/worker-pool.js';
import type { WorkerPoolOptions } from './pool/types.js';
import { retryPolicy, type BackoffOptions, type RetryOptions, type RetryPolicy } from './retry.js';
import type { SettlePolicy } from './settle.js';
import { functionOption, integerOption, numberOption, objectOption, oneOfOption, stringOption } from './validate.js';

export type OverloadPolicy = 'nack' | 'pause';

/** What to do with a failed message, as `failurePolicy` may decide it. */
export type FailureDecision =
  /** Run it again after `delayMs` (default: the retry backoff), even past `retry.maxAttempts`. */
  | { action: 'retry'; delayMs?: number }
  /** Dead-letter it now, whatever attempts are left. */
  | { action: 'dead-letter' }
  /** Hand it back unprocessed; the attempt does not count (e.g. the downstream is known to be down). */
  | { action: 'give-back' };

export interface FailureInfo {
  message: Message;
  /** The attempt that failed (1-based). */
  attempt: number;
  maxAttempts: number;
  /** What the runtime would do by itself. */
  next: FailureDecision;
}

/**
 * Decides a failed message's fate instead of the default rule (Watermill's middleware idea, at
 * the settlement): e.g. dead-letter a validation error at once, or retry after a `Retry-After`.
 * Return nothing to keep the default. A policy that throws keeps the default too (reported).
 */
export type FailurePolicy = (error: unknown, info: FailureInfo) => FailureDecision | undefined | void;

/** How the runtime carries out a broker action that fails (settle.ts). */
export interface SettlementOptions {
  /** Tries of a failing broker action (ack, retry, dead-letter, give-back) before the fallback. Default 4. */
  tries?: number;
  /** Waits between those tries. Default 100 ms growing ×2 to 2 s, jitter 0.2. */
  backoff?: BackoffOptions;
  /** When a retry or dead-letter keeps failing, the message is set aside to come back after this long. Default 1000 ms. */
  deferMs?: number;
}

/** Flow control checked before a message takes a pool slot. */
export interface FlowOptions {
  /** Gates asked in order for every delivered message (see FlowGate). Default none. */
  gates?: FlowGate[];
}

/** This consumer's part of a pool it shares with others (fair sharing). */
export interface ShareOptions {
  /**
   * Relative weight (a finite number > 0). When several consumers with a share are backlogged on
   * one pool, each holds at least weight / (sum of the backlogged weights) of the running slots
   * and of the waiting room; an idle consumer's part goes to the others. Default 1.
   */
  weight?: number;
}

/** Batch handlers: many messages per call (Broadway's batchers). */
export interface BatchOptions {
  /**
   * The most messages in one `batchHandler` call (an integer ≥ 1, at most the pool's capacity
   * `maxConcurrency + maxQueueSize`, and at most the broker's credit: a RabbitMQ `prefetch`, a
   * JetStream `max_ack_pending`). Default 100.
   */
  size?: number;
  /** A partial batch is handed to the handler this long (ms, > 0) after its first message arrived. Default 1000. */
  timeoutMs?: number;
  /**
   * Groups messages into separate batches (by tenant, table, ...): each key gathers its own. Must
   * return a string; a message whose key throws or is not a string is dead-lettered (its error
   * names the key). Default: one group.
   */
  key?: (message: Message) => string;
}

/**
 * Options every consumer takes, whatever its broker. `Data` is the output type of `schema`
 * (inferred from it): what `message.data` is in the handlers.
 */
export interface ConsumerOptions<Raw = unknown, Data = unknown> {
  /** Shown in errors, events and metrics. Default: the source's name. */
  name?: string;
  /** A shared WorkerPool (one limit over many consumers) or the limits of a pool of its own. */
  pool: WorkerPool | WorkerPoolOptions;
  /**
   * Handles one message. Required unless `batchHandler` is given; with both, `handler` runs first
   * for each message on its own (validate, enrich: Broadway's handle_message), and the messages
   * it succeeded with are gathered for `batchHandler`; a message it fails settles on its own.
   */
  handler?: Handler<Raw, Data>;
  /**
   * Handles many messages in one call and one pool slot (see `batch`). Each message's outcome
   * (all succeed, throw: all fail, `ctx.fail(message, error)` or a returned `{ failed }`: those
   * fail) takes the same retry / dead-letter path as a single message's. Default none.
   */
  batchHandler?: BatchHandler<Raw, Data>;
  /**
   * Validates each message's body, parsed as JSON, with any Standard Schema (zod, valibot,
   * arktype, ...) before a handler sees it; the output is `message.data`, typed from the schema. A
   * body that is not JSON or fails the schema is dead-lettered at once (reason `invalid`, the
   * issues as JSON in the `x-sluice-validation-issues` header), never retried. Default none.
   */
  schema?: StandardSchemaV1<unknown, Data>;
  /** How messages are gathered for `batchHandler`. Defaults above; only with `batchHandler`. */
  batch?: BatchOptions;
  /** Abort the handler's signal and count the attempt as failed after this long. Default: no limit. */
  handlerTimeoutMs?: number;
  retry?: RetryOptions;
  /**
   * When the pool has no room for a delivered message, it is always given back to the broker.
   * `'pause'` (default) then stops consuming until the pool reports room (its low-water mark);
   * `'nack'` keeps the subscription and only slows down (a growing backoff) so it does not spin on redeliveries.
   */
  onOverload?: OverloadPolicy;
  /** The slow-down used by `onOverload: 'nack'`. Default 50 ms growing to 2 s. */
  overloadBackoff?: BackoffOptions;
  /** Report `stalled` when messages are in flight but none completed for this long. Default 60 s; 0 disables. */
  stallTimeoutMs?: number;
  /** Default deadline of `stop()`. Default 30 s. */
  stopTimeoutMs?: number;
  /**
   * Wrappers around the handler, outermost first (Watermill's middleware): tracing, logging,
   * metrics timing. Each gets the next handler and returns one. They wrap `handler`, not
   * `batchHandler` (whose calls are reported by the `batch` event).
   */
  middleware?: Middleware[];
  /** `health()` says degraded after this many failures in a row. Default 10. */
  degradedAfterFailures?: number;
  /** Overrides the default retry / dead-letter rule for a failed message. Default none. */
  failurePolicy?: FailurePolicy;
  /** How failing broker actions are retried and set aside. Defaults above. */
  settlement?: SettlementOptions;
  /** Flow gates. Default none. */
  flow?: FlowOptions;
  /**
   * Fair sharing of a shared pool: give each consumer on it a `share` (weight default 1). Default
   * none: the consumer's messages join the pool's one FIFO (with jobs of any other consumer
   * without a share, as one share of weight 1).
   */
  share?: ShareOptions;
}

/** Wraps any consumer's handler, whatever its broker's raw message type. */
export type Middleware = <Raw>(next: Handler<Raw>) => Handler<Raw>;

export interface ResolvedConsumerOptions<Raw> {
  name: string;
  pool: WorkerPool;
  ownsPool: boolean;
  handler: Handler<Raw> | undefined;
  batchHandler: BatchHandler<Raw> | undefined;
  batch: ResolvedBatchOptions | undefined;
  schema: StandardSchemaV1 | undefined;
  handlerTimeoutMs: number | undefined;
  retry: RetryPolicy;
  onOverload: OverloadPolicy;
  overloadBackoff: RetryPolicy;
  stallTimeoutMs: number;
  stopTimeoutMs: number;
  degradedAfterFailures: number;
  failurePolicy: FailurePolicy | undefined;
  settlement: SettlePolicy;
  gates: FlowGate[];
  share: PoolShare | undefined;
}

export interface ResolvedBatchOptions {
  size: number;
  timeoutMs: number;
  key: ((message: Message) => string) | undefined;
}

export function resolveConsumerOptions<Raw, Data>(options: ConsumerOptions<Raw, Data>, sourceName: string): ResolvedConsumerOptions<Raw> {
  const owner = `consumer "${options?.name ?? sourceName}"`;
  if (options === null || typeof options !== 'object') throw new TypeError(`${owner}: options must be an object`);
  const name = stringOption(owner, 'name', options.name, sourceName);
  // Handlers are stored without their Data type: the runtime sets `message.data` from the schema itself.
  const batchHandler = options.batchHandler === undefined ? undefined : functionOption<BatchHandler<Raw>>(owner, 'batchHandler', options.batchHandler);
  if (options.handler === undefined && batchHandler === undefined) {
    throw new TypeError(`${owner}: option "handler" (or "batchHandler") must be a function, got undefined`);
  }
  if (options.batch !== undefined && batchHandler === undefined) {
    throw new TypeError(`${owner}: option "batch" needs a "batchHandler" (the function that takes the batches)`);
  }
  let handler = options.handler === undefined ? undefined : functionOption<Handler<Raw>>(owner, 'handler', options.handler);
  if (options.middleware !== undefined) {
    if (!Array.isArray(options.middleware)) throw new TypeError(`${owner}: option "middleware" must be an array of functions`);
    options.middleware.forEach((m, i) => functionOption(owner, `middleware[${i}]`, m));
    if (handler !== undefined) handler = options.middleware.reduceRight<Handler<Raw>>((next, wrap) => wrap(next), handler);
  }
  if (options.pool === undefined || options.pool === null || typeof options.pool !== 'object') {
    throw new TypeError(`${owner}: option "pool" must be a WorkerPool or { maxConcurrency, maxQueueSize }, got ${String(options.pool)}`);
  }
  const ownsPool = !(options.pool instanceof WorkerPool);
  const pool = options.pool instanceof WorkerPool ? options.pool : new WorkerPool({ name, ...options.pool });
  const batch = batchHandler === undefined ? undefined : batchOptions(owner, options.batch, pool);
  const handlerTimeoutMs =
    options.handlerTimeoutMs === undefined ? undefined : numberOption(owner, 'handlerTimeoutMs', options.handlerTimeoutMs, { min: 1 });
  return {
    name,
    pool,
    ownsPool,
    handler,
    batchHandler,
    batch,
    schema: schemaOption(owner, options.schema),
    handlerTimeoutMs,
    retry: retryPolicy(options.retry, owner),
    onOverload: oneOfOption(owner, 'onOverload', options.onOverload, ['nack', 'pause'] as const, 'pause'),
    overloadBackoff: retryPolicy(
      { maxAttempts: 1, backoff: { initialMs: 50, maxMs: 2000, ...options.overloadBackoff } },
      `${owner} overloadBackoff`,
    ),
    stallTimeoutMs: integerOption(owner, 'stallTimeoutMs', options.stallTimeoutMs, { min: 0, fallback: 60_000 }),
    stopTimeoutMs: numberOption(owner, 'stopTimeoutMs', options.stopTimeoutMs, { min: 0, fallback: 30_000 }),
    degradedAfterFailures: integerOption(owner, 'degradedAfterFailures', options.degradedAfterFailures, { min: 1, fallback: 10 }),
    failurePolicy: options.failurePolicy === undefined ? undefined : functionOption<FailurePolicy>(owner, 'failurePolicy', options.failurePolicy),
    settlement: settlePolicy(owner, options.settlement),
    gates: flowGates(owner, options.flow),
    share: poolShare(owner, name, options.share),
  };
}

function schemaOption(owner: string, value: unknown): StandardSchemaV1 | undefined {
  if (value === undefined) return undefined;
  const props = (value as { '~standard'?: { version?: unknown; validate?: unknown } } | null)?.['~standard'];
  if (props === undefined || props === null || props.version !== 1 || typeof props.validate !== 'function') {
    throw new TypeError(`${owner}: option "schema" must be a Standard Schema v1 (zod, valibot, arktype, ...: an object with "~standard".validate), got ${typeof value}`);
  }
  return value as StandardSchemaV1;
}

function batchOptions(owner: string, value: unknown, pool: WorkerPool): ResolvedBatchOptions {
  const o = (value === undefined ? {} : objectOption(owner, 'batch', value)) as BatchOptions;
  const size = integerOption(owner, 'batch.size', o.size, { min: 1, fallback: 100 });
  const { maxConcurrency, maxQueueSize } = pool.status();
  if (size > maxConcurrency + maxQueueSize) {
    throw new RangeError(
      `${owner}: option "batch.size" ${size} is larger than the pool's capacity ${maxConcurrency + maxQueueSize} ` +
        `(maxConcurrency ${maxConcurrency} + maxQueueSize ${maxQueueSize}): a batch could never fill; raise maxQueueSize or lower batch.size`,
    );
  }
  return {
    size,
    timeoutMs: numberOption(owner, 'batch.timeoutMs', o.timeoutMs, { min: 1, fallback: 1000 }),
    key: o.key === undefined ? undefined : functionOption<(message: Message) => string>(owner, 'batch.key', o.key),
  };
}

function settlePolicy(owner: string, value: unknown): SettlePolicy {
  const o = (value === undefined ? {} : objectOption(owner, 'settlement', value)) as SettlementOptions;
  const tries = integerOption(owner, 'settlement.tries', o.tries, { min: 1, fallback: 4 });
  const b = o.backoff === undefined ? {} : (objectOption(owner, 'settlement.backoff', o.backoff) as BackoffOptions);
  return {
    tries,
    backoff: retryPolicy({ maxAttempts: tries, backoff: { initialMs: 100, maxMs: 2000, ...b } }, `${owner} settlement`),
    deferMs: numberOption(owner, 'settlement.deferMs', o.deferMs, { min: 0, fallback: 1000 }),
  };
}

function poolShare(owner: string, name: string, value: unknown): PoolShare | undefined {
  if (value === undefined) return undefined;
  const o = objectOption(owner, 'share', value) as ShareOptions;
  const weight = numberOption(owner, 'share.weight', o.weight, { min: Number.MIN_VALUE, fallback: 1 });
  return new PoolShare(name, weight);
}

function flowGates(owner: string, value: unknown): FlowGate[] {
  if (value === undefined) return [];
  const o = objectOption(owner, 'flow', value) as FlowOptions;
  if (o.gates === undefined) return [];
  if (!Array.isArray(o.gates)) throw new TypeError(`${owner}: option "flow.gates" must be an array of flow gates, got ${String(o.gates)}`);
  o.gates.forEach((gate, i) => {
    if (gate === null || typeof gate !== 'object' || typeof gate.admit !== 'function' || typeof gate.name !== 'string') {
      throw new TypeError(`${owner}: option "flow.gates[${i}]" must be a flow gate ({ name, admit(message, consumer) }), got ${String(gate)}`);
    }
  });
  return [...o.gates];
}
