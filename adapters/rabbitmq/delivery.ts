import type { ConsumeMessage, Options } from 'amqplib';
import { ATTEMPT_HEADER, deadLetterHeaders, type DeadLetterInfo } from '../../src/dead-letter.js';
import { Message, type Headers } from '../../src/message.js';
import type { Delivery } from '../../src/source.js';
import { publishConfirmed } from './confirm.js';
import type { DeadLetterTarget } from './options.js';
import { ChannelLostError, type Session } from './session.js';

/** What a delivery needs from its source besides its own session. */
export interface DeliveryScope {
  queue: string;
  deadLetter: DeadLetterTarget;
  /** Runs `republish` after `delayMs`, or sooner when the consumer stops. */
  later(delayMs: number, republish: () => Promise<void>): void;
}

/** A retry is republished to the queue itself; this header keeps the routing key it first came with. */
const ROUTING_KEY_HEADER = 'x-sluice-routing-key';

export function toMessage(raw: ConsumeMessage, queue: string): Message<ConsumeMessage> {
  const headers = (raw.properties.headers ?? {}) as Headers;
  const attempt = Number(headers[ATTEMPT_HEADER]);
  const routingKey = headers[ROUTING_KEY_HEADER];
  return new Message({
    body: raw.content,
    headers,
    // messageId is what makes redeliveries recognisable; without it the id is only unique per delivery.
    id: raw.properties.messageId ?? `${queue}:${raw.fields.consumerTag}:${raw.fields.deliveryTag}`,
    key: typeof routingKey === 'string' ? routingKey : raw.fields.routingKey,
    source: queue,
    deliveryAttempt: Number.isInteger(attempt) && attempt > 0 ? attempt : 1,
    redelivered: raw.fields.redelivered || attempt > 1,
    raw,
  });
}

/** The amqplib translation of the four outcomes, bound to the session the message came on. A class, not closures: one object per message. */
export class RabbitDelivery implements Delivery<ConsumeMessage> {
  readonly message: Message<ConsumeMessage>;

  constructor(
    private readonly raw: ConsumeMessage,
    private readonly session: Session,
    private readonly scope: DeliveryScope,
  ) {
    this.message = toMessage(raw, scope.queue);
  }

  ack(): void {
    this.#usable('ack');
    this.session.acks.ack(this.raw.fields.deliveryTag);
  }

  async giveBack(): Promise<void> {
    // A dead channel has already given it back: RabbitMQ requeues every unacked delivery of it.
    if (!this.session.alive) return;
    this.session.channel.nack(this.raw, false, true);
    this.session.acks.release(this.raw.fields.deliveryTag);
  }

  async retry(delayMs: number, nextAttempt: number): Promise<void> {
    this.#usable('retry');
    // The original stays unacked (held by the broker against prefetch) until the copy that
    // carries the next attempt number is confirmed; a crash before that redelivers the original.
    this.scope.later(delayMs, async () => {
      if (!this.session.alive) return;
      const headers = { ...this.raw.properties.headers, [ATTEMPT_HEADER]: nextAttempt, [ROUTING_KEY_HEADER]: this.message.key };
      await publishConfirmed(this.session.confirm, '', this.scope.queue, this.raw.content, this.#copy(headers));
      await this.ack();
    });
  }

  async deadLetter(info: DeadLetterInfo): Promise<void> {
    this.#usable('dead-letter');
    const target = this.scope.deadLetter;
    const [exchange, routingKey] =
      'queue' in target ? ['', target.queue] : [target.exchange, target.routingKey ?? this.message.key ?? this.scope.queue];
    await publishConfirmed(this.session.confirm, exchange, routingKey, this.raw.content, this.#copy(deadLetterHeaders(this.message, info)));
    await this.ack();
  }

  #usable(action: string): void {
    if (!this.session.alive) {
      throw new ChannelLostError(`cannot ${action} message ${this.message.id}: its channel closed; RabbitMQ delivers it again`);
    }
  }

  #copy(headers: Record<string, unknown>): Options.Publish {
    return { ...this.raw.properties, headers, persistent: true };
  }
}
