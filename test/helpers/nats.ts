/**
 * NATS test fixtures: unique streams (with a dead-letter stream), a publisher, consumer info, on
 * the client generation of this run: `SLUICE_NATS_CLIENT=v2|v3` (default v2), the same variable
 * the adapter reads, so a consumer given `servers` and one given the fixture's connection both
 * run on it. The fixture's objects are typed as `nats` 2.x ones; the 3.x ones have the same API
 * for everything the tests call.
 */
import { randomUUID } from 'node:crypto';
import type { ConnectionOptions, JetStreamClient, JetStreamManager, MsgHdrs, NatsConnection } from 'nats';
import { natsPublisher, type NatsPublisher } from '../../adapters/nats/index.js';
import { natsUrl } from './brokers.js';

/** The NATS client generation this test run uses. */
export const natsClient: 'v2' | 'v3' = (() => {
  const env = process.env.SLUICE_NATS_CLIENT;
  if (env === undefined || env === '' || env === 'v2') return 'v2';
  if (env === 'v3') return 'v3';
  throw new Error(`SLUICE_NATS_CLIENT must be v2 or v3, got ${JSON.stringify(env)}`);
})();

/** connect() of this run's client generation. */
export async function natsConnect(options: ConnectionOptions, generation = natsClient): Promise<NatsConnection> {
  if (generation === 'v2') return (await import('nats')).connect(options);
  const { connect } = await import('@nats-io/transport-node');
  return (await connect(options as never)) as unknown as NatsConnection;
}

/** The JetStream manager of a connection, by its generation. */
export async function natsJetStreamManager(nc: NatsConnection): Promise<JetStreamManager> {
  if (typeof (nc as { jetstreamManager?: unknown }).jetstreamManager === 'function') return nc.jetstreamManager();
  const { jetstreamManager } = await import('@nats-io/jetstream');
  return (await jetstreamManager(nc as never)) as unknown as JetStreamManager;
}

/** A JetStream client of a connection, by its generation. */
export async function natsJetStream(nc: NatsConnection): Promise<JetStreamClient> {
  if (typeof (nc as { jetstream?: unknown }).jetstream === 'function') return nc.jetstream();
  const { jetstream } = await import('@nats-io/jetstream');
  return jetstream(nc as never) as unknown as JetStreamClient;
}

/** Empty headers of this run's generation (a connection encodes only its own kind). */
export async function natsHeaders(generation = natsClient): Promise<MsgHdrs> {
  if (generation === 'v2') return (await import('nats')).headers();
  return (await import('@nats-io/transport-node')).headers() as unknown as MsgHdrs;
}

export interface NatsFixture {
  url: string;
  nc: NatsConnection;
  jsm: JetStreamManager;
  publisher: NatsPublisher;
  /** A stream `<NAME>` on `<name>.>` plus `<NAME>_DLQ` on its dead-letter subject; deleted by close(). */
  stream(prefix?: string): Promise<{ stream: string; subject: string; dlq: string }>;
  /** Publishes `n` JSON messages with ids `<prefix>-<i>` (Nats-Msg-Id), each acked by the stream. */
  fill(subject: string, n: number, prefix?: string): Promise<string[]>;
  close(): Promise<void>;
}

export async function natsFixture(url?: string): Promise<NatsFixture> {
  const server = url ?? (await natsUrl());
  const nc = await natsConnect({ servers: server });
  const jsm = await natsJetStreamManager(nc);
  const publisher = await natsPublisher({ connection: nc });
  const streams: string[] = [];
  return {
    url: server,
    nc,
    jsm,
    publisher,
    async stream(prefix = 'SLUICE') {
      const stream = `${prefix}_${randomUUID().slice(0, 8)}`.toUpperCase().replace(/[^A-Z0-9_]/g, '_');
      const subject = stream.toLowerCase();
      const dlq = `${subject}-dlq`;
      // Right after a server restart (the fault tests), JetStream may take a while to answer again.
      await untilJetStreamAnswers(() => jsm.streams.add({ name: stream, subjects: [`${subject}.>`] }));
      await untilJetStreamAnswers(() => jsm.streams.add({ name: `${stream}_DLQ`, subjects: [dlq] }));
      streams.push(stream, `${stream}_DLQ`);
      return { stream, subject, dlq };
    },
    async fill(subject, n, prefix = 'm') {
      const ids = Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
      for (let i = 0; i < ids.length; i += 500) {
        await Promise.all(ids.slice(i, i + 500).map((id, j) => publisher.publishJson(`${subject}.in`, { id, seq: i + j }, { id })));
      }
      return ids;
    },
    async close() {
      for (const s of streams) await jsm.streams.delete(s).catch(() => {});
      await nc.drain().catch(() => {});
    },
  };
}

export { unique } from './names.js';

/** Retries a JetStream API call that times out or finds JetStream not ready yet, for up to 30 s. */
export async function untilJetStreamAnswers<T>(call: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      return await call();
    } catch (error) {
      const code = (error as { code?: string }).code;
      const retriable = code === 'TIMEOUT' || code === '503' || /timeout|no responders|not ready|unavailable/i.test(String(error));
      if (!retriable || Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
