/**
 * Fair share of one pool (issue 11): a flooded and a trickling queue, two consumers on the memory
 * broker sharing one WorkerPool (8 running + 16 waiting), each message a call to the simulated
 * downstream (capacity 8, 10 ms ± 10 %). The flood has a backlog of thousands; the trickle gets
 * one message every 20 ms. The trickle's latency (publish → handled) with no shares, with equal
 * shares, and with the trickle weighted 4 : 1; and what the flood got meanwhile.
 *
 * `FLOW_SCALE` (default 1) multiplies the trickle's duration.
 */
import { MemoryBroker, memoryConsumer } from '../../adapters/memory/index.js';
import { WorkerPool } from '../../src/index.js';
import type { ShareOptions } from '../../src/consumer-options.js';
import { Downstream } from './downstream.js';
import { table } from '../harness.js';

interface Config {
  name: string;
  flood: ShareOptions | undefined;
  trickle: ShareOptions | undefined;
}

interface Outcome {
  name: string;
  latencies: number[];
  floodRate: number;
  displaced: number;
  trickleOverloaded: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function scenario(config: Config, trickleCount: number): Promise<Outcome> {
  const broker = new MemoryBroker();
  const pool = new WorkerPool({ name: config.name, maxConcurrency: 8, maxQueueSize: 16 });
  const downstream = new Downstream({ capacity: 8, latencyMs: 10, jitter: 0.1 }).start();
  for (let i = 0; i < 20_000; i++) broker.publishJson('flood', { i }, { id: `f-${i}` });
  const latencies: number[] = [];
  let floodDone = 0;
  const flood = memoryConsumer({
    broker,
    queue: 'flood',
    pool,
    share: config.flood,
    handler: async () => {
      await downstream.call();
      floodDone++;
    },
  });
  const trickle = memoryConsumer({
    broker,
    queue: 'trickle',
    pool,
    share: config.trickle,
    handler: async (msg) => {
      await downstream.call();
      latencies.push(performance.now() - msg.json<{ t: number }>().t);
    },
  });
  await flood.start();
  await trickle.start();
  await sleep(200); // the flood fills the pool first
  const floodBefore = floodDone;
  const started = performance.now();
  for (let i = 0; i < trickleCount; i++) {
    broker.publishJson('trickle', { t: performance.now() }, { id: `t-${i}` });
    await sleep(20);
  }
  const deadline = performance.now() + 10_000;
  while (latencies.length < trickleCount && performance.now() < deadline) await sleep(10);
  const floodRate = (floodDone - floodBefore) / ((performance.now() - started) / 1000);
  const result: Outcome = {
    name: config.name,
    latencies,
    floodRate,
    displaced: pool.status().displaced,
    trickleOverloaded: trickle.status().overloaded,
  };
  await Promise.all([flood.stop({ timeoutMs: 2_000 }), trickle.stop({ timeoutMs: 2_000 })]);
  await pool.close({ drain: false, timeoutMs: 1_000 });
  downstream.stop();
  return result;
}

function quantile(xs: number[], q: number): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

export async function fairShare(scale = Number(process.env.FLOW_SCALE ?? 1)): Promise<string> {
  if (!(scale > 0)) throw new RangeError(`FLOW_SCALE must be > 0, got ${process.env.FLOW_SCALE}`);
  const trickleCount = Math.max(20, Math.round(200 * scale));
  const configs: Config[] = [
    { name: 'no shares (one FIFO)', flood: undefined, trickle: undefined },
    { name: 'shares 1 : 1', flood: { weight: 1 }, trickle: { weight: 1 } },
    { name: 'shares flood 1 : trickle 4', flood: { weight: 1 }, trickle: { weight: 4 } },
  ];
  const outcomes: Outcome[] = [];
  for (const c of configs) outcomes.push(await scenario(c, trickleCount));
  const fmt = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : '—');
  return [
    `Two consumers on the memory broker share one pool of 8 running + 16 waiting; each message is a call to a downstream serving 8 at once in 10 ms ± 10 % (so the pool's 8 slots are the bottleneck, 800 calls/s). ` +
      `The flood has 20,000 messages waiting; the trickle gets one every 20 ms (${trickleCount} in all). Trickle latency = publish → handled.`,
    '',
    table(
      ['pool', 'trickle handled', 'trickle p50 ms', 'trickle p99 ms', 'trickle max ms', 'trickle refused (overloaded)', 'flood handled /s meanwhile', 'flood places displaced'],
      outcomes.map((o) => {
        // A percentile over the few that got through would flatter a starved trickle: the rest waited forever.
        const all = o.latencies.length === trickleCount;
        const q = (x: number) => (all ? fmt(x) : 'starved');
        return [
          o.name,
          `${o.latencies.length} / ${trickleCount}${all ? '' : ' (within 10 s of the last publish)'}`,
          q(quantile(o.latencies, 0.5)),
          q(quantile(o.latencies, 0.99)),
          q(Math.max(...o.latencies)),
          o.trickleOverloaded,
          fmt(o.floodRate, 0),
          o.displaced,
        ];
      }),
    ),
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await fairShare());
