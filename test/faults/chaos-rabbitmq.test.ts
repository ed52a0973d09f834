/**
 * Chaos on RabbitMQ (issue 14, "competing processes, killed at random"): three worker processes
 * share one queue while a seeded driver SIGKILLs one every few seconds and starts another. The
 * broker requeues a dead connection's unacked deliveries at once, so a kill costs at most the
 * victim's prefetch in duplicates (handled, ack not yet sent) and nothing else.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { runChaos, type ChaosPlan } from './chaos/driver.js';
import { expectChaosHeld } from './chaos/expectations.js';
import { rabbitChaos, type RabbitChaosOptions } from './chaos/rabbitmq.js';

/** Each worker's consumer: the prefetch is what it can hold unacked, hence what a kill may duplicate. */
const CONSUMER = {
  pool: { maxConcurrency: 2, maxQueueSize: 4 },
  prefetch: 6,
  stopTimeoutMs: 10_000,
} satisfies RabbitChaosOptions;

const PLAN: ChaosPlan = {
  ids: 6000,
  publishMs: 55_000,
  roundMs: 100,
  // Handlers of 40 ms, 2 at a time: 50 ids/s per worker, so the producer (up to 109/s) keeps a
  // backlog and every worker holds its full credit: each kill hits messages in flight.
  workMs: 40,
  maxBacklog: 60,
  workers: 3,
  killEveryMs: [2500, 5000],
  killsUntil: 0.85,
  // With the backlog every worker is busy: the victim only has to be mid-stream.
  busy: { records: 1, withinMs: 100 },
  seed: Number(process.env.CHAOS_SEED ?? 1401),
  settleLimitMs: 30_000,
};

let broker: Awaited<ReturnType<typeof rabbitChaos>>;
beforeAll(async () => {
  broker = await rabbitChaos(CONSUMER);
});
afterAll(async () => {
  await broker?.close();
});

describe('chaos: three rabbitConsumer processes on one queue, one SIGKILLed every few seconds', () => {
  it('every id handled, duplicates only what a victim held unacked, nothing left in the queue', async () => {
    const run = await runChaos(broker, PLAN);
    expectChaosHeld(run, { name: `RabbitMQ ${broker.queue}`, minKills: 8, bound: () => CONSUMER.prefetch, marksRedeliveries: true });
  });
});
