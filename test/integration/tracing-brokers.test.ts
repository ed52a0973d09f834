/**
 * The OpenTelemetry messaging conventions on each real broker: the tracing middleware's "process"
 * spans (name `process <destination>`, the per-broker attributes read from the broker's own message,
 * `error.type` on a failed attempt) are read back from an in-memory exporter, and the messaging
 * metrics (messaging.process.duration, messaging.client.consumed.messages) from an in-memory
 * reader. The producer's W3C trace context, injected by sluice's publishers, is the span's parent.
 */
import { randomUUID } from 'node:crypto';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { Kafka, logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kafkaConsumer, kafkaPublisher } from '../../adapters/kafka/index.js';
import { natsConsumer, natsSubscriber } from '../../adapters/nats/index.js';
import { rabbitConsumer } from '../../adapters/rabbitmq/index.js';
import { injectTraceContext, otelMessagingMetrics, tracingMiddleware, type Consumer } from '../../src/index.js';
import { kafkaBrokers } from '../helpers/brokers.js';
import { natsFixture, natsHeaders, unique, type NatsFixture } from '../helpers/nats.js';
import { otelMetrics, type OtelMetrics } from '../helpers/otel-metrics.js';
import { rabbitFixture, type RabbitFixture } from '../helpers/rabbit.js';
import { expectChildOf, withTracing } from '../helpers/tracing.js';
import { until } from '../helpers/wait.js';

let nats: NatsFixture;
let rabbit: RabbitFixture;
beforeAll(async () => {
  [nats, rabbit] = await Promise.all([natsFixture(), rabbitFixture()]);
});
afterAll(async () => {
  await Promise.all([nats?.close(), rabbit?.close()]);
});

/** A failure of the handler's own kind: its class name is the span's and the metric's error.type. */
class CardDeclined extends Error {}

/** The finished process spans of one message, in attempt order. */
function spansOf(spans: ReadableSpan[], id: string): ReadableSpan[] {
  return spans
    .filter((s) => s.attributes['messaging.message.id'] === id)
    .sort((a, b) => Number(a.attributes['sluice.delivery_attempt']) - Number(b.attributes['sluice.delivery_attempt']));
}

/** Every process span: the conventions' common attributes, no deprecated `messaging.operation`. */
function expectProcessSpan(span: ReadableSpan | undefined, system: string): asserts span is ReadableSpan {
  expect(span).toBeDefined();
  expect(span!.kind).toBe(SpanKind.CONSUMER);
  expect(span!.attributes).toMatchObject({ 'messaging.system': system, 'messaging.operation.name': 'process', 'messaging.operation.type': 'process' });
  expect(span!.attributes['messaging.operation']).toBeUndefined();
}

/** One failed then one successful attempt of a message: error.type and status ERROR only on the first. */
function expectFailedThenOk(attempts: ReadableSpan[]): void {
  expect(attempts.map((s) => s.attributes['sluice.delivery_attempt'])).toEqual([1, 2]);
  expect(attempts[0]!.attributes['error.type']).toBe('CardDeclined');
  expect(attempts[0]!.status).toMatchObject({ code: SpanStatusCode.ERROR, message: 'card declined' });
  expect(attempts[1]!.attributes['error.type']).toBeUndefined();
  expect(attempts[1]!.status.code).toBe(SpanStatusCode.UNSET);
}

/** The metrics of `handled` successes and one CardDeclined failure, all with `attributes`. */
async function expectMetrics(reader: OtelMetrics, attributes: Record<string, unknown>, ok: number): Promise<void> {
  const durations = await reader.histogram('messaging.process.duration');
  // Counts per error.type, summed over the points (Kafka's are also split by partition).
  const byError = new Map<unknown, number>();
  for (const p of durations) byError.set(p.attributes['error.type'], (byError.get(p.attributes['error.type']) ?? 0) + p.count);
  expect(Object.fromEntries([...byError].map(([k, v]) => [String(k ?? 'ok'), v]))).toEqual({ ok, CardDeclined: 1 });
  for (const p of durations) expect(p.attributes).toMatchObject({ ...attributes, 'messaging.operation.name': 'process' });
  const consumed = await reader.sum('messaging.client.consumed.messages');
  expect(consumed.reduce((n, p) => n + p.value, 0)).toBe(ok + 1);
  for (const p of consumed) {
    expect(p.attributes).toMatchObject(attributes);
    expect(p.attributes['error.type']).toBeUndefined();
  }
}

async function run(consumer: Consumer, done: () => boolean, what: string): Promise<void> {
  await consumer.start();
  try {
    await until(done, what, 30_000);
  } finally {
    await consumer.stop();
  }
}

describe('OpenTelemetry messaging conventions on the real brokers', () => {
  it('RabbitMQ: process <queue>, the routing key (kept across a retry), delivery tag, correlation id, error.type', async () => {
    const queue = rabbit.queue('sluice-trace');
    const exchange = `${queue}-x`;
    rabbit.cleanup({ exchanges: [exchange] });
    await rabbit.withChannel(async (ch) => {
      await ch.assertExchange(exchange, 'topic', { durable: false });
      await ch.assertQueue(queue, { durable: true });
      await ch.bindQueue(queue, exchange, 'orders.*');
    });
    const reader = otelMetrics();
    try {
      await withTracing(async (tracing) => {
        const producer = await tracing.produce(`publish ${exchange}`, () =>
          rabbit.publisher.publish(exchange, 'orders.eu', JSON.stringify({ n: 1 }), { id: 'traced-r', correlationId: 'conv-7' }),
        );
        await rabbit.publisher.publish(exchange, 'orders.us', JSON.stringify({ n: 2 }), { id: 'declined-r' });
        const consumer = rabbitConsumer({
          url: rabbit.url,
          queue,
          pool: { maxConcurrency: 1, maxQueueSize: 0 },
          retry: { maxAttempts: 2, backoff: { initialMs: 1, maxMs: 1 } },
          middleware: [await tracingMiddleware({ system: 'rabbitmq' })],
          handler: async (msg) => {
            if (msg.id === 'declined-r' && msg.deliveryAttempt === 1) throw new CardDeclined('card declined');
          },
        });
        (await otelMessagingMetrics({ meter: reader.meter })).track(consumer);
        await run(consumer, () => consumer.status().handled === 2, 'both handled');

        const spans = tracing.finished();
        const [span] = spansOf(spans, 'traced-r');
        expectProcessSpan(span, 'rabbitmq');
        expect(span.name).toBe(`process ${queue}`);
        expectChildOf(span, producer);
        expect(span.links.map((l) => l.context.spanId)).toEqual([producer.spanContext().spanId]);
        expect(span.attributes).toMatchObject({
          'messaging.destination.name': queue,
          'messaging.rabbitmq.destination.routing_key': 'orders.eu',
          'messaging.message.conversation_id': 'conv-7',
          'messaging.message.body.size': 7,
        });
        expect(span.attributes['messaging.rabbitmq.message.delivery_tag']).toEqual(expect.any(Number));
        expect(span.attributes['messaging.consumer.group.name']).toBeUndefined();
        expect(span.status.code).toBe(SpanStatusCode.UNSET);

        const declined = spansOf(spans, 'declined-r');
        expectFailedThenOk(declined);
        // The retry is a republish to the queue through the default exchange: the first routing key still shows.
        for (const s of declined) expect(s.attributes['messaging.rabbitmq.destination.routing_key']).toBe('orders.us');
      });
      await expectMetrics(reader, { 'messaging.system': 'rabbitmq', 'messaging.destination.name': queue }, 2);
    } finally {
      await reader.shutdown();
    }
  }, 60_000);

  it('Kafka: process <topic>, partition id, offset, key, consumer group, error.type', async () => {
    const brokers = await kafkaBrokers();
    const kafka = new Kafka({ clientId: 'sluice-trace', brokers, logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    await admin.connect();
    const topic = `sluice-trace-${randomUUID().slice(0, 8)}`;
    const groupId = `${topic}-g`;
    await admin.createTopics({ topics: [{ topic, numPartitions: 2 }], waitForLeaders: true });
    const publisher = await kafkaPublisher({ kafka });
    const reader = otelMetrics();
    try {
      await withTracing(async (tracing) => {
        const [declinedAt] = await publisher.publishJson(topic, { n: 0 }, { id: 'declined-k', key: 'b', partition: 1 });
        let tracedAt: { baseOffset?: string } | undefined;
        const producer = await tracing.produce(`send ${topic}`, async () => {
          [tracedAt] = await publisher.publishJson(topic, { n: 1 }, { id: 'traced-k', key: 'a', partition: 1 });
        });
        await publisher.publishJson(topic, { n: 2 }, { id: 'other-k', key: 'c', partition: 0 });
        const consumer = kafkaConsumer({
          kafka,
          groupId,
          topics: [topic],
          fromBeginning: true,
          pool: { maxConcurrency: 1, maxQueueSize: 0 },
          retry: { maxAttempts: 2, backoff: { initialMs: 1, maxMs: 1 } },
          middleware: [await tracingMiddleware({ system: 'kafka', consumerGroup: groupId })],
          handler: async (msg) => {
            if (msg.id === 'declined-k' && msg.deliveryAttempt === 1) throw new CardDeclined('card declined');
          },
        });
        (await otelMessagingMetrics({ meter: reader.meter, consumerGroup: groupId })).track(consumer);
        await run(consumer, () => consumer.status().handled === 3, 'all three handled');

        const spans = tracing.finished();
        const [span] = spansOf(spans, 'traced-k');
        expectProcessSpan(span, 'kafka');
        expect(span.name).toBe(`process ${topic}`);
        expectChildOf(span, producer);
        expect(span.attributes).toMatchObject({
          'messaging.destination.name': topic,
          'messaging.destination.partition.id': '1',
          'messaging.kafka.offset': Number(tracedAt!.baseOffset),
          'messaging.kafka.message.key': 'a',
          'messaging.consumer.group.name': groupId,
        });
        expect(Number(tracedAt!.baseOffset)).toBe(Number(declinedAt!.baseOffset) + 1);
        expect(spansOf(spans, 'other-k')[0]!.attributes).toMatchObject({ 'messaging.destination.partition.id': '0', 'messaging.kafka.message.key': 'c' });

        const declined = spansOf(spans, 'declined-k');
        expectFailedThenOk(declined);
        // The retry is the same record: same partition and offset.
        for (const s of declined) {
          expect(s.attributes).toMatchObject({ 'messaging.destination.partition.id': '1', 'messaging.kafka.offset': Number(declinedAt!.baseOffset) });
        }
      });
      await expectMetrics(reader, { 'messaging.system': 'kafka', 'messaging.destination.name': topic, 'messaging.consumer.group.name': groupId }, 3);
      const partitions = (await reader.sum('messaging.client.consumed.messages')).map((p) => [p.attributes['messaging.destination.partition.id'], p.value]);
      expect(partitions.sort()).toEqual([['0', 1], ['1', 3]]);
    } finally {
      await reader.shutdown();
      await publisher.close();
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      await admin.disconnect();
    }
  }, 90_000);

  it('NATS JetStream: process <subject> (not the stream), the durable as consumer group, error.type', async () => {
    const { stream, subject, dlq } = await nats.stream();
    const reader = otelMetrics();
    try {
      await withTracing(async (tracing) => {
        const producer = await tracing.produce(`publish ${subject}.in`, () => nats.publisher.publishJson(`${subject}.in`, { n: 1 }, { id: 'traced-n' }));
        await nats.publisher.publishJson(`${subject}.other`, { n: 2 }, { id: 'declined-n' });
        const consumer = natsConsumer({
          servers: nats.url,
          stream,
          durable: 'traced',
          consumerConfig: {},
          deadLetter: { subject: dlq },
          pool: { maxConcurrency: 1, maxQueueSize: 0 },
          retry: { maxAttempts: 2, backoff: { initialMs: 1, maxMs: 1 } },
          middleware: [await tracingMiddleware({ system: 'nats' })],
          handler: async (msg) => {
            if (msg.id === 'declined-n' && msg.deliveryAttempt === 1) throw new CardDeclined('card declined');
          },
        });
        (await otelMessagingMetrics({ meter: reader.meter })).track(consumer);
        await run(consumer, () => consumer.status().handled === 2, 'both handled');

        const spans = tracing.finished();
        const [span] = spansOf(spans, 'traced-n');
        expectProcessSpan(span, 'nats');
        expect(span.name).toBe(`process ${subject}.in`);
        expectChildOf(span, producer);
        expect(span.attributes).toMatchObject({ 'messaging.destination.name': `${subject}.in`, 'messaging.consumer.group.name': 'traced' });
        expect(Object.values(span.attributes)).not.toContain(stream);

        const declined = spansOf(spans, 'declined-n');
        expectFailedThenOk(declined);
        for (const s of declined) expect(s.name).toBe(`process ${subject}.other`);
      });
      const durations = await reader.histogram('messaging.process.duration');
      expect(durations.map((p) => [p.attributes['messaging.destination.name'], p.attributes['error.type'] ?? 'ok', p.count]).sort()).toEqual(
        [[`${subject}.in`, 'ok', 1], [`${subject}.other`, 'CardDeclined', 1], [`${subject}.other`, 'ok', 1]].sort(),
      );
      for (const p of durations) expect(p.attributes).toMatchObject({ 'messaging.system': 'nats', 'messaging.consumer.group.name': 'traced' });
      expect((await reader.sum('messaging.client.consumed.messages')).reduce((n, p) => n + p.value, 0)).toBe(3);
    } finally {
      await reader.shutdown();
    }
  }, 60_000);

  it('core NATS: process <wildcard subscription>, the subject, the queue group', async () => {
    const base = unique('sluice.trace');
    const subscription = `${base}.*`;
    const reader = otelMetrics();
    try {
      await withTracing(async (tracing) => {
        const consumer = natsSubscriber({
          servers: nats.url,
          subject: subscription,
          queueGroup: 'billing',
          pool: { maxConcurrency: 1, maxQueueSize: 0 },
          middleware: [await tracingMiddleware({ system: 'nats' })],
          handler: async () => {},
        });
        (await otelMessagingMetrics({ meter: reader.meter })).track(consumer);
        await consumer.start();
        try {
          const producer = await tracing.produce(`publish ${base}.eu`, async () => {
            const h = await natsHeaders();
            for (const [k, v] of Object.entries(await injectTraceContext({}))) h.set(k, v);
            h.set('Nats-Msg-Id', 'traced-c');
            nats.nc.publish(`${base}.eu`, new TextEncoder().encode('{"n":1}'), { headers: h });
            await nats.nc.flush();
          });
          await until(() => consumer.status().handled === 1, 'handled', 30_000);
          const [span] = spansOf(tracing.finished(), 'traced-c');
          expectProcessSpan(span, 'nats');
          expect(span.name).toBe(`process ${subscription}`);
          expectChildOf(span, producer);
          expect(span.attributes).toMatchObject({
            'messaging.destination.name': `${base}.eu`,
            'messaging.destination.template': subscription,
            'messaging.consumer.group.name': 'billing',
          });
        } finally {
          await consumer.stop();
        }
      });
      // The metrics carry the template, not the per-message subject.
      const [consumed] = await reader.sum('messaging.client.consumed.messages');
      expect(consumed).toMatchObject({ value: 1, attributes: { 'messaging.destination.template': subscription, 'messaging.consumer.group.name': 'billing' } });
      expect(consumed!.attributes['messaging.destination.name']).toBeUndefined();
    } finally {
      await reader.shutdown();
    }
  }, 60_000);
});
