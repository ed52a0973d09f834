import { MemoryBroker, MemorySource, type StoredMessage } from '../../adapters/memory/index.js';
import type { MemoryBrokerOptions } from '../../adapters/memory/broker.js';
import type { Headers } from '../message.js';
import type { Source, SourceContext } from '../source.js';

/**
 * The memory broker as `testConsumer` uses it: unchanged, but it notes which message each delivery
 * tag is and, for a message whose redelivery is delayed (a retry, a message set aside), when on the
 * clock it is due, so that a test can move the clock to exactly that moment.
 */
export class TestBroker extends MemoryBroker {
  readonly #ids = new Map<string, Map<number, string>>();
  /** Message id → when its delayed redelivery is due (on the broker's clock); deleted once it is delivered again. */
  readonly #due = new Map<string, number>();
  readonly #now: () => number;

  constructor(options: MemoryBrokerOptions & { now: () => number }) {
    super(options.timers === undefined ? {} : { timers: options.timers });
    this.#now = options.now;
  }

  /** When the delayed redelivery of message `id` is due, if it waits for one. */
  dueAt(id: string): number | undefined {
    return this.#due.get(id);
  }

  override subscribe(queue: string, prefetch: number, deliver: (message: StoredMessage, tag: number) => void) {
    let ids = this.#ids.get(queue);
    if (ids === undefined) this.#ids.set(queue, (ids = new Map()));
    const tags = ids;
    return super.subscribe(queue, prefetch, (message, tag) => {
      tags.set(tag, message.id);
      this.#due.delete(message.id);
      deliver(message, tag);
    });
  }

  override ack(queue: string, tag: number): void {
    super.ack(queue, tag);
    this.#forget(queue, tag);
  }

  override requeue(queue: string, tag: number): void {
    super.requeue(queue, tag);
    this.#forget(queue, tag);
  }

  override retryLater(queue: string, tag: number, delayMs: number, attempt: number): void {
    const now = this.#now();
    super.retryLater(queue, tag, delayMs, attempt);
    const id = this.#forget(queue, tag);
    if (id !== undefined) this.#due.set(id, now + Math.max(0, delayMs));
  }

  override moveTo(queue: string, tag: number, target: string, headers: Headers): void {
    super.moveTo(queue, tag, target, headers);
    this.#forget(queue, tag);
  }

  #forget(queue: string, tag: number): string | undefined {
    const ids = this.#ids.get(queue);
    const id = ids?.get(tag);
    ids?.delete(tag);
    return id;
  }
}

/**
 * The memory adapter's Source, with one difference in `'flush'` batch mode: its credit is what the
 * test broker holds for this consumer right now (ready + delivered + messages still in `handler`),
 * capped by the prefetch. In a test nothing else can arrive, so once every pushed message is
 * gathered the runtime's own rule — a batch starts when the consumer holds all the broker's credit
 * and a slot is free — hands the batch over at once instead of after `batch.timeoutMs`
 * (Broadway's `batch_mode: :flush`).
 */
export class TestSource implements Source {
  readonly name: string;
  readonly capabilities: Source['capabilities'];
  #started = false;

  constructor(
    private readonly inner: MemorySource,
    private readonly broker: MemoryBroker,
    private readonly queue: string,
    private readonly flush: boolean,
    /** Messages in the per-message `handler` now (with `handler` and `batchHandler`: they are gathered when it ends). */
    private readonly inHandler: () => number,
  ) {
    this.name = inner.name;
    this.capabilities = inner.capabilities;
  }

  get credit(): number | undefined {
    // Before start: the prefetch, so that the runtime checks batch.size against it as for any consumer.
    if (!this.flush || !this.#started) return this.inner.credit;
    const { ready, unacked } = this.broker.depth(this.queue);
    return Math.min(this.inner.credit, ready + unacked + this.inHandler());
  }

  start(context: SourceContext): Promise<void> {
    this.#started = true;
    return this.inner.start(context);
  }

  pause(): Promise<void> {
    return this.inner.pause();
  }

  resume(): Promise<void> {
    return this.inner.resume();
  }

  stop(): Promise<void> {
    return this.inner.stop();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
