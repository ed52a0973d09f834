import { injectTraceContext } from '../../src/ops/tracing.js';
import type { JetStreamManager, Msg, NatsConnection, PubAck } from './client.js';
import { clientFor, openConnection, resolveConnection, type NatsConnectionOptions } from './connection.js';
import { toNatsHeaders } from './message.js';

export interface NatsPublishOptions {
  /** The message id, as for every sluice publisher: sets `Nats-Msg-Id`, which JetStream deduplicates on and sluice reads as `msg.id`. */
  id?: string;
  /** @deprecated the old name of `id`. */
  msgID?: string;
  headers?: Record<string, string>;
}

/** Publishing that waits for the stream's PubAck (JetStream), or a plain publish (core NATS). */
export interface NatsPublisher {
  /** Resolves with the PubAck once the stream stored the message; rejects when no stream captures the subject. */
  publish(subject: string, body: Uint8Array | string, options?: NatsPublishOptions): Promise<PubAck>;
  publishJson(subject: string, value: unknown, options?: NatsPublishOptions): Promise<PubAck>;
  /** Core NATS request; the reply's `Nats-Service-Error-Code` header says 503 when the consumer was overloaded. */
  request(subject: string, body: Uint8Array | string, options?: NatsPublishOptions & { timeoutMs?: number }): Promise<Msg>;
  readonly connection: NatsConnection;
  /** The JetStream manager of this connection, made by its own client generation (streams, durables). */
  jetstreamManager(): Promise<JetStreamManager>;
  /** The client generation in use: 'v2' (`nats`) or 'v3' (`@nats-io/*`). */
  readonly client: 'v2' | 'v3';
  close(): Promise<void>;
}

/** Carries the active OpenTelemetry context (`traceparent`) in the headers when @opentelemetry/api is installed. */
export async function natsPublisher(options: NatsConnectionOptions): Promise<NatsPublisher> {
  const resolved = resolveConnection('natsPublisher', options ?? {});
  const client = await clientFor('natsPublisher', resolved);
  const { nc, owned } = await openConnection(resolved, 'sluice-publisher', client);
  const js = await client.jetstream(nc).catch(async (error: unknown) => {
    if (owned) await nc.close().catch(() => {});
    throw error;
  });
  const bytes = (body: Uint8Array | string) => (typeof body === 'string' ? new TextEncoder().encode(body) : body);
  const headers = async (o: NatsPublishOptions) => toNatsHeaders(client, await injectTraceContext({ ...o.headers }));
  const publish = async (subject: string, body: Uint8Array | string, o: NatsPublishOptions = {}) => {
    const opts: { headers: ReturnType<typeof client.headers>; msgID?: string } = { headers: await headers(o) };
    const id = o.id ?? o.msgID;
    if (id) opts.msgID = id;
    return js.publish(subject, bytes(body), opts);
  };
  return {
    connection: nc,
    client: client.generation,
    jetstreamManager: () => client.jetstreamManager(nc),
    publish,
    publishJson: (subject, value, o) => publish(subject, JSON.stringify(value), o),
    async request(subject, body, o = {}) {
      const h = await headers(o);
      const id = o.id ?? o.msgID;
      if (id) h.set('Nats-Msg-Id', id);
      return nc.request(subject, bytes(body), { timeout: o.timeoutMs ?? 5000, headers: h });
    },
    async close() {
      if (owned) await nc.drain().catch(() => nc.close());
    },
  };
}
