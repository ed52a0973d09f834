import type { Consumer as PlatformaticConsumer } from '@platformatic/kafka';
import type { Consumer as KafkajsConsumer, KafkaConfig } from 'kafkajs';
import { Consumer } from '../../src/consumer.js';
import type { KafkaDriver } from './driver.js';
import type { KafkajsDriver } from './drivers/kafkajs.js';
import type { PlatformaticDriver } from './drivers/platformatic.js';
import { resolveKafkaOptions, type KafkaClientOption, type KafkaConsumerOptions, type KafkaRecord } from './options.js';
import { KafkaSource, type KafkaSourceView } from './source.js';

export type { KafkaConsumerOptions, KafkaRecord, KafkaOrdering, KafkaRecoveryOptions, KafkaClientOption } from './options.js';
export type {
  CommitOffset,
  DriverBatch,
  DriverBatchPayload,
  DriverHandlers,
  DriverProducer,
  GroupMember,
  JoinOptions,
  KafkaDriver,
  KafkaMessageRecord,
  OutgoingMessage,
} from './driver.js';
export { CONNECT_TIMEOUT_DEFAULT_MS } from './options.js';
export { KafkajsDriver } from './drivers/kafkajs.js';
export { PlatformaticDriver, PLATFORMATIC_MIN_NODE, type PlatformaticKafkaConfig } from './drivers/platformatic.js';
export type { PauseReason } from './partition.js';
export { kafkaPublisher, MESSAGE_ID_HEADER, type KafkaOutgoingMessage, type KafkaPublisher, type KafkaPublisherOptions, type KafkaPublishJsonOptions } from './publisher.js';
export { ORIGIN_HEADERS } from './delivery.js';
export type { KafkaSourceStatus, KafkaSourceView } from './source.js';

/** A Kafka consumer: `source` also shows the adapter's per-partition status and the client's consumer (`Client`: kafkajs's by default). */
export type KafkaConsumer<Client = KafkajsConsumer> = Consumer<KafkaRecord> & { readonly source: KafkaSourceView<Client> };

/**
 * The client's consumer behind `consumer.source.client` for a `kafka` option of type `K`:
 * @platformatic/kafka's `Consumer` for `{ client: 'platformatic', ... }` or a `PlatformaticDriver`;
 * kafkajs's `Consumer` for a kafkajs config, a `Kafka` instance or a `KafkajsDriver`; `unknown` for
 * a driver of your own.
 */
export type KafkaClientConsumer<K> = K extends { client: 'platformatic' } | PlatformaticDriver
  ? PlatformaticConsumer
  : K extends KafkajsDriver
    ? KafkajsConsumer
    : K extends KafkaDriver
      ? unknown
      : KafkajsConsumer;

/**
 * A consumer of Kafka topics as one group member, through a bounded pool: in order per key
 * (or per partition, or unordered), committing only what is done, pausing partitions when the
 * pool is full. Several consumers may share one WorkerPool.
 */
export function kafkaConsumer<Data = unknown, K extends KafkaClientOption = KafkaConfig>(
  options: KafkaConsumerOptions<Data> & { kafka: K },
): KafkaConsumer<KafkaClientConsumer<K>> {
  return new Consumer(new KafkaSource(resolveKafkaOptions(options)), options) as unknown as KafkaConsumer<KafkaClientConsumer<K>>;
}
