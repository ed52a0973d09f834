/**
 * Operations against a real RabbitMQ: a service drained by SIGTERM in a child process, a drain
 * that hits its deadline, the trace context carried across the broker, and no password in any
 * log line of a failed connection.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rabbitConsumer } from '../../adapters/rabbitmq/index.js';
import { jsonLogger, runService, tracingMiddleware } from '../../src/index.js';
import { rabbitFixture, type RabbitFixture } from '../helpers/rabbit.js';
import { expectChildOf, withTracing } from '../helpers/tracing.js';
import { until } from '../helpers/wait.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
let rabbit: RabbitFixture;
beforeAll(async () => {
  rabbit = await rabbitFixture();
});
afterAll(async () => {
  await rabbit?.close();
});

/** Starts the fixture service; collects the ids it acked from its stdout. */
function startService(queue: string, work: string, shutdownMs: number) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/rabbit-service.ts', rabbit.url, queue, work, String(shutdownMs)], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const handled: string[] = [];
  const started: string[] = [];
  let ready = false;
  let stderr = '';
  let buffer = '';
  child.stdout.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    const lines = buffer.split('\n');
    buffer = lines.pop()!;
    for (const line of lines) {
      if (line === 'ready') ready = true;
      else if (line.startsWith('handled ')) handled.push(line.slice(8));
      else if (line.startsWith('started ')) started.push(line.slice(8));
    }
  });
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  return { child, handled, started, exited, isReady: () => ready, stderr: () => stderr };
}

describe('runService on a real RabbitMQ', () => {
  it('SIGTERM mid-burst drains cleanly: exit code 0, and every id is either acked or still in the queue', async () => {
    const queue = rabbit.queue('sluice-svc');
    const ids = await rabbit.fill(queue, 400);
    const svc = startService(queue, '20', 20_000);
    await until(() => svc.handled.length >= 40, 'the service is handling the burst', 60_000);
    svc.child.kill('SIGTERM');
    const [code] = await svc.exited;
    expect(code, svc.stderr()).toBe(0);
    expect(svc.stderr()).toContain('"clean":true');
    const left = (await rabbit.drain(queue)).map((m) => m.properties.messageId as string);
    // Acked by the service or left in the queue: nothing lost, and a clean drain acks nothing twice.
    expect([...svc.handled, ...left].sort()).toEqual([...ids].sort());
    expect(svc.handled.length).toBeLessThan(400);
  }, 120_000);

  it('a handler that never finishes: the deadline is kept, exit code 1, and its messages are given back', async () => {
    const queue = rabbit.queue('sluice-svc-stuck');
    const ids = await rabbit.fill(queue, 20);
    const svc = startService(queue, 'forever', 300);
    // Four handlers (the pool's slots) are stuck for good, four more deliveries wait in the pool's queue.
    await until(() => svc.started.length === 4, 'four handlers running', 60_000);
    svc.child.kill('SIGTERM');
    const [code] = await svc.exited;
    expect(code, svc.stderr()).toBe(1);
    expect(svc.stderr()).toContain('"clean":false');
    expect(svc.handled).toEqual([]);
    // Given back (nacked) or requeued with the closed connection: all 20 are in the queue again.
    const left = (await rabbit.drain(queue)).map((m) => m.properties.messageId as string);
    expect(left.sort()).toEqual([...ids].sort());
  }, 120_000);

  it("carries the producer's trace context through RabbitMQ to the consumer span", async () => {
    await withTracing(async (tracing) => {
      const queue = rabbit.queue('sluice-trace');
      await rabbit.fill(queue, 0);
      // rabbitPublisher injects the active context as `traceparent`.
      const producer = await tracing.produce(`${queue} publish`, () => rabbit.publisher.publishJson(queue, { n: 1 }, { id: 'traced-1' }));
      const consumer = rabbitConsumer({
        url: rabbit.url,
        queue,
        pool: { maxConcurrency: 1, maxQueueSize: 0 },
        middleware: [await tracingMiddleware({ system: 'rabbitmq' })],
        handler: async () => {},
      });
      await consumer.start();
      await until(() => consumer.status().handled === 1, 'handled');
      await consumer.stop();
      const span = tracing.finished().find((s) => s.name === `process ${queue}`);
      expectChildOf(span, producer);
      expect(span!.attributes).toMatchObject({ 'messaging.system': 'rabbitmq', 'messaging.destination.name': queue, 'messaging.message.id': 'traced-1' });
    });
  }, 30_000);

  it('a refused login and an unreachable port: no log line or error carries the password', async () => {
    const lines: string[] = [];
    const password = 'pw-7f3a-never-log-me';
    const wrongLogin = rabbitConsumer({
      url: `amqp://guest:${password}@127.0.0.1:${new URL(rabbit.url).port || 5672}`,
      queue: 'any',
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      recovery: { startAttempts: 2, backoff: { initialMs: 10, maxMs: 10 } },
      handler: async () => {},
    });
    const unreachable = rabbitConsumer({
      url: `amqp://admin:${password}@127.0.0.1:1/prod`,
      queue: 'any',
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      recovery: { startAttempts: 2, backoff: { initialMs: 10, maxMs: 10 } },
      handler: async () => {},
    });
    const failure = await runService({
      consumers: [wrongLogin, unreachable],
      logger: jsonLogger('debug', (l) => lines.push(l)),
      signals: [],
    }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(failure).toBeInstanceOf(Error);
    const text = [failure!.message, String(failure!.cause ?? ''), ...lines].join('\n');
    expect(lines.some((l) => l.includes('ACCESS_REFUSED') || l.includes('403'))).toBe(true);
    expect(lines.some((l) => l.includes('amqp://admin:***@127.0.0.1:1'))).toBe(true);
    expect(text).not.toContain(password);
  }, 30_000);
});
