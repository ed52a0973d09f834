/**
 * The Redis-backed rate limit against the real Redis: three real processes (test/fixtures/redis-rate-worker.ts)
 * share one key; Redis unreachable at start; Redis going away at run time (through a TCP proxy).
 * Redis: REDIS_URL, else 127.0.0.1:6379. Never skipped: no Redis is a failure that says how to start it.
 * Keys live under a prefix unique to this run and are deleted afterwards; nothing else is touched.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisRateLimiter, type RedisRateLimiter } from '../../adapters/redis/index.js';
import type { WorkerConfig, WorkerMessage } from '../fixtures/redis-rate-worker.js';
import { startTcpProxy, type TcpProxy } from '../helpers/tcp-proxy.js';
import { until } from '../helpers/wait.js';
import { crossProcessNow as now } from '../helpers/clock.js';
import { maxInWindow } from '../helpers/windows.js';

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const HOW_TO_START =
  'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log';
const WORKER = fileURLToPath(new URL('../fixtures/redis-rate-worker.ts', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PREFIX = `sluice-test:${process.pid}:${Date.now()}:`;

let redis: Redis;
const children = new Set<ChildProcess>();

beforeAll(async () => {
  redis = new Redis(REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 2000 });
  redis.on('error', () => {});
  try {
    await redis.connect();
    expect(await redis.ping()).toBe('PONG');
  } catch (error) {
    throw new Error(`Redis is not reachable at ${REDIS_URL} (${(error as Error).message}). Start it with: ${HOW_TO_START} (or set REDIS_URL)`);
  }
});

afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  if (redis?.status === 'ready') {
    const keys = await redis.keys(`${PREFIX}*`);
    if (keys.length > 0) await redis.del(...keys);
    await redis.quit();
  }
});

/** Forks a worker; resolves with it once its limiter has started. */
function startWorker(config: WorkerConfig): Promise<Worker> {
  const child = fork(WORKER, [JSON.stringify(config)], { cwd: ROOT, execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.add(child);
  const worker: Worker = { child, messages: [], admitted: 0, result: undefined };
  child.on('message', (m: WorkerMessage) => {
    worker.messages.push(m);
    if (m.type === 'progress') worker.admitted = m.admitted;
    if (m.type === 'result') worker.result = m;
  });
  child.on('exit', () => children.delete(child));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`worker exited with ${code} before it was ready`)));
    child.on('message', (m: WorkerMessage) => m.type === 'ready' && resolve(worker));
  });
}

interface Worker {
  child: ChildProcess;
  messages: WorkerMessage[];
  admitted: number;
  result: Extract<WorkerMessage, { type: 'result' }> | undefined;
}

async function stopAll(workers: Worker[]): Promise<Extract<WorkerMessage, { type: 'result' }>[]> {
  for (const w of workers) w.child.send({ type: 'stop' });
  await until(() => workers.every((w) => w.result !== undefined), 'every worker sent its result', 20_000);
  return workers.map((w) => w.result!);
}

async function statusOf(worker: Worker): Promise<Extract<WorkerMessage, { type: 'status' }>> {
  const before = worker.messages.length;
  worker.child.send({ type: 'status' });
  await until(() => worker.messages.slice(before).some((m) => m.type === 'status'), 'a status answer');
  return worker.messages.slice(before).find((m) => m.type === 'status') as Extract<WorkerMessage, { type: 'status' }>;
}


/** The largest count any window of windowMs may hold, with 2 ms of timestamp slack across processes. */
const allowedIn = (perSecond: number, burst: number, windowMs: number) => Math.floor((perSecond * (windowMs + 2)) / 1000 + burst + 1e-9);

describe('redisRateLimiter options', () => {
  it('rejects bad options at construction, naming the option', async () => {
    const base = { key: 'k', keyPrefix: PREFIX, perSecond: 100 };
    await expect(redisRateLimiter({ ...base, key: '' })).rejects.toThrow(/"key"/);
    await expect(redisRateLimiter({ ...base, perSecond: 0 })).rejects.toThrow(/"perSecond" must be > 0/);
    await expect(redisRateLimiter({ ...base, burst: 1 })).rejects.toThrow(/"burst" must be between 2|"burst" must be .*>= 2/);
    await expect(redisRateLimiter({ ...base, burst: 2, leaseMs: 50 })).rejects.toThrow(/"burst" \(2\) is too small for 100\/s with leaseMs 50.*burst ≥ 6 or a shorter leaseMs/);
    await expect(redisRateLimiter({ ...base, leaseMs: 1 })).rejects.toThrow(/"leaseMs" must be >= 5, got 1/);
    await expect(redisRateLimiter({ ...base, onRedisError: 'local' })).rejects.toThrow(/"processes" must be an integer/);
    await expect(redisRateLimiter({ ...base, onRedisError: 'open' as never })).rejects.toThrow(/"onRedisError" must be one of 'closed' \| 'local'/);
    await expect(redisRateLimiter({ ...base, redis: {} as never })).rejects.toThrow(/"redis" must be an ioredis client or a redis:\/\/ URL/);
  });

  it('defaults: burst a tenth of a second (at least 2), leases a quarter of its refill time; works on a client the caller owns', async () => {
    const client = new Redis(REDIS_URL);
    const limiter = await redisRateLimiter({ redis: client, key: 'own-client', keyPrefix: PREFIX, perSecond: 200 });
    try {
      expect([limiter.burst, limiter.leaseMs, limiter.name]).toEqual([20, (250 * 19) / 200, 'rate-limit']);
      expect(limiter.admit({}, { name: 'c', inFlight: 0 })).toMatchObject({ admit: false });
      await until(() => limiter.capacity() > 0, 'a first lease');
      expect(limiter.admit({}, { name: 'c', inFlight: 0 })).toEqual({ admit: true });
      expect(Number(await redis.get(`${PREFIX}own-client`))).toBeGreaterThan(0);
    } finally {
      await limiter.close();
    }
    // The caller's client stays open.
    expect(await client.ping()).toBe('PONG');
    await client.quit();
  });
});

describe('a Redis rate limit shared by three processes', () => {
  it('holds their total to rate·t + burst over every window, and admits at least 95 % of it over the run', async () => {
    // A burst of 1 s and 100 ms leases: 135 tokens in Redis's bucket, so budget overflows only if all three processes
    // stall for most of a second at once, and a lease outlives 100 ms of a stalled event loop (a loaded CI machine).
    const perSecond = 150;
    const burst = 150;
    const runMs = 5000;
    const limiter = { redis: REDIS_URL, key: 'shared', keyPrefix: PREFIX, perSecond, burst, leaseMs: 100 };
    const workers = await Promise.all([0, 1, 2].map(() => startWorker({ limiter, backlog: 5000 })));
    const go = now();
    for (const w of workers) w.child.send({ type: 'go' });
    // The measured window: a fixed stretch of backlog, then stop (no condition to wait for: time is what is measured).
    await new Promise((r) => setTimeout(r, runMs));
    const statuses = await Promise.all(workers.map(statusOf));
    const end = now();
    const results = await stopAll(workers);

    const admits = results.flatMap((r) => r.admits).map((t) => t - go).sort((a, b) => a - b);
    const inRun = admits.filter((t) => t <= end - go);
    for (const w of [10, 50, 100, 250, 500, 1000, 2000, 3000, runMs]) {
      expect(maxInWindow(admits, w), `window ${w} ms`).toBeLessThanOrEqual(allowedIn(perSecond, burst, w));
    }
    // With a backlog: from the first admission (a process started late under load is not the limiter's loss) to the end.
    const first = admits[0]!;
    const allowed = (perSecond * (end - go - first)) / 1000 + burst;
    console.log(
      `3 processes, ${perSecond}/s burst ${burst}: ${inRun.length} admitted in ${Math.round(end - go - first)} ms of backlog, ` +
        `first at ${Math.round(first)} ms, allowed ${allowed.toFixed(1)} (${((100 * inRun.length) / allowed).toFixed(1)} %); per process ${results.map((r) => r.admits.length).join(' / ')}; ` +
        `wasted ${results.map((r) => r.status.wasted).join(' / ')}, Redis calls ${results.map((r) => r.status.redisCalls).join(' / ')}`,
    );
    expect(inRun.length).toBeGreaterThanOrEqual(0.95 * allowed);
    // Each process got a share (the limiter leases to whoever asks; a process the loaded machine
    // schedules less asks less, so not an equal one), nothing was lost, and each paused at the
    // broker under the limiter's name.
    for (const r of results) {
      expect(r.admits.length).toBeGreaterThan(0.02 * inRun.length);
      expect(r.lost).toBe(0);
      expect(r.pauses).toBeGreaterThan(0);
      expect(r.status.mode).toBe('redis');
      expect(r.status.redisErrors).toBe(0);
    }
    expect(statuses.some((s) => s.pausedBy.includes('rate-limit'))).toBe(true);
  }, 60_000);
});

describe('Redis unreachable', () => {
  it('at start: redisRateLimiter() rejects, naming the address and the cause', async () => {
    const port = await closedPort();
    const started = redisRateLimiter({ redis: `redis://127.0.0.1:${port}`, key: 'k', keyPrefix: PREFIX, perSecond: 10 });
    await expect(started).rejects.toThrow(new RegExp(`cannot reach Redis at redis://127\\.0\\.0\\.1:${port} \\(.*ECONNREFUSED.*\\).*needs Redis to start`));
  });

  it('at start, a server that never answers: rejects after connectTimeoutMs', async () => {
    const silent: Server = createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    const { port } = silent.address() as { port: number };
    try {
      await expect(redisRateLimiter({ redis: `redis://user:secret@127.0.0.1:${port}`, key: 'k', keyPrefix: PREFIX, perSecond: 10, connectTimeoutMs: 300 })).rejects.toThrow(
        new RegExp(`cannot reach Redis at redis://user:\\*\\*\\*@127\\.0\\.0\\.1:${port} .*connectTimeoutMs 300`),
      );
    } finally {
      silent.close();
    }
  });

  it('at run time: three processes fail closed — nothing beyond their leases, paused under "rate-limit" — and resume when Redis is back', async () => {
    const proxy = await redisProxy();
    const perSecond = 100;
    const burst = 10;
    const limiter = { redis: `redis://127.0.0.1:${proxy.port}`, key: 'outage', keyPrefix: PREFIX, perSecond, burst, retryMaxMs: 200 };
    const workers = await Promise.all([0, 1, 2].map(() => startWorker({ limiter, backlog: 5000 })));
    try {
      const go = now();
      for (const w of workers) w.child.send({ type: 'go' });
      await until(() => workers.reduce((n, w) => n + w.admitted, 0) >= 60, 'admissions under the shared limit');
      const cutAt = now();
      proxy.setEnabled(false);
      proxy.cutAll();
      const downAt = (w: Worker) => (w.messages.find((m) => m.type === 'redis' && m.state === 'down') as { at: number } | undefined)?.at;
      await until(() => workers.every((w) => downAt(w) !== undefined), 'every process saw Redis go away');
      // A stretch of outage to watch: nothing may be admitted once the leases held at the cut have expired.
      await new Promise((r) => setTimeout(r, 600));
      const during = await Promise.all(workers.map(statusOf));
      for (const s of during) {
        expect(s.limiter.mode).toBe('closed');
        expect(s.limiter.cachedTokens).toBe(0);
        expect(s.pausedBy).toContain('rate-limit');
      }
      const reenabledAt = now();
      proxy.setEnabled(true);
      const upAt = (w: Worker) => (w.messages.find((m) => m.type === 'redis' && m.state === 'up') as { at: number } | undefined)?.at;
      await until(() => workers.every((w) => upAt(w) !== undefined), 'every process saw Redis again');
      const admittedAtUp = workers.reduce((n, w) => n + w.admitted, 0);
      await until(() => workers.reduce((n, w) => n + w.admitted, 0) >= admittedAtUp + 40, 'admissions again after the outage');
      const results = await stopAll(workers);

      const leaseMs = (250 * (burst - 1)) / perSecond;
      for (const r of results) {
        const late = r.admits.filter((t) => t > cutAt + leaseMs + 5 && t < reenabledAt);
        expect(late, 'admitted during the outage beyond held leases').toEqual([]);
        expect(r.lost).toBe(0);
        expect(r.status.redisErrors).toBeGreaterThan(0);
        expect(r.status.mode).toBe('redis');
      }
      // Failing closed never bursts: the bound holds over the whole run, the outage and the recovery included.
      const admits = results.flatMap((r) => r.admits).map((t) => t - go).sort((a, b) => a - b);
      for (const w of [10, 100, 500, 1000, 2000]) expect(maxInWindow(admits, w), `window ${w} ms`).toBeLessThanOrEqual(allowedIn(perSecond, burst, w));
    } finally {
      for (const w of workers) w.child.kill('SIGKILL');
      await proxy.close();
    }
  }, 60_000);

  it("at run time with onRedisError: 'local': admits at perSecond / processes meanwhile, then goes back to Redis", async () => {
    const proxy = await redisProxy();
    let limiter: RedisRateLimiter | undefined;
    try {
      limiter = await redisRateLimiter({
        redis: `redis://127.0.0.1:${proxy.port}`,
        key: 'local-fallback',
        keyPrefix: PREFIX,
        perSecond: 90,
        burst: 9,
        onRedisError: 'local',
        processes: 3,
        retryMaxMs: 200,
      });
      const events: string[] = [];
      limiter.on('redis', (e) => events.push(`${e.state}:${e.mode}`));
      const gate = limiter;
      // A backlog offered to the gate directly: waits exactly as a paused consumer would.
      let admitted: number[] = [];
      let running = true;
      const offer = (async () => {
        while (running) {
          const d = gate.admit({}, { name: 'c', inFlight: 0 });
          if (d.admit) admitted.push(performance.now());
          else await Promise.race([d.resumeWhen ?? new Promise((r) => setTimeout(r, d.resumeAfterMs ?? 1)), new Promise((r) => setTimeout(r, 50))]);
        }
      })();
      await until(() => admitted.length >= 20, 'admissions through Redis');
      proxy.setEnabled(false);
      proxy.cutAll();
      await until(() => events.includes('down:local'), 'the fallback to the local limit');
      admitted = [];
      const from = performance.now();
      await until(() => admitted.length >= 12, 'admissions at the local share while Redis is away');
      const span = performance.now() - from;
      expect(limiter.status().mode).toBe('local');
      // The local share: 30/s and a burst of 3 (starting empty), so 12 take at least ~300 ms.
      expect(maxInWindow(admitted, 200)).toBeLessThanOrEqual(Math.floor((30 * 202) / 1000 + 3));
      expect(span).toBeGreaterThanOrEqual(((12 - 3) / 30) * 1000 - 5);
      proxy.setEnabled(true);
      await until(() => events.includes('up:redis'), 'back on Redis');
      expect(limiter.status().mode).toBe('redis');
      running = false;
      await offer;
    } finally {
      await limiter?.close();
      await proxy.close();
    }
  }, 30_000);
});

async function redisProxy(): Promise<TcpProxy> {
  const url = new URL(REDIS_URL);
  return startTcpProxy({ targetHost: url.hostname, targetPort: Number(url.port || 6379) });
}

/** A port on 127.0.0.1 where nothing listens. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}
