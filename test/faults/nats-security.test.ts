/**
 * NATS security on private nats-servers (never the shared one): TLS with a CA and server/client
 * certificates made here with openssl (the server verifies client certificates), user/password
 * and token authorization. On both client generations (`client: 'v2' | 'v3'`).
 *
 * Asserted: the right CA, certificate and credentials connect and consume (over TLS, as the
 * server reports); a server whose certificate our CA did not sign, a missing client certificate,
 * a plaintext server when TLS was asked for, and wrong credentials each fail start() with an
 * error that says what failed, after at most `recovery.startAttempts` connection attempts
 * (counted by the server), none afterwards; no password or token appears in any log line,
 * event, error (with its causes) or status.
 */
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AckPolicy } from 'nats';
import { natsConsumer, type NatsConsumerOptions } from '../../adapters/nats/index.js';
import type { Consumer, Message } from '../../src/index.js';
import { jsonLogger, logConsumer } from '../../src/ops/index.js';
import { createCA, type CertificateAuthority, type IssuedCertificate } from '../helpers/tls.js';
import { natsConnect, natsJetStream, natsJetStreamManager, untilJetStreamAnswers } from '../helpers/nats.js';
import { startNatsProcess, type NatsProcess } from '../helpers/nats-process.js';
import { unique } from '../helpers/names.js';
import { until } from '../helpers/wait.js';

const PASSWORD = 'pw-Q7fz3KqLwX';
const WRONG_PASSWORD = 'pw-WRONG-9dKe2mVb';
const TOKEN = 'tok-Hx81JcaVu2P';
const WRONG_TOKEN = 'tok-WRONG-4LbNq0Ts';
const SECRETS = [PASSWORD, WRONG_PASSWORD, TOKEN, WRONG_TOKEN];
const START_ATTEMPTS = 3;

interface Server extends NatsProcess {
  url: string;
  /** Client connections the server has accepted so far (varz total_connections). */
  connectionsSoFar(): Promise<number>;
  /** TLS version of the open client connection named `name`, '' without TLS. */
  tlsOf(name: string): Promise<string | undefined>;
}

async function server(name: string, port: number, config: string): Promise<Server> {
  const monitorPort = port + 500;
  const p = await startNatsProcess({ name, port, config: `http: "127.0.0.1:${monitorPort}"\n${config}` });
  const monitor = async <T>(path: string) => (await (await fetch(`http://127.0.0.1:${monitorPort}/${path}`)).json()) as T;
  return Object.assign(Object.create(p) as NatsProcess, {
    url: `nats://127.0.0.1:${port}`,
    connectionsSoFar: async () => (await monitor<{ total_connections: number }>('varz')).total_connections,
    tlsOf: async (connection: string) => {
      const connz = await monitor<{ connections?: { name?: string; tls_version?: string }[] }>('connz');
      const c = connz.connections?.find((x) => x.name === connection);
      return c ? (c.tls_version ?? '') : undefined;
    },
  }) as Server;
}

/** Our CA, a server and a client certificate it signed, and a server certificate from another CA. */
const certs = {} as { ca: CertificateAuthority; rogueCa: CertificateAuthority; server: IssuedCertificate; client: IssuedCertificate; rogueServer: IssuedCertificate };
const servers: Record<'tls' | 'rogueTls' | 'password' | 'token' | 'rotating', Server> = {} as never;

beforeAll(async () => {
  [certs.ca, certs.rogueCa] = await Promise.all([createCA({ name: 'sluice NATS test CA' }), createCA({ name: 'another CA' })]);
  const host = { altNames: ['localhost', '127.0.0.1'] };
  [certs.server, certs.client, certs.rogueServer] = await Promise.all([certs.ca.issue('localhost', host), certs.ca.issue('sluice-consumer', { client: true }), certs.rogueCa.issue('localhost', host)]);
  const tls = (c: IssuedCertificate) => `tls { cert_file: "${c.certPath}", key_file: "${c.keyPath}", ca_file: "${certs.ca.certPath}", verify: true, timeout: 2 }`;
  [servers.tls, servers.rogueTls, servers.password, servers.token, servers.rotating] = await Promise.all([
    server('tls', 14301, tls(certs.server)),
    server('rogue-tls', 14302, tls(certs.rogueServer)),
    server('password', 14303, `authorization { user: sluice, password: "${PASSWORD}" }`),
    server('token', 14304, `authorization { token: "${TOKEN}" }`),
    server('rotating', 14305, `authorization { user: sluice, password: "${PASSWORD}" }`),
  ]);
});
afterAll(async () => {
  await Promise.all(Object.values(servers).map((s) => s?.dispose()));
  await Promise.all([certs.ca?.dispose(), certs.rogueCa?.dispose()]);
});

/** Everything a consumer says: log lines (the ops logger at debug), every event, and what start() threw, with causes. */
function capture(consumer: Consumer<unknown>) {
  const lines: string[] = [];
  logConsumer(consumer, jsonLogger('debug', (line) => lines.push(line)));
  for (const event of ['connection', 'error', 'state', 'failed', 'deadLettered', 'givenBack', 'deferred', 'paused', 'resumed', 'stalled'] as const) {
    consumer.on(event, (payload: unknown) => lines.push(`${event} ${inspect(payload, { depth: 10 })}`));
  }
  return {
    lines,
    leaked: () => {
      const all = [...lines, inspect(consumer.status(), { depth: 10 }), inspect(consumer.health(), { depth: 10 })].join('\n');
      return SECRETS.filter((s) => all.includes(s));
    },
  };
}

/** start() must reject; returns the error, how many connections the server saw, and checks none follow. */
async function refusedAtStart(target: Server, consumer: Consumer<unknown>) {
  const before = await target.connectionsSoFar();
  const startedAt = performance.now();
  const error = await consumer.start().then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  expect(error, 'start() rejected').toBeInstanceOf(Error);
  const attempts = (await target.connectionsSoFar()) - before;
  console.log(JSON.stringify({ server: target.name, attempts, rejectedAfterMs: Math.round(performance.now() - startedAt), error: (error as Error).message }));
  // No reconnect loop behind the rejection: nothing more arrives at the server.
  await new Promise((r) => setTimeout(r, 1000));
  expect((await target.connectionsSoFar()) - before, 'no connection attempt after start() rejected').toBe(attempts);
  expect(attempts).toBeGreaterThanOrEqual(1);
  expect(attempts).toBeLessThanOrEqual(START_ATTEMPTS);
  expect(consumer.health().status).toBe('down');
  return { error: error!, full: inspect(error, { depth: 10 }), attempts };
}

describe.each(['v2', 'v3'] as const)('NATS security, %s client', (client) => {
  const tlsOptions = () => ({ caFile: certs.ca.certPath, certFile: certs.client.certPath, keyFile: certs.client.keyPath });
  const consumerOn = (servers_: string, extra: Partial<NatsConsumerOptions>) =>
    natsConsumer({
      client,
      servers: servers_,
      stream: 'SECURE',
      durable: 'secure',
      consumerConfig: { ack_policy: AckPolicy.Explicit },
      recovery: { startAttempts: START_ATTEMPTS, backoff: { initialMs: 50, maxMs: 200 } },
      pool: { maxConcurrency: 2, maxQueueSize: 2 },
      handler: async () => {},
      ...extra,
    });

  /** The right credentials: a stream there, 5 messages consumed and acked; nothing secret said on the way. */
  async function consumesWith(target: Server, credentials: { user?: string; pass?: string; token?: string }) {
    const nc = await natsConnect({ servers: target.url, ...credentials }, client);
    try {
      const jsm = await natsJetStreamManager(nc);
      const stream = unique('AUTH').toUpperCase().replace(/-/g, '_');
      await untilJetStreamAnswers(() => jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.>`] }));
      const js = await natsJetStream(nc);
      for (let i = 0; i < 5; i++) await js.publish(`${stream.toLowerCase()}.in`, JSON.stringify({ i }));
      let handled = 0;
      const consumer = consumerOn(target.url, { stream, connectOptions: credentials, handler: async () => void handled++ });
      const seen = capture(consumer);
      await consumer.start();
      try {
        await until(() => handled === 5, '5 handled', 30_000);
      } finally {
        await consumer.stop();
      }
      expect(seen.leaked()).toEqual([]);
    } finally {
      await nc.close();
    }
  }

  it('TLS with our CA and a client certificate: connects over TLS and consumes', async () => {
    const nc = await natsConnect({ servers: servers.tls.url, tls: tlsOptions() }, client);
    try {
      const jsm = await natsJetStreamManager(nc);
      const stream = unique('TLS').toUpperCase().replace(/-/g, '_');
      await untilJetStreamAnswers(() => jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.>`] }));
      const js = await natsJetStream(nc);
      for (let i = 0; i < 20; i++) await js.publish(`${stream.toLowerCase()}.in`, JSON.stringify({ i }));
      const handled = new Set<string>();
      const consumer = consumerOn(servers.tls.url, {
        stream,
        connectOptions: { tls: tlsOptions() },
        handler: async (m: Message) => void handled.add(m.id),
      });
      await consumer.start();
      try {
        await until(() => handled.size === 20, '20 handled over TLS', 30_000);
        expect(await servers.tls.tlsOf(`nats:${stream}/secure`)).toMatch(/^1\.[23]$/);
        expect((await jsm.consumers.info(stream, 'secure')).num_ack_pending).toBe(0);
      } finally {
        await consumer.stop();
      }
    } finally {
      await nc.close();
    }
  });

  it('TLS: a server certificate our CA did not sign is refused with a verification error', async () => {
    const consumer = consumerOn(servers.rogueTls.url, { connectOptions: { tls: tlsOptions() } });
    const r = await refusedAtStart(servers.rogueTls, consumer);
    expect(r.error.message).toMatch(/nats:SECURE\/secure: could not connect to nats:\/\/127\.0\.0\.1:14302/);
    expect(r.error.message).toMatch(/certificate|verify|self.signed|issuer/i);
  });

  it('TLS: no client certificate, when the server verifies clients, is refused (the client sees only its connect timeout)', async () => {
    // With TLS 1.3 the server checks the client's certificate after the client thinks the
    // handshake is done; neither client generation reports the server's alert, so the attempt
    // ends at connectOptions.timeout (20 s by default) with TIMEOUT. docs/nats.md says so.
    const consumer = consumerOn(servers.tls.url, { connectOptions: { tls: { caFile: certs.ca.certPath }, timeout: 2000 }, recovery: { startAttempts: 1 } });
    const r = await refusedAtStart(servers.tls, consumer);
    expect(r.error.message).toMatch(/could not connect to nats:\/\/127\.0\.0\.1:14301 after 1 attempt\(s\): .*timeout/i);
  });

  it('TLS asked for, the server speaks plaintext: refused, no fallback to plaintext', async () => {
    const consumer = consumerOn(servers.password.url, { connectOptions: { tls: tlsOptions(), user: 'sluice', pass: PASSWORD } });
    const seen = capture(consumer);
    const r = await refusedAtStart(servers.password, consumer);
    expect(r.error.message).toMatch(/could not connect to nats:\/\/127\.0\.0\.1:14303/);
    expect(r.error.message).toMatch(/tls/i);
    expect(seen.leaked()).toEqual([]);
    expect(SECRETS.filter((s) => r.full.includes(s))).toEqual([]);
  });

  it('user/password: right ones consume; wrong ones fail start() with an authorization error, the password nowhere', async () => {
    await consumesWith(servers.password, { user: 'sluice', pass: PASSWORD });

    for (const how of ['connectOptions', 'url'] as const) {
      const consumer =
        how === 'url'
          ? consumerOn(`nats://sluice:${WRONG_PASSWORD}@127.0.0.1:14303`, {})
          : consumerOn(servers.password.url, { connectOptions: { user: 'sluice', pass: WRONG_PASSWORD } });
      const seen = capture(consumer);
      const r = await refusedAtStart(servers.password, consumer);
      expect(r.error.message, how).toMatch(/authorization violation/i);
      expect(seen.lines.join('\n'), how).toMatch(/authorization violation/i);
      expect(seen.leaked(), how).toEqual([]);
      expect(SECRETS.filter((s) => r.full.includes(s)), how).toEqual([]);
    }
  });

  it('token: the right one consumes; a wrong one fails start() with an authorization error, the token nowhere', async () => {
    await consumesWith(servers.token, { token: TOKEN });

    for (const how of ['connectOptions', 'url'] as const) {
      const consumer = how === 'url' ? consumerOn(`nats://${WRONG_TOKEN}@127.0.0.1:14304`, {}) : consumerOn(servers.token.url, { connectOptions: { token: WRONG_TOKEN } });
      const seen = capture(consumer);
      const r = await refusedAtStart(servers.token, consumer);
      expect(r.error.message, how).toMatch(/authorization violation/i);
      expect(seen.leaked(), how).toEqual([]);
      expect(SECRETS.filter((s) => r.full.includes(s)), how).toEqual([]);
    }
  });

  it('credentials refused while it runs (the server changed the password): down, one authorization error, retrying; back once they are taken again', async () => {
    const target = servers.rotating;
    const credentials = { user: 'sluice', pass: PASSWORD };
    const nc = await natsConnect({ servers: target.url, ...credentials }, client);
    const stream = unique('ROT').toUpperCase().replace(/-/g, '_');
    await untilJetStreamAnswers(async () => (await natsJetStreamManager(nc)).streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.>`] }));
    await nc.close();
    const handled = new Set<string>();
    const consumer = consumerOn(target.url, { stream, connectOptions: { ...credentials, reconnectTimeWait: 100 }, handler: async (m: Message) => void handled.add(m.id) });
    const seen = capture(consumer);
    const errors: string[] = [];
    const states: string[] = [];
    consumer.on('error', ({ error }) => errors.push(String((error as Error).message)));
    consumer.on('connection', ({ state }) => states.push(state));
    let refusing = false;
    const restartWith = async (password: string) => {
      refusing = password !== PASSWORD;
      await target.kill();
      target.editConfig((text) => text.replace(/password: "[^"]*"/, `password: "${password}"`));
      await target.start();
    };
    await consumer.start();
    try {
      await restartWith(WRONG_PASSWORD);
      const refusedFrom = await target.connectionsSoFar();
      // It keeps trying (the client's default would close the connection for good after two refusals)…
      await until(() => consumer.health().status === 'down', 'health down', 30_000);
      let tried = 0;
      await until(() => tried >= 4, 'four more connection attempts', 30_000, async () => (tried = (await target.connectionsSoFar()) - refusedFrom));
      // …and says so once, not once per attempt.
      expect(errors.filter((e) => /authorization/i.test(e))).toHaveLength(1);
      expect(states).toEqual(['connected', 'disconnected']);
      await restartWith(PASSWORD);
      await until(() => consumer.health().status === 'ok', 'health ok once the credentials are taken again', 30_000);
      expect(states).toEqual(['connected', 'disconnected', 'recovered']);
      const pub = await natsConnect({ servers: target.url, ...credentials }, client);
      const js = await natsJetStream(pub);
      for (let i = 0; i < 5; i++) await js.publish(`${stream.toLowerCase()}.in`, JSON.stringify({ i }));
      await pub.close();
      await until(() => handled.size === 5, 'consuming again', 30_000);
      expect(seen.leaked()).toEqual([]);
    } finally {
      await consumer.stop();
      if (refusing) await restartWith(PASSWORD);
    }
  });
});
