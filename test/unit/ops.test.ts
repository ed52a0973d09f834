import { context, propagation, SpanStatusCode, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryBroker, memoryConsumer } from '../../adapters/memory/index.js';
import {
  injectTraceContext,
  jsonLogger,
  logConsumer,
  prometheusMetrics,
  runService,
  tracingMiddleware,
  WorkerPool,
} from '../../src/index.js';
import { redactUrl, type Source } from '../../src/adapter/index.js';
import { InFlightLimit, PermanentError } from '../../src/index.js';
import { Consumer } from '../../src/consumer.js';
import { tick, until } from '../helpers/wait.js';


/** Parses Prometheus text exposition into `name{labels}` → value, failing on any malformed line. */
function parsePrometheus(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.eE+-]+|NaN|\+Inf|-Inf)$/.exec(line);
    if (!m) throw new Error(`not Prometheus text: ${JSON.stringify(line)}`);
    samples.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
  }
  return samples;
}

describe('operations: runService, health over HTTP, metrics', () => {
  it('serves /healthz, /readyz and /metrics whose counters match the messages, and turns unready while draining', async () => {
    const broker = new MemoryBroker();
    const pool = new WorkerPool({ name: 'orders', maxConcurrency: 2, maxQueueSize: 2 });
    let hold = false;
    const held: (() => void)[] = [];
    const consumer = memoryConsumer({
      broker, queue: 'orders', pool, retry: { maxAttempts: 2, backoff: { initialMs: 1 } },
      handler: async (m) => {
        if (m.json<{ bad?: boolean }>().bad) throw new Error('bad order');
        if (hold) await new Promise<void>((r) => held.push(r));
      },
    });
    const metrics = await prometheusMetrics({ consumers: [consumer] });
    const service = await runService({ consumers: [consumer], pools: [pool], signals: [], http: { port: 0, metrics: metrics.metrics }, exitOnSignal: false });
    const base = `http://127.0.0.1:${service.httpAddress!.port}`;
    expect(service.httpAddress!.address).toBe('127.0.0.1');

    for (let i = 0; i < 20; i++) broker.publishJson('orders', { i }, { id: `o-${i}` });
    broker.publishJson('orders', { bad: true }, { id: 'bad' });
    await until(() => consumer.status().handled === 20 && consumer.status().deadLettered === 1, 'all settled');

    const live = await fetch(`${base}/healthz`);
    expect(live.status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(((await ready.json()) as { consumers: Record<string, { status: string }> }).consumers['memory:orders']!.status).toBe('ok');

    const res = await fetch(`${base}/metrics`);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const samples = parsePrometheus(await res.text());
    const l = '{consumer="memory:orders",source="orders"}';
    expect(samples.get(`sluice_messages_handled_total${l}`)).toBe(20);
    expect(samples.get(`sluice_messages_retried_total${l}`)).toBe(1);
    expect(samples.get('sluice_messages_dead_lettered_total{consumer="memory:orders",source="orders",reason="max-attempts"}')).toBe(1);
    expect(samples.get('sluice_messages_failed_total{consumer="memory:orders",source="orders",next="retry"}')).toBe(1);
    expect(samples.get('sluice_handler_duration_seconds_count{consumer="memory:orders",source="orders",outcome="ok"}')).toBe(20);
    expect(samples.get('sluice_pool_capacity{pool="orders"}')).toBe(4);
    expect(samples.get('sluice_pool_active{pool="orders"}')).toBe(0);
    expect([...samples.keys()].some((k) => k.includes('o-1'))).toBe(false);

    // Draining: a held handler keeps the drain open; readiness must say no meanwhile.
    hold = true;
    broker.publishJson('orders', { i: 99 }, { id: 'o-99' });
    await until(() => held.length === 1, 'held handler');
    const stopping = service.stop('test');
    await until(() => service.health().draining, 'draining');
    expect((await fetch(`${base}/readyz`)).status).toBe(503);
    held[0]!();
    const result = await stopping;
    expect(result).toEqual({ clean: true, exitCode: 0, givenBack: 0 });
    expect(await service.done).toEqual(result);
    expect(pool.closed).toBe(true);
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  });

  it('reports a drain that hit its deadline as not clean, with the messages given back', async () => {
    const broker = new MemoryBroker();
    const consumer = memoryConsumer({ broker, queue: 'q', pool: { maxConcurrency: 1, maxQueueSize: 0 }, handler: () => new Promise<void>(() => {}) });
    const service = await runService({ consumers: [consumer], signals: [], shutdownTimeoutMs: 30, exitOnSignal: false });
    broker.publishJson('q', {}, { id: 'stuck' });
    await until(() => consumer.status().inFlight === 1, 'in flight');
    expect(await service.stop()).toEqual({ clean: false, exitCode: 1, givenBack: 1 });
    expect(broker.depth('q')).toEqual({ ready: 1, unacked: 0, delayed: 0 });
  });

  it('fails fast when a consumer cannot start, or keeps the others running when told to', async () => {
    const broken: Source = {
      name: 'broken:q',
      capabilities: { delayedRetry: true, redelivery: true, pause: true },
      start: async () => { throw new Error('connect ECONNREFUSED amqp://app:s3cret@10.0.0.1:5672'); },
      pause: async () => {}, resume: async () => {}, stop: async () => {}, close: async () => {},
    };
    const make = () => [
      new Consumer(broken, { pool: { maxConcurrency: 1, maxQueueSize: 0 }, handler: async () => {} }),
      memoryConsumer({ broker: new MemoryBroker(), queue: 'ok', pool: { maxConcurrency: 1, maxQueueSize: 0 }, handler: async () => {} }),
    ];
    const [b1, ok1] = make();
    const failure = await runService({ consumers: [b1!, ok1!], signals: [], exitOnSignal: false }).catch((e: Error) => e);
    expect(failure).toBeInstanceOf(AggregateError);
    expect((failure as Error).message).toContain('1 of 2 consumers failed to start');
    expect((failure as Error).message).not.toContain('s3cret');
    expect(ok1!.state).toBe('stopped');

    const [b2, ok2] = make();
    const service = await runService({ consumers: [b2!, ok2!], signals: [], exitOnSignal: false, onStartFailure: 'keep-running' });
    const health = service.health();
    expect(health.status).toBe('down');
    expect(health.consumers['broken:q']).toMatchObject({ status: 'down', ready: false });
    expect(JSON.stringify(health)).not.toContain('s3cret');
    expect(health.consumers['memory:ok']!.status).toBe('ok');
    expect(ok2!.state).toBe('running');
    expect((await service.stop()).clean).toBe(false);
  });

  it('rejects invalid options naming them', async () => {
    await expect(runService({ consumers: [] })).rejects.toThrow(/consumers/);
    const c = memoryConsumer({ broker: new MemoryBroker(), queue: 'x', pool: { maxConcurrency: 1, maxQueueSize: 0 }, handler: async () => {} });
    await expect(runService({ consumers: [c], shutdownTimeoutMs: -1 })).rejects.toThrow(/shutdownTimeoutMs.*-1/);
    await expect(runService({ consumers: [c], onStartFailure: 'ignore' as never })).rejects.toThrow(/onStartFailure/);
  });
});

describe('operations: logging never shows a password', () => {
  it('redacts URL credentials in every log line and error message', async () => {
    expect(redactUrl('amqp://guest:guest@127.0.0.1:5672/vhost')).toBe('amqp://guest:***@127.0.0.1:5672/vhost');
    const lines: string[] = [];
    const broker = new MemoryBroker();
    const consumer = memoryConsumer({
      broker, queue: 'q', pool: { maxConcurrency: 1, maxQueueSize: 0 }, retry: { maxAttempts: 1 },
      handler: async () => { throw new Error('downstream nats://svc:hunter2@10.1.2.3:4222 refused'); },
    });
    logConsumer(consumer, jsonLogger('debug', (l) => lines.push(l)));
    await consumer.start();
    broker.publishJson('q', {}, { id: 'x' });
    await until(() => consumer.status().deadLettered === 1, 'dead-lettered');
    await consumer.stop();
    expect(lines.length).toBeGreaterThan(2);
    expect(lines.some((l) => l.includes('nats://svc:***@10.1.2.3:4222'))).toBe(true);
    expect(lines.some((l) => l.includes('hunter2'))).toBe(false);
  });
});

describe('operations: tracing', () => {
  const exporter = new InMemorySpanExporter();
  // sdk-trace-base 2.x takes span processors only here (addSpanProcessor is gone).
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  beforeAll(() => {
    trace.setGlobalTracerProvider(provider);
    context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
    propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  });
  afterAll(() => {
    trace.disable();
    context.disable();
    propagation.disable();
  });

  it("makes the consumer span a child of the producer's span through the message headers", async () => {
    const broker = new MemoryBroker();
    const tracer = trace.getTracer('test');
    const producer = tracer.startSpan('orders publish');
    const headers = await context.with(trace.setSpan(context.active(), producer), () => injectTraceContext({}));
    producer.end();
    expect(headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    broker.publishJson('orders', { n: 1 }, { id: 'traced', headers });
    let innerParent: string | undefined;
    const consumer = memoryConsumer({
      broker, queue: 'orders', pool: { maxConcurrency: 1, maxQueueSize: 0 },
      middleware: [await tracingMiddleware({ system: 'memory' })],
      handler: async () => {
        const inner = tracer.startSpan('charge card');
        // The SDK's span is a ReadableSpan too; 2.x names its parent parentSpanContext (1.x had parentSpanId).
        innerParent = (inner as unknown as ReadableSpan).parentSpanContext?.spanId;
        inner.end();
      },
    });
    await consumer.start();
    await until(() => consumer.status().handled === 1, 'handled');
    await consumer.stop();
    const spans = exporter.getFinishedSpans();
    const consumerSpan = spans.find((s) => s.name === 'process orders')!;
    expect(consumerSpan).toBeDefined();
    // The conventions: the process span links to the creation context too, and leaves its status unset on success.
    expect(consumerSpan.links.map((l) => l.context.spanId)).toEqual([producer.spanContext().spanId]);
    expect(consumerSpan.status.code).toBe(SpanStatusCode.UNSET);
    expect(consumerSpan.attributes['messaging.operation']).toBeUndefined();
    expect(consumerSpan.attributes['error.type']).toBeUndefined();
    expect(consumerSpan.spanContext().traceId).toBe(producer.spanContext().traceId);
    expect(consumerSpan.parentSpanContext?.spanId).toBe(producer.spanContext().spanId);
    expect(innerParent).toBe(consumerSpan.spanContext().spanId);
    expect(consumerSpan.attributes).toMatchObject({
      'messaging.system': 'memory',
      'messaging.operation.name': 'process',
      'messaging.operation.type': 'process',
      'messaging.destination.name': 'orders',
      'messaging.message.id': 'traced',
      'messaging.message.body.size': 7,
      'sluice.delivery_attempt': 1,
    });
  });

  it('marks a failed attempt with error.type (the class name) and status ERROR, one span per attempt', async () => {
    exporter.reset();
    class CardDeclined extends Error {}
    const broker = new MemoryBroker();
    broker.publishJson('payments', { n: 1 }, { id: 'declined' });
    const consumer = memoryConsumer({
      broker, queue: 'payments', pool: { maxConcurrency: 1, maxQueueSize: 0 },
      retry: { maxAttempts: 2, backoff: { initialMs: 1, maxMs: 1 } },
      middleware: [await tracingMiddleware({ system: 'memory', consumerGroup: 'billing' })],
      handler: async (msg) => {
        if (msg.deliveryAttempt === 1) throw new CardDeclined('card declined');
        throw new PermanentError('still declined');
      },
    });
    await consumer.start();
    await until(() => consumer.status().deadLettered === 1, 'dead-lettered');
    await consumer.stop();
    const spans = exporter.getFinishedSpans().filter((s) => s.name === 'process payments');
    expect(spans.map((s) => [s.attributes['sluice.delivery_attempt'], s.attributes['error.type']])).toEqual([[1, 'CardDeclined'], [2, 'PermanentError']]);
    for (const span of spans) {
      expect(span.status).toMatchObject({ code: SpanStatusCode.ERROR });
      expect(span.attributes['messaging.consumer.group.name']).toBe('billing');
      expect(span.links).toEqual([]); // no creation context in the headers: no link
    }
    expect(spans[0]!.status.message).toBe('card declined');
  });
});

describe('Prometheus metrics of runtime v2', () => {
  it('count gated, deferred, settlement failures, and paused time by reason', async () => {
    const broker = new MemoryBroker();
    broker.refusePublishes('q.dlq');
    broker.publishJson('q', { poison: true }, { id: 'poison' });
    for (let i = 0; i < 10; i++) broker.publishJson('q', { i }, { id: `m-${i}` });
    const consumer = memoryConsumer({
      broker,
      queue: 'q',
      pool: { maxConcurrency: 4, maxQueueSize: 4 },
      settlement: { tries: 2, backoff: { initialMs: 1 }, deferMs: 1 },
      flow: { gates: [new InFlightLimit({ max: 1 })] },
      handler: async (m) => {
        if (m.json<{ poison?: boolean }>().poison) throw new PermanentError('bad');
      },
    });
    const metrics = await prometheusMetrics({ consumers: [consumer] });
    await consumer.start();
    await until(() => consumer.status().handled === 10 && consumer.status().deferred >= 1, 'healthy handled, poison set aside');
    broker.refusePublishes('q.dlq', false);
    await until(() => consumer.status().deadLettered === 1, 'dead-lettered once accepted');
    await consumer.stop();
    const samples = parsePrometheus((await metrics.metrics()).body);
    const l = 'consumer="memory:q",source="q"';
    expect(samples.get(`sluice_messages_gated_total{${l},gate="in-flight-limit"}`)).toBeGreaterThan(0);
    expect(samples.get(`sluice_messages_deferred_total{${l},settlement="dead-letter"}`)).toBeGreaterThanOrEqual(1);
    expect(samples.get('sluice_settlement_failures_total{consumer="memory:q"}')).toBeGreaterThanOrEqual(2);
    expect(samples.get(`sluice_consumer_paused_seconds_total{consumer="memory:q",source="memory:q",reason="in-flight-limit"}`)).toBeGreaterThan(0);
  });
});
