/**
 * `url` as a list of nodes, against the shared RabbitMQ: validated at construction, tried in
 * order at start (a node that refuses costs one refused connect, not a backoff), and every error
 * names each address without its password. Failover between live nodes: test/faults/rabbitmq-cluster.test.ts.
 */
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rabbitConsumer, rabbitPublisher, type RabbitSource } from '../../adapters/rabbitmq/index.js';
import { rabbitFixture, type RabbitFixture } from '../helpers/rabbit.js';
import { until } from '../helpers/wait.js';

let rabbit: RabbitFixture;
/** A loopback port nothing listens on (bound, then closed). */
let refused: string;
beforeAll(async () => {
  rabbit = await rabbitFixture();
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  refused = `amqp://guest:s3cret@127.0.0.1:${port}`;
});
afterAll(async () => {
  await rabbit?.close();
});

const handler = () => {};

describe('rabbitConsumer url: several nodes', () => {
  it('is validated at construction, naming the entry', () => {
    const base = { queue: 'q', pool: { maxConcurrency: 1, maxQueueSize: 1 }, handler };
    expect(() => rabbitConsumer({ ...base, url: [] })).toThrow(/option "url" must list at least one address/);
    expect(() => rabbitConsumer({ ...base, url: ['amqp://a', null as never] })).toThrow(/option "url\[1\]" must be an amqp:\/\/ URL or amqplib's connect object, got null/);
    expect(() => rabbitConsumer({ ...base, url: ['amqp://a', ' '] })).toThrow(/option "url\[1\]" must be a non-empty string/);
    expect(() => rabbitConsumer({ ...base, url: 42 as never })).toThrow(/option "url" must be an amqp:\/\/ URL/);
  });

  it('connects to the first node that answers and consumes there', async () => {
    const queue = rabbit.queue('sluice-urls');
    const ids = await rabbit.fill(queue, 20);
    const seen = new Set<string>();
    const consumer = rabbitConsumer({ url: [refused, rabbit.url], queue, pool: { maxConcurrency: 4, maxQueueSize: 4 }, handler: (m) => void seen.add(m.id) });
    const details: string[] = [];
    consumer.on('connection', (e) => details.push(e.detail ?? ''));
    await consumer.start();
    await until(() => ids.every((id) => seen.has(id)), 'every id handled');
    await consumer.stop();
    const where = new URL(rabbit.url);
    expect((consumer.source as RabbitSource).connectedTo).toBe(`amqp://guest:***@${where.host}`);
    expect(details.join('\n')).not.toContain('s3cret');
  });

  it('start() fails naming every address, passwords removed', async () => {
    const other = refused.replace('127.0.0.1', '127.0.0.2');
    const consumer = rabbitConsumer({ url: [refused, other], queue: 'q', pool: { maxConcurrency: 1, maxQueueSize: 1 }, handler, recovery: { startAttempts: 1 } });
    const errors: string[] = [];
    consumer.on('error', ({ error }) => errors.push(String(error)));
    const failure = await consumer.start().then(() => undefined, (error: Error) => error);
    expect(failure?.message).toContain(refused.replace('s3cret', '***'));
    expect(failure?.message).toContain(other.replace('s3cret', '***'));
    expect(`${failure?.message} ${String(failure?.cause)} ${errors.join(' ')}`).not.toContain('s3cret');
    await consumer.stop();
  });

  it('rabbitPublisher takes the same list', async () => {
    const publisher = await rabbitPublisher({ url: [refused, rabbit.url] });
    await publisher.close();
    await expect(rabbitPublisher({ url: [refused] })).rejects.toThrow(/rabbitPublisher: cannot connect to amqp:\/\/guest:\*\*\*@127\.0\.0\.1/);
  });
});

describe('rabbitConsumer url: a node that accepts and never answers', () => {
  it('costs one connect timeout (10 s by default), then the next node is tried', async () => {
    // Accepts TCP and says nothing: amqplib alone would wait for connection.start for ever.
    const silent = createServer(() => {});
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const queue = rabbit.queue('sluice-urls-silent');
      await rabbit.fill(queue, 1);
      const url = [`amqp://guest:guest@127.0.0.1:${(silent.address() as { port: number }).port}`, rabbit.url];
      const consumer = rabbitConsumer({ url, queue, pool: { maxConcurrency: 1, maxQueueSize: 1 }, handler });
      await consumer.start();
      expect((consumer.source as RabbitSource).connectedTo).toBe(`amqp://guest:***@${new URL(rabbit.url).host}`);
      await consumer.stop();
    } finally {
      silent.close();
    }
  }, 30_000);
});
