/**
 * CircuitBreaker on a real RabbitMQ: while it is open the queue has no consumer (basic.cancel) and
 * its messages stay ready; a failed probe opens it again; after a good probe consumption resumes,
 * every message is handled and nothing is dead-lettered. The breaker is moved to half-open by hand
 * (`halfOpen()`), so no step depends on how long anything takes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rabbitConsumer } from '../../adapters/rabbitmq/index.js';
import { CircuitBreaker, WorkerPool } from '../../src/index.js';
import { rabbitFixture, type RabbitFixture } from '../helpers/rabbit.js';
import { tick, until } from '../helpers/wait.js';

let rabbit: RabbitFixture;
beforeAll(async () => {
  rabbit = await rabbitFixture();
});
afterAll(async () => {
  await rabbit?.close();
});

/** Polls an asynchronous condition (a broker round trip) until it holds; `limitMs` is a hang guard only. */
async function eventually(condition: () => Promise<boolean>, what: string, limitMs = 20_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await tick(10);
  }
}

describe('CircuitBreaker on a real RabbitMQ', () => {
  it('open: consumer count 0 and messages ready; a failed probe reopens; a good probe resumes consumption; nothing dead-lettered', async () => {
    const queue = rabbit.queue('sluice-breaker');
    const total = 60;
    const ids = await rabbit.fill(queue, total);
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 2 });
    // openMs far beyond the test: only halfOpen() moves it on.
    const breaker = new CircuitBreaker({ failureRate: 1, minCalls: 3, windowMs: 60_000, openMs: 600_000, halfOpenProbes: 1 });
    let downstreamUp = false;
    let runsWhileNotClosed = 0;
    let inFlightAtOpenings = 0;
    const handled = new Set<string>();
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      pool,
      retry: { maxAttempts: 3, backoff: { initialMs: 10, maxMs: 20 } },
      flow: { gates: [breaker] },
      handler: async (m) => {
        if (breaker.state !== 'closed') runsWhileNotClosed++;
        await tick(2);
        if (!downstreamUp) throw new Error('503 from the downstream');
        handled.add(m.id);
      },
    });
    breaker.on('open', () => (inFlightAtOpenings += consumer.status().inFlight));
    const pauses: string[] = [];
    consumer.on('paused', (e) => pauses.push(`paused:${e.reason}:${breaker.state}`));
    consumer.on('resumed', (e) => pauses.push(`resumed:${e.reason}:${breaker.state}`));

    await consumer.start();
    // The outage: three failures open it, the consumer pauses at the broker.
    await until(() => breaker.state === 'open', 'the breaker opens');
    await until(() => consumer.status().pausedBy.includes('circuit-breaker'), 'paused under the breaker’s name');
    await eventually(async () => (await rabbit.depth(queue)).consumerCount === 0, 'no consumer on the queue (basic.cancel)');
    // What was in flight when it opened fails, is excused and goes back: every message is ready, none consumed.
    await until(() => consumer.status().inFlight === 0, 'in-flight messages given back');
    await eventually(async () => (await rabbit.depth(queue)).messageCount === total, 'every message ready in the queue');
    expect(await rabbit.depth(queue)).toEqual(expect.objectContaining({ messageCount: total, consumerCount: 0 }));
    expect(handled.size).toBe(0);

    // A probe while the downstream is still down: it fails, the breaker opens again, the consumer pauses again.
    expect(breaker.halfOpen()).toBe(true);
    await until(() => breaker.status().opened === 2, 'the failed probe reopens it');
    await until(() => consumer.status().inFlight === 0 && consumer.status().pausedBy.includes('circuit-breaker'), 'paused again');
    await eventually(async () => {
      const d = await rabbit.depth(queue);
      return d.consumerCount === 0 && d.messageCount === total;
    }, 'no consumer and every message ready again');

    // The downstream is back: one good probe closes it and consumption resumes.
    downstreamUp = true;
    expect(breaker.halfOpen()).toBe(true);
    await until(() => handled.size === total, 'every message handled after the good probe', 30_000);
    await consumer.stop();

    expect(breaker.state).toBe('closed');
    expect([...handled].sort()).toEqual([...ids].sort());
    expect(consumer.status().deadLettered).toBe(0);
    expect((await rabbit.depth(`${queue}.dlq`)).messageCount).toBe(0);
    expect((await rabbit.depth(queue)).messageCount).toBe(0);
    // Handler runs while not closed: the two probes and what was in flight when it opened.
    expect(runsWhileNotClosed).toBeLessThanOrEqual(2 + inFlightAtOpenings);
    // Only the failures before the one that opened it counted an attempt (retried).
    expect(consumer.status().retried).toBeLessThanOrEqual(breaker.minCalls - 1);
    expect(pauses).toContain('paused:circuit-breaker:open');
    expect(pauses.filter((p) => p.startsWith('resumed:circuit-breaker')).at(-1)).toMatch(/:(half-open|closed)$/);
    expect(consumer.status().pausedBy).toEqual([]);
    await pool.close();
  }, 60_000);
});
