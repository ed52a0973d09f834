import type { ConsumerConfig, JsMsg, Msg } from 'nats';
import type { ConsumerOptions } from '../../src/consumer-options.js';
import { WorkerPool } from '../../src/pool/worker-pool.js';
import { retryPolicy, type BackoffOptions } from '../../src/retry.js';
import { integerOption, objectOption, stringOption } from '../../src/validate.js';
import { resolveConnection, type NatsConnectionOptions } from './connection.js';
import type { ResolvedJetStreamOptions } from './jetstream-source.js';
import type { ResolvedCoreOptions } from './core-source.js';

export interface NatsRecoveryOptions {
  /** Connection attempts at start before `start()` rejects. Default 3. */
  startAttempts?: number;
  /** Backoff between attempts and between failed pulls. Default 100 ms growing to 5 s. */
  backoff?: BackoffOptions;
}

export interface NatsConsumerOptions extends ConsumerOptions<JsMsg>, NatsConnectionOptions {
  stream: string;
  /** The durable pull consumer's name. */
  durable: string;
  /**
   * Create the durable (or update it) with this config. sluice forces `ack_policy: explicit`,
   * `max_deliver: -1` (sluice dead-letters, the server must not give up first) and
   * `max_ack_pending` of at least the pool's capacity. Omitted: the durable must exist.
   */
  consumerConfig?: Partial<ConsumerConfig>;
  /** Default `{ subject: 'sluice.dlq.<stream>.<durable>' }`; a stream must capture it (the publish waits for its PubAck). */
  deadLetter?: { subject: string };
  /** How long one pull request waits for messages. Default 5000 ms (at least 1000). */
  pullExpiresMs?: number;
  recovery?: NatsRecoveryOptions;
}

export interface NatsSubscriberOptions extends ConsumerOptions<Msg>, NatsConnectionOptions {
  subject: string;
  /** Queue group: each message goes to one member of the group. */
  queueGroup?: string;
  /** Where failed messages go (a plain core NATS publish, at most once). Default: none (dropped and counted). */
  deadLetter?: { subject: string };
  recovery?: NatsRecoveryOptions;
}

function capacityOf(pool: ConsumerOptions['pool']): number {
  const p = pool instanceof WorkerPool ? pool.status() : pool;
  return Math.max(1, (p?.maxConcurrency ?? 1) + (p?.maxQueueSize ?? 0));
}

function recovery(owner: string, value: unknown) {
  const r = value === undefined ? {} : objectOption(owner, 'recovery', value);
  return {
    startAttempts: integerOption(owner, 'recovery.startAttempts', r.startAttempts, { min: 1, fallback: 3 }),
    backoff: retryPolicy(
      { maxAttempts: Number.MAX_SAFE_INTEGER, backoff: { initialMs: 100, maxMs: 5000, ...(r.backoff as BackoffOptions) } },
      `${owner} recovery`,
    ),
  };
}

function deadLetterSubject(owner: string, value: unknown, fallback: string | undefined): string | undefined {
  if (value === undefined) return fallback;
  return stringOption(owner, 'deadLetter.subject', objectOption(owner, 'deadLetter', value).subject);
}

export function resolveJetStreamOptions(o: NatsConsumerOptions): ResolvedJetStreamOptions {
  const owner = `natsConsumer(${JSON.stringify(o?.stream)}/${JSON.stringify(o?.durable)})`;
  objectOption('natsConsumer', 'options', o);
  const stream = stringOption(owner, 'stream', o.stream);
  const durable = stringOption(owner, 'durable', o.durable);
  return {
    connection: resolveConnection(owner, o),
    stream,
    durable,
    consumerConfig: o.consumerConfig === undefined ? undefined : (objectOption(owner, 'consumerConfig', o.consumerConfig) as Partial<ConsumerConfig>),
    deadLetterSubject: deadLetterSubject(owner, o.deadLetter, `sluice.dlq.${stream}.${durable}`)!,
    capacity: capacityOf(o.pool),
    pullExpiresMs: integerOption(owner, 'pullExpiresMs', o.pullExpiresMs, { min: 1000, fallback: 5000 }),
    ...recovery(owner, o.recovery),
  };
}

export function resolveCoreOptions(o: NatsSubscriberOptions): ResolvedCoreOptions {
  const owner = `natsSubscriber(${JSON.stringify(o?.subject)})`;
  objectOption('natsSubscriber', 'options', o);
  return {
    connection: resolveConnection(owner, o),
    subject: stringOption(owner, 'subject', o.subject),
    queueGroup: o.queueGroup === undefined ? undefined : stringOption(owner, 'queueGroup', o.queueGroup),
    deadLetterSubject: deadLetterSubject(owner, o.deadLetter, undefined),
    startAttempts: recovery(owner, o.recovery).startAttempts,
  };
}
