import type { JetStreamClient, JsMsg } from 'nats';
import { deadLetterHeaders, type DeadLetterInfo } from '../../src/dead-letter.js';
import { Message } from '../../src/message.js';
import type { Delivery } from '../../src/source.js';
import { fromNatsHeaders, toNatsHeaders } from './message.js';

export interface JetStreamScope {
  stream: string;
  deadLetterSubject: string;
  js: JetStreamClient;
  /** Acks it with the other acks of this event-loop turn (one write), then treats it as settled. */
  ack(msg: JsMsg): void;
  /** Called once the message is settled (nak'ed or termed): stops its `working()` keep-alive. */
  settled(msg: JsMsg): void;
}

/** After a failed dead-letter publish, the server delivers the message again this much later. */
export const DEAD_LETTER_RETRY_MS = 1000;

/** JetStream's translation of the four outcomes. One object per message, no closures. */
export class JetStreamDelivery implements Delivery<JsMsg> {
  readonly message: Message<JsMsg>;

  constructor(
    private readonly msg: JsMsg,
    private readonly scope: JetStreamScope,
  ) {
    const info = msg.info;
    this.message = new Message({
      body: msg.data,
      headers: fromNatsHeaders(msg.headers),
      // The stream sequence is stable across redeliveries; Nats-Msg-Id is the publisher's id when it set one.
      id: msg.headers?.get('Nats-Msg-Id') || `${info.stream}:${info.streamSequence}`,
      key: msg.subject,
      source: scope.stream,
      deliveryAttempt: info.deliveryCount,
      redelivered: info.redelivered,
      raw: msg,
    });
  }

  ack(): void {
    this.scope.ack(this.msg);
  }

  async retry(delayMs: number): Promise<void> {
    // The server redelivers after the delay and counts the delivery: that count is the attempt.
    this.msg.nak(delayMs);
    this.scope.settled(this.msg);
  }

  async giveBack(): Promise<void> {
    this.msg.nak();
    this.scope.settled(this.msg);
  }

  async deadLetter(info: DeadLetterInfo): Promise<void> {
    const headers = deadLetterHeaders(this.message, info);
    headers['x-sluice-stream-sequence'] = String(this.msg.info.streamSequence);
    headers['x-sluice-subject'] = this.msg.subject;
    // A dead-letter id of its own: the original's Nats-Msg-Id would be deduplicated against the original.
    delete headers['Nats-Msg-Id'];
    // Waits for the stream's PubAck: only a stored dead letter lets the original be termed.
    try {
      await this.scope.js.publish(this.scope.deadLetterSubject, this.msg.data, {
        headers: toNatsHeaders(headers),
        msgID: `dlq:${this.msg.info.stream}:${this.msg.info.streamSequence}`,
      });
    } catch (error) {
      // Not stored, so not dead: let the server deliver it again (and stop keeping it alive).
      this.msg.nak(DEAD_LETTER_RETRY_MS);
      this.scope.settled(this.msg);
      throw error;
    }
    this.msg.term();
    this.scope.settled(this.msg);
  }
}
