/**
 * Chaos on JetStream (issue 14, "competing processes, killed at random"): three worker processes
 * pull from one durable while a seeded driver SIGKILLs one every few seconds and starts another.
 * What the victim held unacked comes back after ack_wait, to whoever pulls next; a kill costs at
 * most the victim's credit (its pool's capacity: it never pulls more) in duplicates.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { nanos } from '../../adapters/nats/client.js';
import { backlogPlan } from './chaos/backlog-plan.js';
import { runChaos } from './chaos/driver.js';
import { expectChaosHeld } from './chaos/expectations.js';
import { natsChaos, type NatsChaosOptions } from './chaos/nats.js';

const POOL = { maxConcurrency: 2, maxQueueSize: 4 };
/** Each worker's consumer: it pulls at most its pool's capacity, so that is what a kill may leave unacked. */
const CONSUMER = {
  pool: POOL,
  // A dead worker's unacked messages come back after ack_wait: shorter than the time between kills, so each kill's come back before the next.
  consumerConfig: { ack_wait: nanos(2000) },
  // Short pulls: a stopping worker gives back within one expiry, and a dead one's open pulls end soon.
  pullExpiresMs: 2000,
  stopTimeoutMs: 10_000,
} satisfies NatsChaosOptions;
const CREDIT = POOL.maxConcurrency + POOL.maxQueueSize;

const PLAN = backlogPlan(Number(process.env.CHAOS_SEED ?? 1402));

let broker: Awaited<ReturnType<typeof natsChaos>>;
beforeAll(async () => {
  broker = await natsChaos(CONSUMER);
});
afterAll(async () => {
  await broker?.close();
});

describe('chaos: three natsConsumer processes on one durable, one SIGKILLed every few seconds', () => {
  it('every id handled, duplicates only what a victim held unacked, nothing pending on the durable', async () => {
    const run = await runChaos(broker, PLAN);
    expectChaosHeld(run, { name: `JetStream ${broker.stream}/${broker.durable}`, minKills: 8, bound: () => CREDIT, marksRedeliveries: true });
  });
});
