import { DecodeError } from './errors.js';

export type HeaderValue = string | number | boolean | Uint8Array | null | undefined | HeaderValue[] | { [k: string]: HeaderValue };
export type Headers = Record<string, HeaderValue>;

export interface MessageInit<Raw> {
  body: Uint8Array;
  headers?: Headers;
  /** Stable id used for logs and dedup: message-id, Kafka topic/partition/offset, stream sequence. */
  id: string;
  /** Routing key, Kafka key or NATS subject. */
  key?: string | undefined;
  /** Where it came from: queue, topic or subject. Used in dead-letter headers and metrics labels. */
  source: string;
  /** 1 for the first delivery; counts retries and redeliveries as the broker or our header knows them. */
  deliveryAttempt?: number;
  redelivered?: boolean;
  raw: Raw;
}

/** One decoder for every message: `fatal` decoding keeps no state between calls (no `stream` option). */
const UTF8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The broker-neutral envelope a handler receives. `raw` is the broker's own message; `data` the
 * body as the consumer's `schema` validated it (typed from the schema; undefined without one).
 */
export class Message<Raw = unknown, Data = unknown> {
  readonly body: Uint8Array;
  readonly headers: Readonly<Headers>;
  readonly id: string;
  readonly key: string | undefined;
  readonly source: string;
  readonly deliveryAttempt: number;
  readonly redelivered: boolean;
  readonly raw: Raw;
  /** The body parsed as JSON and validated by the consumer's `schema` (its output); undefined without a schema. */
  readonly data: Data = undefined as Data;

  constructor(init: MessageInit<Raw>) {
    this.body = init.body;
    this.headers = init.headers ?? {};
    this.id = init.id;
    this.key = init.key;
    this.source = init.source;
    this.deliveryAttempt = init.deliveryAttempt ?? 1;
    this.redelivered = init.redelivered ?? this.deliveryAttempt > 1;
    this.raw = init.raw;
  }

  /** The body as UTF-8 text; a body that is not valid UTF-8 is a DecodeError (dead-lettered, not retried). */
  text(): string {
    try {
      return UTF8.decode(this.body);
    } catch (cause) {
      throw new DecodeError(`message ${this.id} from ${this.source}: body is not valid UTF-8`, { cause });
    }
  }

  /** The body parsed as JSON; invalid JSON is a DecodeError (dead-lettered, not retried). */
  json<T = unknown>(): T {
    const text = this.text();
    try {
      return JSON.parse(text) as T;
    } catch (cause) {
      const preview = text.length > 40 ? `${text.slice(0, 40)}…` : text;
      throw new DecodeError(`message ${this.id} from ${this.source}: body is not JSON (${JSON.stringify(preview)})`, { cause });
    }
  }

  /** A header as a string, whatever bytes or number the broker delivered it as. */
  header(name: string): string | undefined {
    return headerText(this.headers[name] ?? this.headers[name.toLowerCase()]);
  }
}

/** A header value as text: bytes as UTF-8, a repeated header as its first value, an object as JSON. */
export function headerText(value: HeaderValue): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('utf8');
  if (Array.isArray(value)) return headerText(value[0]);
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

/** The runtime sets a validated body once, before the handler runs; `data` is read-only to handlers. */
export function setData(message: Message, value: unknown): void {
  (message as { data: unknown }).data = value;
}
