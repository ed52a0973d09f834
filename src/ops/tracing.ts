import type { Middleware } from '../consumer-options.js';
import type { Handler } from '../handler.js';
import type { Message } from '../message.js';
import { errorType, messageTelemetry, type MessagingTarget } from './messaging-attributes.js';

/** @opentelemetry/api is an optional peer dependency, loaded on demand. */
type OtelApi = typeof import('@opentelemetry/api');

export async function loadOtel(what = 'tracing'): Promise<OtelApi> {
  try {
    return await import('@opentelemetry/api');
  } catch (cause) {
    throw new Error(`sluice ${what} needs the optional peer dependency "@opentelemetry/api": npm install @opentelemetry/api`, { cause });
  }
}

export interface TracingOptions extends MessagingTarget {
  /** `messaging.system`: rabbitmq, kafka, nats, memory. */
  system: string;
  /** The tracer's name. Default 'sluice'. */
  tracerName?: string;
}

/**
 * A "process" span per handler attempt (kind CONSUMER), after the OpenTelemetry semantic
 * conventions for messaging: named `process <destination>`, with `messaging.*` attributes read
 * from the message (per broker, see docs/operations.md), `error.type` and status ERROR when the
 * handler fails. Its parent is the creation context carried in the message headers (W3C
 * `traceparent`), which it also links to; the handler runs inside it, so its own spans are
 * children of it.
 */
export async function tracingMiddleware(options: TracingOptions): Promise<Middleware> {
  const api = await loadOtel();
  const tracer = api.trace.getTracer(options.tracerName ?? 'sluice');
  const target: MessagingTarget = { system: options.system, consumerGroup: options.consumerGroup, destinationTemplate: options.destinationTemplate };
  const getter = {
    keys: (m: Message) => Object.keys(m.headers),
    get: (m: Message, key: string) => m.header(key),
  };
  return <Raw>(next: Handler<Raw>): Handler<Raw> =>
    async (message, ctx) => {
      const parent = api.propagation.extract(api.ROOT_CONTEXT, message as Message, getter);
      const creation = api.trace.getSpanContext(parent);
      const { spanDestination, common, perMessage } = messageTelemetry(message as Message, target);
      const span = tracer.startSpan(
        spanDestination === '' ? 'process' : `process ${spanDestination}`,
        {
          kind: api.SpanKind.CONSUMER,
          // Attributes at creation: samplers see them (destination, partition, operation, system).
          attributes: { ...common, ...perMessage, 'sluice.delivery_attempt': ctx.attempt },
          links: creation && api.trace.isSpanContextValid(creation) ? [{ context: creation }] : [],
        },
        parent,
      );
      try {
        await api.context.with(api.trace.setSpan(parent, span), () => next(message, ctx));
        // Success leaves the status unset (the conventions' rule for instrumentations).
      } catch (error) {
        span.setAttribute('error.type', errorType(error));
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
