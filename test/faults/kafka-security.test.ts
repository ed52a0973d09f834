/**
 * A kafkaConsumer against a private Kafka node whose client listener is SASL_SSL (SCRAM-SHA-256
 * over TLS, with a CA and server certificate this test makes with openssl): it connects with the
 * credentials and the CA; wrong credentials fail start() with an error naming the consumer and the
 * brokers, after a bounded number of connection attempts; a server certificate that does not
 * verify is refused, and a TLS client never falls back to plaintext. No password in any log line,
 * event or error. On the driver of SLUICE_KAFKA_DRIVER: the client's own TLS and SASL options are
 * passed through as they are (kafkajs `ssl`/`sasl`, @platformatic/kafka `tls`/`sasl`).
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { logLevel, type KafkaConfig, type logCreator } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kafkaConsumer, kafkaPublisher, type KafkaClientOption, type KafkaConsumer } from '../../adapters/kafka/index.js';
import { jsonLogger, logConsumer } from '../../src/index.js';
import { KAFKA_DRIVER } from '../helpers/kafka.js';
import { startKafkaNode, type KafkaNode } from '../helpers/kafka-cluster.js';
import { unique } from '../helpers/names.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { createCA, type CertificateAuthority, type IssuedCertificate } from '../helpers/tls.js';
import { until } from '../helpers/wait.js';

const PORT = 19092;
const USER = 'sluice-consumer';
const PASSWORD = `pw-${randomBytes(12).toString('hex')}`;
const WRONG = `wrong-${randomBytes(12).toString('hex')}`;

let ca: CertificateAuthority;
let rogue: CertificateAuthority;
let server: IssuedCertificate;
let node: KafkaNode;
let proxy: TcpProxy;
let topic: string;

/** Everything a run says: kafkajs's log lines (debug), the consumer's events and sluice's log lines, stdout and stderr. */
class Capture {
  readonly lines: string[] = [];
  readonly #restore: (() => void)[] = [];

  /** A kafkajs logCreator that records every entry. */
  readonly logCreator: logCreator = () => (entry) => this.lines.push(`kafkajs ${entry.namespace} ${entry.label} ${inspect(entry.log, { depth: 6 })}`);

  consumer(c: KafkaConsumer<unknown>): void {
    for (const event of ['error', 'connection', 'state', 'stalled', 'paused', 'resumed', 'deadLettered', 'failed'] as const) {
      c.on(event, (payload: unknown) => this.lines.push(`event ${event} ${inspect(payload, { depth: 6 })}`));
    }
    this.#restore.push(logConsumer(c, jsonLogger('debug', (line) => this.lines.push(`log ${line}`))));
  }

  /** Records what the process writes to stdout and stderr until `stop()`. */
  stdio(): void {
    for (const stream of [process.stdout, process.stderr]) {
      const write = stream.write.bind(stream);
      stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
        this.lines.push(`stdio ${String(chunk)}`);
        return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
      }) as typeof stream.write;
      this.#restore.push(() => (stream.write = write as typeof stream.write));
    }
  }

  add(what: string, value: unknown): void {
    this.lines.push(`${what} ${inspect(value, { depth: 8 })}`);
  }

  stop(): void {
    for (const restore of this.#restore.splice(0)) restore();
  }

  /** Lines holding any of `secrets`. */
  leaks(...secrets: string[]): string[] {
    return this.lines.filter((line) => secrets.some((s) => line.includes(s)));
  }
}

/**
 * The `kafka` option for the driver under test, TLS with `ca` and SCRAM-SHA-256 with `password`
 * (none: TLS only); kafkajs logs everything (debug) into the capture, @platformatic/kafka has no logger.
 */
function secured(capture: Capture, brokers: string[], ca: Buffer, password: string | undefined, kafkajs: Partial<KafkaConfig> = {}): KafkaClientOption {
  if (KAFKA_DRIVER === 'platformatic') {
    return {
      client: 'platformatic',
      clientId: 'sluice-security-test',
      brokers,
      tls: { ca: [ca] },
      ...(password === undefined ? {} : { sasl: { mechanism: 'SCRAM-SHA-256', username: USER, password } }),
      retries: 1,
      retryDelay: 100,
    } as KafkaClientOption;
  }
  return {
    clientId: 'sluice-security-test',
    brokers,
    logLevel: logLevel.DEBUG,
    logCreator: capture.logCreator,
    ssl: { ca: [ca] },
    ...(password === undefined ? {} : { sasl: sasl(password) }),
    ...kafkajs,
  };
}

const sasl = (password: string) => ({ mechanism: 'scram-sha-256' as const, username: USER, password });

beforeAll(async () => {
  ca = await createCA({ name: 'sluice kafka test CA' });
  rogue = await createCA({ name: 'another CA' });
  server = await ca.issue('localhost', { altNames: ['localhost', '127.0.0.1'] });
  node = await startKafkaNode({ port: PORT, security: 'SASL_SSL', scramUsers: { [USER]: PASSWORD }, tls: server });
  // Counts the clients' connections (bootstrap goes through it; wrong credentials never get past bootstrap).
  proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: PORT });
  topic = unique('sluice-sec');
  const publisher = await kafkaPublisher({ kafka: { clientId: 'sluice-security-setup', brokers: [node.broker], logLevel: logLevel.NOTHING, ssl: { ca: [ca.cert] }, sasl: sasl(PASSWORD) } });
  try {
    await publisher.publish(
      topic,
      Array.from({ length: 20 }, (_, i) => ({ key: `k${i % 4}`, value: JSON.stringify({ i }), headers: { 'message-id': `sec-${i}` } })),
    );
  } finally {
    await publisher.close();
  }
});

afterAll(async () => {
  await proxy?.close();
  await node?.close();
  await ca?.dispose();
  await rogue?.dispose();
});

describe('kafkaConsumer on a SASL_SSL listener (SCRAM-SHA-256 over TLS)', () => {
  it('connects with the credentials and the CA, consumes and commits; no password in anything it says', async () => {
    const capture = new Capture();
    const handled = new Set<string>();
    const c = kafkaConsumer({
      kafka: secured(capture, [node.broker], ca.cert, PASSWORD),
      groupId: unique('sluice-sec-g'),
      topics: [topic],
      fromBeginning: true,
      commitIntervalMs: 100,
      pool: { maxConcurrency: 4, maxQueueSize: 4 },
      handler: async (msg) => void handled.add(msg.id),
    });
    capture.consumer(c);
    capture.stdio();
    try {
      await c.start();
      await until(() => handled.size === 20, '20 messages handled over SASL_SSL', 30_000);
      expect(c.health().status).toBe('ok');
    } finally {
      await c.stop({ timeoutMs: 2000 });
      capture.stop();
    }
    if (KAFKA_DRIVER === 'kafkajs') expect(capture.lines.some((l) => l.includes('SASL') || l.includes('sasl'))).toBe(true); // the capture did see the handshake
    expect(capture.leaks(PASSWORD)).toEqual([]);
  });

  it('wrong credentials: start() rejects naming the consumer and the brokers, after a bounded number of connections, with no password anywhere', async () => {
    const capture = new Capture();
    const before = proxy.accepted;
    const brokers = [`127.0.0.1:${proxy.port}`];
    const c = kafkaConsumer({
      kafka: secured(capture, brokers, ca.cert, WRONG),
      groupId: unique('sluice-sec-g'),
      topics: [topic],
      pool: { maxConcurrency: 1, maxQueueSize: 1 },
      handler: async () => {},
    });
    capture.consumer(c);
    capture.stdio();
    let error: Error | undefined;
    try {
      await c.start().catch((e: Error) => (error = e));
    } finally {
      capture.stop();
    }
    const attempts = proxy.accepted - before;
    capture.add('start() rejected with', error);
    console.log(`wrong credentials: ${attempts} connection(s); ${error?.message}`);
    expect(error).toBeInstanceOf(Error);
    expect(error!.message).toContain(`kafka:${topic}`);
    expect(error!.message).toContain(brokers[0]);
    expect(error!.message).toMatch(/authentication failed|invalid credentials/i); // kafkajs: "…invalid credentials…", platformatic: "(SASL authentication failed.)"
    // recovery.startAttempts (3) attempts: one connection each on kafkajs (it does not retry an
    // authentication failure), retries + 1 (2 here) on @platformatic/kafka (it retries it like any connection error).
    const perAttempt = KAFKA_DRIVER === 'platformatic' ? 2 : 1;
    expect(attempts).toBeGreaterThanOrEqual(1);
    expect(attempts).toBeLessThanOrEqual(3 * perAttempt);
    expect(c.status().state).toBe('stopped');
    expect(capture.leaks(PASSWORD, WRONG)).toEqual([]);
  });

  it('a server certificate that does not verify (signed by another CA) is refused with a certificate error', async () => {
    const capture = new Capture();
    const c = kafkaConsumer({
      kafka: secured(capture, [node.broker], rogue.cert, PASSWORD, { retry: { retries: 1, initialRetryTime: 100 } }),
      groupId: unique('sluice-sec-g'),
      topics: [topic],
      pool: { maxConcurrency: 1, maxQueueSize: 1 },
      handler: async () => {},
    });
    capture.consumer(c);
    const error = await c.start().then(
      () => undefined,
      (e: Error) => e,
    );
    capture.add('start() rejected with', error);
    console.log(`rogue CA: ${error?.message}`);
    expect(error).toBeInstanceOf(Error);
    expect(error!.message).toContain(`kafka:${topic}`);
    expect(error!.message).toMatch(/certificate/i);
    expect(capture.leaks(PASSWORD)).toEqual([]);
  });

  it('a TLS client never falls back to plaintext: to a server that does not speak TLS it sends only TLS handshakes, and start() fails', async () => {
    // A plain TCP server (as a PLAINTEXT listener would be): it records each connection's first
    // bytes and closes it. A TLS ClientHello starts with 0x16 0x03; a Kafka request, with its length.
    const firstBytes: Buffer[] = [];
    const plain = createServer((socket) => {
      socket.once('data', (chunk: Buffer) => {
        firstBytes.push(chunk.subarray(0, 3));
        socket.destroy();
      });
      socket.on('error', () => {});
    });
    plain.listen({ host: '127.0.0.1', port: 0 });
    await once(plain, 'listening');
    const broker = `127.0.0.1:${(plain.address() as AddressInfo).port}`;
    const capture = new Capture();
    const c = kafkaConsumer({
      kafka: secured(capture, [broker], ca.cert, PASSWORD, { connectionTimeout: 1000, retry: { retries: 0 } }),
      groupId: unique('sluice-sec-g'),
      topics: [unique('sluice-sec-none')],
      pool: { maxConcurrency: 1, maxQueueSize: 1 },
      connectTimeoutMs: 3000,
      handler: async () => {},
    });
    capture.consumer(c);
    try {
      const error = await c.start().then(
        () => undefined,
        (e: Error) => e,
      );
      console.log(`TLS against a plain server: ${firstBytes.length} connection(s), first bytes ${firstBytes.map((b) => b.toString('hex')).join(' ')}; ${error?.message}`);
      expect(error).toBeInstanceOf(Error);
      expect(error!.message).toContain(broker);
      expect(firstBytes.length).toBeGreaterThan(0);
      for (const b of firstBytes) expect(b.toString('hex')).toMatch(/^1603/);
      expect(capture.leaks(PASSWORD)).toEqual([]);
    } finally {
      plain.close();
    }
  });
});
