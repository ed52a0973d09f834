import { randomUUID } from 'node:crypto';
import { natsConsumer, natsPublisher } from '../../../adapters/nats/index.js';
import type { DemoBroker, Payment } from '../demo-broker.js';

/**
 * The demo on a real NATS JetStream (NATS_URL, default nats://127.0.0.1:4222). A stream of its
 * own per run, and one beside it that captures the dead-letter subject; both go away at close().
 */
export async function createDemoBroker(): Promise<DemoBroker> {
  const url = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
  const stream = `PAYMENTS_DEMO_${randomUUID().slice(0, 8).toUpperCase()}`;
  const subject = stream.toLowerCase().replace(/_/g, '-');
  const deadLetterSubject = `${subject}.dlq`;
  const publisher = await natsPublisher({ servers: url });
  const jsm = await publisher.jetstreamManager();
  await jsm.streams.add({ name: stream, subjects: [`${subject}.in`] });
  await jsm.streams.add({ name: `${stream}_DLQ`, subjects: [deadLetterSubject] });
  return {
    name: `nats (stream ${stream})`,
    async publish(payments: Payment[]) {
      for (let i = 0; i < payments.length; i += 500) {
        await Promise.all(payments.slice(i, i + 500).map((p) => publisher.publishJson(`${subject}.in`, p, { id: p.id })));
      }
      // One message no JSON handler can read: it must go to the dead-letter subject, not crash anything.
      await publisher.publish(`${subject}.in`, 'this is not json', { id: 'malformed-1' });
    },
    async consumer(options) {
      // JetStream pulls only what the pool can take, so this path shows no overload by construction.
      return natsConsumer({ ...options, servers: url, stream, durable: 'payment-handler', consumerConfig: {}, deadLetter: { subject: deadLetterSubject } });
    },
    async deadLettered() {
      return (await jsm.streams.info(`${stream}_DLQ`)).state.messages;
    },
    async close() {
      await jsm.streams.delete(stream).catch(() => {});
      await jsm.streams.delete(`${stream}_DLQ`).catch(() => {});
      await publisher.close();
    },
  };
}
