/**
 * A numbered stream through a rabbitConsumer on private nodes (test/helpers/rabbit-node.ts), for the
 * RabbitMQ fault tests: handler calls counted per id, a gate that holds handlers while a fault is
 * made (so it always lands mid-stream, with the consumer's whole prefetch unacked), the health seen
 * at each connection event, and the queue's depth as the broker reports it.
 */
import { connect } from 'amqplib';
import { rabbitConsumer, rabbitPublisher, type RabbitConsumerOptions, type RabbitSource } from '../../adapters/rabbitmq/index.js';
import type { Consumer, ConsumerHealth, Message } from '../../src/index.js';
import type { RabbitNode } from './rabbit-node.js';

/** Publishes `{ id, seq }` JSON messages with ids `<prefix>-<i>`, persistent and confirmed. */
export async function publishNumbered(url: string | string[], queue: string, n: number, prefix = 'm'): Promise<string[]> {
  const publisher = await rabbitPublisher({ url });
  try {
    const ids = Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
    for (let i = 0; i < n; i += 500) {
      await Promise.all(ids.slice(i, i + 500).map((id, j) => publisher.publishJson(queue, { id, seq: i + j }, { id })));
    }
    return ids;
  } finally {
    await publisher.close();
  }
}

/**
 * Declares `queue` and its `<queue>.dlq`, durable, through `url`: RabbitMQ 3.10 places a new
 * quorum queue's leader on the node the declaring client is connected to.
 */
export async function declareQueues(url: string, queue: string, type: 'classic' | 'quorum'): Promise<void> {
  const connection = await connect(url);
  try {
    const channel = await connection.createChannel();
    const args = type === 'quorum' ? { 'x-queue-type': 'quorum' } : undefined;
    for (const name of [queue, `${queue}.dlq`]) await channel.assertQueue(name, { durable: true, arguments: args });
  } finally {
    await connection.close();
  }
}

/** `messages_ready` and `messages_unacknowledged` of `queue`, asked of `node` (any live member of its cluster). */
export async function queueDepth(node: RabbitNode, queue: string): Promise<{ ready: number; unacked: number }> {
  const row = await queueRow(node, queue, ['messages_ready', 'messages_unacknowledged']);
  return { ready: Number(row[0]), unacked: Number(row[1]) };
}

/** The node (`name@localhost`) that leads quorum queue `queue`. */
export async function queueLeader(node: RabbitNode, queue: string): Promise<string> {
  return (await queueRow(node, queue, ['leader']))[0]!;
}

async function queueRow(node: RabbitNode, queue: string, columns: string[]): Promise<string[]> {
  const out = await node.ctl('-q', 'list_queues', '--no-table-headers', 'name', ...columns);
  const row = out.split('\n').map((l) => l.split('\t')).find((cells) => cells[0] === queue);
  if (!row) throw new Error(`queue ${queue} not listed by ${node.name}: ${out}`);
  return row.slice(1);
}

export interface CountingConsumer {
  consumer: Consumer;
  source: RabbitSource;
  /** Handler calls per message id (every call, counted when it starts). */
  calls: Map<string, number>;
  /** Ids whose handler call ended without throwing. */
  succeeded: Set<string>;
  /** 'error' events, as text: checked for passwords. */
  errors: string[];
  /** Each 'connection' event with the health read at that moment and how many were acked by then. */
  connection: { state: string; detail?: string; health: ConsumerHealth['status']; ready: boolean; handled: number; at: number }[];
  /** When each 'handled' event came (Date.now()). */
  handledAt: number[];
  /** The longest wait between two acks after `since` (the pause a fault cost), in ms. */
  longestGap(since: number): number;
  /** Holds every handler (before it ends) until `release()`: a fault made meanwhile finds the prefetch unacked. */
  hold(): void;
  release(): void;
  /** Calls beyond the first, summed over ids. */
  duplicates(): number;
  /** What the consumer is doing now, for a hang guard's message: connection events, status, the last errors. */
  describe(): string;
}

type Options = Omit<RabbitConsumerOptions, 'handler' | 'batchHandler'> & {
  /** Delay of each handler call (cut short by its signal), or a function of the message and its call number. Default 5 ms. */
  handlerMs?: number | ((message: Message, call: number) => number);
  /** Throws for these calls (after counting them). */
  fail?: (message: Message, call: number) => boolean;
};

export function countingConsumer(options: Options): CountingConsumer {
  const { handlerMs = 5, fail, ...rest } = options;
  const calls = new Map<string, number>();
  const succeeded = new Set<string>();
  const errors: string[] = [];
  let gate: Promise<void> | undefined;
  let open: () => void = () => {};
  const consumer = rabbitConsumer({
    ...rest,
    handler: async (m: Message, { signal }) => {
      const call = (calls.get(m.id) ?? 0) + 1;
      calls.set(m.id, call);
      const ms = typeof handlerMs === 'number' ? handlerMs : handlerMs(m, call);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, ms);
        signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
      });
      if (gate) await gate;
      if (signal.aborted) throw signal.reason;
      if (fail?.(m, call)) throw new Error(`handler fails ${m.id} (call ${call})`);
      succeeded.add(m.id);
    },
  } as RabbitConsumerOptions);
  const connection: CountingConsumer['connection'] = [];
  consumer.on('connection', (e) => {
    const health = consumer.health();
    connection.push({ state: e.state, detail: e.detail, health: health.status, ready: health.ready, handled: consumer.status().handled, at: Date.now() });
  });
  const handledAt: number[] = [];
  consumer.on('handled', () => handledAt.push(Date.now()));
  consumer.on('error', ({ error, during }) => errors.push(`${during}: ${error instanceof Error ? `${error.message} ${String(error.cause ?? '')}` : String(error)}`));
  return {
    consumer,
    source: consumer.source as RabbitSource,
    calls,
    succeeded,
    errors,
    connection,
    handledAt,
    longestGap(since) {
      let gap = 0;
      let last = since;
      for (const t of handledAt) {
        if (t < since) continue;
        gap = Math.max(gap, t - last);
        last = t;
      }
      return gap;
    },
    hold() {
      gate ??= new Promise<void>((resolve) => (open = resolve));
    },
    release() {
      gate = undefined;
      open();
    },
    duplicates: () => [...calls.values()].reduce((s, c) => s + c - 1, 0),
    describe() {
      const { state, inFlight, paused, pausedBy, handled, skippedStale, givenBack } = consumer.status();
      const events = connection.map((e) => e.state).join(',');
      return `state ${state}, connection events [${events}], handled ${handled}, in flight ${inFlight}, paused ${paused} ${pausedBy.join('+')}, skippedStale ${skippedStale}, givenBack ${givenBack}, health ${consumer.health().status}; last errors: ${errors.slice(-3).join(' | ')}`;
    },
  };
}
