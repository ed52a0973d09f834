import type { ChannelModel, ConsumeMessage, Options } from 'amqplib';
import {
  integerOption,
  objectOption,
  oneOfOption,
  consumerCredit,
  redactUrl,
  resolveRecovery,
  stringOption,
  type ConsumerOptions,
  type RecoveryOptions,
  type ResolvedRecovery,
} from '../../src/adapter/index.js';

export type { RecoveryOptions };

/** How the consumer declares its queue. Omitted: the queue must already exist (checked at start). */
export interface QueueDeclaration {
  /** Default true. */
  durable?: boolean;
  /** Default 'classic'. Quorum queues count deliveries in `x-delivery-count` and cap prefetch at 2000. */
  type?: 'classic' | 'quorum';
  /** Extra `x-` arguments, e.g. `{ 'x-max-length': 100000 }`. */
  arguments?: Record<string, unknown>;
  /** Bindings to create; the exchange is asserted with `exchangeType` (default 'topic'). */
  bindings?: { exchange: string; routingKey?: string; exchangeType?: string }[];
}

/** Where dead letters go: a queue (declared durable by the consumer) or an exchange (must exist). */
export type DeadLetterTarget = { queue: string } | { exchange: string; routingKey?: string };

export interface RabbitConsumerOptions<Data = unknown> extends ConsumerOptions<ConsumeMessage, Data> {
  /** `amqp://user:pass@host:5672/vhost`, or amqplib's connect object. One of `url` / `connection`. */
  url?: string | Options.Connect;
  /** amqplib socket options: TLS (`cert`, `key`, `ca`), timeouts, `clientProperties`. */
  socketOptions?: Record<string, unknown>;
  /**
   * An amqplib connection you own. sluice recovers its channels but cannot reconnect it; pass a
   * connection made with amqplib's `recovery` option if it should survive a lost connection.
   */
  connection?: ChannelModel;
  queue: string;
  declare?: QueueDeclaration;
  /**
   * Unacked deliveries the broker may push to this consumer. Default: the pool's capacity
   * (maxConcurrency + maxQueueSize), plus maxConcurrency × (batch.size − 1) with a batch handler
   * (a running batch holds its messages in one slot); on an adaptive pool it follows the limit.
   */
  prefetch?: number;
  /** Default `{ queue: '<queue>.dlq' }`. */
  deadLetter?: DeadLetterTarget;
  /** Connecting at start and after a lost connection; the same defaults as every adapter: 3 start attempts, backoff 200 ms → 5 s. */
  recovery?: RecoveryOptions;
}

export interface ResolvedRabbitOptions {
  url: string | Options.Connect | undefined;
  socketOptions: Record<string, unknown> | undefined;
  connection: ChannelModel | undefined;
  queue: string;
  declare: QueueDeclaration | undefined;
  prefetch: number;
  deadLetter: DeadLetterTarget;
  recovery: ResolvedRecovery;
  /** The broker address for errors and events, password removed. */
  where: string;
}

export function resolveRabbitOptions<Data>(options: RabbitConsumerOptions<Data>): ResolvedRabbitOptions {
  const owner = `rabbitConsumer(${JSON.stringify(options?.queue)})`;
  objectOption('rabbitConsumer', 'options', options);
  const queue = stringOption(owner, 'queue', options.queue);
  if ((options.url === undefined) === (options.connection === undefined)) {
    throw new TypeError(`${owner}: give exactly one of option "url" or option "connection"`);
  }
  if (options.url !== undefined && typeof options.url !== 'string') objectOption(owner, 'url', options.url);
  if (options.connection !== undefined && typeof (options.connection as { createChannel?: unknown }).createChannel !== 'function') {
    throw new TypeError(`${owner}: option "connection" must be an amqplib connection (from amqplib's connect())`);
  }
  const declare = options.declare === undefined ? undefined : (objectOption(owner, 'declare', options.declare) as QueueDeclaration);
  if (declare?.type !== undefined) oneOfOption(owner, 'declare.type', declare.type, ['classic', 'quorum'] as const);
  const deadLetter = resolveDeadLetter(owner, options.deadLetter, queue);
  const capacity = consumerCredit(options);
  const maxPrefetch = declare?.type === 'quorum' ? 2000 : 65535;
  return {
    url: options.url,
    socketOptions: options.socketOptions,
    connection: options.connection,
    queue,
    declare,
    prefetch: integerOption(owner, 'prefetch', options.prefetch, { min: 1, max: maxPrefetch, fallback: Math.min(maxPrefetch, capacity) }),
    deadLetter,
    recovery: resolveRecovery(owner, options.recovery),
    where: describeAddress(options.url),
  };
}

function resolveDeadLetter(owner: string, value: unknown, queue: string): DeadLetterTarget {
  if (value === undefined) return { queue: `${queue}.dlq` };
  const o = objectOption(owner, 'deadLetter', value);
  if ('queue' in o) return { queue: stringOption(owner, 'deadLetter.queue', o.queue) };
  if ('exchange' in o) {
    const exchange = o.exchange === '' ? '' : stringOption(owner, 'deadLetter.exchange', o.exchange);
    return { exchange, routingKey: o.routingKey === undefined ? undefined : String(o.routingKey) };
  }
  throw new TypeError(`${owner}: option "deadLetter" must be { queue } or { exchange, routingKey? }`);
}

function describeAddress(url: string | Options.Connect | undefined): string {
  if (url === undefined) return 'the given connection';
  if (typeof url === 'string') return redactUrl(url);
  return `${url.protocol ?? 'amqp'}://${url.hostname ?? 'localhost'}:${url.port ?? 5672}${url.vhost ? `/${url.vhost}` : ''}`;
}
