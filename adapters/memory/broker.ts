import { LinkedQueue, type Headers } from '../../src/adapter/index.js';

/** A message as the in-memory broker stores it. */
export interface StoredMessage {
  id: string;
  body: Uint8Array;
  headers: Headers;
  key: string | undefined;
  /** Handler attempts: raised by retry, not by a give-back. */
  attempt: number;
  /** Times it was handed to a subscriber. */
  deliveries: number;
}

export interface PublishOptions {
  id?: string;
  key?: string;
  headers?: Headers;
}

export interface QueueDepth {
  ready: number;
  unacked: number;
  delayed: number;
}

/**
 * What schedules the broker's delayed redeliveries (a retry's delay, a message set aside). Default:
 * the global `setTimeout` / `clearTimeout`. A test passes a fake clock here to run retries without
 * waiting for their backoff (`sluice/testing` does).
 */
export interface MemoryBrokerTimers {
  setTimeout(callback: () => void, delayMs: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface MemoryBrokerOptions {
  /** Timers for delayed redeliveries. Default: the global ones. */
  timers?: MemoryBrokerTimers;
}

const GLOBAL_TIMERS: MemoryBrokerTimers = {
  setTimeout: (callback, delayMs) => setTimeout(callback, delayMs),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

interface Subscriber {
  prefetch: number;
  unacked: number;
  paused: boolean;
  deliver: (message: StoredMessage, tag: number) => void;
}

class MemoryQueue {
  readonly ready = new LinkedQueue<StoredMessage>();
  /** Given back messages go first, as RabbitMQ puts a requeued message back near the head. */
  readonly requeued = new LinkedQueue<StoredMessage>();
  readonly unacked = new Map<number, { message: StoredMessage; subscriber: Subscriber }>();
  readonly subscribers = new Set<Subscriber>();
  delayed = 0;
  scheduled = false;
  /** Set by `refusePublishes`: publishing to it throws, as a full queue with reject-publish would nack. */
  refusing = false;
}

/**
 * An in-process broker with at-least-once delivery: prefetch credit, ack, requeue, delayed
 * retry and a dead-letter queue. It runs the demo and the runtime's fast tests; it is not
 * evidence that a real-broker adapter works.
 */
export class MemoryBroker {
  #queues = new Map<string, MemoryQueue>();
  #nextTag = 1;
  #nextId = 1;
  #timers = new Set<unknown>();
  readonly #clock: MemoryBrokerTimers;

  constructor(options: MemoryBrokerOptions = {}) {
    const timers = options?.timers;
    if (timers !== undefined && (typeof timers?.setTimeout !== 'function' || typeof timers?.clearTimeout !== 'function')) {
      throw new TypeError('MemoryBroker: option "timers" must be { setTimeout(callback, delayMs), clearTimeout(handle) }');
    }
    this.#clock = timers ?? GLOBAL_TIMERS;
  }

  publish(queue: string, body: Uint8Array | string, options: PublishOptions = {}): string {
    const q = this.#queue(queue);
    if (q.refusing) throw new Error(`memory broker: queue "${queue}" refuses publishes`);
    const id = options.id ?? `m-${this.#nextId++}`;
    const bytes = typeof body === 'string' ? new TextEncoder().encode(body) : body;
    q.ready.push({ id, body: bytes, headers: { ...options.headers }, key: options.key, attempt: 1, deliveries: 0 });
    this.#schedule(queue, q);
    return id;
  }

  publishJson(queue: string, value: unknown, options: PublishOptions = {}): string {
    return this.publish(queue, JSON.stringify(value), options);
  }

  depth(queue: string): QueueDepth {
    const q = this.#queue(queue);
    return { ready: q.ready.size + q.requeued.size, unacked: q.unacked.size, delayed: q.delayed };
  }

  /** Makes publishing to `queue` fail (true) or work again (false): a destination that refuses, for tests. */
  refusePublishes(queue: string, refusing = true): void {
    this.#queue(queue).refusing = refusing;
  }

  /** Takes every ready message out of a queue (e.g. to read a dead-letter queue in a test). */
  drain(queue: string): StoredMessage[] {
    const q = this.#queue(queue);
    return [...q.requeued.drain(), ...q.ready.drain()];
  }

  subscribe(queue: string, prefetch: number, deliver: (message: StoredMessage, tag: number) => void) {
    const q = this.#queue(queue);
    const subscriber: Subscriber = { prefetch, unacked: 0, paused: false, deliver };
    q.subscribers.add(subscriber);
    this.#schedule(queue, q);
    return {
      pause: () => {
        subscriber.paused = true;
      },
      resume: () => {
        subscriber.paused = false;
        this.#schedule(queue, q);
      },
      cancel: () => {
        q.subscribers.delete(subscriber);
      },
    };
  }

  ack(queue: string, tag: number): void {
    this.#take(queue, tag);
  }

  /** Back to the queue at once (a give-back: the attempt count is unchanged). */
  requeue(queue: string, tag: number): void {
    const message = this.#take(queue, tag);
    const q = this.#queue(queue);
    q.requeued.push(message);
    this.#schedule(queue, q);
  }

  /** Back to the queue after `delayMs` as attempt `attempt` (the broker-side delay of a retry). */
  retryLater(queue: string, tag: number, delayMs: number, attempt: number): void {
    const message = this.#take(queue, tag);
    const q = this.#queue(queue);
    q.delayed++;
    const timer = this.#clock.setTimeout(() => {
      this.#timers.delete(timer);
      q.delayed--;
      q.ready.push({ ...message, attempt });
      this.#schedule(queue, q);
    }, delayMs);
    this.#timers.add(timer);
  }

  /** Moves a delivered message to another queue with extra headers (the dead-letter path). */
  moveTo(queue: string, tag: number, target: string, headers: Headers): void {
    const message = this.#peek(queue, tag);
    // Published first: a refused publish leaves the delivery unsettled, as a broker's nack would.
    this.publish(target, message.body, { id: message.id, key: message.key, headers });
    this.#take(queue, tag);
  }

  /** Back to the tail of its queue, unchanged, after `delayMs` (a message set aside; the attempt does not change). */
  deferTo(queue: string, tag: number, delayMs: number): void {
    this.retryLater(queue, tag, delayMs, this.#peek(queue, tag).attempt);
  }

  /** Cancels pending delayed retries (they would otherwise keep the process alive). */
  close(): void {
    for (const timer of this.#timers) this.#clock.clearTimeout(timer);
    this.#timers.clear();
  }

  #peek(queue: string, tag: number): StoredMessage {
    const entry = this.#queue(queue).unacked.get(tag);
    if (!entry) throw new Error(`memory broker: unknown delivery tag ${tag} on queue "${queue}" (already settled?)`);
    return entry.message;
  }

  #take(queue: string, tag: number): StoredMessage {
    const q = this.#queue(queue);
    const entry = q.unacked.get(tag);
    if (!entry) throw new Error(`memory broker: unknown delivery tag ${tag} on queue "${queue}" (already settled?)`);
    q.unacked.delete(tag);
    entry.subscriber.unacked--;
    this.#schedule(queue, q);
    return entry.message;
  }

  #queue(name: string): MemoryQueue {
    let q = this.#queues.get(name);
    if (!q) this.#queues.set(name, (q = new MemoryQueue()));
    return q;
  }

  /** Deliveries happen on a later tick, as they would over a network. */
  #schedule(name: string, q: MemoryQueue): void {
    if (q.scheduled) return;
    q.scheduled = true;
    setImmediate(() => {
      q.scheduled = false;
      this.#pump(q);
    });
  }

  #pump(q: MemoryQueue): void {
    for (const subscriber of q.subscribers) {
      while (!subscriber.paused && subscriber.unacked < subscriber.prefetch && q.subscribers.has(subscriber)) {
        const message = q.requeued.shift() ?? q.ready.shift();
        if (!message) return;
        message.deliveries++;
        const tag = this.#nextTag++;
        q.unacked.set(tag, { message, subscriber });
        subscriber.unacked++;
        subscriber.deliver(message, tag);
      }
    }
  }
}
