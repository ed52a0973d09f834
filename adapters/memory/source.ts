import { deadLetterHeaders, Message, type Delivery, type DispatchResult, type Source, type SourceCapabilities, type SourceContext } from '../../src/adapter/index.js';
import type { MemoryBroker, StoredMessage } from './broker.js';

export interface MemorySourceOptions {
  broker: MemoryBroker;
  queue: string;
  /** Unacked deliveries this consumer may hold (the broker-side credit). */
  prefetch: number;
  /** Where dead letters go. */
  deadLetterQueue: string;
}

/** The in-memory broker's Source: a direct translation of subscribe/pause/ack/requeue. */
export class MemorySource implements Source {
  readonly name: string;
  readonly capabilities: SourceCapabilities = { delayedRetry: true, redelivery: true, pause: true };
  /** Unacked deliveries the queue hands this consumer: its prefetch. */
  readonly credit: number;
  #subscription: ReturnType<MemoryBroker['subscribe']> | undefined;

  constructor(private readonly options: MemorySourceOptions) {
    this.name = `memory:${options.queue}`;
    this.credit = options.prefetch;
  }

  async start(context: SourceContext): Promise<void> {
    const { broker, queue, prefetch } = this.options;
    this.#subscription = broker.subscribe(queue, prefetch, (stored, tag) => {
      const result: DispatchResult = context.dispatch(this.#delivery(stored, tag));
      // Refused (overload, a gate, stopping): back to the head of the queue, unchanged. Not inside
      // the broker's delivery loop, which would hand the same message straight back.
      if (result !== 'accepted') queueMicrotask(() => broker.requeue(queue, tag));
    });
    context.report({ type: 'connected', detail: this.name });
  }

  async pause(): Promise<void> {
    this.#subscription?.pause();
  }

  async resume(): Promise<void> {
    this.#subscription?.resume();
  }

  async stop(): Promise<void> {
    this.#subscription?.cancel();
  }

  async close(): Promise<void> {
    this.#subscription?.cancel();
  }

  #delivery(stored: StoredMessage, tag: number): Delivery<StoredMessage> {
    const { broker, queue, deadLetterQueue } = this.options;
    const message = new Message<StoredMessage>({
      body: stored.body,
      headers: stored.headers,
      id: stored.id,
      key: stored.key,
      source: queue,
      deliveryAttempt: stored.attempt,
      redelivered: stored.deliveries > 1,
      raw: stored,
    });
    return {
      message,
      ack: () => void broker.ack(queue, tag),
      retry: async (delayMs, nextAttempt) => broker.retryLater(queue, tag, delayMs, nextAttempt),
      deadLetter: async (info) => broker.moveTo(queue, tag, deadLetterQueue, deadLetterHeaders(message, info)),
      giveBack: async () => broker.requeue(queue, tag),
      defer: async (delayMs) => broker.deferTo(queue, tag, delayMs),
    };
  }
}
