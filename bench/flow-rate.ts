/**
 * Rate-limit accuracy: messages admitted against what the limit allows (perSecond × t + burst),
 * with a backlog far larger than the limit lets through, for
 *   - the local RateLimiter in one process (two consumers sharing it, memory broker);
 *   - the Redis limiter in one process (a forked worker);
 *   - the Redis limiter in three processes sharing one key (three forked workers).
 * Workers are test/fixtures/redis-rate-worker.ts: a memory broker, a pool with no queue, the
 * epoch-ms time of every admission (taken at the limiter's check) sent back over IPC.
 *
 *   node --import tsx bench/flow-rate.ts
 *   FLOW_RATE=500 FLOW_BURST=50 FLOW_SECONDS=10 REDIS_URL=redis://127.0.0.1:6379 node --import tsx bench/flow-rate.ts
 *
 * Reported per scenario: admitted / allowed over the run, the fewest and most in any 1 s window
 * (allowed: perSecond + burst at most; at least 95 % of perSecond is the target), the
 * admissions of each whole second, and Redis calls per second. Keys are deleted afterwards.
 */
import { fork } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { MemoryBroker, memoryConsumer } from '../adapters/memory/index.js';
import { RateLimiter, WorkerPool } from '../src/index.js';
import type { WorkerConfig, WorkerMessage } from '../test/fixtures/redis-rate-worker.js';
import { fmt, table } from './harness.js';
import { crossProcessNow as now } from '../test/helpers/clock.js';

const RATE = Number(process.env.FLOW_RATE ?? 200);
const BURST = Number(process.env.FLOW_BURST ?? Math.max(2, Math.ceil(RATE / 10)));
const SECONDS = Number(process.env.FLOW_SECONDS ?? 5);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const WORKER = fileURLToPath(new URL('../test/fixtures/redis-rate-worker.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../', import.meta.url));
const PREFIX = `sluice-bench:${process.pid}:${Date.now()}:`;
const BACKLOG = Math.ceil(RATE * SECONDS * 2 + BURST + 1000);

interface Run {
  /** Admission times, ms since the run began, sorted. */
  admits: number[];
  durationMs: number;
  redisCalls?: number;
}

async function local(): Promise<Run> {
  const broker = new MemoryBroker();
  for (let i = 0; i < BACKLOG / 2; i++) {
    broker.publishJson('a', { i });
    broker.publishJson('b', { i });
  }
  const limiter = new RateLimiter({ perSecond: RATE, burst: BURST });
  const pool = new WorkerPool({ maxConcurrency: 16, maxQueueSize: 0 });
  const admits: number[] = [];
  const consumers = ['a', 'b'].map((queue) =>
    memoryConsumer({ broker, queue, pool, prefetch: 16, flow: { gates: [limiter] }, handler: async () => void admits.push(now()) }),
  );
  const go = now();
  await Promise.all(consumers.map((c) => c.start()));
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const end = now();
  await Promise.all(consumers.map((c) => c.stop()));
  await pool.close();
  return { admits: admits.filter((t) => t <= end).map((t) => t - go), durationMs: end - go };
}

async function redisProcesses(n: number): Promise<Run> {
  const config: WorkerConfig = { limiter: { redis: REDIS_URL, key: `p${n}`, keyPrefix: PREFIX, perSecond: RATE, burst: BURST }, backlog: BACKLOG };
  const workers = await Promise.all(
    Array.from({ length: n }, () => {
      const child = fork(WORKER, [JSON.stringify(config)], { cwd: ROOT, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      return new Promise<{ child: typeof child; result: Promise<Extract<WorkerMessage, { type: 'result' }>> }>((resolve, reject) => {
        let gotResult!: (r: Extract<WorkerMessage, { type: 'result' }>) => void;
        const result = new Promise<Extract<WorkerMessage, { type: 'result' }>>((r) => (gotResult = r));
        child.on('message', (m: WorkerMessage) => {
          if (m.type === 'ready') resolve({ child, result });
          if (m.type === 'result') gotResult(m);
        });
        child.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
      });
    }),
  );
  const go = now();
  for (const w of workers) w.child.send({ type: 'go' });
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const end = now();
  for (const w of workers) w.child.send({ type: 'stop' });
  const results = await Promise.all(workers.map((w) => w.result));
  return {
    admits: results.flatMap((r) => r.admits.filter((t) => t <= end).map((t) => t - go)),
    durationMs: end - go,
    redisCalls: results.reduce((s, r) => s + r.status.redisCalls, 0),
  };
}

function windows(times: number[], windowMs: number, end: number): { most: number; fewest: number } {
  let most = 0;
  let fewest = Infinity;
  for (let i = 0, j = 0; i < times.length; i++) {
    while (j < times.length && times[j]! <= times[i]! + windowMs) j++;
    most = Math.max(most, j - i);
    if (times[i]! + windowMs <= end) fewest = Math.min(fewest, j - i);
  }
  return { most, fewest: fewest === Infinity ? 0 : fewest };
}

function row(name: string, run: Run): (string | number)[] {
  const admits = [...run.admits].sort((a, b) => a - b);
  const allowed = (RATE * run.durationMs) / 1000 + BURST;
  const { most, fewest } = windows(admits, 1000, run.durationMs);
  const perSecond: number[] = [];
  for (let s = 0; s < Math.floor(run.durationMs / 1000); s++) perSecond.push(admits.filter((t) => t >= s * 1000 && t < (s + 1) * 1000).length);
  return [
    name,
    fmt(admits.length),
    fmt(allowed, 1),
    `${((100 * admits.length) / allowed).toFixed(1)} %`,
    `${fewest} – ${most} (≤ ${fmt(RATE + BURST)})`,
    perSecond.join(', '),
    run.redisCalls === undefined ? '—' : fmt(run.redisCalls / (run.durationMs / 1000)),
  ];
}

export async function run(): Promise<string> {
  const rows: (string | number)[][] = [row('local RateLimiter, 1 process, 2 consumers', await local())];
  const redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  redis.on('error', () => {});
  try {
    await redis.connect();
    rows.push(row('Redis limiter, 1 process', await redisProcesses(1)));
    rows.push(row('Redis limiter, 3 processes, one key', await redisProcesses(3)));
  } catch (error) {
    rows.push([`Redis limiter: not measured (${error instanceof Error ? error.message : String(error)})`, '', '', '', '', '', '']);
  } finally {
    if (redis.status === 'ready') {
      const keys = await redis.keys(`${PREFIX}*`);
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
    } else redis.disconnect();
  }
  return [
    '## Rate limit accuracy',
    '',
    `perSecond ${fmt(RATE)}, burst ${fmt(BURST)}, ${SECONDS} s with a backlog of ${fmt(BACKLOG)} per process (memory broker, pool 16 with no queue: a handler's start is an admission). ` +
      'Allowed over the run: perSecond × t + burst; in any 1 s window at most perSecond + burst, and the target is at least 95 % of perSecond.',
    '',
    table(['limiter', 'admitted', 'allowed', 'admitted / allowed', 'any 1 s window', 'each second', 'Redis calls/s'], rows),
  ].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(await run());
  process.exit(0);
}
