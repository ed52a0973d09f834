/**
 * The pool benchmark's contenders, each run in a process of its own by bench/pool.ts: in one
 * process, whichever ran before skewed the JIT and GC state of the next (sluice measured 1.37×
 * p-limit there, 1.6–1.9× alone). Run directly: `node --expose-gc --import tsx
 * bench/pool-contenders.ts <contender>` prints tasks/s of one run after a warm-up run.
 */
import pLimit from 'p-limit';
import PQueue from 'p-queue';
import { pathToFileURL } from 'node:url';
import { WorkerPool } from '../src/index.js';
import { gc, opsPerSecond } from './harness.js';

export const TASKS = 200_000;
export const CONCURRENCY = 16;
const trivial = async () => {};

/** Every task submitted at once; the queue holds what does not run (bound = TASKS, enforced). */
export async function sluiceBurst(): Promise<void> {
  const pool = new WorkerPool({ maxConcurrency: CONCURRENCY, maxQueueSize: TASKS });
  const tasks: Promise<void>[] = new Array(TASKS);
  for (let i = 0; i < TASKS; i++) {
    const r = pool.submit(trivial);
    if (!r.ok) throw new Error(`unexpected ${r.error}`);
    tasks[i] = r.task;
  }
  await Promise.all(tasks);
}

/** A producer that respects a small bound: on `overloaded` it waits for room, as an adapter does. */
export async function sluiceBounded(): Promise<void> {
  const pool = new WorkerPool({ maxConcurrency: CONCURRENCY, maxQueueSize: 64 });
  for (let i = 0; i < TASKS; ) {
    const r = pool.submit(trivial);
    if (r.ok) i++;
    else await pool.whenAvailable();
  }
  await pool.close();
}

export async function pLimitBurst(): Promise<void> {
  const limit = pLimit(CONCURRENCY);
  const tasks: Promise<void>[] = new Array(TASKS);
  for (let i = 0; i < TASKS; i++) tasks[i] = limit(trivial);
  await Promise.all(tasks);
}

export async function pQueueBurst(): Promise<void> {
  const queue = new PQueue({ concurrency: CONCURRENCY });
  const tasks: Promise<void>[] = new Array(TASKS);
  for (let i = 0; i < TASKS; i++) tasks[i] = queue.add(trivial);
  await Promise.all(tasks);
}


export const contenders = { sluice: sluiceBurst, bounded: sluiceBounded, limit: pLimitBurst, queue: pQueueBurst };
export type Contender = keyof typeof contenders;

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const run = contenders[process.argv[2] as Contender];
  if (!run) throw new Error(`usage: pool-contenders.ts ${Object.keys(contenders).join('|')}`);
  await run();
  gc();
  console.log(Math.round(await opsPerSecond(TASKS, run)));
}
