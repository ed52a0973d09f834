import type { RecordMetadata } from 'kafkajs';
import { injectTraceContext } from '../../src/ops/tracing.js';
import { redactError } from '../../src/adapter/index.js';
import type { DriverProducer, KafkaDriver, OutgoingMessage } from './driver.js';
import { resolveKafka, type KafkaClientOption } from './options.js';

export interface KafkaPublisherOptions {
  /** The same as kafkaConsumer's `kafka`: a kafkajs client config, a `Kafka` instance you own, or a driver. */
  kafka: KafkaClientOption;
  /** Have a missing topic created (when the broker allows it). Default true. */
  allowAutoTopicCreation?: boolean;
}

export interface KafkaPublishJsonOptions {
  /** The message key (ordering and partitioning). */
  key?: string;
  /** Stored in the `message-id` header; sluice uses it as `msg.id`. */
  id?: string;
  headers?: Record<string, string>;
  partition?: number;
}

/** A message to publish: `key`, `value`, `headers`, `partition` (a kafkajs `Message` is one). */
export type KafkaOutgoingMessage = OutgoingMessage;

/**
 * Acknowledged publishing for tests, examples, producers that feed a sluice consumer, and dead
 * letters. Carries the active OpenTelemetry context (`traceparent`) when @opentelemetry/api is installed.
 */
export interface KafkaPublisher<Result = RecordMetadata[]> {
  /**
   * Resolves once every in-sync replica has the messages (acks: -1), with the client's own result
   * (`Result`: kafkajs's `RecordMetadata[]`; @platformatic/kafka's `ProduceResult`); rejects otherwise.
   */
  publish(topic: string, messages: KafkaOutgoingMessage[]): Promise<Result>;
  /** One message, `body` as JSON. */
  publishJson(topic: string, body: unknown, options?: KafkaPublishJsonOptions): Promise<Result>;
  /** The client's own producer (kafkajs: its `Producer`). */
  readonly producer: unknown;
  close(): Promise<void>;
}

/** The header sluice reads `msg.id` from (Kafka messages have no id of their own). */
export const MESSAGE_ID_HEADER = 'message-id';

/**
 * An idempotent producer (no duplicates from its own retries) that waits for all in-sync
 * replicas. Connects before it resolves: an unreachable cluster is an error here, not later.
 */
export async function kafkaPublisher(options: KafkaPublisherOptions): Promise<KafkaPublisher> {
  const { driver, where } = resolveKafka('kafkaPublisher', options?.kafka);
  const { publisher, producer } = unconnectedPublisher(driver, options.allowAutoTopicCreation ?? true);
  await producer.connect().catch(async (error: unknown) => {
    await producer.disconnect().catch(() => {});
    throw new Error(`kafkaPublisher: cannot connect to ${where}: ${redactError(error)}`, { cause: error });
  });
  return publisher;
}

/** The publisher before its producer connects: the consumer's dead-letter producer connects it within its own start attempts. */
export function unconnectedPublisher(driver: KafkaDriver, allowAutoTopicCreation: boolean): { publisher: KafkaPublisher; producer: DriverProducer } {
  const producer = driver.producer({ allowAutoTopicCreation });
  const publish = async (topic: string, messages: KafkaOutgoingMessage[]) => {
    // The active OpenTelemetry context (`traceparent`), when @opentelemetry/api is installed; a message's own headers win.
    const trace = await injectTraceContext({});
    const traced = Object.keys(trace).length === 0 ? messages : messages.map((m) => ({ ...m, headers: { ...trace, ...m.headers } }));
    return producer.send(topic, traced) as Promise<RecordMetadata[]>;
  };
  const publisher: KafkaPublisher = {
    // A getter: a driver may make its client only when it connects (@platformatic/kafka's does).
    get producer() {
      return producer.client;
    },
    publish,
    publishJson(topic, body, o = {}) {
      const headers: Record<string, string> = { 'content-type': 'application/json', ...o.headers };
      if (o.id !== undefined) headers[MESSAGE_ID_HEADER] = o.id;
      return publish(topic, [{ key: o.key ?? null, value: JSON.stringify(body), headers, ...(o.partition === undefined ? {} : { partition: o.partition }) }]);
    },
    async close() {
      await producer.disconnect().catch(() => {});
    },
  };
  return { publisher, producer };
}
