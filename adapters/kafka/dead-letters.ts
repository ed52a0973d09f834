import { findError } from '../../src/adapter/find-error.js';
import type { DriverProducer, KafkaDriver, OutgoingMessage } from './driver.js';
import { within } from './group.js';
import { unconnectedPublisher, type KafkaPublisher } from './publisher.js';

/** How long the dead-letter producer stays connected after its last dead letter. */
export const DEAD_LETTER_IDLE_MS = 10_000;

const noop = () => {};

/**
 * The consumer's dead-letter producer, connected only while it is used. Every open kafkajs
 * connection checks its requests' timeouts on a 100 ms interval, idle or not, so a producer kept
 * connected for dead letters that never come made an idle consumer wake half as often again as
 * the group member's own two connections do. `start` connects it once within the start attempt
 * (an unreachable cluster or a refused idempotent producer still fails `start()`) and lets it go;
 * a dead letter connects it again, and it stays connected until unused for `idleMs`.
 */
export class DeadLetterProducer {
  readonly #publisher: KafkaPublisher;
  readonly #producer: DriverProducer;
  /** Connected or connecting: what a publish waits for. */
  #connected: Promise<void> | undefined;
  /** The last disconnect: a new connect starts after it. */
  #released: Promise<void> = Promise.resolve();
  #inUse = 0;
  #idle: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    driver: KafkaDriver,
    allowAutoTopicCreation: boolean,
    private readonly idleMs = DEAD_LETTER_IDLE_MS,
  ) {
    ({ publisher: this.#publisher, producer: this.#producer } = unconnectedPublisher(driver, allowAutoTopicCreation));
  }

  /** One start attempt's check: connects within `ms` (else rejects, nothing left connected), then lets the connection go. */
  async start(ms: number): Promise<void> {
    const publisher = this.#publisher;
    await within(this.#producer.connect(), ms, 'the dead-letter producer', () => publisher.close()).catch(async (error: unknown) => {
      await publisher.close();
      throw error;
    });
    this.#connected = Promise.resolve();
    this.#release();
  }

  async publish(topic: string, messages: OutgoingMessage[]): Promise<void> {
    this.#inUse++;
    clearTimeout(this.#idle);
    this.#idle = undefined;
    try {
      await (this.#connected ??= this.#connect());
      await this.#publisher.publish(topic, messages);
    } finally {
      if (--this.#inUse === 0) {
        this.#idle = setTimeout(() => this.#release(), this.idleMs);
        this.#idle.unref();
      }
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#idle);
    this.#idle = undefined;
    this.#connected = undefined;
    await this.#released;
    await this.#publisher.close();
  }

  #connect(): Promise<void> {
    const producer = this.#producer;
    const connecting = this.#released
      .then(() => producer.connect())
      .then(async () => {
        // Closed while it connected (close() does not wait for a connect to an unreachable cluster).
        if (!this.#closed) return;
        await producer.disconnect().catch(noop);
        throw new Error('the dead-letter producer is closed');
      });
    connecting.catch(() => {
      // Failed (the cluster is away): the next dead letter tries again; nothing half-open stays.
      if (this.#connected === connecting) this.#connected = undefined;
      this.#released = producer.disconnect().catch(noop);
    });
    return connecting;
  }

  #release(): void {
    this.#idle = undefined;
    const connected = this.#connected;
    if (this.#inUse > 0 || connected === undefined) return;
    this.#connected = undefined;
    const producer = this.#producer;
    this.#released = connected.then(() => producer.disconnect()).catch(noop);
  }
}

/** Kafka's answers to a record (or request) larger than the topic or broker takes: no retry helps. */
const TOO_LARGE = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);

/**
 * The cluster's refusal of a produce because the record is too large, on either driver (kafkajs:
 * `type`; @platformatic/kafka: `apiId`), found through wrappers; else undefined.
 */
export function tooLargeRefusal(error: unknown): Error | undefined {
  return findError(error, (e) => TOO_LARGE.has(String(e.type)) || TOO_LARGE.has(String(e.apiId)));
}
