import type { Middleware } from '../consumer-options.js';
import type { Handler } from '../handler.js';
import type { Message } from '../message.js';

/** @opentelemetry/api is an optional peer dependency, loaded on demand. */
type OtelApi = typeof import('@opentelemetry/api');

async function loadOtel(): Promise<OtelApi> {
  try {
    return await import('@opentelemetry/api');
  } catch (cause) {
    throw new Error('sluice tracing needs the optional peer dependency "@opentelemetry/api": npm install @opentelemetry/api', { cause });
  }
}

export interface TracingOptions {
  /** `messaging.system`: rabbitmq, kafka, nats, memory. */
  system: string;
  tracerName?: string;
}

/**
 * A consumer span per message (kind CONSUMER), parented by the W3C trace context carried in the
 * message headers, with OpenTelemetry messaging attributes. The handler runs inside the span,
 * so its own spans are children of it.
 */
export async function tracingMiddleware(options: TracingOptions): Promise<Middleware> {
  const api = await loadOtel();
  const tracer = api.trace.getTracer(options.tracerName ?? 'sluice');
  const getter = {
    keys: (m: Message) => Object.keys(m.headers),
    get: (m: Message, key: string) => m.header(key),
  };
  return <Raw>(next: Handler<Raw>): Handler<Raw> =>
    async (message, ctx) => {
      const parent = api.propagation.extract(api.ROOT_CONTEXT, message as Message, getter);
      const span = tracer.startSpan(
        `${message.source} process`,
        {
          kind: api.SpanKind.CONSUMER,
          attributes: {
            'messaging.system': options.system,
            'messaging.operation': 'process',
            'messaging.operation.type': 'process',
            'messaging.destination.name': message.source,
            'messaging.message.id': message.id,
            'messaging.message.body.size': message.body.byteLength,
            'sluice.delivery_attempt': ctx.attempt,
          },
        },
        parent,
      );
      try {
        await api.context.with(api.trace.setSpan(parent, span), () => next(message, ctx));
        span.setStatus({ code: api.SpanStatusCode.OK });
      } catch (error) {
        span.recordException(error instanceof Error ? error : new Error(String(error)));
        span.setStatus({ code: api.SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
        throw error;
      } finally {
        span.end();
      }
    };
}

/**
 * Adds the active trace context (W3C `traceparent`/`tracestate`) to outgoing message headers;
 * publish helpers call it so consumers can continue the trace. No-op without @opentelemetry/api.
 */
export async function injectTraceContext(headers: Record<string, string>): Promise<Record<string, string>> {
  const api = await loadOtel().catch(() => undefined);
  api?.propagation.inject(api.context.active(), headers);
  return headers;
}
