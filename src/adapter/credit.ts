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
