import { randomUUID } from 'node:crypto';
import { rabbitConsumer, rabbitPublisher } from '../../../adapters/rabbitmq/index.js';
import type { DemoBroker, Payment } from '../demo-broker.js';

/** The demo on a real RabbitMQ (AMQP_URL, default the local guest account). */
export async function createDemoBroker(): Promise<DemoBroker> {
  const url = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
  // A queue of its own per run, so that reruns never mix; both queues go away at close().
  const queue = `payments-demo-${randomUUID().slice(0, 8)}`;
  const publisher = await rabbitPublisher({ url });
  await publisher.channel.assertQueue(queue, { durable: true });
  return {
    name: `rabbitmq (queue ${queue})`,
    async publish(payments: Payment[]) {
      await Promise.all(payments.map((p) => publisher.publishJson(queue, p, { id: p.id })));
      // One message no JSON handler can read: it must go to the dead-letter queue, not crash anything.
      await publisher.sendToQueue(queue, 'this is not json', { id: 'malformed-1' });
    },
    async consumer(options) {
      // Twice the pool's capacity in prefetch, as when several queues share one pool: overload happens and is shown.
      const pool = 'status' in options.pool ? options.pool.status() : options.pool;
      return rabbitConsumer({ ...options, url, queue, prefetch: 2 * (pool.maxConcurrency + pool.maxQueueSize) });
    },
    async deadLettered() {
      return (await publisher.channel.checkQueue(`${queue}.dlq`)).messageCount;
    },
    async close() {
      await publisher.channel.deleteQueue(queue);
      await publisher.channel.deleteQueue(`${queue}.dlq`);
      await publisher.close();
    },
  };
}
