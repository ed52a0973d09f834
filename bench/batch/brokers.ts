/**
 * Where the batch bench's messages wait: one `BatchBroker` per broker, each giving every
 * contender's run the same N pre-filled messages and a consumer reading them from the start.
 * Setup goes through the test fixtures (test/helpers), as every integration test's does.
 *
 * - memory: a fresh queue of N messages for each run (a drained queue is empty).
 * - RabbitMQ: likewise, a fresh durable queue filled with N confirmed messages for each run.
 * - Kafka: one topic of N messages on 3 partitions, filled once; each run is a fresh group
 *   reading it from the beginning, `ordering: 'key'` (the default) over `kafkaKeys` keys.
 * - NATS JetStream: one stream of N messages, filled once; each run is a fresh durable (the
 *   consumer creates it, delivering from the start).
 */
import type { Consumer, ConsumerOptions } from '../../src/index.js';
import { MemoryBroker, memoryConsumer } from '../../adapters/memory/index.js';
import { rabbitConsumer } from '../../adapters/rabbitmq/index.js';
import { natsConsumer } from '../../adapters/nats/index.js';
import { rabbitFixture } from '../../test/helpers/rabbit.js';
import { kafkaFixture } from '../../test/helpers/kafka.js';
import { natsFixture } from '../../test/helpers/nats.js';
import { unique } from '../../test/helpers/names.js';

/** What a contender sets: the pool and its handler(s); the broker part is the BatchBroker's. */
export type ContenderOptions = Pick<ConsumerOptions, 'pool' | 'handler' | 'batchHandler' | 'batch'>;

export interface BatchBroker {
  /** As shown in the table. */
  readonly name: string;
  /** Where it runs and how the messages were laid out, for the section's text. */
  readonly setup: string;
  /** Makes N messages ready for one run and returns a consumer that will read exactly those. */
  prepare(options: ContenderOptions): Promise<Consumer>;
  close(): Promise<void>;
}

export interface BatchBrokerConfig {
  /** Messages each run drains. */
  readonly n: number;
  /** Kafka: distinct message keys (each key's messages in order). */
  readonly kafkaKeys: number;
}

export type BrokerName = 'memory' | 'rabbitmq' | 'kafka' | 'nats';
export const BROKERS: readonly BrokerName[] = ['memory', 'rabbitmq', 'kafka', 'nats'];

export function openBroker(name: BrokerName, config: BatchBrokerConfig): Promise<BatchBroker> {
  switch (name) {
    case 'memory':
      return memory(config);
    case 'rabbitmq':
      return rabbitmq(config);
    case 'kafka':
      return kafka(config);
    case 'nats':
      return nats(config);
  }
}

async function memory({ n }: BatchBrokerConfig): Promise<BatchBroker> {
  const broker = new MemoryBroker();
  return {
    name: 'memory',
    setup: 'in-process MemoryBroker, a fresh queue per run',
    async prepare(options) {
      const queue = unique('batch');
      for (let i = 0; i < n; i++) broker.publishJson(queue, { id: `m-${i}`, seq: i }, { id: `m-${i}` });
      return memoryConsumer({ broker, queue, ...options });
    },
    async close() {
      broker.close();
    },
  };
}

async function rabbitmq({ n }: BatchBrokerConfig): Promise<BatchBroker> {
  const fixture = await rabbitFixture();
  const host = new URL(fixture.url).host;
  return {
    name: 'RabbitMQ',
    setup: `${host}, a fresh durable classic queue of confirmed persistent messages per run, prefetch: the consumer's default (the pool's capacity, plus maxConcurrency × (size − 1) with a batch handler)`,
    async prepare(options) {
      const queue = fixture.queue('sluice-batch');
      await fixture.fill(queue, n);
      return rabbitConsumer({ url: fixture.url, queue, ...options });
    },
    close: () => fixture.close(),
  };
}

async function kafka({ n, kafkaKeys }: BatchBrokerConfig): Promise<BatchBroker> {
  const fixture = await kafkaFixture({ deleteOnClose: true, stopTimeoutMs: 5000 });
  const topic = await fixture.topic(3, 'sluice-batch');
  await fixture.fill(topic, n, kafkaKeys);
  return {
    name: 'Kafka',
    setup: `${fixture.brokers.join(',')}, one topic of 3 partitions read by a fresh group per run, ${kafkaKeys.toLocaleString('en-US')} keys, \`ordering: 'key'\``,
    async prepare(options) {
      return fixture.consumer({ groupId: fixture.group('sluice-batch'), topics: [topic], ...options });
    },
    close: () => fixture.close(),
  };
}

async function nats({ n }: BatchBrokerConfig): Promise<BatchBroker> {
  const fixture = await natsFixture();
  const { stream, subject, dlq } = await fixture.stream('BATCH');
  await fixture.fill(subject, n);
  return {
    name: 'NATS JetStream',
    setup: `${new URL(fixture.url).host}, one stream read by a fresh durable per run (created by the consumer: max_ack_pending is its default credit, as for RabbitMQ's prefetch)`,
    async prepare(options) {
      return natsConsumer({ servers: fixture.url, stream, durable: unique('batch'), consumerConfig: {}, deadLetter: { subject: dlq }, ...options });
    },
    close: () => fixture.close(),
  };
}
