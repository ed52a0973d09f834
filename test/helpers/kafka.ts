/**
 * Kafka test fixtures: fresh topics and groups, keyed bulk publishing, consumers with short
 * timeouts, offsets, reading a topic back, and what each consumer's driver was told and reported.
 *
 * The driver under test is SLUICE_KAFKA_DRIVER (`kafkajs`, the default, or `platformatic`, which
 * needs Node >= 22.22): the fixture's consumers and publisher use it. The admin, readTopic's
 * readers and offsets() use kafkajs either way (test infrastructure, not the code under test).
 */
import { EventEmitter } from 'node:events';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import {
  kafkaConsumer,
  kafkaPublisher,
  type CommitOffset,
  type DriverHandlers,
  type GroupMember,
  type JoinOptions,
  type KafkaClientOption,
  type KafkaConsumer,
  type KafkaConsumerOptions,
  type KafkaDriver,
  type KafkaPublisher,
} from '../../adapters/kafka/index.js';
import { resolveKafka } from '../../adapters/kafka/options.js';
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

/** The Kafka driver the integration tests run on: SLUICE_KAFKA_DRIVER, `kafkajs` by default. */
export const KAFKA_DRIVER: 'kafkajs' | 'platformatic' = process.env.SLUICE_KAFKA_DRIVER === 'platformatic' ? 'platformatic' : 'kafkajs';
if (process.env.SLUICE_KAFKA_DRIVER !== undefined && !['kafkajs', 'platformatic'].includes(process.env.SLUICE_KAFKA_DRIVER)) {
  throw new Error(`SLUICE_KAFKA_DRIVER must be kafkajs or platformatic, got ${JSON.stringify(process.env.SLUICE_KAFKA_DRIVER)}`);
}

/**
 * The `kafka` option for the driver under test, with short retries: kafkajs `{ brokers, retry }`,
 * or `{ client: 'platformatic', brokers, retries, retryDelay }`. `kafkajs` / `platformatic` add to it.
 */
export function kafkaClient(brokers: string[], extra: { kafkajs?: Record<string, unknown>; platformatic?: Record<string, unknown> } = {}): KafkaClientOption {
  if (KAFKA_DRIVER === 'platformatic') return { client: 'platformatic', brokers, clientId: 'sluice-test', retries: 2, retryDelay: 100, ...extra.platformatic } as KafkaClientOption;
  return { brokers, clientId: 'sluice-test', logLevel: logLevel.NOTHING, retry: { retries: 2, initialRetryTime: 100 }, ...extra.kafkajs } as KafkaClientOption;
}

/**
 * What a consumer's driver was told and reported, through the driver port (the same on every
 * driver): `assigned` (the whole assignment, after the adapter took it), `rebalancing`, `commit`
 * (offsets the adapter commits, when it sends them), `batch` (a batch handed over: topic,
 * partition, messages), `fetched` (a round of the driver's fetch loop ended, everything paused
 * included); `paused()`: the partitions the adapter has paused in the client now.
 */
export class DriverWatch extends EventEmitter<{
  assigned: [Record<string, number[]>];
  rebalancing: [];
  commit: [CommitOffset[]];
  batch: [string, number, number];
  fetched: [];
}> {
  readonly #paused = new Map<string, Set<number>>();

  paused(): { topic: string; partitions: number[] }[] {
    return [...this.#paused]
      .filter(([, set]) => set.size > 0)
      .map(([topic, set]) => ({ topic, partitions: [...set].sort((a, b) => a - b) }));
  }

  /** Resolves once the driver's fetch loop has gone round `n` more times (it goes round while everything is paused too). */
  async fetchRounds(n: number): Promise<void> {
    let rounds = 0;
    const count = () => void rounds++;
    this.on('fetched', count);
    try {
      await until(() => rounds >= n, `${n} fetch rounds`);
    } finally {
      this.off('fetched', count);
    }
  }

  /** The driver, every member it makes reporting here. */
  wrap(inner: KafkaDriver): KafkaDriver {
    const watch = this;
    return {
      name: inner.name,
      isRebalanceError: (error) => inner.isRebalanceError(error),
      producer: (options) => inner.producer(options),
      member(options: JoinOptions, handlers: DriverHandlers): GroupMember {
        watch.#paused.clear();
        const member = inner.member(options, {
          batch: (payload) => {
            watch.emit('batch', payload.batch.topic, payload.batch.partition, payload.batch.messages.length);
            return handlers.batch(payload);
          },
          assigned: (assignment) => {
            handlers.assigned(assignment);
            watch.emit('assigned', assignment);
          },
          rebalancing: () => {
            handlers.rebalancing();
            watch.emit('rebalancing');
          },
          crashed: (error, restart) => handlers.crashed(error, restart),
          fetched: () => watch.emit('fetched'),
          fetchAnswered: () => handlers.fetchAnswered?.(),
        });
        const mark = (topic: string, partition: number, paused: boolean) => {
          let set = watch.#paused.get(topic);
          if (!set) watch.#paused.set(topic, (set = new Set()));
          if (paused) set.add(partition);
          else set.delete(partition);
        };
        return {
          get client() {
            return member.client;
          },
          connect: () => member.connect(),
          run: () => member.run(),
          pause(topic, partition) {
            member.pause(topic, partition);
            mark(topic, partition, true);
          },
          resume(topic, partition) {
            member.resume(topic, partition);
            mark(topic, partition, false);
          },
          commit(offsets) {
            watch.emit('commit', offsets);
            return member.commit(offsets);
          },
          leave: () => member.leave(),
        };
      },
    };
  }
}

export interface KafkaFixture {
  brokers: string[];
  /** The driver the fixture's consumers and publisher use. */
  driver: 'kafkajs' | 'platformatic';
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
  /** What the driver of a consumer made by consumer() was told and reported. */
  watch(consumer: KafkaConsumer): DriverWatch;
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
  /** The brokers to use (a private cluster's). Default: the shared broker of `kafkaBrokers()`. */
  brokers?: string[];
}

export async function kafkaFixture(options: KafkaFixtureOptions = {}): Promise<KafkaFixture> {
  const { deleteOnClose = false, stopTimeoutMs = 1000 } = options;
  const brokers = options.brokers ?? (await kafkaBrokers());
  const client = new Kafka({ clientId: 'sluice-test', brokers, logLevel: logLevel.NOTHING });
  const admin = client.admin();
  await admin.connect();
  const publisher = await kafkaPublisher({ kafka: KAFKA_DRIVER === 'kafkajs' ? client : kafkaClient(brokers) });
  const consumers: KafkaConsumer[] = [];
  const watches = new Map<KafkaConsumer, DriverWatch>();
  const topics: string[] = [];
  const groups: string[] = [];
  const group = (prefix = 'sluice-g') => {
    const name = unique(prefix);
    groups.push(name);
    return name;
  };
  return {
    brokers,
    driver: KAFKA_DRIVER,
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
      const watch = new DriverWatch();
      const { driver } = resolveKafka('kafkaFixture', consumerOptions.kafka ?? kafkaClient(brokers));
      const c = kafkaConsumer({
        fromBeginning: true,
        sessionTimeout: 10_000,
        heartbeatInterval: 1000,
        commitIntervalMs: 200,
        maxWaitTimeInMs: 100,
        ...consumerOptions,
        kafka: watch.wrap(driver),
      }) as KafkaConsumer; // a wrapped driver's client is `unknown` to the types; the tests observe the driver through the port
      consumers.push(c);
      watches.set(c, watch);
      return c;
    },
    watch(consumer) {
      const watch = watches.get(consumer);
      if (!watch) throw new Error('watch(): not a consumer made by this fixture');
      return watch;
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
