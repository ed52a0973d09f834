/**
 * Both NATS client generations side by side on the real server, whatever SLUICE_NATS_CLIENT this
 * run has: a connection made by `nats` 2.x or by `@nats-io/transport-node` 3.x is passed as
 * `connection` and detected (JetStream consume, a dead letter with its headers, core request
 * reply and a 503 on overload, a publisher); `client: 'v2' | 'v3'` with `servers` picks that
 * package; a `client` that contradicts the given connection is refused. The other nats-*.test.ts
 * files run whole on one generation each (the default v2 pass, and `.ci/run`'s v3 pass).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsConsumer, natsPublisher, natsSubscriber, type CoreSource, type JetStreamSource } from '../../adapters/nats/index.js';
import { DEAD_LETTER_HEADERS, PermanentError } from '../../src/index.js';
import { natsClient, natsConnect, natsFixture, unique, type NatsFixture } from '../helpers/nats.js';
import { until } from '../helpers/wait.js';

let nats: NatsFixture;
beforeAll(async () => {
  nats = await natsFixture();
});
afterAll(async () => {
  await nats?.close();
});

const decode = (b: Uint8Array) => new TextDecoder().decode(b);

describe.each(['v2', 'v3'] as const)('the %s NATS client', (generation) => {
  it('its own connection, passed in: JetStream messages handled once and acked, a poison one dead-lettered with its headers, a publisher on it', async () => {
    const nc = await natsConnect({ servers: nats.url }, generation);
    const { stream, subject, dlq } = await nats.stream(`CLIENT_${generation}`);
    try {
      const publisher = await natsPublisher({ connection: nc });
      expect(publisher.client).toBe(generation);
      const ids = Array.from({ length: 50 }, (_, i) => `${generation}-${i}`);
      for (const id of ids) await publisher.publishJson(`${subject}.in`, { id, poison: id.endsWith('-7') }, { id, headers: { 'x-origin': generation } });
      const seen = new Map<string, number>();
      const origins = new Set<string | undefined>();
      const consumer = natsConsumer({
        connection: nc,
        stream,
        durable: 'clients',
        consumerConfig: {},
        deadLetter: { subject: dlq },
        pool: { maxConcurrency: 4, maxQueueSize: 8 },
        handler: async (m) => {
          seen.set(m.id, (seen.get(m.id) ?? 0) + 1);
          origins.add(m.header('x-origin'));
          if (m.json<{ poison: boolean }>().poison) throw new PermanentError('poison');
        },
      });
      await consumer.start();
      expect((consumer.source as JetStreamSource).client).toBe(generation);
      await until(() => consumer.status().handled + consumer.status().deadLettered === 50, 'all 50 settled');
      let info: { num_ack_pending: number; num_pending: number } | undefined;
      await until(() => info?.num_ack_pending === 0 && info.num_pending === 0, 'nothing unacked or pending at the server', 10_000, async () => {
        info = await nats.jsm.consumers.info(stream, 'clients');
      });
      await consumer.stop();
      expect([...seen.keys()].sort()).toEqual([...ids].sort());
      expect([...seen.values()].every((n) => n === 1)).toBe(true);
      expect([...origins]).toEqual([generation]);
      expect(consumer.status()).toMatchObject({ handled: 49, deadLettered: 1 });
      const dead = await nats.jsm.streams.getMessage(`${stream}_DLQ`, { seq: 1 });
      expect(dead.header.get(DEAD_LETTER_HEADERS.error)).toBe('poison');
      expect(dead.header.get('x-sluice-subject')).toBe(`${subject}.in`);
      expect(dead.header.get('x-origin')).toBe(generation);
      expect(JSON.parse(decode(dead.data))).toEqual({ id: `${generation}-7`, poison: true });
      await publisher.close(); // borrowed: the connection stays open
      expect(nc.isClosed()).toBe(false);
    } finally {
      await nc.drain();
    }
  });

  it('its own connection, passed in: core requests answered through the pool, a 503 with service-error headers when full', async () => {
    const nc = await natsConnect({ servers: nats.url }, generation);
    const subject = unique(`sluice.clients-${generation}`);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const consumer = natsSubscriber({
      connection: nc,
      subject,
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      handler: async (m) => {
        await gate;
        m.raw.respond(`done ${m.text()}`);
      },
    });
    try {
      await consumer.start();
      expect((consumer.source as CoreSource).client).toBe(generation);
      const first = nats.publisher.request(subject, 'a', { timeoutMs: 10_000 });
      await until(() => consumer.status().pool.active === 1, 'the first request running');
      const busy = await nats.publisher.request(subject, 'b', { timeoutMs: 10_000 });
      expect(busy.headers?.get('Nats-Service-Error-Code')).toBe('503');
      expect(busy.headers?.get('Nats-Service-Error')).toBe('overloaded');
      release();
      expect(decode((await first).data)).toBe('done a');
    } finally {
      await consumer.stop();
      await nc.drain();
    }
  });

  it('`client` with `servers` makes the connection with that package, whatever SLUICE_NATS_CLIENT says', async () => {
    const publisher = await natsPublisher({ servers: nats.url, client: generation });
    try {
      expect(publisher.client).toBe(generation);
      // A 2.x connection has jetstream(); a 3.x one leaves JetStream to @nats-io/jetstream.
      expect(typeof (publisher.connection as { jetstream?: unknown }).jetstream).toBe(generation === 'v2' ? 'function' : 'undefined');
      const { stream, subject } = await nats.stream(`SERVERS_${generation}`);
      const ack = await publisher.publishJson(`${subject}.in`, { n: 1 }, { id: 'once' });
      expect(ack).toMatchObject({ stream, seq: 1, duplicate: false });
      expect((await publisher.publishJson(`${subject}.in`, { n: 1 }, { id: 'once' })).duplicate).toBe(true);
      const jsm = await publisher.jetstreamManager();
      expect((await jsm.streams.info(stream)).state.messages).toBe(1);
    } finally {
      await publisher.close();
    }
    expect(publisher.connection.isClosed()).toBe(true);
  });
});

it(`with \`servers\` and no \`client\`, this run's SLUICE_NATS_CLIENT (${natsClient}) is the generation: the fixture and every servers-made consumer of the run are on it`, async () => {
  expect(nats.publisher.client).toBe(natsClient);
  const consumer = natsSubscriber({ servers: nats.url, subject: unique('sluice.clients-env'), pool: { maxConcurrency: 1, maxQueueSize: 0 }, handler: async () => {} });
  await consumer.start();
  try {
    expect((consumer.source as CoreSource).client).toBe(natsClient);
  } finally {
    await consumer.stop();
  }
});

it('a `client` that contradicts the given connection is refused at construction, naming both', async () => {
  const nc = await natsConnect({ servers: nats.url }, 'v3');
  try {
    expect(() => natsSubscriber({ connection: nc, client: 'v2', subject: 'x', pool: { maxConcurrency: 1, maxQueueSize: 0 }, handler: async () => {} })).toThrow(
      /option "client" is 'v2' but the given connection is a @nats-io\/transport-node \+ @nats-io\/jetstream \(3\.x\) connection \('v3'\)/,
    );
  } finally {
    await nc.drain();
  }
});
