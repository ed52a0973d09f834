import type { WorkerPoolOptions } from '../pool/types.js';
import { WorkerPool } from '../pool/worker-pool.js';

/**
 * The broker credit (RabbitMQ prefetch, JetStream pull size, a held-message bound) that matches a
 * consumer's pool: what it can hold, running plus waiting. Takes the consumer's `pool` option as
 * given (a WorkerPool or the limits of a pool of its own), so adapters can size credit before
 * the consumer exists.
 */
export function poolCapacity(pool: WorkerPool | WorkerPoolOptions | undefined): number {
  const limits = pool instanceof WorkerPool ? pool.status() : pool;
  return Math.max(1, (limits?.maxConcurrency ?? 1) + (limits?.maxQueueSize ?? 0));
}

/**
 * The broker credit a consumer needs: its pool's capacity, plus, with a batch handler, the
 * messages of running batches beyond the one place each takes (`maxConcurrency × (size − 1)`):
 * a running batch holds its messages unsettled in one slot, and without that room the broker
 * would stop delivering while batches run, leaving nothing to gather the next ones from.
 */
export function consumerCredit(options: {
  pool: WorkerPool | WorkerPoolOptions | undefined;
  batchHandler?: unknown;
  batch?: { size?: number | undefined } | undefined;
}): number {
  const capacity = poolCapacity(options.pool);
  if (options.batchHandler === undefined) return capacity;
  const limits = options.pool instanceof WorkerPool ? options.pool.status() : options.pool;
  const size = options.batch?.size;
  const batchSize = typeof size === 'number' && Number.isInteger(size) && size > 0 ? size : 100;
  return capacity + Math.max(1, limits?.maxConcurrency ?? 1) * (batchSize - 1);
}
