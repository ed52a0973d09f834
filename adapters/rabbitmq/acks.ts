import type { Channel, Message as AmqpMessage } from 'amqplib';
// The module itself, not the SDK entry: this file stays pure (no runtime loaded with it).
import { DonePrefix } from '../../src/adapter/done-prefix.js';

/**
 * Coalesces the acks of one channel: once per turn of the event loop, one `basic.ack` with
 * `multiple` for the settled run at the head (in delivery-tag order), and single acks for settled
 * ones behind a delivery still running, so a slow message never holds back the prefetch credit
 * of the others. One frame per message would cost more than a fast handler.
 *
 * The order is a `DonePrefix` over delivery tags: a tag is done once acked here or released
 * (nacked on its own). Everything below the prefix's end is then no longer outstanding at the
 * broker, or is acked in this flush, so one `multiple` ack on the highest tag acked in this flush
 * below the end covers exactly the right deliveries. That tag is always outstanding: acking a tag
 * the broker no longer knows would close the channel.
 */
export class AckBatcher {
  readonly #order = new DonePrefix();
  /** Tags acked since the last flush, in the order they were acked. */
  #pending: number[] = [];
  #scheduled = false;

  /** `open()` false: the channel died, RabbitMQ requeues its unacked deliveries, pending acks are moot. */
  constructor(
    private readonly channel: Channel,
    private readonly open: () => boolean,
  ) {}

  /** A delivery arrived: its tag joins the order (tags increase on a channel). */
  track(tag: number): void {
    this.#order.take(tag);
  }

  /** Acks `tag` at the next flush. A tag that is not tracked or already settled is ignored. */
  ack(tag: number): void {
    if (!this.#settle(tag)) return;
    this.#pending.push(tag);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** The delivery was nacked/rejected on its own: it leaves the order without an ack. */
  release(tag: number): void {
    this.#settle(tag);
  }

  /** Sends what is pending now. Called before the channel closes. */
  flush(): void {
    this.#scheduled = false;
    if (this.#pending.length === 0) return;
    const pending = this.#pending;
    this.#pending = [];
    if (!this.open()) return;
    // Every tag below `end` is done: acked now, acked singly before, or released.
    const end = this.#order.end() ?? Number.POSITIVE_INFINITY;
    let multiple = -1;
    for (const tag of pending) if (tag < end && tag > multiple) multiple = tag;
    try {
      if (multiple >= 0) this.channel.ack(tagged(multiple), true);
      // Settled behind a running delivery: acked one by one; the prefix passes them later.
      for (const tag of pending) if (tag >= end) this.channel.ack(tagged(tag));
    } catch {
      // The channel closed before its 'close' event reached us: the broker requeues, nothing is lost.
    }
  }

  /** Marks `tag` done; false when it was not open (never tracked, or settled already). */
  #settle(tag: number): boolean {
    const open = this.#order.open;
    this.#order.done(tag);
    return this.#order.open < open;
  }
}

const tagged = (deliveryTag: number) => ({ fields: { deliveryTag } }) as AmqpMessage;
