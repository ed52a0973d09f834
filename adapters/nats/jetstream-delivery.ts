import type { JetStreamClient, NatsClient } from './client.js';
import type { JsMsg } from './jsmsg.js';
import { deadLetterHeaders, Message, type DeadLetterInfo, type Delivery } from '../../src/adapter/index.js';
import { deadLetterNatsHeaders, receivedHeaders } from './message.js';

export interface JetStreamScope {
  stream: string;
  deadLetterSubject: string;
  js: JetStreamClient;
  /** The client generation the connection belongs to (its headers). */
  client: NatsClient;
  /**
   * Which binding of the durable this source is on: it changes when the durable had to be
   * created again (deleted under us). Acks of an older binding can no longer do any good.
   */
  epoch: number;
  /** True once the connection is closed for good: nothing can be acked any more. */
  closed(): boolean;
  /** Acks it with the other acks of this event-loop turn (one write), then treats it as settled. */
  ack(msg: JsMsg): void;
  /** Called once the message is settled (nak'ed or termed): stops its `working()` keep-alive. */
  settled(msg: JsMsg): void;
  /** The delay a give-back needs now (0 but while the source is stopping with pull requests open). */
  giveBackDelayMs(): number;
}

/**
 * JetStream's translation of the settlements. One object per message, no closures. A broker
 * action that fails throws and leaves the message as it was (unacked, kept alive by `working()`),
 * so the runtime can try it again or settle it another way.
 */
export class JetStreamDelivery implements Delivery<JsMsg> {
  readonly message: Message<JsMsg>;
  readonly #epoch: number;

  constructor(
    private readonly msg: JsMsg,
    private readonly scope: JetStreamScope,
  ) {
    const info = msg.info;
    this.#epoch = scope.epoch;
    const { headers, msgId } = receivedHeaders(msg);
    this.message = new Message({
      body: msg.data,
      headers,
      // The stream sequence is stable across redeliveries; Nats-Msg-Id is the publisher's id when it set one.
      id: msgId ?? `${info.stream}:${info.streamSequence}`,
      key: msg.subject,
      source: scope.stream,
      deliveryAttempt: info.deliveryCount,
      redelivered: info.redelivered,
      raw: msg,
    });
  }

  /** The connection is gone, or the durable was created anew: the server delivers it again by itself. */
  stale(): boolean {
    return this.#epoch !== this.scope.epoch || this.scope.closed();
  }

  ack(): void {
    this.scope.ack(this.msg);
  }

  async retry(delayMs: number): Promise<void> {
    // The server redelivers after the delay and counts the delivery: that count is the attempt.
    this.msg.nak(delayMs);
    this.scope.settled(this.msg);
  }

  /**
   * The runtime's last resort when a retry or dead-letter keeps failing: off the pool and the pull
   * window, delivered again after the delay. JetStream counts that delivery too (the runtime
   * remembers a pending dead letter by message id, so it does not run the handler again for it).
   */
  async defer(delayMs: number): Promise<void> {
    this.msg.nak(delayMs);
    this.scope.settled(this.msg);
  }

  async giveBack(): Promise<void> {
    const delayMs = this.scope.giveBackDelayMs();
    if (delayMs > 0) this.msg.nak(delayMs);
    else this.msg.nak();
    this.scope.settled(this.msg);
  }

  async deadLetter(info: DeadLetterInfo): Promise<void> {
    const headers = deadLetterHeaders(this.message, info);
    headers['x-sluice-stream-sequence'] = String(this.msg.info.streamSequence);
    headers['x-sluice-subject'] = this.msg.subject;
    // A dead-letter id of its own: the original's Nats-Msg-Id would be deduplicated against the
    // original. Stable per message, so a dead letter published twice (the term was lost, the
    // runtime tried again) is stored once within the stream's duplicate window.
    delete headers['Nats-Msg-Id'];
    // Waits for the stream's PubAck: only a stored dead letter lets the original be termed. A
    // refused publish (no stream captures the subject, the stream is full) throws and leaves the
    // message untouched: the runtime decides what comes next.
    await this.scope.js.publish(this.scope.deadLetterSubject, this.msg.data, {
      headers: deadLetterNatsHeaders(this.scope.client, headers),
      msgID: `dlq:${this.msg.info.stream}:${this.msg.info.streamSequence}`,
    });
    this.msg.term();
    this.scope.settled(this.msg);
  }
}
