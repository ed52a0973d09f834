import { createRequire } from 'node:module';
import type { Kafka, KafkaConfig } from 'kafkajs';
import type { ConsumerOptions } from '../../src/consumer-options.js';
import { integerOption, objectOption, oneOfOption, redactText, resolveRecovery, stringOption, type RecoveryOptions, type ResolvedRecovery } from '../../src/adapter/index.js';
import type { KafkaDriver, KafkaMessageRecord } from './driver.js';
import { KafkajsDriver } from './drivers/kafkajs.js';
import { assertPlatformaticNode, PlatformaticDriver, type PlatformaticKafkaConfig } from './drivers/platformatic.js';

/** What a handler gets as `msg.raw`: the message as the client read it (with kafkajs, its `KafkaMessage`) and where it was read. */
export interface KafkaRecord {
  topic: string;
  partition: number;
  message: KafkaMessageRecord;
}

/**
 * The `kafka` option: a kafkajs `KafkaConfig` (optionally with `client: 'kafkajs'`) or a kafkajs
 * `Kafka` instance you own; `{ client: 'platformatic', brokers, ... }` for @platformatic/kafka
 * (Node >= 22.22); or a driver instance (anything implementing `KafkaDriver`).
 */
export type KafkaClientOption = KafkaConfig | (KafkaConfig & { client: 'kafkajs' }) | Kafka | PlatformaticKafkaConfig | KafkaDriver;

export type KafkaOrdering = 'partition' | 'key' | 'unordered';

/** The same `recovery` option as on every broker: start attempts and the backoff between them. */
export type KafkaRecoveryOptions = RecoveryOptions;

/** Default of `connectTimeoutMs`: with 3 start attempts, an unreachable cluster fails `start()` in about 6.6 s. */
export const CONNECT_TIMEOUT_DEFAULT_MS = 2000;

export interface KafkaConsumerOptions<Data = unknown> extends ConsumerOptions<KafkaRecord, Data> {
  /** kafkajs client config (`brokers`, `ssl`, `sasl`, `retry`…), or a `Kafka` instance you own (see `KafkaClientOption`). */
  kafka: KafkaClientOption;
  groupId: string;
  topics: string[];
  /** Where a group with no committed offset starts. Default false (only new messages). */
  fromBeginning?: boolean;
  /**
   * `'key'` (default): in order per message key, parallel across keys (messages without a key
   * are unordered). `'partition'`: one message at a time per partition. `'unordered'`: no order.
   */
  ordering?: KafkaOrdering;
  /**
   * Where dead letters go. `topic` default: `<the message's topic>.dlq`. `allowAutoTopicCreation`
   * (default true) lets the dead-letter producer have a missing topic created, where the broker
   * allows it (`auto.create.topics.enable`); false: a missing topic refuses dead letters (they
   * are set aside and tried again, nothing is committed past them) until it is created.
   */
  deadLetter?: { topic?: string; allowAutoTopicCreation?: boolean };
  /** How often the done prefix of each partition is committed. Default 1000 ms. */
  commitIntervalMs?: number;
  /**
   * Messages a partition may hold outside the pool: followers waiting behind a busy key,
   * retries waiting out their backoff, messages waiting for room. Reaching it pauses the
   * partition until half of them are gone. Default 256.
   */
  maxHeldPerPartition?: number;
  /** kafkajs consumer passthrough. Defaults 30000 / 3000 / 60000. */
  sessionTimeout?: number;
  heartbeatInterval?: number;
  rebalanceTimeout?: number;
  /** How long a fetch waits for data; also how soon a paused-everything loop looks again. Default 500 ms. */
  maxWaitTimeInMs?: number;
  /** Start attempts and the backoff between them (the same defaults on every broker: 3 attempts, 200 ms growing to 5 s). */
  recovery?: KafkaRecoveryOptions;
  /**
   * How long one start attempt may take to reach the cluster (connect the group member and the
   * dead-letter producer) before it counts as failed; joining the group is not bounded by it
   * (a join waits for the other members). `start()` rejects after `recovery.startAttempts` such
   * attempts: about 3 × 2 s + 0.6 s of backoff by default. kafkajs's own `connectionTimeout` and
   * `retry` apply within an attempt. Default 2000.
   */
  connectTimeoutMs?: number;
}

export interface ResolvedKafkaOptions {
  driver: KafkaDriver;
  groupId: string;
  topics: string[];
  fromBeginning: boolean;
  ordering: KafkaOrdering;
  deadLetterTopic: (topic: string) => string;
  deadLetterAutoCreate: boolean;
  commitIntervalMs: number;
  maxHeldPerPartition: number;
  sessionTimeout: number;
  heartbeatInterval: number;
  rebalanceTimeout: number;
  maxWaitTimeInMs: number;
  recovery: ResolvedRecovery;
  connectTimeoutMs: number;
  /** The brokers for errors and events, credentials removed. */
  where: string;
}

export function resolveKafkaOptions<Data>(options: KafkaConsumerOptions<Data>): ResolvedKafkaOptions {
  objectOption('kafkaConsumer', 'options', options);
  const owner = `kafkaConsumer(${JSON.stringify(options.groupId)})`;
  const groupId = stringOption(owner, 'groupId', options.groupId);
  if (!Array.isArray(options.topics) || options.topics.length === 0) {
    throw new TypeError(`${owner}: option "topics" must be a non-empty array of topic names, got ${JSON.stringify(options.topics)}`);
  }
  const topics = options.topics.map((t, i) => stringOption(owner, `topics[${i}]`, t));
  const { driver, where } = resolveKafka(owner, options.kafka);
  if (options.fromBeginning !== undefined && typeof options.fromBeginning !== 'boolean') {
    throw new TypeError(`${owner}: option "fromBeginning" must be a boolean, got ${JSON.stringify(options.fromBeginning)}`);
  }
  let deadLetterTopic = (topic: string) => `${topic}.dlq`;
  let deadLetterAutoCreate = true;
  if (options.deadLetter !== undefined) {
    const dl = objectOption(owner, 'deadLetter', options.deadLetter);
    if (dl.topic !== undefined) {
      const topic = stringOption(owner, 'deadLetter.topic', dl.topic);
      deadLetterTopic = () => topic;
    }
    if (dl.allowAutoTopicCreation !== undefined) {
      if (typeof dl.allowAutoTopicCreation !== 'boolean') {
        throw new TypeError(`${owner}: option "deadLetter.allowAutoTopicCreation" must be a boolean, got ${JSON.stringify(dl.allowAutoTopicCreation)}`);
      }
      deadLetterAutoCreate = dl.allowAutoTopicCreation;
    }
  }
  const sessionTimeout = integerOption(owner, 'sessionTimeout', options.sessionTimeout, { min: 1000, fallback: 30_000 });
  const heartbeatInterval = integerOption(owner, 'heartbeatInterval', options.heartbeatInterval, { min: 1, fallback: 3000 });
  if (heartbeatInterval >= sessionTimeout) {
    throw new RangeError(`${owner}: option "heartbeatInterval" must be below "sessionTimeout" (${sessionTimeout}), got ${heartbeatInterval}`);
  }
  return {
    driver,
    groupId,
    topics,
    fromBeginning: options.fromBeginning ?? false,
    ordering: oneOfOption(owner, 'ordering', options.ordering, ['partition', 'key', 'unordered'] as const, 'key'),
    deadLetterTopic,
    deadLetterAutoCreate,
    commitIntervalMs: integerOption(owner, 'commitIntervalMs', options.commitIntervalMs, { min: 10, fallback: 1000 }),
    maxHeldPerPartition: integerOption(owner, 'maxHeldPerPartition', options.maxHeldPerPartition, { min: 1, fallback: 256 }),
    sessionTimeout,
    heartbeatInterval,
    rebalanceTimeout: integerOption(owner, 'rebalanceTimeout', options.rebalanceTimeout, { min: 1000, fallback: 60_000 }),
    maxWaitTimeInMs: integerOption(owner, 'maxWaitTimeInMs', options.maxWaitTimeInMs, { min: 1, fallback: 500 }),
    recovery: resolveRecovery(owner, options.recovery),
    connectTimeoutMs: integerOption(owner, 'connectTimeoutMs', options.connectTimeoutMs, { min: 1, fallback: CONNECT_TIMEOUT_DEFAULT_MS }),
    where,
  };
}

const isDriver = (value: unknown): value is KafkaDriver =>
  typeof value === 'object' && value !== null && ['member', 'producer', 'isRebalanceError'].every((k) => typeof (value as Record<string, unknown>)[k] === 'function');

/**
 * The driver from the option: a given Kafka instance or driver is used as is; a kafkajs config
 * gets kafkajs's logging off by default (sluice reports through its own events) unless the config
 * sets it.
 */
export function resolveKafka(owner: string, value: unknown): { driver: KafkaDriver; where: string } {
  if (isDriver(value)) return { driver: value, where: `the given ${value.name} driver` };
  const platformatic = value !== null && typeof value === 'object' && (value as { client?: unknown }).client === 'platformatic';
  const kafkajs = platformatic ? undefined : loadKafkajs(owner);
  if (kafkajs !== undefined && value instanceof kafkajs.Kafka) return { driver: new KafkajsDriver(value), where: 'the given Kafka instance' };
  const { client = 'kafkajs', ...config } = objectOption(owner, 'kafka', value) as unknown as KafkaConfig & { client?: unknown };
  if (client !== 'kafkajs' && client !== 'platformatic') {
    throw new TypeError(`${owner}: option "kafka.client" must be 'kafkajs' or 'platformatic', got ${JSON.stringify(client)}`);
  }
  if (client === 'platformatic') {
    assertPlatformaticNode(owner);
    const brokers = (config as { brokers?: unknown }).brokers;
    if (!Array.isArray(brokers) || brokers.length === 0 || brokers.some((b) => typeof b !== 'string' || b.length === 0)) {
      throw new TypeError(`${owner}: option "kafka.brokers" must be a non-empty array of "host:port" strings, got ${redactText(JSON.stringify(brokers) ?? String(brokers))}`);
    }
    return { driver: new PlatformaticDriver({ ...config, client } as PlatformaticKafkaConfig), where: redactText((brokers as string[]).join(',')) };
  }
  if ('groupProtocol' in config) {
    throw new TypeError(
      `${owner}: option "kafka.groupProtocol" is not a kafkajs setting (kafkajs has only the classic group protocol); for KIP-848 use kafka: { client: 'platformatic', groupProtocol: 'consumer', ... }`,
    );
  }
  const brokers = config.brokers;
  if (typeof brokers !== 'function') {
    if (!Array.isArray(brokers) || brokers.length === 0 || brokers.some((b) => typeof b !== 'string' || b.length === 0)) {
      throw new TypeError(`${owner}: option "kafka.brokers" must be a non-empty array of "host:port" strings, got ${redactText(JSON.stringify(brokers) ?? String(brokers))}`);
    }
  }
  const where = typeof brokers === 'function' ? 'brokers from a function' : redactText(brokers.join(','));
  return { driver: new KafkajsDriver(new kafkajs!.Kafka({ logLevel: kafkajs!.logLevel.NOTHING, ...config })), where };
}

const requireFromHere = createRequire(import.meta.url);
let kafkajsModule: typeof import('kafkajs') | undefined;

/** kafkajs is loaded only for its driver: a consumer on @platformatic/kafka needs no kafkajs installed. */
function loadKafkajs(owner: string): typeof import('kafkajs') {
  try {
    return (kafkajsModule ??= requireFromHere('kafkajs') as typeof import('kafkajs'));
  } catch (cause) {
    throw new Error(`${owner}: the kafkajs driver needs the optional peer dependency "kafkajs" (npm install kafkajs), or choose another: kafka: { client: 'platformatic', ... }`, { cause });
  }
}
