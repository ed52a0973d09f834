import type { JetStreamPublishOptions, NatsConnection, PubAck } from 'nats';
import { injectTraceContext } from '../../src/ops/tracing.js';
import { openConnection, resolveConnection, type NatsConnectionOptions } from './connection.js';
import { toNatsHeaders } from './message.js';

export interface NatsPublishOptions {
  /** The message id, as for every sluice publisher: sets `Nats-Msg-Id`, which JetStream deduplicates on and sluice reads as `msg.id`. */
  id?: string;
  headers?: Record<string, string>;
}

/** Publishing that waits for the stream's PubAck (JetStream), or a plain publish (core NATS). */
export interface NatsPublisher {
  /** Resolves with the PubAck once the stream stored the message; rejects when no stream captures the subject. */
  publish(subject: string, body: Uint8Array | string, options?: NatsPublishOptions): Promise<PubAck>;
  publishJson(subject: string, value: unknown, options?: NatsPublishOptions): Promise<PubAck>;
  /** Core NATS request; the reply's `Nats-Service-Error-Code` header says 503 when the consumer was overloaded. */
  request(subject: string, body: Uint8Array | string, options?: NatsPublishOptions & { timeoutMs?: number }): ReturnType<NatsConnection['request']>;
  readonly connection: NatsConnection;
  close(): Promise<void>;
}

/** Carries the active OpenTelemetry context (`traceparent`) in the headers when @opentelemetry/api is installed. */
export async function natsPublisher(options: NatsConnectionOptions): Promise<NatsPublisher> {
  const { nc, owned } = await openConnection(resolveConnection('natsPublisher', options ?? {}), 'sluice-publisher');
  const js = nc.jetstream();
  const bytes = (body: Uint8Array | string) => (typeof body === 'string' ? new TextEncoder().encode(body) : body);
  const headers = async (o: NatsPublishOptions) => toNatsHeaders(await injectTraceContext({ ...o.headers }));
  const publish = async (subject: string, body: Uint8Array | string, o: NatsPublishOptions = {}) => {
    const opts: Partial<JetStreamPublishOptions> = { headers: await headers(o) };
    const id = o.id;
    if (id) opts.msgID = id;
    return js.publish(subject, bytes(body), opts);
  };
  return {
    connection: nc,
    publish,
    publishJson: (subject, value, o) => publish(subject, JSON.stringify(value), o),
    async request(subject, body, o = {}) {
      const h = await headers(o);
      const id = o.id;
      if (id) h.set('Nats-Msg-Id', id);
      return nc.request(subject, bytes(body), { timeout: o.timeoutMs ?? 5000, headers: h });
    },
    async close() {
      if (owned) await nc.drain().catch(() => nc.close());
    },
  };
}
