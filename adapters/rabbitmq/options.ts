import type { ChannelModel, ConsumeMessage } from 'amqplib';
import {
  integerOption,
  objectOption,
  oneOfOption,
  consumerCredit,
  resolveRecovery,
  stringOption,
  type ConsumerOptions,
  type RecoveryOptions,
  type ResolvedRecovery,
} from '../../src/adapter/index.js';
import { describeAddress, Endpoints, type RabbitAddress } from './endpoints.js';

export type { RecoveryOptions, RabbitAddress };

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
  /**
   * `amqp://user:pass@host:5672/vhost`, or amqplib's connect object; or a list of them, the nodes
   * of one cluster: each connect tries them in order, starting after the node whose connection
   * was lost, and takes the first that answers. One of `url` / `connection`.
   */
  url?: RabbitAddress | readonly RabbitAddress[];
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
  /** The addresses to connect to; undefined with a `connection` of the user's. */
  endpoints: Endpoints | undefined;
  socketOptions: Record<string, unknown> | undefined;
  connection: ChannelModel | undefined;
  queue: string;
  declare: QueueDeclaration | undefined;
  prefetch: number;
  deadLetter: DeadLetterTarget;
  recovery: ResolvedRecovery;
  /** The broker address(es) for errors and events, passwords removed. */
  where: string;
}

export function resolveRabbitOptions<Data>(options: RabbitConsumerOptions<Data>): ResolvedRabbitOptions {
  const owner = `rabbitConsumer(${JSON.stringify(options?.queue)})`;
  objectOption('rabbitConsumer', 'options', options);
  const queue = stringOption(owner, 'queue', options.queue);
  if ((options.url === undefined) === (options.connection === undefined)) {
    throw new TypeError(`${owner}: give exactly one of option "url" or option "connection"`);
  }
  const addresses = options.url === undefined ? undefined : resolveAddresses(owner, options.url, options.socketOptions);
  if (options.connection !== undefined && typeof (options.connection as { createChannel?: unknown }).createChannel !== 'function') {
    throw new TypeError(`${owner}: option "connection" must be an amqplib connection (from amqplib's connect())`);
  }
  const declare = options.declare === undefined ? undefined : (objectOption(owner, 'declare', options.declare) as QueueDeclaration);
  if (declare?.type !== undefined) oneOfOption(owner, 'declare.type', declare.type, ['classic', 'quorum'] as const);
  const deadLetter = resolveDeadLetter(owner, options.deadLetter, queue);
  const capacity = consumerCredit(options);
  const maxPrefetch = declare?.type === 'quorum' ? 2000 : 65535;
  return {
    endpoints: addresses && new Endpoints(addresses),
    socketOptions: options.socketOptions,
    connection: options.connection,
    queue,
    declare,
    prefetch: integerOption(owner, 'prefetch', options.prefetch, { min: 1, max: maxPrefetch, fallback: Math.min(maxPrefetch, capacity) }),
    deadLetter,
    recovery: resolveRecovery(owner, options.recovery),
    where: addresses === undefined ? 'the given connection' : addresses.map(describeAddress).join(', '),
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

/** Settings that only mean something over TLS: with an amqp:// address amqplib ignores them and connects in plaintext. */
const TLS_SETTINGS = ['ca', 'cert', 'key', 'pfx', 'passphrase'] as const;

/**
 * `url`: one address or a non-empty list of them; each a non-empty string or a connect object.
 * With TLS settings in `socketOptions`, each must be amqps (never a silent plaintext connection).
 */
export function resolveAddresses(owner: string, value: unknown, socketOptions?: Record<string, unknown>): RabbitAddress[] {
  const tls = TLS_SETTINGS.filter((k) => socketOptions?.[k] !== undefined);
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0) throw new TypeError(`${owner}: option "url" must list at least one address, got an empty array`);
  return list.map((url: unknown, i) => {
    const name = Array.isArray(value) ? `url[${i}]` : 'url';
    if (typeof url === 'string') {
      if (url.trim() === '') throw new TypeError(`${owner}: option "${name}" must be a non-empty string`);
      if (!parsesAsAmqp(url)) {
        // amqplib would only say "Expected amqp: or amqps: as the protocol; got ".
        throw new TypeError(
          `${owner}: option "${name}" (${describeAddress(url)}) is not an amqp:// or amqps:// URL; percent-encode special characters of the user name and password (encodeURIComponent)`,
        );
      }
    } else if (typeof url !== 'object' || url === null || Array.isArray(url)) {
      throw new TypeError(`${owner}: option "${name}" must be an amqp:// URL or amqplib's connect object, got ${url === null ? 'null' : typeof url}`);
    }
    const address = url as RabbitAddress;
    if (tls.length > 0 && scheme(address) !== 'amqps') {
      throw new TypeError(`${owner}: option "socketOptions" has TLS settings (${tls.join(', ')}) but option "${name}" (${describeAddress(address)}) is not amqps://: it would connect without TLS`);
    }
    return address;
  });
}

/** As amqplib reads a URL string (WHATWG URL). */
function parsesAsAmqp(url: string): boolean {
  try {
    return /^amqps?:$/.test(new URL(url).protocol);
  } catch {
    return false;
  }
}

/** The scheme amqplib connects with: the URL's, or the connect object's `protocol` (default amqp). */
function scheme(url: RabbitAddress): string {
  const protocol = typeof url === 'string' ? url.slice(0, Math.max(0, url.indexOf(':'))) : (url.protocol ?? 'amqp');
  return protocol.replace(/:$/, '').toLowerCase();
}
