import type { ConsumeMessage, Options } from 'amqplib';
import { ATTEMPT_HEADER, deadLetterHeaders, headerText, Message, type DeadLetterInfo, type Delivery, type Headers } from '../../src/adapter/index.js';
import { publishConfirmed } from './confirm.js';
import { republishable } from './header-table.js';
import type { DeadLetterTarget } from './options.js';
import { ChannelLostError, type Session } from './session.js';

/** What a delivery needs from its source besides its own session. */
export interface DeliveryScope {
  queue: string;
  deadLetter: DeadLetterTarget;
}

/** A copy is republished to the queue itself; this header keeps the routing key it first came with. */
const ROUTING_KEY_HEADER = 'x-sluice-routing-key';

/** Sender-selected distribution: RabbitMQ routes a copy to each routing key listed (an array; anything else is refused). */
const ROUTING_HEADERS = ['CC', 'BCC'];
/** The producer's user-id, which a copy cannot carry as a property. */
const USER_ID_HEADER = 'x-sluice-user-id';

/**
 * The attempt our header says, as text (the first of a repeated header, bytes as UTF-8): a whole
 * number 1 … 2^53 − 1, else 1. Any producer can set the header: 1e308, "abc", -1 or an array must
 * neither skip the retries nor make the count a value `attempt + 1` cannot raise.
 */
function attemptOf(headers: Headers): number {
  const attempt = Number(headerText(headers[ATTEMPT_HEADER]) ?? Number.NaN);
  return Number.isSafeInteger(attempt) && attempt > 0 ? attempt : 1;
}

export function toMessage(raw: ConsumeMessage, queue: string): Message<ConsumeMessage> {
  const headers = (raw.properties.headers ?? {}) as Headers;
  const attempt = attemptOf(headers);
  const routingKey = headers[ROUTING_KEY_HEADER];
  return new Message({
    body: raw.content,
    headers,
    // messageId is what makes redeliveries recognisable; without it the id is only unique per delivery.
    id: raw.properties.messageId || `${queue}:${raw.fields.consumerTag}:${raw.fields.deliveryTag}`, // an empty id is none, as on NATS
    // Our header when it can be a routing key (a producer may set it to anything): a dead letter to an exchange is published with it.
    key: typeof routingKey === 'string' && Buffer.byteLength(routingKey) <= 255 ? routingKey : raw.fields.routingKey,
    source: queue,
    deliveryAttempt: attempt,
    redelivered: raw.fields.redelivered || attempt > 1,
    raw,
  });
}

/**
 * The amqplib translation of the settlements, bound to the session the message came on. A
 * class, not closures: one object per message. Every method that talks to the broker throws
 * when the broker refuses or the channel is gone, and leaves the original unacked then, so the
 * runtime can still settle it another way (settle.ts); nothing here retries or waits.
 */
export class RabbitDelivery implements Delivery<ConsumeMessage> {
  readonly message: Message<ConsumeMessage>;
  /** Nacked (given back) already: a second nack of the same tag would close the channel. */
  #released = false;

  constructor(
    private readonly raw: ConsumeMessage,
    private readonly session: Session,
    private readonly scope: DeliveryScope,
  ) {
    this.message = toMessage(raw, scope.queue);
  }

  /** Its channel closed: RabbitMQ has requeued it and delivers it again; nothing can settle it here. */
  stale(): boolean {
    return !this.session.alive;
  }

  ack(): void {
    this.#usable('ack');
    this.session.acks.ack(this.raw.fields.deliveryTag);
  }

  async giveBack(): Promise<void> {
    // A dead channel has already given it back: RabbitMQ requeues every unacked delivery of it.
    if (this.#released || !this.session.alive) return;
    this.session.channel.nack(this.raw, false, true);
    this.#released = true;
    this.session.acks.release(this.raw.fields.deliveryTag);
  }

  /** Nacked back at dispatch (the runtime refused it). Never throws: a channel that is closing requeues it by itself. */
  refuse(): void {
    if (this.#released || !this.session.alive) return;
    try {
      this.session.channel.nack(this.raw, false, true);
    } catch {
      return;
    }
    this.#released = true;
    this.session.acks.release(this.raw.fields.deliveryTag);
  }

  /**
   * The runtime has waited out the backoff (`capabilities.delayedRetry` is false, so `delayMs` is
   * 0): a confirmed copy with the next attempt number goes to the tail of the queue, then the
   * original is acked. Until the copy is confirmed the original stays unacked: a crash redelivers it.
   */
  async retry(_delayMs: number, nextAttempt: number): Promise<void> {
    this.#usable('retry');
    await this.#republish('retry', { [ATTEMPT_HEADER]: nextAttempt });
    this.ack();
  }

  async deadLetter(info: DeadLetterInfo): Promise<void> {
    this.#usable('dead-letter');
    const signal = this.session.publishable('dead-letter', this.message.id);
    const target = this.scope.deadLetter;
    const [exchange, routingKey] =
      'queue' in target ? ['', target.queue] : [target.exchange, target.routingKey ?? this.message.key ?? this.scope.queue];
    const options = this.#copy(deadLetterHeaders(this.message, info));
    // The producer's TTL is for the message in its queue: a dead letter must stay until someone looks.
    delete options.expiration;
    await publishConfirmed(this.session.confirm, exchange, routingKey, this.raw.content, options, signal);
    this.ack();
  }

  /**
   * Sets it aside when a retry or a dead letter keeps failing: the message, unchanged (same
   * attempt), is republished with confirms to the tail of its queue and the original is acked,
   * which frees its prefetch credit. RabbitMQ cannot delay a message: `delayMs` is only "no
   * sooner than its turn in the queue".
   */
  async defer(_delayMs: number): Promise<void> {
    this.#usable('defer');
    await this.#republish('defer', {});
    this.ack();
  }

  /** A confirmed copy to the queue through the default exchange, keeping its first routing key and its id. */
  async #republish(action: string, extra: Record<string, unknown>): Promise<void> {
    const signal = this.session.publishable(action, this.message.id);
    const headers = { ...republishable(this.raw.properties.headers), ...extra, [ROUTING_KEY_HEADER]: this.message.key };
    const options = this.#copy(headers);
    // The copy keeps the id the runtime knows this message by, also when the original had no messageId.
    options.messageId = this.message.id;
    await publishConfirmed(this.session.confirm, '', this.scope.queue, this.raw.content, options, signal);
  }

  #usable(action: string): void {
    if (!this.session.alive) {
      throw new ChannelLostError(`cannot ${action} message ${this.message.id}: its channel closed; RabbitMQ delivers it again`);
    }
  }

  /**
   * Our copies (retry, set aside, dead letter) go to one queue: a `CC` / `BCC` of the original
   * would route each of them to other queues too, and as text (dead-letter headers) RabbitMQ
   * refuses the publish and closes the channel, so the message could never be dead-lettered.
   */
  #copy(headers: Record<string, unknown>): Options.Publish {
    for (const name of ROUTING_HEADERS) delete headers[name];
    // RabbitMQ refuses (406) a user-id that is not the publishing connection's user: the copy is
    // the consumer's publish, so the producer's user-id is kept as a header instead.
    const { userId, ...properties } = this.raw.properties;
    if (userId !== undefined) headers[USER_ID_HEADER] = userId;
    return { ...properties, headers, persistent: true };
  }
}
