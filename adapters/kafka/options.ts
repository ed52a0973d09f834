import { Kafka, logLevel, type KafkaConfig, type KafkaMessage } from 'kafkajs';
import type { ConsumerOptions } from '../../src/consumer-options.js';
import { retryPolicy, type BackoffOptions, type RetryPolicy } from '../../src/retry.js';
import { redactText } from '../../src/redact.js';
import { integerOption, objectOption, oneOfOption, stringOption } from '../../src/validate.js';

/** What a handler gets as `msg.raw`: the kafkajs message and where it was read. */
export interface KafkaRecord {
  topic: string;
  partition: number;
  message: KafkaMessage;
}

export type KafkaOrdering = 'partition' | 'key' | 'unordered';

export interface KafkaRecoveryOptions {
  /** Tries to connect and join the group at start before `start()` rejects. Default 3. */
  startAttempts?: number;
  /** Backoff between those tries. Default 200 ms growing to 5 s. */
  backoff?: BackoffOptions;
}

export interface KafkaConsumerOptions extends ConsumerOptions<KafkaRecord> {
  /** kafkajs client config (`brokers`, `ssl`, `sasl`, `retry`…), or a `Kafka` instance you own. */
  kafka: KafkaConfig | Kafka;
  groupId: string;
  topics: string[];
  /** Where a group with no committed offset starts. Default false (only new messages). */
  fromBeginning?: boolean;
  /**
   * `'key'` (default): in order per message key, parallel across keys (messages without a key
   * are unordered). `'partition'`: one message at a time per partition. `'unordered'`: no order.
   */
  ordering?: KafkaOrdering;
  /** Where dead letters go. Default: `<the message's topic>.dlq`. */
  deadLetter?: { topic: string };
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
  recovery?: KafkaRecoveryOptions;
}

export interface ResolvedKafkaOptions {
  kafka: Kafka;
  groupId: string;
  topics: string[];
  fromBeginning: boolean;
  ordering: KafkaOrdering;
  deadLetterTopic: ((topic: string) => string);
  commitIntervalMs: number;
  maxHeldPerPartition: number;
  sessionTimeout: number;
  heartbeatInterval: number;
  rebalanceTimeout: number;
  maxWaitTimeInMs: number;
  startAttempts: number;
  backoff: RetryPolicy;
  /** The brokers for errors and events, credentials removed. */
  where: string;
}

export function resolveKafkaOptions(options: KafkaConsumerOptions): ResolvedKafkaOptions {
  objectOption('kafkaConsumer', 'options', options);
  const owner = `kafkaConsumer(${JSON.stringify(options.groupId)})`;
  const groupId = stringOption(owner, 'groupId', options.groupId);
  if (!Array.isArray(options.topics) || options.topics.length === 0) {
    throw new TypeError(`${owner}: option "topics" must be a non-empty array of topic names, got ${JSON.stringify(options.topics)}`);
  }
  const topics = options.topics.map((t, i) => stringOption(owner, `topics[${i}]`, t));
  const { kafka, where } = resolveKafka(owner, options.kafka);
  if (options.fromBeginning !== undefined && typeof options.fromBeginning !== 'boolean') {
    throw new TypeError(`${owner}: option "fromBeginning" must be a boolean, got ${JSON.stringify(options.fromBeginning)}`);
  }
  let deadLetterTopic = (topic: string) => `${topic}.dlq`;
  if (options.deadLetter !== undefined) {
    const dl = objectOption(owner, 'deadLetter', options.deadLetter);
    const topic = stringOption(owner, 'deadLetter.topic', dl.topic);
    deadLetterTopic = () => topic;
  }
  const sessionTimeout = integerOption(owner, 'sessionTimeout', options.sessionTimeout, { min: 1000, fallback: 30_000 });
  const heartbeatInterval = integerOption(owner, 'heartbeatInterval', options.heartbeatInterval, { min: 1, fallback: 3000 });
  if (heartbeatInterval >= sessionTimeout) {
    throw new RangeError(`${owner}: option "heartbeatInterval" must be below "sessionTimeout" (${sessionTimeout}), got ${heartbeatInterval}`);
  }
  const recovery = options.recovery === undefined ? {} : objectOption(owner, 'recovery', options.recovery);
  return {
    kafka,
    groupId,
    topics,
    fromBeginning: options.fromBeginning ?? false,
    ordering: oneOfOption(owner, 'ordering', options.ordering, ['partition', 'key', 'unordered'] as const, 'key'),
    deadLetterTopic,
    commitIntervalMs: integerOption(owner, 'commitIntervalMs', options.commitIntervalMs, { min: 10, fallback: 1000 }),
    maxHeldPerPartition: integerOption(owner, 'maxHeldPerPartition', options.maxHeldPerPartition, { min: 1, fallback: 256 }),
    sessionTimeout,
    heartbeatInterval,
    rebalanceTimeout: integerOption(owner, 'rebalanceTimeout', options.rebalanceTimeout, { min: 1000, fallback: 60_000 }),
    maxWaitTimeInMs: integerOption(owner, 'maxWaitTimeInMs', options.maxWaitTimeInMs, { min: 1, fallback: 500 }),
    startAttempts: integerOption(owner, 'recovery.startAttempts', recovery.startAttempts, { min: 1, fallback: 3 }),
    backoff: retryPolicy({ maxAttempts: Number.MAX_SAFE_INTEGER, backoff: { initialMs: 200, maxMs: 5000, ...(recovery.backoff as BackoffOptions) } }, `${owner} recovery`),
    where,
  };
}

/**
 * A Kafka instance from the option: a given instance is used as is; a config gets kafkajs's
 * logging off by default (sluice reports through its own events) unless the config sets it.
 */
export function resolveKafka(owner: string, value: unknown): { kafka: Kafka; where: string } {
  if (value instanceof Kafka) return { kafka: value, where: 'the given Kafka instance' };
  const config = objectOption(owner, 'kafka', value) as unknown as KafkaConfig;
  const brokers = config.brokers;
  if (typeof brokers !== 'function') {
    if (!Array.isArray(brokers) || brokers.length === 0 || brokers.some((b) => typeof b !== 'string' || b.length === 0)) {
      throw new TypeError(`${owner}: option "kafka.brokers" must be a non-empty array of "host:port" strings, got ${redactText(JSON.stringify(brokers) ?? String(brokers))}`);
    }
  }
  const where = typeof brokers === 'function' ? 'brokers from a function' : redactText(brokers.join(','));
  return { kafka: new Kafka({ logLevel: logLevel.NOTHING, ...config }), where };
}
