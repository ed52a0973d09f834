/** NATS test fixtures: unique streams (with a dead-letter stream), a publisher, consumer info. */
import { randomUUID } from 'node:crypto';
import { connect, type JetStreamManager, type NatsConnection } from 'nats';
import { natsPublisher, type NatsPublisher } from '../../adapters/nats/index.js';
import { natsUrl } from './brokers.js';

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
  const nc = await connect({ servers: server });
  const jsm = await nc.jetstreamManager();
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
async function untilJetStreamAnswers<T>(call: () => Promise<T>): Promise<T> {
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
