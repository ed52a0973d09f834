import { Consumer } from '../../src/consumer.js';
import type { ConsumerOptions } from '../../src/consumer-options.js';
import { WorkerPool } from '../../src/pool/worker-pool.js';
import { integerOption, stringOption } from '../../src/validate.js';
import { MemoryBroker, type StoredMessage } from './broker.js';
import { MemorySource } from './source.js';

export { MemoryBroker, type StoredMessage, type PublishOptions, type QueueDepth } from './broker.js';
export { MemorySource } from './source.js';

export interface MemoryConsumerOptions extends ConsumerOptions<StoredMessage> {
  broker: MemoryBroker;
  queue: string;
  /** Unacked deliveries this consumer may hold. Default: the pool's capacity (maxConcurrency + maxQueueSize). */
  prefetch?: number;
  /** Default `<queue>.dlq`. */
  deadLetterQueue?: string;
}

/** A consumer of one in-memory queue through a bounded pool. */
export function memoryConsumer(options: MemoryConsumerOptions): Consumer<StoredMessage> {
  const owner = `memoryConsumer(${JSON.stringify(options?.queue)})`;
  if (!(options?.broker instanceof MemoryBroker)) throw new TypeError(`${owner}: option "broker" must be a MemoryBroker`);
  const queue = stringOption(owner, 'queue', options.queue);
  const pool = options.pool instanceof WorkerPool ? options.pool.status() : options.pool;
  const capacity = (pool?.maxConcurrency ?? 1) + (pool?.maxQueueSize ?? 0);
  const source = new MemorySource({
    broker: options.broker,
    queue,
    prefetch: integerOption(owner, 'prefetch', options.prefetch, { min: 1, fallback: Math.max(1, capacity) }),
    deadLetterQueue: stringOption(owner, 'deadLetterQueue', options.deadLetterQueue, `${queue}.dlq`),
  });
  return new Consumer(source, options);
}
