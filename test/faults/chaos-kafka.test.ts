/**
 * Chaos on Kafka (issue 14, "competing processes, killed at random"): three worker processes in
 * one consumer group while a seeded driver SIGKILLs one every few seconds and starts another. The
 * victim's partitions stand still until its session times out and the group rebalances; then they
 * go on from the last committed offset, so a kill duplicates what the victim handled and had not
 * committed yet (it commits its done prefix every commitIntervalMs), and each rebalance what a
 * survivor's pool held when it was told (it commits then); nothing else.
 */
import { afterAll, beforeAll, describe, it } from 'vitest';
import { runChaos, type ChaosPlan } from './chaos/driver.js';
import { expectChaosHeld } from './chaos/expectations.js';
import { kafkaChaos, takeoverMs, uncommitted, uncommittedAtKill, type KafkaChaosOptions } from './chaos/kafka.js';

const PARTITIONS = 6;
const POOL = { maxConcurrency: 2, maxQueueSize: 4 };
/** Each worker's consumer: a kill costs sessionTimeout of standstill and what was done since the last commit. */
const CONSUMER = {
  fromBeginning: true,
  pool: POOL,
  // A killed member's partitions move only once its session times out: keep that short.
  sessionTimeout: 6000,
  heartbeatInterval: 1000,
  rebalanceTimeout: 10_000,
  commitIntervalMs: 200,
  maxWaitTimeInMs: 100,
  stopTimeoutMs: 10_000,
} satisfies KafkaChaosOptions;

const PLAN: ChaosPlan = {
  ids: 3000,
  publishMs: 50_000,
  // Bursts every 2 s: each kill rebalances the whole group (it waits out the victim's session), so
  // no steady backlog can be kept without the run taking minutes; a burst keeps every worker at
  // full speed for a moment, with batches taken and not yet handled, and the kills come then.
  roundMs: 2000,
  workMs: 20,
  maxBacklog: Infinity,
  workers: 3,
  killEveryMs: [6000, 9000],
  killsUntil: 0.85,
  // At full speed (2 handlers of 20 ms: 25 per 250 ms), not trickling along.
  busy: { records: 12, withinMs: 250 },
  seed: Number(process.env.CHAOS_SEED ?? 1403),
  settleLimitMs: 45_000,
};

let broker: Awaited<ReturnType<typeof kafkaChaos>>;
beforeAll(async () => {
  broker = await kafkaChaos(CONSUMER, PARTITIONS);
});
afterAll(async () => {
  await broker?.close();
});

describe('chaos: three kafkaConsumer processes in one group, one SIGKILLed every few seconds', () => {
  it('every id handled, duplicates only what a victim had not committed, committed offsets at the end of every partition', async () => {
    const run = await runChaos(broker, PLAN);
    expectChaosHeld(run, {
      name: `Kafka ${broker.topic} (group ${broker.groupId})`,
      minKills: 4,
      // Each id handled again after a kill was at or past the committed offset (read right after the kill).
      lostAtKill: uncommitted,
      bound: (kill) => uncommittedAtKill(run, kill),
      // A survivor commits its done prefix when told of a rebalance; what its pool still held then
      // may finish before the partition moves and is handled again by the next owner.
      rebalanceBound: POOL.maxConcurrency + POOL.maxQueueSize,
      marksRedeliveries: false,
      describe: (kill) => `; uncommitted ${uncommittedAtKill(run, kill)}, partitions still for ${takeoverMs(run, kill)} ms`,
    });
  });
});
