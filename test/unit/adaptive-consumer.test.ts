/** An adaptive pool fed by a consumer: it hears the downstream's failures, not the messages' own (real timers). */
import { describe, expect, it } from 'vitest';
import { MemoryBroker, memoryConsumer } from '../../adapters/memory/index.js';
import { PermanentError, WorkerPool } from '../../src/index.js';
import { until } from '../helpers/wait.js';

async function afterFailures(error: () => Error): Promise<{ limit: number; failed: number }> {
  const broker = new MemoryBroker();
  const pool = new WorkerPool({ maxConcurrency: 32, maxQueueSize: 32, adaptive: { min: 2 } });
  const n = 3000;
  for (let i = 0; i < n; i++) broker.publishJson('q', { i });
  const consumer = memoryConsumer({
    broker,
    queue: 'q',
    pool,
    retry: { maxAttempts: 1 },
    handler: async () => {
      await new Promise((r) => setTimeout(r, 5));
      throw error();
    },
  });
  await consumer.start();
  await until(() => consumer.status().deadLettered === n, 'all failed and dead-lettered', 60_000);
  const { limit, failed } = pool.status();
  await consumer.stop();
  await pool.close();
  return { limit, failed };
}

describe('an adaptive pool fed by a consumer', () => {
  it('shrinks on handler failures of the downstream, and not on poison messages', async () => {
    const downstream = await afterFailures(() => new Error('503 from the downstream'));
    expect(downstream.failed).toBe(3000);
    expect(downstream.limit).toBeLessThan(32);
    // Poison messages are the message's fault: the pool hears successes (its limit moves on latency only).
    const poison = await afterFailures(() => new PermanentError('poison'));
    expect(poison.failed).toBe(0);
  }, 120_000);
});
