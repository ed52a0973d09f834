/**
 * A pulled JetStream message with its acknowledgements, made from the raw core message of either
 * client generation. The source drives the pull protocol itself (jetstream-source.ts), so it
 * wraps what arrives on its inbox here, as the clients' own `toJsMsg` does (neither package
 * exports that): every acknowledgement is a publish to the message's reply subject, and the
 * delivery info is read from that subject.
 */
import { nanos, type Msg, type MsgHdrs } from './client.js';

/** Parsed from the reply subject `$JS.ACK.[<domain>.<account hash>.]<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>`. */
export interface DeliveryInfo {
  domain: string;
  account_hash?: string;
  stream: string;
  consumer: string;
  /** How many times the server delivered it, this time included: sluice's attempt number. */
  deliveryCount: number;
  /** The same as `deliveryCount` (the `nats` 2.x name). */
  redeliveryCount: number;
  redelivered: boolean;
  streamSequence: number;
  deliverySequence: number;
  timestampNanos: number;
  pending: number;
}

/** A JetStream message: `msg.raw` of a `natsConsumer` handler. */
export interface JsMsg {
  readonly subject: string;
  readonly sid: number;
  readonly data: Uint8Array;
  readonly headers: MsgHdrs | undefined;
  readonly reply: string;
  readonly info: DeliveryInfo;
  readonly redelivered: boolean;
  readonly seq: number;
  readonly time: Date;
  readonly timestamp: string;
  ack(): void;
  /** Redelivered at once, or after `millis`. */
  nak(millis?: number): void;
  /** Resets the server's ack_wait for it (may be sent many times). */
  working(): void;
  /** Never delivered again. */
  term(reason?: string): void;
  /** Acks and asks for the next message(s) to be delivered to `subject`. */
  next(subject: string, options?: Partial<{ batch: number; no_wait: boolean; expires: number }>): void;
  /** Acks and waits for the server to confirm it: true when it did. */
  ackAck(options?: Partial<{ timeout: number }>): Promise<boolean>;
  json<T = unknown>(): T;
  string(): string;
}

const ACK = Uint8Array.of(43, 65, 67, 75); // +ACK
const NAK = Uint8Array.of(45, 78, 65, 75); // -NAK
const WPI = Uint8Array.of(43, 87, 80, 73); // +WPI
const TERM = Uint8Array.of(43, 84, 69, 82, 77); // +TERM

/** A request on the connection the message came by (for `ackAck`). */
export type Requester = (subject: string, payload: Uint8Array, timeoutMs: number) => Promise<unknown>;
const encoder = new TextEncoder();

export function parseDeliveryInfo(reply: string): DeliveryInfo {
  const t = reply.split('.');
  // The old form has no domain and account hash.
  if (t.length === 9) t.splice(2, 0, '_', '');
  if (t.length < 11 || t[0] !== '$JS' || t[1] !== 'ACK') throw new Error(`not a JetStream message: reply subject ${JSON.stringify(reply)}`);
  const deliveryCount = Number.parseInt(t[6]!, 10);
  return {
    domain: t[2] === '_' ? '' : t[2]!,
    account_hash: t[3],
    stream: t[4]!,
    consumer: t[5]!,
    deliveryCount,
    redeliveryCount: deliveryCount,
    redelivered: deliveryCount > 1,
    streamSequence: Number.parseInt(t[7]!, 10),
    deliverySequence: Number.parseInt(t[8]!, 10),
    timestampNanos: Number.parseInt(t[9]!, 10),
    pending: Number.parseInt(t[10]!, 10),
  };
}

/** One per pulled message; the info is parsed when first read. After ack, nak or term, nothing more is sent (working() may be sent often). */
export class PulledJsMsg implements JsMsg {
  #info: DeliveryInfo | undefined;
  #done = false;

  constructor(
    readonly msg: Msg,
    private readonly request?: Requester,
  ) {}

  get subject(): string {
    return this.msg.subject;
  }
  get sid(): number {
    return this.msg.sid;
  }
  get data(): Uint8Array {
    return this.msg.data;
  }
  get headers(): MsgHdrs | undefined {
    return this.msg.headers;
  }
  get reply(): string {
    return this.msg.reply ?? '';
  }
  get info(): DeliveryInfo {
    return (this.#info ??= parseDeliveryInfo(this.reply));
  }
  get redelivered(): boolean {
    return this.info.redelivered;
  }
  get seq(): number {
    return this.info.streamSequence;
  }
  get time(): Date {
    return new Date(Math.floor(this.info.timestampNanos / 1e6));
  }
  get timestamp(): string {
    return this.time.toISOString();
  }

  #send(payload: Uint8Array, final: boolean): void {
    if (this.#done) return;
    this.#done = final;
    this.msg.respond(payload);
  }

  ack(): void {
    this.#send(ACK, true);
  }
  nak(millis?: number): void {
    this.#send(millis ? encoder.encode(`-NAK ${JSON.stringify({ delay: nanos(millis) })}`) : NAK, true);
  }
  working(): void {
    this.#send(WPI, false);
  }
  term(reason = ''): void {
    this.#send(reason ? encoder.encode(`+TERM ${reason}`) : TERM, true);
  }
  next(subject: string, options: Partial<{ batch: number; no_wait: boolean; expires: number }> = {}): void {
    if (this.#done) return;
    this.#done = true;
    const args: Record<string, unknown> = { batch: options.batch || 1, no_wait: options.no_wait || false };
    if (options.expires && options.expires > 0) args.expires = nanos(options.expires);
    this.msg.respond(encoder.encode(`+NXT ${JSON.stringify(args)}`), { reply: subject });
  }
  async ackAck(options: Partial<{ timeout: number }> = {}): Promise<boolean> {
    if (this.#done || !this.msg.reply || !this.request) return false;
    this.#done = true;
    await this.request(this.msg.reply, ACK, options.timeout ?? 5000);
    return true;
  }
  json<T = unknown>(): T {
    return this.msg.json<T>();
  }
  string(): string {
    return this.msg.string();
  }
}
