/**
 * The producer's W3C trace context carried across Kafka and NATS JetStream to the consumer span
 * (RabbitMQ's is in ops-rabbitmq.test.ts): the publish helpers inject it, the tracing middleware
 * extracts it from the headers the real broker delivered.
 */
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kafkaConsumer, kafkaPublisher } from '../../adapters/kafka/index.js';
import { natsConsumer } from '../../adapters/nats/index.js';
import { tracingMiddleware } from '../../src/index.js';
import { kafkaBrokers } from '../helpers/brokers.js';
import { natsFixture, type NatsFixture } from '../helpers/nats.js';
import { expectChildOf, withTracing } from '../helpers/tracing.js';
import { until } from '../helpers/wait.js';

let nats: NatsFixture;
beforeAll(async () => {
  nats = await natsFixture();
});
afterAll(async () => {
  await nats?.close();
});

describe("the producer's trace context reaches the consumer span", () => {
  it('across Kafka', async () => {
    const brokers = await kafkaBrokers();
    const kafka = new Kafka({ clientId: 'sluice-trace', brokers, logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    const topic = `sluice-trace-${randomUUID().slice(0, 8)}`;
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    const publisher = await kafkaPublisher({ kafka });
    try {
      await withTracing(async (tracing) => {
        const producer = await tracing.produce(`${topic} publish`, () => publisher.publishJson(topic, { n: 1 }, { id: 'traced-k', key: 'a' }));
        const consumer = kafkaConsumer({
          kafka,
          groupId: `${topic}-g`,
          topics: [topic],
          fromBeginning: true,
          pool: { maxConcurrency: 1, maxQueueSize: 0 },
          middleware: [await tracingMiddleware({ system: 'kafka' })],
          handler: async () => {},
        });
        await consumer.start();
        await until(() => consumer.status().handled === 1, 'handled', 30_000);
        await consumer.stop();
        const span = tracing.finished().find((s) => s.name === `${topic} process`);
        expectChildOf(span, producer);
        expect(span!.attributes).toMatchObject({ 'messaging.system': 'kafka', 'messaging.destination.name': topic, 'messaging.message.id': 'traced-k' });
      });
    } finally {
      await publisher.close();
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      await admin.disconnect();
    }
  }, 60_000);

  it('across NATS JetStream', async () => {
    const { stream, subject, dlq } = await nats.stream();
    await withTracing(async (tracing) => {
      const producer = await tracing.produce(`${subject} publish`, () => nats.publisher.publishJson(`${subject}.in`, { n: 1 }, { id: 'traced-n' }));
      const consumer = natsConsumer({
        servers: nats.url,
        stream,
        durable: 'traced',
        consumerConfig: {},
        deadLetter: { subject: dlq },
        pool: { maxConcurrency: 1, maxQueueSize: 0 },
        middleware: [await tracingMiddleware({ system: 'nats' })],
        handler: async () => {},
      });
      await consumer.start();
      await until(() => consumer.status().handled === 1, 'handled', 30_000);
      await consumer.stop();
      const span = tracing.finished().find((s) => s.name === `${stream} process`);
      expectChildOf(span, producer);
      expect(span!.attributes).toMatchObject({ 'messaging.system': 'nats', 'messaging.destination.name': stream, 'messaging.message.id': 'traced-n' });
    });
  }, 60_000);
});
