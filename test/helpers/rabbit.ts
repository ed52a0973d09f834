/** RabbitMQ test fixtures: unique queues, confirmed bulk publishing, reading a dead-letter queue. */
import { randomUUID } from 'node:crypto';
import { connect, type Channel, type ChannelModel, type GetMessage } from 'amqplib';
import { rabbitPublisher, type RabbitPublisher } from '../../adapters/rabbitmq/index.js';
import { rabbitUrl } from './brokers.js';

export interface RabbitFixture {
  url: string;
  publisher: RabbitPublisher;
  admin: ChannelModel;
  /** A fresh queue name, deleted (with its .dlq) by close(). */
  queue(prefix?: string): string;
  /** Declares `queue` and publishes `n` JSON messages with ids `<prefix>-<i>`, all confirmed. */
  fill(queue: string, n: number, prefix?: string): Promise<string[]>;
  depth(queue: string): Promise<{ messageCount: number; consumerCount: number }>;
  /** Takes every message now in `queue` (acked). */
  drain(queue: string): Promise<GetMessage[]>;
  /** Reads every message now in `queue` without taking it: received unacked, then requeued by closing the channel. */
  peek(queue: string): Promise<GetMessage[]>;
  /** Runs `fn` on a fresh admin channel (closed afterwards): declarations the fixture has no helper for. */
  withChannel<T>(fn: (ch: Channel) => Promise<T>): Promise<T>;
  /** Also deleted by close(): exchanges and queues a test declared itself. */
  cleanup(what: { queues?: string[]; exchanges?: string[] }): void;
  close(): Promise<void>;
}

export async function rabbitFixture(): Promise<RabbitFixture> {
  const url = await rabbitUrl();
  const publisher = await rabbitPublisher({ url });
  const admin = await connect(url);
  admin.on('error', () => {});
  const created: string[] = [];
  const exchanges: string[] = [];
  // checkQueue on a missing queue kills its channel: a fresh channel per inspection keeps the fixture usable.
  const withChannel = async <T>(fn: (ch: Channel) => Promise<T>): Promise<T> => {
    const ch = await admin.createChannel();
    ch.on('error', () => {});
    try {
      return await fn(ch);
    } finally {
      await ch.close().catch(() => {});
    }
  };
  const take = (queue: string, ack: boolean) =>
    withChannel(async (ch) => {
      // basic.consume, not basic.get in a loop: one get per round trip is slow (Nagle and delayed acks).
      const { messageCount } = await ch.checkQueue(queue);
      const out: GetMessage[] = [];
      if (messageCount === 0) return out;
      await new Promise<void>((resolve) => {
        void ch.consume(queue, (m) => {
          if (!m) return;
          out.push(m as unknown as GetMessage);
          if (ack) ch.ack(m);
          if (out.length === messageCount) resolve();
        });
      });
      // Not acked: closing the channel (withChannel) gives them back to the queue.
      return out;
    });
  return {
    url,
    publisher,
    admin,
    queue(prefix = 'sluice-test') {
      const name = `${prefix}-${randomUUID().slice(0, 8)}`;
      created.push(name, `${name}.dlq`);
      return name;
    },
    async fill(queue, n, prefix = 'm') {
      // A queue the test declared itself (a quorum queue, say) is filled as it is.
      await withChannel((ch) => ch.checkQueue(queue)).catch(() => withChannel((ch) => ch.assertQueue(queue, { durable: true })));
      const ids = Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
      for (let i = 0; i < ids.length; i += 500) {
        await Promise.all(ids.slice(i, i + 500).map((id, j) => publisher.publishJson(queue, { id, seq: i + j }, { id })));
      }
      return ids;
    },
    depth: (queue) => withChannel((ch) => ch.checkQueue(queue)),
    drain: (queue) => take(queue, true),
    peek: (queue) => take(queue, false),
    withChannel,
    cleanup(what) {
      created.push(...(what.queues ?? []));
      exchanges.push(...(what.exchanges ?? []));
    },
    async close() {
      await withChannel(async (ch) => {
        for (const q of created) await ch.deleteQueue(q).catch(() => {});
        for (const e of exchanges) await ch.deleteExchange(e).catch(() => {});
      }).catch(() => {});
      await publisher.close();
      await admin.close().catch(() => {});
    },
  };
}
