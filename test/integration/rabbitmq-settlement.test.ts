/**
 * Settlement on the real RabbitMQ when carrying out an outcome fails (issue #10): a dead-letter
 * exchange that refuses publishes, a retry republish the work queue refuses, and a connection cut
 * while the pool's queue is deep. Outcomes are asserted on the broker and per message id.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rabbitConsumer } from '../../adapters/rabbitmq/index.js';
import { DEAD_LETTER_HEADERS, PermanentError, WorkerPool, type Message } from '../../src/index.js';
import { rabbitFixture, type RabbitFixture } from '../helpers/rabbit.js';
import { startTcpProxy } from '../helpers/tcp-proxy.js';
import { tick, until } from '../helpers/wait.js';

let rabbit: RabbitFixture;
beforeAll(async () => {
  rabbit = await rabbitFixture();
});
afterAll(async () => {
  await rabbit?.close();
});

/** Fast settlement retries so that the fallbacks are reached quickly; the behaviour is the default one. */
const settlement = { tries: 2, backoff: { initialMs: 5, maxMs: 20 }, deferMs: 10 };

const count = (map: Map<string, number>, id: string) => map.set(id, (map.get(id) ?? 0) + 1);
const ids = (messages: { properties: { messageId?: string } }[]) => messages.map((m) => String(m.properties.messageId)).sort();

function gate() {
  let open!: () => void;
  const opened = new Promise<void>((resolve) => (open = resolve));
  return { opened, open };
}

describe('rabbitConsumer settles on a real RabbitMQ when the broker refuses a settlement', () => {
  it('a dead-letter exchange whose only queue refuses publishes: healthy messages flow, none of the poison is lost, and they reach it once it accepts', async () => {
    const queue = rabbit.queue('sluice-dlx-full');
    const exchange = `${queue}.dlx`;
    const dlq = `${queue}.dlx.q`;
    rabbit.cleanup({ queues: [dlq], exchanges: [exchange] });
    await rabbit.withChannel(async (ch) => {
      await ch.assertExchange(exchange, 'fanout', { durable: false, autoDelete: false });
      // A full dead-letter queue: it takes nothing, and a publisher is told so (basic.nack).
      await ch.assertQueue(dlq, { durable: false, arguments: { 'x-max-length': 0, 'x-overflow': 'reject-publish' } });
      await ch.bindQueue(dlq, exchange, '');
    });
    const all = await rabbit.fill(queue, 20);
    const poison = all.slice(0, 6);
    const healthy = all.slice(6);
    const runs = new Map<string, number>();
    const handled = new Set<string>();
    const deadLetterErrors: string[] = [];
    const otherErrors: string[] = [];
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      pool: { maxConcurrency: 2, maxQueueSize: 2 },
      deadLetter: { exchange },
      settlement,
      handler: async (m: Message) => {
        count(runs, m.id);
        if (poison.includes(m.id)) throw new PermanentError(`poison ${m.id}`);
        handled.add(m.id);
      },
    });
    consumer.on('error', ({ error, during }) => (during === 'dead-letter' ? deadLetterErrors : otherErrors).push(`${during}: ${String(error)}`));
    await consumer.start();

    await until(() => healthy.every((id) => handled.has(id)), 'all 14 healthy messages handled while the DLQ refuses', 30_000);
    await until(() => consumer.status().deferred >= poison.length, 'each poison message set aside at least once', 30_000);
    expect(deadLetterErrors.length).toBeGreaterThan(0);
    expect(deadLetterErrors[0]).toMatch(/nack/i);
    // Every deferral follows `tries` refused publishes; the runtime also reports each deferral itself.
    expect(consumer.status().settlementFailures).toBeGreaterThanOrEqual(poison.length * settlement.tries);
    expect(deadLetterErrors.some((e) => /set aside/.test(e))).toBe(true);
    expect(consumer.status().deadLettered).toBe(0);
    expect(consumer.status().state).toBe('running');
    expect(consumer.health().status).toBe('degraded');

    // Nothing lost: paused and settled, the six are back in the work queue (not in the DLQ, not dropped).
    await consumer.pause();
    await until(() => consumer.status().inFlight === 0 && consumer.status().delayedRetries === 0, 'every delivery settled while paused', 10_000);
    let depth = -1;
    for (const deadline = Date.now() + 10_000; depth !== poison.length && Date.now() < deadline; await tick(10)) {
      depth = (await rabbit.depth(queue)).messageCount;
    }
    expect(depth).toBe(poison.length);
    expect(ids(await rabbit.peek(queue))).toEqual([...poison].sort());
    expect((await rabbit.depth(dlq)).messageCount).toBe(0);
    // The handler ran once per poison message: deferred dead letters are remembered, not re-run.
    for (const id of poison) expect(runs.get(id), id).toBe(1);

    // The DLQ accepts again: the same queue name, without the limit, bound to the exchange.
    await rabbit.withChannel(async (ch) => {
      await ch.deleteQueue(dlq);
      await ch.assertQueue(dlq, { durable: false });
      await ch.bindQueue(dlq, exchange, '');
    });
    await consumer.resume();
    await until(() => consumer.status().deadLettered === poison.length, 'the six dead-lettered once the DLQ accepts', 30_000);
    await consumer.stop();

    const dead = await rabbit.drain(dlq);
    expect(ids(dead)).toEqual([...poison].sort()); // each exactly once
    for (const m of dead) {
      const headers = m.properties.headers!;
      expect(String(headers[DEAD_LETTER_HEADERS.error])).toBe(`poison ${m.properties.messageId}`);
      expect(String(headers[DEAD_LETTER_HEADERS.errorName])).toBe('PermanentError');
      expect(String(headers[DEAD_LETTER_HEADERS.source])).toBe(queue);
      expect(String(headers[DEAD_LETTER_HEADERS.messageId])).toBe(m.properties.messageId);
      expect(String(headers[DEAD_LETTER_HEADERS.attempts])).toBe('1');
    }
    for (const id of poison) expect(runs.get(id), id).toBe(1);
    for (const id of healthy) expect(runs.get(id), id).toBe(1);
    expect((await rabbit.depth(queue)).messageCount).toBe(0);
    expect(otherErrors.filter((e) => !/^(defer|retry|dead-letter)/.test(e))).toEqual([]);
  }, 90_000);

  it('a retry republish the work queue refuses (full, reject-publish): nothing is lost, others are handled, and the message is handled once publishing works again', async () => {
    const queue = rabbit.queue('sluice-retry-full');
    const limit = 4;
    await rabbit.withChannel((ch) => ch.assertQueue(queue, { durable: true, arguments: { 'x-max-length': limit, 'x-overflow': 'reject-publish' } }));
    const publish = (id: string) => rabbit.publisher.publishJson(queue, { id }, { id });
    // The flaky message first, then the queue filled to its limit.
    await publish('flaky');
    for (let i = 0; i < limit - 1; i++) await publish(`h-${i}`);
    await expect(publish('refused')).rejects.toThrow(/nack/i);

    const runs = new Map<string, number>();
    const handled = new Map<string, number>();
    const hold = gate();
    const full = gate();
    const retryErrors: string[] = [];
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      pool: { maxConcurrency: 2, maxQueueSize: 0 },
      retry: { maxAttempts: 5, backoff: { initialMs: 5, maxMs: 10 } },
      settlement,
      handler: async (m: Message, { attempt }) => {
        count(runs, m.id);
        if (m.id === 'flaky') {
          // Its first attempt fails only once the queue is full again, so that its retry finds it full.
          if (attempt === 1) {
            await full.opened;
            throw new Error('flaky: first attempt fails');
          }
        } else await hold.opened; // healthy ones hold their slot until the test lets them go
        count(handled, m.id);
      },
    });
    consumer.on('error', ({ during, error }) => {
      if (during === 'retry') retryErrors.push(String(error));
    });
    await consumer.start();
    // The consumer holds 'flaky' and 'h-0'; the queue is topped up to its limit again.
    await until(() => (runs.get('flaky') ?? 0) >= 1 && (runs.get('h-0') ?? 0) >= 1, 'both slots busy', 10_000);
    for (let i = limit - 1; i < limit + 1; i++) await publish(`h-${i}`);
    expect((await rabbit.depth(queue)).messageCount).toBe(limit);
    full.open();

    // The retry of 'flaky' is refused (full queue), so is setting it aside; it is given back and comes again.
    await until(() => retryErrors.length >= 2 && (runs.get('flaky') ?? 0) >= 2, 'retry republish refused, flaky delivered again', 20_000);
    expect(retryErrors[0]).toMatch(/nack/i);
    expect(consumer.status().settlementFailures).toBeGreaterThanOrEqual(2);
    expect(consumer.status().state).toBe('running');
    expect(handled.has('flaky')).toBe(false);

    // The others go on: as they are handled the queue has room, and the retry is accepted.
    hold.open();
    const everyone = ['flaky', ...Array.from({ length: limit + 1 }, (_, i) => `h-${i}`)];
    await until(() => everyone.every((id) => handled.has(id)), 'every message handled, flaky on a later attempt', 30_000);
    await consumer.stop();
    for (const id of everyone) expect(handled.get(id), id).toBe(1);
    expect(consumer.status().retried).toBeGreaterThanOrEqual(1);
    expect(consumer.status().deadLettered).toBe(0);
    expect((await rabbit.depth(queue)).messageCount).toBe(0);
    expect((await rabbit.depth(`${queue}.dlq`)).messageCount).toBe(0);
  }, 60_000);

  it('a connection cut twice with 4 running and 60 waiting: handlers never start for deliveries of the dead channel', async () => {
    const target = new URL(rabbit.url);
    const proxy = await startTcpProxy({ targetHost: target.hostname, targetPort: Number(target.port || 5672) });
    const queue = rabbit.queue('sluice-cut-deep');
    const all = await rabbit.fill(queue, 200);
    const pool = new WorkerPool({ maxConcurrency: 4, maxQueueSize: 60 });
    const starts = new Map<string, number>();
    const done = new Set<string>();
    // Each phase's handlers wait on its gate, so at a cut exactly 4 are running and none is between its end and its ack.
    const gates = [gate()];
    let current = gates[0]!;
    const consumer = rabbitConsumer({
      url: `amqp://guest:guest@127.0.0.1:${proxy.port}`,
      queue,
      pool, // prefetch: the pool's capacity, 64
      recovery: { backoff: { initialMs: 20, maxMs: 200 } },
      handler: async (m: Message) => {
        count(starts, m.id);
        await current.opened;
        done.add(m.id);
      },
    });
    let disconnected = 0;
    let recovered = 0;
    consumer.on('connection', ({ state }) => {
      if (state === 'disconnected') disconnected++;
      if (state === 'recovered') recovered++;
    });
    try {
      await consumer.start();
      const cuts = 2;
      for (let cut = 1; cut <= cuts; cut++) {
        await until(
          () => recovered === cut - 1 && pool.status().active === 4 && pool.status().pending === 60,
          () => `cut ${cut}: 4 running, 60 waiting (recovered ${recovered}, consumer ${JSON.stringify(consumer.status())})`,
          30_000,
        );
        const held = current;
        current = gate(); // handlers started from now on wait for the next phase
        gates.push(current);
        proxy.cutAll();
        await until(() => disconnected === cut, `cut ${cut} seen`, 10_000);
        // The second cut lets the channel come back first: new deliveries then meet a pool still full of the dead channel's.
        if (cut === 2) await until(() => recovered === cut, `cut ${cut}: recovered while the 4 still run`, 10_000);
        held.open(); // the 4 running end (their ack is moot); the 60 waiting must not start
        await until(() => consumer.status().skippedStale >= 60 * cut, `cut ${cut}: the waiting deliveries skipped`, 10_000);
      }
      current.open();
      await until(() => all.every((id) => done.has(id)), 'every id handled after the cuts', 60_000);
      await consumer.stop();
      const duplicates = [...starts.values()].reduce((sum, n) => sum + n - 1, 0);
      // Only what was running at a cut runs again: at most maxConcurrency per cut, not the pool's 64.
      expect(duplicates).toBeLessThanOrEqual(4 * cuts);
      expect(duplicates).toBeGreaterThan(0);
      expect([...starts.keys()].sort()).toEqual([...all].sort());
      expect(consumer.status().skippedStale).toBeGreaterThanOrEqual(60 * cuts);
      expect((await rabbit.depth(queue)).messageCount).toBe(0);
    } finally {
      for (const g of gates) g.open(); // a failed assertion must not leave handlers waiting forever
      await consumer.stop({ timeoutMs: 1_000 }).catch(() => {});
      await pool.close({ drain: false });
      await proxy.close();
    }
  }, 120_000);
});
