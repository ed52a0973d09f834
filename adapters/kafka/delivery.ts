import { bodylessDeadLetterHeaders, deadLetterHeaders, headerText, Message, type DeadLetterInfo, type Delivery, type Headers } from '../../src/adapter/index.js';
import { tooLargeRefusal } from './dead-letters.js';
import type { KafkaRecord } from './options.js';
import type { PartitionState, Work } from './partition.js';
import { MESSAGE_ID_HEADER } from './publisher.js';

/** What a delivery asks of its source (outcomes.ts); every hook ignores work of a revoked assignment. */
export interface DeliveryHooks {
  /** Acked, or dead-lettered and confirmed: the offset is done and the key's next message may go. */
  finished(state: PartitionState, work: Work): void;
  /** Hand the same message to the runtime again after `delayMs` as attempt `attempt`; its offset stays open. */
  later(state: PartitionState, work: Work, delayMs: number, attempt: number): void;
  /** Not processed after it was accepted (shutdown, a closed pool): keep its offset open, re-dispatch if still running. */
  givenBack(state: PartitionState, work: Work): void;
  /** Produce to the dead-letter topic and wait for all in-sync replicas; rejects when the cluster refuses. */
  publishDeadLetter(topic: string, message: { key: Buffer | null; value: Buffer | null; headers: Record<string, string> }): Promise<void>;
  deadLetterTopic(topic: string): string;
  /** Tells the consumer's `error` listeners (during `detail`) without failing the settlement. */
  report(error: Error, detail: string): void;
}

/** Headers naming where a dead letter came from, besides the `x-sluice-*` set every broker writes. */
export const ORIGIN_HEADERS = { topic: 'x-sluice-original-topic', partition: 'x-sluice-original-partition', offset: 'x-sluice-original-offset' } as const;

const EMPTY = new Uint8Array(0);

/** `idPrefix` is `topic/partition/`, made once per partition: the id is then one concatenation. */
export function toMessage(work: Work, idPrefix: string): Message<KafkaRecord> {
  const { topic, message } = work;
  const headers = (message.headers ?? {}) as Headers;
  return new Message({
    body: message.value ?? EMPTY,
    headers,
    // Kafka messages have no id; a `message-id` header (kafkaPublisher's `id`) wins, else the position, which is stable across redeliveries.
    id: headerText(headers[MESSAGE_ID_HEADER]) || idPrefix + message.offset, // an empty id is none (many messages would share it)
    key: work.key,
    source: topic,
    deliveryAttempt: work.attempt,
    redelivered: work.attempt > 1,
    raw: work,
  });
}

/**
 * Kafka's translation of the settlements. One object per message, no closures (the hot path).
 * An offset cannot be released without losing its message, so nothing here frees it early: a
 * retry or a deferral keeps it open (and its key's lane busy) until the message is finished.
 */
export class KafkaDelivery implements Delivery<KafkaRecord> {
  readonly message: Message<KafkaRecord>;

  constructor(
    private readonly state: PartitionState,
    private readonly work: Work,
    private readonly hooks: DeliveryHooks,
  ) {
    this.message = toMessage(work, state.idPrefix);
  }

  /** Its partition was revoked (or the source closed): a new owner reads it from the last commit. */
  stale(): boolean {
    return this.state.revoked;
  }

  ack(): void {
    this.hooks.finished(this.state, this.work);
  }

  async retry(delayMs: number, nextAttempt: number): Promise<void> {
    this.hooks.later(this.state, this.work, delayMs, nextAttempt);
  }

  /**
   * Produced and acknowledged by every in-sync replica, then done; a refusal throws and leaves the
   * offset open. A record the dead-letter topic can never take (too large) would hold its
   * partition's commit for good: it is dead-lettered without its value and its own headers
   * instead, saying so (`DEAD_LETTER_HEADERS.bodyOmitted`) and where the record still is (the source
   * topic keeps it until its retention), and reported.
   */
  async deadLetter(info: DeadLetterInfo): Promise<void> {
    const { work, hooks } = this;
    const { topic, partition, message: raw } = work;
    const headers = deadLetterHeaders(this.message, info);
    headers[ORIGIN_HEADERS.topic] = topic;
    headers[ORIGIN_HEADERS.partition] = String(partition);
    headers[ORIGIN_HEADERS.offset] = raw.offset;
    const target = hooks.deadLetterTopic(topic);
    try {
      await hooks.publishDeadLetter(target, { key: raw.key ?? null, value: raw.value ?? null, headers });
    } catch (error) {
      const refusal = tooLargeRefusal(error);
      if (refusal === undefined) throw error;
      const where = `${topic}/${partition} at offset ${raw.offset}`;
      const omitted = `${raw.value?.length ?? 0} bytes of value and ${Object.keys(raw.headers ?? {}).length} header(s); the record is at ${where}`;
      await hooks.publishDeadLetter(target, { key: raw.key ?? null, value: null, headers: bodylessDeadLetterHeaders(headers, Object.values(ORIGIN_HEADERS), omitted) });
      hooks.report(
        new Error(`dead letter of message ${this.message.id} written to ${target} without its value and headers (${refusal.message}); the record is at ${where} until the topic's retention`, { cause: error }),
        'dead-letter',
      );
    }
    hooks.finished(this.state, work);
  }

  async giveBack(): Promise<void> {
    this.hooks.givenBack(this.state, this.work);
  }

  /** Kept open and offered again after `delayMs`, same attempt; its key's later messages wait behind it. */
  async defer(delayMs: number): Promise<void> {
    this.hooks.later(this.state, this.work, delayMs, this.work.attempt);
  }
}
