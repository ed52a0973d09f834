/** RabbitMQ's part of a chaos run: one fresh durable queue on the shared broker, deleted by close(). */
import type { RabbitConsumerOptions } from '../../../adapters/rabbitmq/index.js';
import { rabbitFixture } from '../../helpers/rabbit.js';
import type { ChaosBroker } from './driver.js';

export type RabbitChaosOptions = Omit<RabbitConsumerOptions, 'handler' | 'url' | 'queue' | 'connection'>;

export async function rabbitChaos(options: RabbitChaosOptions): Promise<ChaosBroker & { queue: string; close(): Promise<void> }> {
  const rabbit = await rabbitFixture();
  const queue = rabbit.queue('sluice-chaos');
  await rabbit.withChannel((ch) => ch.assertQueue(queue, { durable: true }));
  return {
    queue,
    target: { broker: 'rabbitmq', options: { ...options, url: rabbit.url, queue } },
    async publish(ids) {
      await Promise.all(ids.map((id) => rabbit.publisher.publishJson(queue, { id }, { id: String(id) })));
    },
    backlog: async () => (await rabbit.depth(queue)).messageCount,
    async remaining() {
      // Ready messages; unacked ones are not visible over AMQP, but once no consumer is left
      // (the driver waits for that after the stop) whatever was unacked is ready again: ready + unacked.
      const { messageCount, consumerCount } = await rabbit.depth(queue);
      return { left: messageCount, consumers: consumerCount, detail: `${messageCount} ready, ${consumerCount} consumers` };
    },
    afterKill: async () => undefined,
    close: () => rabbit.close(),
  };
}
