import { Consumer, consumerCredit, integerOption, objectOption, stringOption, type ConsumerOptions } from '../../src/adapter/index.js';
import { MemoryBroker, type StoredMessage } from './broker.js';
import { MemorySource } from './source.js';

export { MemoryBroker, type StoredMessage, type PublishOptions, type QueueDepth } from './broker.js';
export { MemorySource } from './source.js';

export interface MemoryConsumerOptions<Data = unknown> extends ConsumerOptions<StoredMessage, Data> {
  broker: MemoryBroker;
  queue: string;
  /** Unacked deliveries this consumer may hold. Default: the pool's capacity (maxConcurrency + maxQueueSize). */
  prefetch?: number;
  /** Where dead letters go, as on the other brokers. Default `{ queue: '<queue>.dlq' }`. */
  deadLetter?: { queue: string };
}

/** A consumer of one in-memory queue through a bounded pool. */
export function memoryConsumer<Data = unknown>(options: MemoryConsumerOptions<Data>): Consumer<StoredMessage> {
  const owner = `memoryConsumer(${JSON.stringify(options?.queue)})`;
  if (!(options?.broker instanceof MemoryBroker)) throw new TypeError(`${owner}: option "broker" must be a MemoryBroker`);
  const queue = stringOption(owner, 'queue', options.queue);
  const deadLetter = options.deadLetter === undefined ? undefined : objectOption(owner, 'deadLetter', options.deadLetter);
  const source = new MemorySource({
    broker: options.broker,
    queue,
    prefetch: integerOption(owner, 'prefetch', options.prefetch, { min: 1, fallback: consumerCredit(options) }),
    deadLetterQueue: deadLetter === undefined ? `${queue}.dlq` : stringOption(owner, 'deadLetter.queue', deadLetter.queue),
  });
  return new Consumer(source, options);
}
