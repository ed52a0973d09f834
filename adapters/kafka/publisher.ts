import type { Kafka, KafkaConfig, Message as KafkajsMessage, Producer, RecordMetadata } from 'kafkajs';
import { injectTraceContext } from '../../src/ops/tracing.js';
import { redactError } from '../../src/adapter/index.js';
import { resolveKafka } from './options.js';

export interface KafkaPublisherOptions {
  /** kafkajs client config, or a `Kafka` instance you own. */
  kafka: KafkaConfig | Kafka;
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

/**
 * Acknowledged publishing for tests, examples, producers that feed a sluice consumer, and dead
 * letters. Carries the active OpenTelemetry context (`traceparent`) when @opentelemetry/api is installed.
 */
export interface KafkaPublisher {
  /** Resolves once every in-sync replica has the messages (acks: -1); rejects otherwise. */
  publish(topic: string, messages: KafkajsMessage[]): Promise<RecordMetadata[]>;
  /** One message, `body` as JSON. */
  publishJson(topic: string, body: unknown, options?: KafkaPublishJsonOptions): Promise<RecordMetadata[]>;
  readonly producer: Producer;
  close(): Promise<void>;
}

/** The header sluice reads `msg.id` from (Kafka messages have no id of their own). */
export const MESSAGE_ID_HEADER = 'message-id';

/**
 * An idempotent producer (no duplicates from its own retries) that waits for all in-sync
 * replicas. Connects before it resolves: an unreachable cluster is an error here, not later.
 */
export async function kafkaPublisher(options: KafkaPublisherOptions): Promise<KafkaPublisher> {
  const { kafka, where } = resolveKafka('kafkaPublisher', options?.kafka);
  const publisher = unconnectedPublisher(kafka, options.allowAutoTopicCreation ?? true);
  await publisher.producer.connect().catch((error: unknown) => {
    throw new Error(`kafkaPublisher: cannot connect to ${where}: ${redactError(error)}`, { cause: error });
  });
  return publisher;
}

/** The publisher before `producer.connect()`: the consumer's dead-letter producer connects it within its own start attempts. */
export function unconnectedPublisher(kafka: Kafka, allowAutoTopicCreation: boolean): KafkaPublisher {
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 5, allowAutoTopicCreation });
  const publish = async (topic: string, messages: KafkajsMessage[]) => {
    // The active OpenTelemetry context (`traceparent`), when @opentelemetry/api is installed; a message's own headers win.
    const trace = await injectTraceContext({});
    const traced = Object.keys(trace).length === 0 ? messages : messages.map((m) => ({ ...m, headers: { ...trace, ...m.headers } }));
    return producer.send({ topic, messages: traced, acks: -1 });
  };
  return {
    producer,
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
}
