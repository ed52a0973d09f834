import { Consumer } from '../../src/consumer.js';
import { resolveKafkaOptions, type KafkaConsumerOptions, type KafkaRecord } from './options.js';
import { KafkaSource } from './source.js';

export type { KafkaConsumerOptions, KafkaRecord, KafkaOrdering, KafkaRecoveryOptions } from './options.js';
export type { PauseReason } from './partition.js';
export { kafkaPublisher, MESSAGE_ID_HEADER, type KafkaPublisher, type KafkaPublisherOptions, type KafkaPublishJsonOptions } from './publisher.js';
export { ORIGIN_HEADERS } from './delivery.js';
export { KafkaSource, type KafkaSourceStatus } from './source.js';
export { OffsetTracker } from './offset-tracker.js';
export { KeyScheduler } from './key-scheduler.js';

/**
 * A consumer of Kafka topics as one group member, through a bounded pool: in order per key
 * (or per partition, or unordered), committing only what is done, pausing partitions when the
 * pool is full. Several consumers may share one WorkerPool.
 */
export function kafkaConsumer(options: KafkaConsumerOptions): Consumer<KafkaRecord> {
  return new Consumer(new KafkaSource(resolveKafkaOptions(options)), options);
}
