import type { JetStreamClient, NatsClient } from './client.js';
import type { JsMsg } from './jsmsg.js';
import { bodylessDeadLetterHeaders, deadLetterHeaders, findError, Message, type DeadLetterInfo, type Delivery } from '../../src/adapter/index.js';
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
  /**
   * The stream keeps a message after it is acked or termed (retention `limits`): a dead letter
   * may then go without its body, which stays readable in the stream by its sequence.
   */
  keepsSettled: boolean;
  /** Tells the consumer's `error` listeners without failing the settlement. */
  report(error: Error): void;
}

/** Where a dead letter's original is in its stream: kept also on a dead letter without its body. */
const ORIGIN_HEADERS = ['x-sluice-stream-sequence', 'x-sluice-subject'];
const EMPTY = new Uint8Array(0);

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
    const msgID = `dlq:${this.msg.info.stream}:${this.msg.info.streamSequence}`;
    const { deadLetterSubject, client } = this.scope;
    try {
      await this.scope.js.publish(deadLetterSubject, this.msg.data, { headers: deadLetterNatsHeaders(client, headers), msgID });
    } catch (error) {
      // Too large for max_payload or the dead-letter stream, it never fits: rather than set aside
      // for good, it goes without its body where the stream keeps the original (a work-queue or
      // interest stream would delete it on term: there it stays set aside, and reported).
      const refusal = tooLargeRefusal(error);
      if (refusal === undefined || !this.scope.keepsSettled) throw error;
      const where = `stream ${this.msg.info.stream} at sequence ${this.msg.info.streamSequence}`;
      const omitted = `${this.msg.data.length} bytes of body and ${Object.keys(this.message.headers).length} header(s); the message is in ${where}`;
      const stub = bodylessDeadLetterHeaders(headers, ORIGIN_HEADERS, omitted);
      await this.scope.js.publish(deadLetterSubject, EMPTY, { headers: deadLetterNatsHeaders(client, stub), msgID });
      this.scope.report(
        new Error(`dead letter of message ${this.message.id} written to ${deadLetterSubject} without its body and headers (${refusal}); the message is in ${where} until the stream's limits remove it`, { cause: error }),
      );
    }
    this.msg.term();
    this.scope.settled(this.msg);
  }
}

/**
 * The refusal of a message too large to publish (the server's max_payload, checked by the client:
 * nats 2.x `MAX_PAYLOAD_EXCEEDED`, @nats-io 3.x an invalid argument) or to store (the stream's
 * max_msg_size: JetStream error 10054), found through wrappers: its message; else undefined.
 */
export function tooLargeRefusal(error: unknown): string | undefined {
  return findError(
    error,
    (e) =>
      e.code === 'MAX_PAYLOAD_EXCEEDED' ||
      e.code === 10054 ||
      (e.api_error as { err_code?: unknown } | undefined)?.err_code === 10054 ||
      /max_payload size exceeded|message size exceeds maximum/i.test(String(e.message)),
  )?.message;
}
