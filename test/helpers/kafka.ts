/** Kafka test fixtures: fresh topics and groups, keyed bulk publishing, consumers with short timeouts, offsets, reading a topic back. */
import { Kafka, logLevel, type Admin } from 'kafkajs';
import { kafkaConsumer, kafkaPublisher, type KafkaConsumer, type KafkaConsumerOptions, type KafkaPublisher } from '../../adapters/kafka/index.js';
import { kafkaBrokers } from './brokers.js';
import { unique } from './names.js';
import { until } from './wait.js';

/** What `fill` published: message `id` (the `message-id` header), its key, and its number among that key's messages. */
export interface Sent {
  id: string;
  key: string;
  seq: number;
}

/** A record read back by `readTopic`. */
export interface TopicRecord {
  key: string | undefined;
  value: string;
  headers: Record<string, string>;
}

/** kafkaConsumer options where the fixture has defaults for all but these. */
export type FixtureConsumerOptions = Partial<KafkaConsumerOptions> & Pick<KafkaConsumerOptions, 'handler' | 'pool' | 'groupId' | 'topics'>;

export interface KafkaFixture {
  brokers: string[];
  /** The kafkajs client of the admin, the publisher and readTopic's readers. */
  client: Kafka;
  admin: Admin;
  publisher: KafkaPublisher;
  /** A fresh topic `<prefix>-<8 hex>` with `partitions` partitions, its leaders elected. */
  topic(partitions: number, prefix?: string): Promise<string>;
  /** A fresh consumer group id. */
  group(prefix?: string): string;
  /** Publishes `n` JSON messages `Sent` with ids `<prefix>-<i>`, `keys` distinct keys, each key's messages numbered 0, 1, 2… in order. */
  fill(topic: string, n: number, keys: number, prefix?: string): Promise<Sent[]>;
  /**
   * A kafkaConsumer on the fixture's brokers, reading from the beginning, with short session,
   * heartbeat, commit and fetch-wait times (any of them overridable); stopped by close().
   */
  consumer(options: FixtureConsumerOptions): KafkaConsumer;
  /** Committed offsets of a group per partition, and the log end offsets. */
  offsets(groupId: string, topic: string): Promise<{ committed: number[]; end: number[] }>;
  /** Every message of a topic (a dead-letter topic), read from the beginning with a plain kafkajs consumer once the topic holds `n`. */
  readTopic(topic: string, n: number): Promise<TopicRecord[]>;
  /** Stops the consumers made by consumer(); with `deleteOnClose`, deletes the groups and topics the fixture named; disconnects. */
  close(): Promise<void>;
}

export interface KafkaFixtureOptions {
  /** Delete the topics and groups made by topic(), group() and readTopic() in close(). Default false: they stay on the broker. */
  deleteOnClose?: boolean;
  /** How long close() lets each consumer drain. Default 1000 ms. */
  stopTimeoutMs?: number;
}

export async function kafkaFixture(options: KafkaFixtureOptions = {}): Promise<KafkaFixture> {
  const { deleteOnClose = false, stopTimeoutMs = 1000 } = options;
  const brokers = await kafkaBrokers();
  const client = new Kafka({ clientId: 'sluice-test', brokers, logLevel: logLevel.NOTHING });
  const admin = client.admin();
  await admin.connect();
  const publisher = await kafkaPublisher({ kafka: client });
  const consumers: KafkaConsumer[] = [];
  const topics: string[] = [];
  const groups: string[] = [];
  const group = (prefix = 'sluice-g') => {
    const name = unique(prefix);
    groups.push(name);
    return name;
  };
  return {
    brokers,
    client,
    admin,
    publisher,
    async topic(partitions, prefix = 'sluice-k') {
      const name = unique(prefix);
      topics.push(name);
      await createTopic(admin, name, partitions);
      return name;
    },
    group,
    async fill(topic, n, keys, prefix = 'm') {
      const sent: Sent[] = [];
      const seqs = new Map<string, number>();
      for (let i = 0; i < n; i++) {
        const key = `k${i % keys}`;
        const seq = seqs.get(key) ?? 0;
        seqs.set(key, seq + 1);
        sent.push({ id: `${prefix}-${i}`, key, seq });
      }
      for (let i = 0; i < sent.length; i += 2000) {
        await publisher.publish(
          topic,
          sent.slice(i, i + 2000).map((s) => ({ key: s.key, value: JSON.stringify(s), headers: { 'message-id': s.id } })),
        );
      }
      return sent;
    },
    consumer(consumerOptions) {
      const c = kafkaConsumer({
        kafka: { brokers, clientId: 'sluice-test', logLevel: logLevel.NOTHING, retry: { retries: 2, initialRetryTime: 100 } },
        fromBeginning: true,
        sessionTimeout: 10_000,
        heartbeatInterval: 1000,
        commitIntervalMs: 200,
        maxWaitTimeInMs: 100,
        ...consumerOptions,
      });
      consumers.push(c);
      return c;
    },
    async offsets(groupId, topic) {
      const [fetched] = await admin.fetchOffsets({ groupId, topics: [topic] });
      const ends = await admin.fetchTopicOffsets(topic);
      const byPartition = <T extends { partition: number; offset: string }>(list: T[]) =>
        [...list].sort((a, b) => a.partition - b.partition).map((p) => Number(p.offset));
      return { committed: byPartition(fetched!.partitions), end: byPartition(ends) };
    },
    async readTopic(topic, n) {
      const reader = client.consumer({ groupId: group('sluice-reader'), sessionTimeout: 10_000, heartbeatInterval: 1000, maxWaitTimeInMs: 100 });
      const got: TopicRecord[] = [];
      await reader.connect();
      await reader.subscribe({ topic, fromBeginning: true });
      await reader.run({
        eachMessage: async ({ message }) => {
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
          got.push({ key: message.key?.toString(), value: message.value?.toString() ?? '', headers });
        },
      });
      try {
        await until(() => got.length >= n, `${n} message(s) in ${topic}`, 30_000);
      } finally {
        await reader.disconnect();
      }
      return got;
    },
    async close() {
      for (const c of consumers) await c.stop({ timeoutMs: stopTimeoutMs }).catch(() => {});
      if (deleteOnClose) {
        await admin.deleteGroups(groups).catch(() => {});
        await admin.deleteTopics({ topics }).catch(() => {});
      }
      await publisher.close();
      await admin.disconnect();
    },
  };
}

/**
 * Creates a topic and waits for its leaders. kafkajs's `waitForLeaders` retries only on
 * LEADER_NOT_AVAILABLE; under load the broker's first metadata answer for a new topic can be
 * UNKNOWN_TOPIC_OR_PARTITION, which rejects although the topic exists: then the leaders are
 * awaited here by asking for the topic's metadata until it answers.
 */
export async function createTopic(admin: Admin, topic: string, numPartitions: number): Promise<void> {
  try {
    await admin.createTopics({ topics: [{ topic, numPartitions }], waitForLeaders: true });
    return;
  } catch (error) {
    if (!/UNKNOWN_TOPIC_OR_PARTITION|does not host this topic-partition/i.test(String((error as { type?: string }).type ?? error))) throw error;
  }
  for (let tries = 1; ; tries++) {
    try {
      const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
      const partitions = topics[0]?.partitions ?? [];
      if (partitions.length === numPartitions && partitions.every((p) => p.leader >= 0)) return;
    } catch (error) {
      if (tries >= 50) throw error;
    }
    if (tries >= 50) throw new Error(`topic ${topic}: no leaders for its ${numPartitions} partitions after ${tries} metadata requests`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
