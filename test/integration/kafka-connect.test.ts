/**
 * An unreachable Kafka: start() gives up after `recovery.startAttempts` attempts of at most
 * `connectTimeoutMs` each, with an error naming the consumer, its brokers and what it tried.
 */
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { CONNECT_TIMEOUT_DEFAULT_MS, kafkaConsumer, type KafkaClientOption } from '../../adapters/kafka/index.js';
import { assertPlatformaticNode } from '../../adapters/kafka/drivers/platformatic.js';
import { RECOVERY_DEFAULTS } from '../../src/adapter/index.js';
import { KAFKA_DRIVER } from '../helpers/kafka.js';

/** The driver under test's config for `brokers`, with its own defaults (kafkajs: retries that outlast connectTimeoutMs; @platformatic/kafka: 3 × 250 ms). */
const config = (brokers: string[], extra: Record<string, unknown> = {}): KafkaClientOption =>
  (KAFKA_DRIVER === 'platformatic' ? { client: 'platformatic', brokers, ...extra } : { brokers, ...extra }) as KafkaClientOption;
/** Retries that outlast connectTimeoutMs, so the attempt's bound is what ends it (kafkajs's defaults already do). */
const patient = KAFKA_DRIVER === 'platformatic' ? { retries: 100, retryDelay: 100 } : {};

/** A local port nothing listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function startError(options: Partial<Parameters<typeof kafkaConsumer>[0]>) {
  const c = kafkaConsumer({
    kafka: config([`127.0.0.1:${await deadPort()}`], patient),
    groupId: 'payments-g',
    topics: ['payments'],
    pool: { maxConcurrency: 1, maxQueueSize: 1 },
    handler: () => {},
    ...options,
  });
  const events: string[] = [];
  c.on('error', ({ during }) => events.push(during));
  const error = await c.start().then(
    () => undefined,
    (e: unknown) => e as Error,
  );
  return { error, events, consumer: c };
}

describe('kafkaConsumer against a port nothing listens on', () => {
  // Documented bound with the defaults: 3 attempts × 2 s + 200 ms + 400 ms of backoff (±20 %); the test's limit only guards against a hang.
  it('defaults: rejects after 3 attempts of connectTimeoutMs each, naming the source, the brokers, the group and what it tried', async () => {
    expect(CONNECT_TIMEOUT_DEFAULT_MS).toBe(2000);
    expect(RECOVERY_DEFAULTS.startAttempts).toBe(3);
    const port = await deadPort();
    const { error, events, consumer } = await startError({ kafka: config([`127.0.0.1:${port}`], patient) });
    const where = `127.0.0.1:${port} (group "payments-g")`;
    expect(error).toBeInstanceOf(Error);
    expect(error!.message).toBe(`kafka:payments: could not connect to ${where} after 3 attempt(s): the group member got no connection within 2000 ms (connectTimeoutMs)`);
    expect(events).toHaveLength(2);
    expect(events[0]).toMatch(new RegExp(`^kafka:payments: connect attempt 1 of 3 to 127\\.0\\.0\\.1:${port} \\(group "payments-g"\\) failed; next in \\d+ ms$`));
    expect(events[1]).toMatch(/^kafka:payments: connect attempt 2 of 3 to .* failed; next in \d+ ms$/);
    expect(consumer.state).toBe('stopped');
  }, 20_000);

  it('connectTimeoutMs and recovery.startAttempts set how soon it gives up', async () => {
    const { error, events } = await startError({ connectTimeoutMs: 300, recovery: { startAttempts: 2, backoff: { initialMs: 10, maxMs: 10, jitter: 0 } } });
    expect(error!.message).toMatch(/^kafka:payments: could not connect to 127\.0\.0\.1:\d+ \(group "payments-g"\) after 2 attempt\(s\): the group member got no connection within 300 ms \(connectTimeoutMs\)$/);
    expect(events).toEqual([expect.stringMatching(/^kafka:payments: connect attempt 1 of 2 to .* failed; next in 10 ms$/)]);
  }, 20_000);

  it("the client giving up first (its own retry) is reported with the client's reason", async () => {
    const { error } = await startError({ kafka: config(['127.0.0.1:1'], KAFKA_DRIVER === 'platformatic' ? { retries: 0 } : { retry: { retries: 0 } }), recovery: { startAttempts: 1 } });
    expect(error!.message).toMatch(/^kafka:payments: could not connect to 127\.0\.0\.1:1 \(group "payments-g"\) after 1 attempt\(s\): the group member could not connect: .*ECONNREFUSED/);
  }, 20_000);

  it("kafka.client 'platformatic' needs Node >= 22.22: checked at construction, naming the running version", () => {
    expect(() => assertPlatformaticNode('kafkaConsumer("g")', '20.20.2')).toThrow(
      `kafkaConsumer("g"): kafka.client 'platformatic' (@platformatic/kafka) needs Node >= 22.22, this is Node v20.20.2; use Node 22.22 or later, or the kafkajs client`,
    );
    expect(() => assertPlatformaticNode('x', '22.21.9')).toThrow(/needs Node >= 22\.22, this is Node v22\.21\.9/);
    for (const ok of ['22.22.0', '22.23.3', '23.0.0', '24.1.0']) expect(() => assertPlatformaticNode('x', ok)).not.toThrow();
    const make = () => kafkaConsumer({ kafka: { client: 'platformatic', brokers: ['127.0.0.1:9092'] }, groupId: 'g', topics: ['t'], pool: { maxConcurrency: 1, maxQueueSize: 1 }, handler: () => {} });
    const [major, minor] = process.versions.node.split('.').map(Number);
    if (major! > 22 || (major === 22 && minor! >= 22)) expect(make).not.toThrow();
    else expect(make).toThrow(`kafkaConsumer("g"): kafka.client 'platformatic' (@platformatic/kafka) needs Node >= 22.22, this is Node ${process.version}`);
    expect(() => kafkaConsumer({ kafka: { client: 'nope', brokers: ['127.0.0.1:9092'] } as never, groupId: 'g', topics: ['t'], pool: { maxConcurrency: 1, maxQueueSize: 1 }, handler: () => {} })).toThrow(
      `kafkaConsumer("g"): option "kafka.client" must be 'kafkajs' or 'platformatic', got "nope"`,
    );
  });

  it('rejects an invalid connectTimeoutMs at construction', () => {
    expect(() => kafkaConsumer({ kafka: { brokers: ['127.0.0.1:9092'] }, groupId: 'g', topics: ['t'], pool: { maxConcurrency: 1, maxQueueSize: 1 }, handler: () => {}, connectTimeoutMs: 0 })).toThrow(
      /option "connectTimeoutMs" must be >= 1, got 0/,
    );
  });
});
