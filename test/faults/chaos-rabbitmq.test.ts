/**
 * Chaos on RabbitMQ (issue 14, "competing processes, killed at random"): three worker processes
 * share one queue while a seeded driver SIGKILLs one every few seconds and starts another. The
 * broker requeues a dead connection's unacked deliveries at once, so a kill costs at most the
 * victim's prefetch in duplicates (handled, ack not yet sent) and nothing else.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { backlogPlan } from './chaos/backlog-plan.js';
import { runChaos } from './chaos/driver.js';
import { expectChaosHeld } from './chaos/expectations.js';
import { rabbitChaos, type RabbitChaosOptions } from './chaos/rabbitmq.js';

/** Each worker's consumer: the prefetch is what it can hold unacked, hence what a kill may duplicate. */
const CONSUMER = {
  pool: { maxConcurrency: 2, maxQueueSize: 4 },
  prefetch: 6,
  stopTimeoutMs: 10_000,
} satisfies RabbitChaosOptions;

const PLAN = backlogPlan(Number(process.env.CHAOS_SEED ?? 1401));

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
