import { deadLetterHeaders, type DeadLetterInfo } from '../../src/dead-letter.js';
import { headerText, Message, type Headers } from '../../src/message.js';
import type { Delivery } from '../../src/source.js';
import type { KafkaRecord } from './options.js';
import type { PartitionState, Work } from './partition.js';
import { MESSAGE_ID_HEADER } from './publisher.js';

/** What a delivery asks of its source; every hook ignores work of a revoked assignment. */
export interface DeliveryHooks {
  /** Acked, or dead-lettered and confirmed: the offset is done and the key's next message may go. */
  finished(state: PartitionState, work: Work): void;
  /** Hand the same message to the runtime again after `delayMs` as attempt `nextAttempt`; its offset stays open. */
  retry(state: PartitionState, work: Work, delayMs: number, nextAttempt: number): void;
  /** Not processed after it was accepted (shutdown, a closed pool): keep its offset open, re-dispatch if still running. */
  givenBack(state: PartitionState, work: Work): void;
  /** Produce to the dead-letter topic and wait for all in-sync replicas. */
  publishDeadLetter(topic: string, message: { key: Buffer | null; value: Buffer | null; headers: Record<string, string> }): Promise<void>;
  deadLetterTopic(topic: string): string;
}

/** Headers naming where a dead letter came from, besides the `x-sluice-*` set every broker writes. */
export const ORIGIN_HEADERS = { topic: 'x-sluice-original-topic', partition: 'x-sluice-original-partition', offset: 'x-sluice-original-offset' } as const;

const EMPTY = new Uint8Array(0);

/** After a failed dead-letter produce, the message is handed to the pool again this much later (same attempt). */
export const DEAD_LETTER_RETRY_MS = 1000;

/** `idPrefix` is `topic/partition/`, made once per partition: the id is then one concatenation. */
export function toMessage(work: Work, idPrefix: string): Message<KafkaRecord> {
  const { topic, message } = work;
  const headers = (message.headers ?? {}) as Headers;
  return new Message({
    body: message.value ?? EMPTY,
    headers,
    // Kafka messages have no id; a `message-id` header (kafkaPublisher's `id`) wins, else the position, which is stable across redeliveries.
    id: headerText(headers[MESSAGE_ID_HEADER]) ?? idPrefix + message.offset,
    key: work.key,
    source: topic,
    deliveryAttempt: work.attempt,
    redelivered: work.attempt > 1,
    raw: work,
  });
}

/** Kafka's translation of the four outcomes. One object per message, no closures (the hot path). */
export class KafkaDelivery implements Delivery<KafkaRecord> {
  readonly message: Message<KafkaRecord>;
  /** True while `context.dispatch` runs: a give-back then is the runtime refusing it, which the source handles. */
  dispatching = true;

  constructor(
    private readonly state: PartitionState,
    private readonly work: Work,
    private readonly hooks: DeliveryHooks,
  ) {
    this.message = toMessage(work, state.idPrefix);
  }

  ack(): void {
    this.hooks.finished(this.state, this.work);
  }

  async retry(delayMs: number, nextAttempt: number): Promise<void> {
    this.hooks.retry(this.state, this.work, delayMs, nextAttempt);
  }

  async deadLetter(info: DeadLetterInfo): Promise<void> {
    const { state, work, hooks } = this;
    const { topic, partition, message: raw } = work;
    const headers = deadLetterHeaders(this.message, info);
    headers[ORIGIN_HEADERS.topic] = topic;
    headers[ORIGIN_HEADERS.partition] = String(partition);
    headers[ORIGIN_HEADERS.offset] = raw.offset;
    try {
      await hooks.publishDeadLetter(hooks.deadLetterTopic(topic), { key: raw.key ?? null, value: raw.value ?? null, headers });
    } catch (error) {
      // Not dead-lettered, so not done: run it again later. Its key's later messages wait behind it meanwhile.
      hooks.retry(state, work, DEAD_LETTER_RETRY_MS, work.attempt);
      throw error;
    }
    hooks.finished(state, work);
  }

  async giveBack(): Promise<void> {
    if (!this.dispatching) this.hooks.givenBack(this.state, this.work);
  }
}
