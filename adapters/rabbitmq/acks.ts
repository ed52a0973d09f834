import type { Channel, Message as AmqpMessage } from 'amqplib';

/**
 * Coalesces the acks of one channel: once per turn of the event loop, one `basic.ack` with
 * `multiple` for the run of settled deliveries at the head (in delivery-tag order), and single
 * acks for settled ones behind a delivery still running, so a slow message never holds back the
 * prefetch credit of the others. A frame per message was the largest cost of a fast handler.
 */
export class AckBatcher {
  /** Delivery tags in arrival order, not yet acked or released; `#head` is the first live index. */
  #tags: number[] = [];
  #head = 0;
  /** Tags settled since the last flush: true to ack, false when already released (nacked). */
  #settled = new Map<number, boolean>();
  #scheduled = false;

  /** `open()` false: the channel died, RabbitMQ requeues its unacked deliveries, pending acks are moot. */
  constructor(
    private readonly channel: Channel,
    private readonly open: () => boolean,
  ) {}

  /** A delivery arrived: its tag joins the order. */
  track(tag: number): void {
    this.#tags.push(tag);
  }

  ack(tag: number): void {
    this.#settled.set(tag, true);
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** The delivery was nacked/rejected on its own: it leaves the order without an ack. */
  release(tag: number): void {
    this.#settled.set(tag, false);
  }

  /** Sends what is pending now. Called before the channel closes. */
  flush(): void {
    this.#scheduled = false;
    if (this.#settled.size === 0) return;
    if (!this.open()) {
      this.#settled.clear();
      return;
    }
    let lastAcked: number | undefined;
    // The settled prefix: one multiple-ack covers it (released tags are no longer outstanding at the broker).
    while (this.#head < this.#tags.length) {
      const tag = this.#tags[this.#head]!;
      const ack = this.#settled.get(tag);
      if (ack === undefined) break;
      this.#settled.delete(tag);
      if (ack) lastAcked = tag;
      this.#head++;
    }
    try {
      if (lastAcked !== undefined) this.channel.ack(tagged(lastAcked), true);
      // Settled behind a running delivery: acked one by one, and removed from the order lazily.
      for (const [tag, ack] of this.#settled) if (ack) this.channel.ack(tagged(tag));
    } catch {
      // The channel closed before its 'close' event reached us: the broker requeues, nothing is lost.
    }
    if (this.#settled.size > 0) {
      const gone = this.#settled;
      this.#settled = new Map();
      this.#tags = this.#tags.slice(this.#head).filter((t) => !gone.has(t));
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#tags.length) {
      this.#tags = this.#tags.slice(this.#head);
      this.#head = 0;
    }
  }
}

const tagged = (deliveryTag: number) => ({ fields: { deliveryTag } }) as AmqpMessage;
