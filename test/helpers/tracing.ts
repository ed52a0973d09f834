/** OpenTelemetry in memory for trace tests: a global tracer provider, context manager and W3C propagator. */
import { context, propagation, trace, type Span } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { expect } from 'vitest';

export interface Tracing {
  /** Runs `publish` inside a producer span that ends after it; returns the span. */
  produce(name: string, publish: () => Promise<unknown>): Promise<Span>;
  finished(): ReadableSpan[];
}

/** Installs OpenTelemetry globally for `fn`, and removes it after, whatever happens. */
export async function withTracing(fn: (tracing: Tracing) => Promise<void>): Promise<void> {
  const exporter = new InMemorySpanExporter();
  // sdk-trace-base 2.x takes span processors only here (addSpanProcessor is gone).
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  trace.setGlobalTracerProvider(provider);
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  try {
    await fn({
      async produce(name, publish) {
        const span = trace.getTracer('test').startSpan(name);
        await context.with(trace.setSpan(context.active(), span), publish);
        span.end();
        return span;
      },
      finished: () => exporter.getFinishedSpans(),
    });
  } finally {
    trace.disable();
    context.disable();
    propagation.disable();
  }
}

/** The consumer span is the producer span's child: same trace, parent = the producer span. */
export function expectChildOf(span: ReadableSpan | undefined, producer: Span): void {
  expect(span).toBeDefined();
  const parent = span!.parentSpanContext?.spanId; // 2.x: parentSpanContext (1.x had parentSpanId)
  expect(span!.spanContext().traceId).toBe(producer.spanContext().traceId);
  expect(parent).toBe(producer.spanContext().spanId);
}
