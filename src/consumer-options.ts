import type { Handler } from './handler.js';
import { WorkerPool } from './pool/worker-pool.js';
import type { WorkerPoolOptions } from './pool/types.js';
import { retryPolicy, type BackoffOptions, type RetryOptions, type RetryPolicy } from './retry.js';
import { functionOption, integerOption, numberOption, oneOfOption, stringOption } from './validate.js';

export type OverloadPolicy = 'nack' | 'pause';

/** Options every consumer takes, whatever its broker. */
export interface ConsumerOptions<Raw = unknown> {
  /** Shown in errors, events and metrics. Default: the source's name. */
  name?: string;
  /** A shared WorkerPool (one limit over many consumers) or the limits of a pool of its own. */
  pool: WorkerPool | WorkerPoolOptions;
  handler: Handler<Raw>;
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
   * metrics timing. Each gets the next handler and returns one.
   */
  middleware?: Middleware[];
  /** `health()` says degraded after this many failures in a row. Default 10. */
  degradedAfterFailures?: number;
}

/** Wraps any consumer's handler, whatever its broker's raw message type. */
export type Middleware = <Raw>(next: Handler<Raw>) => Handler<Raw>;

export interface ResolvedConsumerOptions<Raw> {
  name: string;
  pool: WorkerPool;
  ownsPool: boolean;
  handler: Handler<Raw>;
  handlerTimeoutMs: number | undefined;
  retry: RetryPolicy;
  onOverload: OverloadPolicy;
  overloadBackoff: RetryPolicy;
  stallTimeoutMs: number;
  stopTimeoutMs: number;
  degradedAfterFailures: number;
}

export function resolveConsumerOptions<Raw>(options: ConsumerOptions<Raw>, sourceName: string): ResolvedConsumerOptions<Raw> {
  const owner = `consumer "${options?.name ?? sourceName}"`;
  if (options === null || typeof options !== 'object') throw new TypeError(`${owner}: options must be an object`);
  const name = stringOption(owner, 'name', options.name, sourceName);
  let handler = functionOption<Handler<Raw>>(owner, 'handler', options.handler);
  if (options.middleware !== undefined) {
    if (!Array.isArray(options.middleware)) throw new TypeError(`${owner}: option "middleware" must be an array of functions`);
    options.middleware.forEach((m, i) => functionOption(owner, `middleware[${i}]`, m));
    handler = options.middleware.reduceRight<Handler<Raw>>((next, wrap) => wrap(next), handler);
  }
  if (options.pool === undefined || options.pool === null || typeof options.pool !== 'object') {
    throw new TypeError(`${owner}: option "pool" must be a WorkerPool or { maxConcurrency, maxQueueSize }, got ${String(options.pool)}`);
  }
  const ownsPool = !(options.pool instanceof WorkerPool);
  const pool = options.pool instanceof WorkerPool ? options.pool : new WorkerPool({ name, ...options.pool });
  const handlerTimeoutMs =
    options.handlerTimeoutMs === undefined ? undefined : numberOption(owner, 'handlerTimeoutMs', options.handlerTimeoutMs, { min: 1 });
  return {
    name,
    pool,
    ownsPool,
    handler,
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
  };
}
