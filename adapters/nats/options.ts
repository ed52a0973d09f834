import type { ConsumerConfig, Msg } from './client.js';
import type { JsMsg } from './jsmsg.js';
import { consumerCredit, integerOption, objectOption, poolCapacity, resolveRecovery, stringOption, type ConsumerOptions, type RecoveryOptions } from '../../src/adapter/index.js';
import { resolveConnection, type NatsConnectionOptions } from './connection.js';
import type { ResolvedJetStreamOptions } from './jetstream-source.js';
import type { ResolvedCoreOptions } from './core-source.js';

/** The same `recovery` as every adapter (src/adapter/recovery.ts): 3 start attempts, backoff 200 ms growing to 5 s. */
export type NatsRecoveryOptions = RecoveryOptions;

export interface NatsConsumerOptions<Data = unknown> extends ConsumerOptions<JsMsg, Data>, NatsConnectionOptions {
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
  /**
   * How long one pull request waits for messages (at least 1000). Default 30000, as nats.js
   * `consume()`: an idle consumer sends one request per expiry; the server's idle heartbeats
   * (every half of it, at most 30 s) tell it the request is still alive.
   */
  pullExpiresMs?: number;
  recovery?: NatsRecoveryOptions;
}

export interface NatsSubscriberOptions<Data = unknown> extends ConsumerOptions<Msg, Data>, NatsConnectionOptions {
  subject: string;
  /** Queue group: each message goes to one member of the group. */
  queueGroup?: string;
  /**
   * Where failed messages go. When a JetStream stream captures the subject, the publish waits for
   * its PubAck; otherwise it is a core publish confirmed by a server round trip (flush), which
   * proves the server got it, not that anyone received it. Default: none (dropped and counted).
   */
  deadLetter?: { subject: string };
  recovery?: NatsRecoveryOptions;
}

function deadLetterSubject(owner: string, value: unknown, fallback: string | undefined): string | undefined {
  if (value === undefined) return fallback;
  return stringOption(owner, 'deadLetter.subject', objectOption(owner, 'deadLetter', value).subject);
}

export function resolveJetStreamOptions<Data>(o: NatsConsumerOptions<Data>): ResolvedJetStreamOptions {
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
    capacity: poolCapacity(o.pool),
    credit: consumerCredit(o),
    pullExpiresMs: integerOption(owner, 'pullExpiresMs', o.pullExpiresMs, { min: 1000, fallback: 30_000 }),
    recovery: resolveRecovery(owner, o.recovery),
  };
}

export function resolveCoreOptions<Data>(o: NatsSubscriberOptions<Data>): ResolvedCoreOptions {
  const owner = `natsSubscriber(${JSON.stringify(o?.subject)})`;
  objectOption('natsSubscriber', 'options', o);
  return {
    connection: resolveConnection(owner, o),
    subject: stringOption(owner, 'subject', o.subject),
    queueGroup: o.queueGroup === undefined ? undefined : stringOption(owner, 'queueGroup', o.queueGroup),
    deadLetterSubject: deadLetterSubject(owner, o.deadLetter, undefined),
    recovery: resolveRecovery(owner, o.recovery),
  };
}
