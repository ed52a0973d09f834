/**
 * Security on a private RabbitMQ node (issue 14): TLS with a CA, server and client certificates
 * this test makes (openssl), a user confined to one vhost, wrong credentials, credentials revoked
 * while consuming. A refused start() must say what failed, naming the consumer and the address,
 * try at most `recovery.startAttempts` times (counted in the broker's own log), never fall back to
 * the plain listener, and no password may appear in anything the consumer says.
 */
import { readFile } from 'node:fs/promises';
import { connect } from 'amqplib';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { rabbitConsumer, rabbitPublisher } from '../../adapters/rabbitmq/index.js';
import { PermanentError, type Consumer, type Message } from '../../src/index.js';
import { jsonLogger, logConsumer } from '../../src/ops/index.js';
import { unique } from '../helpers/names.js';
import { startRabbitNode, type RabbitNode } from '../helpers/rabbit-node.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { createCA, type CertificateAuthority, type IssuedCertificate } from '../helpers/tls.js';
import { until } from '../helpers/wait.js';

const PLAIN_PORT = 5740; // the script always opens it: nothing may ever connect to it here
const TLS_PORT = 5741;
const USER = 'sluice-orders-svc';
// Characters a URL must percent-encode, so that a leak of the raw or the encoded form shows.
const PASSWORD = 'Pw#sluice/7f3a@orders!';
const WRONG_PASSWORD = 'Wr0ng#sluice/9c1e@pw';
const REVOKED_PASSWORD = 'R0tated#sluice/2b8d@pw';
const LEAST_PASSWORD = 'L3ast#sluice/5e0c@pw';
const VHOST = 'sec-orders';
const OTHER_VHOST = 'sec-other';
/** Fast backoff: a refused start ends in well under a second, and a storm would show in the count. */
const RECOVERY = { startAttempts: 3, backoff: { initialMs: 50, maxMs: 200 } };

let node: RabbitNode & { dispose(): Promise<void> };
let ca: CertificateAuthority;
let rogueCa: CertificateAuthority;
let client: IssuedCertificate;
let brokerLog: string;

/** Everything the consumers said: events, log lines, thrown errors, console and stdio output. */
const said: string[] = [];
const restoreOutput: (() => void)[] = [];

const amqps = (user: string, password: string, vhost = '', host = '127.0.0.1', port = TLS_PORT) =>
  `amqps://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${host}:${port}${vhost ? `/${encodeURIComponent(vhost)}` : ''}`;
const tls = (options: { ca?: CertificateAuthority; cert?: IssuedCertificate | null } = {}) => {
  const cert = options.cert === undefined ? client : options.cert;
  return { ca: [(options.ca ?? ca).cert], ...(cert ? { cert: cert.cert, key: cert.key } : {}) };
};

beforeAll(async () => {
  ca = await createCA({ name: 'sluice security test CA' });
  rogueCa = await createCA({ name: 'another CA' });
  const server = await ca.issue('localhost', { altNames: ['127.0.0.1', 'localhost'] });
  client = await ca.issue('sluice-consumer', { client: true });
  node = await startRabbitNode({
    name: 'sluicesec',
    port: PLAIN_PORT,
    conf: [
      `listeners.ssl.default = 127.0.0.1:${TLS_PORT}`,
      `ssl_options.cacertfile = ${ca.certPath}`,
      `ssl_options.certfile = ${server.certPath}`,
      `ssl_options.keyfile = ${server.keyPath}`,
      'ssl_options.verify = verify_peer',
      'ssl_options.fail_if_no_peer_cert = true',
    ],
  });
  brokerLog = JSON.parse((await node.ctl('eval', 'rabbit:log_locations().')).trim().replace(/^\[|\]$/g, '').split(',')[0]!) as string;
  await node.ctl('add_vhost', VHOST);
  await node.ctl('add_vhost', OTHER_VHOST);
  await node.ctl('add_user', USER, PASSWORD);
  await node.ctl('set_permissions', '-p', VHOST, USER, '.*', '.*', '.*');
  captureOutput();
}, 120_000);

afterAll(async () => {
  for (const restore of restoreOutput.splice(0)) restore();
  await node?.dispose();
  await ca?.dispose();
  await rogueCa?.dispose();
});

/** Console and stdio of this process, recorded and passed through. */
function captureOutput(): void {
  for (const level of ['log', 'info', 'warn', 'error', 'debug'] as const) {
    const original = console[level].bind(console);
    const spy = vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
      said.push(args.map((a) => (typeof a === 'string' ? a : inspect(a, { depth: 10 }))).join(' '));
      original(...args);
    });
    restoreOutput.push(() => spy.mockRestore());
  }
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write.bind(stream);
    stream.write = ((chunk: unknown, ...rest: never[]) => {
      said.push(String(chunk));
      return write(chunk as string, ...rest);
    }) as typeof stream.write;
    restoreOutput.push(() => (stream.write = write));
  }
}

/** Every event the consumer emits (deeply, causes included) and its log lines go to `said`. */
function watched<T extends Consumer>(consumer: T): T {
  const target = consumer as unknown as { emit(event: string, payload: unknown): void };
  const emit = target.emit.bind(consumer);
  target.emit = (event, payload) => {
    said.push(`${event} ${inspect(payload, { depth: 10 })}`);
    emit(event, payload);
  };
  logConsumer(consumer, jsonLogger('debug', (line) => said.push(line)));
  return consumer;
}

/**
 * Opens a connection and waits for the broker to log it: RabbitMQ writes its log file with a
 * delay (buffered), and once this line is there, every connection accepted before it is too.
 * Returns where its line starts in the log and when it was opened.
 */
async function logBarrier(): Promise<{ text: string; index: number; at: number }> {
  const marker = await connect(amqps('guest', 'guest'), tls());
  const at = Date.now();
  const localPort = (marker.connection as unknown as { stream: { localPort: number } }).stream.localPort;
  const logged = new RegExp(`accepting AMQP connection \\S+ \\(127\\.0\\.0\\.1:${localPort} -> `);
  let text = '';
  let index = -1;
  try {
    await until(() => index >= 0, 'a marker connection in the broker log', 30_000, async () => {
      text = (await readFile(brokerLog)).toString();
      index = text.search(logged);
    });
  } finally {
    await marker.close();
  }
  return { text, index, at };
}

/** Counts the connections the node accepts from now on, per listening port, up to a barrier opened `at`. */
async function logMark(): Promise<{ accepted(port: number): Promise<{ count: number; at: number }> }> {
  const start = await logBarrier();
  const from = start.text.indexOf('\n', start.index) + 1;
  return {
    async accepted(port) {
      const { text, index, at } = await logBarrier();
      const count = [...text.slice(from, index).matchAll(/accepting AMQP connection \S+ \([\d.:]+ -> [\d.]+:(\d+)\)/g)].filter(
        (m) => Number(m[1]) === port,
      ).length;
      return { count, at };
    },
  };
}

/** Publishes `n` JSON messages over amqps as `url`'s user; returns their ids. */
async function fill(url: string, queue: string, n: number): Promise<string[]> {
  const publisher = await rabbitPublisher({ url, socketOptions: tls() });
  try {
    await publisher.channel.assertQueue(queue, { durable: true });
    const ids = Array.from({ length: n }, (_, i) => `${queue}-${i}`);
    await Promise.all(ids.map((id, seq) => publisher.publishJson(queue, { id, seq }, { id })));
    return ids;
  } finally {
    await publisher.close();
  }
}

async function depth(url: string, queue: string): Promise<number> {
  const publisher = await rabbitPublisher({ url, socketOptions: tls() });
  try {
    return (await publisher.channel.checkQueue(queue)).messageCount;
  } finally {
    await publisher.close();
  }
}

interface CountingOptions {
  queue?: string;
  /** Handlers wait while it gives a promise. */
  hold?: () => Promise<void> | undefined;
  /** Throws to fail an attempt (not counted as handled). */
  fail?: (message: Message, attempt: number) => void;
  recovery?: typeof RECOVERY;
}

/** A consumer that counts successful handler calls per id. */
function counting(url: string, socketOptions: Record<string, unknown>, options: CountingOptions = {}) {
  const { queue = unique('sec'), hold = () => undefined, fail = () => {}, recovery = RECOVERY } = options;
  const calls = new Map<string, number>();
  const consumer = watched(
    rabbitConsumer({
      url,
      socketOptions,
      queue,
      declare: { durable: true },
      pool: { maxConcurrency: 4, maxQueueSize: 4 },
      recovery,
      retry: { maxAttempts: 3, backoff: { initialMs: 10, maxMs: 50 } },
      handler: async (m: Message, { attempt }) => {
        await new Promise((r) => setTimeout(r, 2));
        await hold();
        fail(m, attempt);
        calls.set(m.id, (calls.get(m.id) ?? 0) + 1);
      },
    }),
  );
  return { consumer, calls, queue };
}

/** start() must reject; returns its error (recorded in `said`) and the failed attempts reported before the last one. */
async function refusedStart(consumer: Consumer): Promise<{ error: Error; attempts: number }> {
  let attempts = 0;
  consumer.on('error', ({ during }) => {
    if (/connect attempt \d+ of \d+/.test(during)) attempts++;
  });
  const error = await consumer.start().then(
    () => new Error('start() resolved'),
    (e: unknown) => e as Error,
  );
  said.push(inspect(error, { depth: 10 }));
  expect(error.message).not.toBe('start() resolved');
  expect(consumer.state).toBe('stopped');
  expect(consumer.health().ready).toBe(false);
  return { error, attempts };
}

describe('RabbitMQ over TLS', () => {
  it('with the CA and a client certificate, consumes and acks over amqps', async () => {
    const mark = await logMark();
    const url = amqps('guest', 'guest');
    const { consumer, calls, queue } = counting(url, tls());
    const ids = await fill(url, queue, 40);
    const connected: string[] = [];
    consumer.on('connection', ({ state, detail }) => connected.push(`${state} ${detail}`));
    await consumer.start();
    await until(() => ids.every((id) => calls.has(id)), 'every id handled over amqps', 30_000);
    expect(consumer.health().status).toBe('ok');
    await consumer.stop();
    expect([...calls.values()].every((n) => n === 1), 'no fault here: each id handled once').toBe(true);
    expect(await depth(url, queue)).toBe(0);
    expect(connected.join('\n')).toContain(`amqps://guest:***@127.0.0.1:${TLS_PORT}`);
    // The log pattern sees connections (consumer, publishers): its zero on the plain port below means something.
    expect((await mark.accepted(TLS_PORT)).count).toBeGreaterThanOrEqual(2);
  });

  it('a broker certificate signed by another CA is refused at start(), naming the consumer and the address', async () => {
    const { consumer } = counting(amqps('guest', 'guest'), tls({ ca: rogueCa }));
    const { error, attempts } = await refusedStart(consumer);
    expect(error.message).toContain(consumer.name);
    expect(error.message).toContain(`amqps://guest:***@127.0.0.1:${TLS_PORT}`);
    expect(error.message).toMatch(/TLS certificate did not verify \(SELF_SIGNED_CERT_IN_CHAIN\)/);
    // An error event for each failed attempt that another follows: startAttempts in all, then start() gave up.
    expect(attempts).toBe(RECOVERY.startAttempts - 1);
  });

  it('a broker certificate that does not name the host connected to is refused at start()', async () => {
    // 127.0.0.2 reaches the same listener (through a proxy), but the certificate names only 127.0.0.1 and localhost.
    const proxy: TcpProxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: TLS_PORT, listenHost: '127.0.0.2' });
    try {
      const { consumer } = counting(amqps('guest', 'guest', '', '127.0.0.2', proxy.port), tls());
      const { error } = await refusedStart(consumer);
      expect(error.message).toContain(consumer.name);
      expect(error.message).toContain(`amqps://guest:***@127.0.0.2:${proxy.port}`);
      expect(error.message).toMatch(/does not name the host connected to \(ERR_TLS_CERT_ALTNAME_INVALID\)/);
    } finally {
      await proxy.close();
    }
  });

  it('without a client certificate the broker (fail_if_no_peer_cert) ends the handshake: a clear error at start()', async () => {
    const { consumer } = counting(amqps('guest', 'guest'), tls({ cert: null }));
    const { error } = await refusedStart(consumer);
    expect(error.message).toContain(consumer.name);
    expect(error.message).toMatch(/the broker ended the TLS handshake \(\w+\): alert certificate required/);
  });
});

describe('a user confined to one vhost', () => {
  it('consumes in its vhost', async () => {
    const url = amqps(USER, PASSWORD, VHOST);
    const { consumer, calls, queue } = counting(url, tls());
    const ids = await fill(url, queue, 40);
    await consumer.start();
    await until(() => ids.every((id) => calls.has(id)), 'every id handled in the vhost', 30_000);
    await consumer.stop();
    expect([...calls.values()].every((n) => n === 1)).toBe(true);
    expect(await depth(url, queue)).toBe(0);
  });

  it('on another vhost: access refused at start(), at most startAttempts connections', async () => {
    const mark = await logMark();
    const { consumer } = counting(amqps(USER, PASSWORD, OTHER_VHOST), tls());
    const { error } = await refusedStart(consumer);
    expect(error.message).toContain(consumer.name);
    expect(error.message).toContain(`amqps://${USER}:***@127.0.0.1:${TLS_PORT}/${OTHER_VHOST}`);
    expect(error.message).toMatch(new RegExp(`access to vhost "${OTHER_VHOST}" refused for user "${USER}"`));
    await expectBoundedAttempts(mark);
  });

  it('with a wrong password: login refused at start(), at most startAttempts connections', async () => {
    const mark = await logMark();
    const { consumer } = counting(amqps(USER, WRONG_PASSWORD, VHOST), tls());
    const { error } = await refusedStart(consumer);
    expect(error.message).toContain(consumer.name);
    expect(error.message).toMatch(new RegExp(`login refused for user "${USER}"`));
    expect(error.message).toContain('ACCESS_REFUSED');
    await expectBoundedAttempts(mark);
  });

  it("amqplib's connect object with a wrong password: the same clear refusal", async () => {
    const url = { protocol: 'amqps', hostname: '127.0.0.1', port: TLS_PORT, username: USER, password: WRONG_PASSWORD, vhost: VHOST };
    const consumer = watched(rabbitConsumer({ url, socketOptions: tls(), queue: unique('sec'), pool: { maxConcurrency: 1, maxQueueSize: 0 }, recovery: RECOVERY, handler: async () => {} }));
    const { error } = await refusedStart(consumer);
    expect(error.message).toContain(`amqps://127.0.0.1:${TLS_PORT}/${VHOST}`);
    expect(error.message).toMatch(new RegExp(`login refused for user "${USER}"`));
  });

  it('a password pasted into the URL without percent-encoding: refused at construction, the password not shown', () => {
    const url = `amqps://${USER}:${PASSWORD}@127.0.0.1:${TLS_PORT}/${VHOST}`; // its '#' and '/' break the URL
    const construct = () => rabbitConsumer({ url, socketOptions: tls(), queue: unique('sec'), pool: { maxConcurrency: 1, maxQueueSize: 0 }, handler: async () => {} });
    const error = (() => {
      try {
        construct();
      } catch (e) {
        return e as Error;
      }
      throw new Error('constructed');
    })();
    said.push(inspect(error, { depth: 10 }));
    expect(error.message).toContain(`amqps://${USER}:***@127.0.0.1:${TLS_PORT}/${VHOST}`);
    expect(error.message).toMatch(/percent-encode/);
  });

  it('a user with only what sluice needs (configure its queue and .dlq, write amq.default, read its queue) consumes, retries and dead-letters', async () => {
    const user = 'sluice-least-svc';
    const queue = unique('secmin');
    await node.ctl('add_user', user, LEAST_PASSWORD);
    await node.ctl('set_permissions', '-p', VHOST, user, `^${queue}(\\.dlq)?$`, '^amq\\.default$', `^${queue}$`);
    const url = amqps(user, LEAST_PASSWORD, VHOST);
    const ids = await fill(url, queue, 20);
    const [flaky, poison] = [ids[3]!, ids[7]!];
    const { consumer, calls } = counting(url, tls(), {
      queue,
      fail: (m, attempt) => {
        if (m.id === flaky && attempt === 1) throw new Error('flaky once: retried by a republish through amq.default');
        if (m.id === poison) throw new PermanentError('poison: dead-lettered to the .dlq through amq.default');
      },
    });
    let failures = 0;
    consumer.on('error', () => failures++);
    await consumer.start();
    await until(() => consumer.status().deadLettered === 1 && ids.every((id) => id === poison || calls.has(id)), 'all handled, the poison one dead-lettered', 30_000);
    await consumer.stop();
    expect(consumer.status().retried).toBe(1);
    expect(failures, 'no broker action refused').toBe(0);
    expect(await depth(url, queue)).toBe(0);
    expect(await depth(url, `${queue}.dlq`)).toBe(1);
  });

  it("a message stamped with its producer's user-id is retried and dead-lettered by a consumer logged in as another user", async () => {
    // RabbitMQ refuses a publish whose user-id is not the publishing connection's user (406): a copy
    // that kept the producer's would fail for ever, and the message loop back to the queue.
    const queue = unique('secuid');
    const producerUrl = amqps('guest', 'guest', VHOST);
    await node.ctl('set_permissions', '-p', VHOST, 'guest', '.*', '.*', '.*');
    const producer = await rabbitPublisher({ url: producerUrl, socketOptions: tls() });
    const ids = [`${queue}-flaky`, `${queue}-poison`];
    try {
      await producer.channel.assertQueue(queue, { durable: true });
      for (const id of ids) {
        await producer.channel.sendToQueue(queue, Buffer.from(JSON.stringify({ id })), { messageId: id, userId: 'guest', persistent: true });
      }
      await producer.channel.waitForConfirms();
    } finally {
      await producer.close();
    }
    const url = amqps(USER, PASSWORD, VHOST);
    const { consumer, calls } = counting(url, tls(), {
      queue,
      fail: (m, attempt) => {
        if (m.id === ids[0] && attempt === 1) throw new Error('flaky once: retried by a republish as another user');
        if (m.id === ids[1]) throw new PermanentError('poison: dead-lettered by a publish as another user');
      },
    });
    const refused: string[] = [];
    consumer.on('error', ({ during, error }) => refused.push(`${during}: ${String(error)}`));
    await consumer.start();
    await until(() => consumer.status().deadLettered === 1 && calls.has(ids[0]!), 'the flaky one handled, the poison one dead-lettered', 30_000);
    await consumer.stop();
    expect(refused, 'no broker action refused').toEqual([]);
    expect(consumer.status().retried).toBe(1);
    const dead = await connect(url, tls());
    try {
      const ch = await dead.createChannel();
      const got = await ch.get(`${queue}.dlq`, { noAck: true });
      expect(got && got.properties.messageId).toBe(ids[1]);
      expect(got && got.properties.userId, 'the copy is published as the consumer, not the producer').toBeUndefined();
      expect(got && String(got.properties.headers?.['x-sluice-user-id']), 'who produced it is kept').toBe('guest');
    } finally {
      await dead.close();
    }
    expect(await depth(url, queue)).toBe(0);
  });

  it('credentials revoked while consuming: down, reconnecting at the backoff pace, then every id handled once they are back', async () => {
    const url = amqps(USER, PASSWORD, VHOST);
    const connectionName = unique('sec-revoked');
    let held: Promise<void> | undefined;
    // A slower backoff than the start cases': a reconnect storm (no backoff) would make 2× the bound below.
    const recovery = { startAttempts: 3, backoff: { initialMs: 100, maxMs: 400 } };
    const { consumer, calls, queue } = counting(url, { ...tls(), clientProperties: { connection_name: connectionName } }, { hold: () => held, recovery });
    const ids = await fill(url, queue, 300);
    const recovered: number[] = [];
    let failedRecoveries = 0;
    let cutAt = 0;
    consumer.on('connection', ({ state }) => {
      if (state === 'recovered') recovered.push(Date.now());
      if (state === 'disconnected') cutAt ||= Date.now();
    });
    consumer.on('error', ({ during }) => /recovery attempt \d+ failed/.test(during) && failedRecoveries++);
    await consumer.start();
    await until(() => calls.size >= 30, 'some handled before the fault', 30_000);
    let release!: () => void;
    held = new Promise<void>((resolve) => (release = resolve));
    const mark = await logMark();
    try {
      // The password changes and the broker closes the consumer's connection: every reconnect is refused.
      await node.ctl('change_password', USER, REVOKED_PASSWORD);
      // Its consume and publish connections both carry the connection name.
      const pids = (await node.ctl('list_connections', '--no-table-headers', 'pid', 'client_properties'))
        .split('\n')
        .filter((line) => line.includes(connectionName))
        .map((line) => line.split('\t')[0]!);
      expect(pids.length, `the consumer's connections (${connectionName}) are listed`).toBeGreaterThan(0);
      for (const pid of pids) await node.ctl('close_connection', pid, 'credentials rotated');
      held = undefined;
      release();
      await until(() => failedRecoveries >= 4, 'reconnects refused', 30_000);
      expect(consumer.health().ready).toBe(false);
      expect(consumer.health().details.reasons).toContain('broker connection lost');
      const { count: attempts, at } = await mark.accepted(TLS_PORT);
      const elapsed = at - cutAt;
      // Backoff 100 ms ×2 up to 400 ms, jitter 0.2: the gaps are at least 80, 160, 320, 320… ms.
      expect(attempts, `${attempts} reconnects in ${elapsed} ms`).toBeGreaterThanOrEqual(4);
      expect(attempts, `${attempts} reconnects in ${elapsed} ms`).toBeLessThanOrEqual(3 + Math.ceil(elapsed / 320));
      expect(calls.size, 'the fault came before the last message was handled').toBeLessThan(ids.length);
    } finally {
      held = undefined;
      release();
      await node.ctl('change_password', USER, PASSWORD);
    }
    await until(() => recovered.length > 0, 'reconnected once the password is back', 30_000);
    await until(() => ids.every((id) => calls.has(id)), 'every id handled after the fault', 60_000);
    expect(consumer.health().status).toBe('ok');
    await consumer.stop();
    // Only what was delivered and unacked when the connection closed comes again: at most the prefetch (pool capacity 8).
    const duplicates = [...calls.values()].reduce((sum, n) => sum + n - 1, 0);
    expect(duplicates).toBeLessThanOrEqual(8);
    expect(await depth(url, queue)).toBe(0);
  });
});

/**
 * The broker saw exactly `startAttempts` connections for the refused start, and none in a window
 * where the test's backoff (≤ 200 ms) would have made several more: start() gave up for good.
 */
async function expectBoundedAttempts(mark: Awaited<ReturnType<typeof logMark>>): Promise<void> {
  await new Promise((r) => setTimeout(r, 4 * RECOVERY.backoff.maxMs));
  expect((await mark.accepted(TLS_PORT)).count).toBe(RECOVERY.startAttempts);
}

describe('secrets', () => {
  it('no password in any event, log line, error or console output of the consumers above', () => {
    const text = said.join('\n');
    // The captures did see the addresses (user names, redacted passwords) and the errors' causes
    // (amqplib's own text is only in the cause now): the greps below look at the right text.
    expect(text).toContain(`${USER}:***@`);
    expect(text).toContain('Expected ConnectionOpenOk');
    for (const secret of [PASSWORD, WRONG_PASSWORD, REVOKED_PASSWORD, LEAST_PASSWORD]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(encodeURIComponent(secret));
    }
  });

  it("nor in the broker's own log", async () => {
    const log = (await readFile(brokerLog)).toString();
    expect(log).toContain(`user '${USER}'`);
    for (const secret of [PASSWORD, WRONG_PASSWORD, LEAST_PASSWORD]) expect(log).not.toContain(secret);
  });

  it('nothing ever connected to the plain listener: no fallback from amqps', async () => {
    const log = (await readFile(brokerLog)).toString();
    expect(log).toMatch(new RegExp(`accepting AMQP connection \\S+ \\([\\d.:]+ -> 127\\.0\\.0\\.1:${TLS_PORT}\\)`));
    expect(log).not.toMatch(new RegExp(`-> 127\\.0\\.0\\.1:${PLAIN_PORT}\\)`));
  });
});
