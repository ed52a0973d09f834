/**
 * The OpenTelemetry messaging metrics (messaging.process.duration, messaging.client.consumed.messages)
 * read back through an in-memory metric reader, and the per-broker attribute reads on message shapes
 * the real-broker tests do not reach (tombstones, binary keys, wildcard subscriptions).
 */
import { metrics } from '@opentelemetry/api';
import { MeterProvider } from '@opentelemetry/sdk-metrics';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryBroker, memoryConsumer } from '../../adapters/memory/index.js';
import { Message, otelMessagingMetrics, PermanentError, PROCESS_DURATION_BUCKETS } from '../../src/index.js';
import { errorType, messageTelemetry, metricAttributes } from '../../src/ops/messaging-attributes.js';
import { otelMetrics, type OtelMetrics } from '../helpers/otel-metrics.js';
import { until } from '../helpers/wait.js';

let reader: OtelMetrics | undefined;
afterEach(async () => {
  await reader?.shutdown();
  reader = undefined;
  metrics.disable();
});

describe('OpenTelemetry messaging metrics', () => {
  it('records every handler attempt: duration with error.type on failures, consumed messages, the conventions’ buckets', async () => {
    reader = otelMetrics();
    const broker = new MemoryBroker();
    for (let i = 0; i < 5; i++) broker.publishJson('orders', { i }, { id: `o-${i}` });
    broker.publishJson('orders', { poison: true }, { id: 'poison' });
    const consumer = memoryConsumer({
      broker,
      queue: 'orders',
      pool: { maxConcurrency: 2, maxQueueSize: 2 },
      retry: { maxAttempts: 2, backoff: { initialMs: 1, maxMs: 1 } },
      handler: async (msg) => {
        if (msg.id === 'o-0') await new Promise((r) => setTimeout(r, 30)); // one slow call: the unit shows in the sum
        if (msg.json<{ poison?: boolean }>().poison) throw msg.deliveryAttempt === 1 ? new TypeError('bad field') : new PermanentError('poison');
      },
    });
    const recorder = await otelMessagingMetrics({ meter: reader.meter, consumerGroup: 'order-service' });
    const stop = recorder.track(consumer);
    await consumer.start();
    await until(() => consumer.status().handled === 5 && consumer.status().deadLettered === 1, 'handled and dead-lettered');
    await consumer.stop();
    stop();

    const base = {
      'messaging.system': 'memory', // from the consumer's source, `memory:orders`
      'messaging.operation.name': 'process',
      'messaging.operation.type': 'process',
      'messaging.destination.name': 'orders',
      'messaging.consumer.group.name': 'order-service',
    };
    const durations = await reader.histogram('messaging.process.duration');
    const byError = new Map(durations.map((p) => [p.attributes['error.type'], p]));
    expect([...byError.keys()].sort()).toEqual(['PermanentError', 'TypeError', undefined].sort());
    expect(byError.get(undefined)).toMatchObject({ attributes: base, count: 5 });
    expect(byError.get('TypeError')).toMatchObject({ attributes: { ...base, 'error.type': 'TypeError' }, count: 1 });
    expect(byError.get('PermanentError')!.count).toBe(1);
    expect(durations[0]!.boundaries).toEqual(PROCESS_DURATION_BUCKETS);
    for (const p of durations) expect(p.sum).toBeGreaterThanOrEqual(0);
    // Seconds, not milliseconds: the one 30 ms call alone makes ≥ 0.025 and the whole run stays far below 2.
    expect(byError.get(undefined)!.sum).toBeGreaterThanOrEqual(0.025);
    expect(byError.get(undefined)!.sum).toBeLessThan(2);

    // Consumed: every message handed to the application, each attempt; never an error.type (delivery did not fail).
    expect(await reader.sum('messaging.client.consumed.messages')).toEqual([{ attributes: base, value: 7 }]);

    // After stop(), the consumer's events are no longer recorded.
    broker.publishJson('orders', { i: 9 }, { id: 'late' });
    const again = memoryConsumer({ broker, queue: 'orders', pool: { maxConcurrency: 1, maxQueueSize: 0 }, handler: async () => {} });
    await again.start();
    await until(() => again.status().handled === 1, 'late handled');
    await again.stop();
    expect((await reader.sum('messaging.client.consumed.messages'))[0]!.value).toBe(7);
  });

  it('uses the global meter provider by default and records batch handlers per message', async () => {
    reader = otelMetrics();
    const provider = new MeterProvider();
    metrics.setGlobalMeterProvider({ getMeter: (name, version, options) => (name === 'sluice' ? reader!.meter : provider.getMeter(name, version, options)) });
    const broker = new MemoryBroker();
    for (let i = 0; i < 4; i++) broker.publishJson('rows', { i }, { id: `r-${i}` });
    const consumer = memoryConsumer({
      broker,
      queue: 'rows',
      pool: { maxConcurrency: 1, maxQueueSize: 8 },
      batch: { size: 4, timeoutMs: 50 },
      batchHandler: async (messages, ctx) => {
        ctx.fail(messages[0]!, new PermanentError('row 0 invalid'));
      },
    });
    await otelMessagingMetrics({ consumers: [consumer], system: 'memory' });
    await consumer.start();
    await until(() => consumer.status().handled === 3 && consumer.status().deadLettered === 1, 'batch settled');
    await consumer.stop();
    const durations = await reader.histogram('messaging.process.duration');
    expect(durations.map((p) => [p.attributes['error.type'], p.count]).sort()).toEqual([['PermanentError', 1], [undefined, 3]].sort());
    expect((await reader.sum('messaging.client.consumed.messages'))[0]!.value).toBe(4);
    await provider.shutdown();
  });
});

describe('messaging attributes read from the raw message', () => {
  const message = (raw: unknown, init: Partial<{ source: string; key: string; id: string }> = {}) =>
    new Message({ body: new Uint8Array(3), id: init.id ?? 'm-1', key: init.key, source: init.source ?? 'src', raw });

  it('Kafka: topic, partition, offset, a UTF-8 key, a tombstone; a binary key that is not UTF-8 is left out', () => {
    const t = messageTelemetry(message({ topic: 'orders', partition: 3, message: { offset: '42', key: Buffer.from('k-1'), value: null } }), { system: 'kafka', consumerGroup: 'g' });
    expect(t.spanDestination).toBe('orders');
    expect(t.common).toMatchObject({ 'messaging.destination.name': 'orders', 'messaging.destination.partition.id': '3', 'messaging.consumer.group.name': 'g' });
    expect(t.perMessage).toMatchObject({ 'messaging.kafka.offset': 42, 'messaging.kafka.message.key': 'k-1', 'messaging.kafka.message.tombstone': true });
    const binary = messageTelemetry(message({ topic: 'orders', partition: 0, message: { offset: '7', key: Buffer.from([0xff, 0xfe]), value: Buffer.from('x') } }), { system: 'kafka' });
    expect(binary.perMessage['messaging.kafka.message.key']).toBeUndefined();
    expect(binary.perMessage['messaging.kafka.message.tombstone']).toBeUndefined();
    expect(binary.common['messaging.consumer.group.name']).toBeUndefined();
  });

  it('core NATS: the subject, the queue group and a wildcard subscription as the template (metrics drop the name)', () => {
    const t = messageTelemetry(message({ subject: 'orders.eu.123', sid: 1 }, { source: 'orders.*.* (workers)', key: 'orders.eu.123' }), { system: 'nats' });
    expect(t.common).toMatchObject({
      'messaging.destination.name': 'orders.eu.123',
      'messaging.destination.template': 'orders.*.*',
      'messaging.consumer.group.name': 'workers',
    });
    expect(t.spanDestination).toBe('orders.*.*');
    expect(metricAttributes(t)['messaging.destination.name']).toBeUndefined();
    expect(metricAttributes(t)['messaging.destination.template']).toBe('orders.*.*');
    const plain = messageTelemetry(message({ subject: 'jobs', sid: 1 }, { source: 'jobs' }), { system: 'nats' });
    expect(plain.common['messaging.destination.template']).toBeUndefined();
    expect(plain.common['messaging.consumer.group.name']).toBeUndefined();
    // The option wins over what the message says.
    expect(messageTelemetry(message({ subject: 'a.b', info: { consumer: 'durable-1', stream: 'S' } }, { source: 'S' }), { system: 'nats', consumerGroup: 'mine' }).common['messaging.consumer.group.name']).toBe('mine');
  });

  it('RabbitMQ: a server-named queue is anonymous (no destination in the span name); error.type names', () => {
    const t = messageTelemetry(message({ fields: { routingKey: 'amq.gen-x', deliveryTag: 5 }, properties: {} }, { source: 'amq.gen-x' }), { system: 'rabbitmq' });
    expect(t.spanDestination).toBe('');
    expect(t.common['messaging.destination.anonymous']).toBe(true);
    expect(t.perMessage['messaging.rabbitmq.message.delivery_tag']).toBe(5);
    class Unnamed extends Error {}
    expect([errorType(new Unnamed('x')), errorType(new PermanentError('x')), errorType('a string'), errorType(new Error('x'))]).toEqual(['Unnamed', 'PermanentError', '_OTHER', 'Error']);
  });
});
