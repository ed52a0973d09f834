/**
 * `npm run bench -- batch`: batch handlers against single-message handlers (issue 12), one
 * markdown section "Batch handlers".
 *
 * On each broker, contenders drain the same N pre-filled messages through the same pool
 * (maxConcurrency 8) into the same simulated bulk downstream (./downstream.ts: 2 ms per call +
 * 0.02 ms per row, at most 8 calls at once): a `handler` making one call per message, and a
 * `batchHandler` with `batch: { size: 100 }` making one call per batch; beside them a no-op
 * handler on the same consumer and pool (no downstream), the ceiling of this broker here.
 * Rounds rotate which contender goes first; ratios are medians of the per-round ratios (the
 * machine is shared: absolute rates move, ratios travel). Target: batch ≥ 10× single.
 *
 *   node --expose-gc --import tsx bench/run.ts batch                 # via the runner (prints the section)
 *   node --expose-gc --import tsx bench/batch/index.ts kafka nats    # some brokers only
 *   BATCH_ROUNDS=3 BATCH_N=20000 node --expose-gc --import tsx bench/batch/index.ts memory
 */
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { fmt } from '../harness.js';
import { BROKERS, openBroker, type BrokerName } from './brokers.js';
import { drain, type ContenderKind, type DrainConfig, type DrainResult } from './drain.js';
import { section, type BrokerOutcome, type BrokerRows } from './report.js';

/** Messages per run: a second or a few of the batch contender at its broker's pace here (the single one is timer-bound at ≈ 3,300 msgs/s). */
const DEFAULT_N: Record<BrokerName, number> = { memory: 150_000, rabbitmq: 50_000, kafka: 200_000, nats: 50_000 };
const ROUNDS = Number(process.env.BATCH_ROUNDS ?? 5);
const KAFKA_KEYS = Number(process.env.BATCH_KAFKA_KEYS ?? 10_000);
const KINDS: readonly ContenderKind[] = ['single', 'batch', 'no-op'];
/** Calls at once, in the pool and in the downstream (BATCH_CONCURRENCY; default 8). */
const CONCURRENCY = Number(process.env.BATCH_CONCURRENCY ?? 8);

export function drainConfig(n: number): DrainConfig {
  return {
    n,
    maxConcurrency: CONCURRENCY,
    // Room for as many batches gathering or waiting for a slot as run, twice over, so a slot that
    // frees finds a full batch. (The broker's credit defaults to this capacity, plus
    // maxConcurrency × 99 for a batch handler: a running batch's messages stay unacked in one
    // slot.) The other contenders get the same pool.
    maxQueueSize: 200 * CONCURRENCY,
    batchSize: 100,
    // The drain's last partial batch waits this long; with a backlog every other batch is full.
    batchTimeoutMs: 50,
    callMs: 2,
    rowMs: 0.02,
    stallLimitMs: 60_000,
  };
}

async function measureBroker(name: BrokerName): Promise<BrokerRows> {
  const n = Number(process.env.BATCH_N ?? DEFAULT_N[name]);
  const config = drainConfig(n);
  const broker = await openBroker(name, { n, kafkaKeys: KAFKA_KEYS });
  const rounds: BrokerRows['rounds'][number][] = [];
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const order = KINDS.map((_, i) => KINDS[(i + round) % KINDS.length]!);
      const got: Partial<Record<ContenderKind, DrainResult>> = {};
      const load = os.loadavg()[0]!;
      for (const kind of order) {
        const result = await drain(broker, kind, config);
        got[kind] = result;
        console.error(`bench: batch: ${broker.name} round ${round + 1} ${kind}: ${fmt(result.messagesPerSecond)} msgs/s in ${result.seconds.toFixed(1)} s (load ${os.loadavg()[0]!.toFixed(1)})`);
      }
      rounds.push({ single: got.single!, batch: got.batch!, noop: got['no-op']!, load });
    }
  } finally {
    await broker.close();
  }
  return { name: broker.name, setup: broker.setup, n, rounds };
}

export async function run(only: readonly string[] = []): Promise<string> {
  const results: BrokerOutcome[] = [];
  for (const name of BROKERS) {
    if (only.length > 0 && !only.includes(name)) continue;
    console.error(`bench: batch: ${name}…`);
    try {
      results.push(await measureBroker(name));
    } catch (error) {
      // A broker that is not running says so in its row; the others still run.
      results.push({ name, error: error instanceof Error ? error.message : String(error) });
    }
  }
  return section(drainConfig(0), ROUNDS, results);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(await run(process.argv.slice(2)));
  process.exit(0);
}
