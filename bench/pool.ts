/**
 * WorkerPool against p-limit and p-queue in the same run: throughput of submit + complete on
 * trivial async tasks (each measurement in a fresh process, rounds alternating the contenders),
 * and heap per waiting task.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import pLimit from 'p-limit';
import PQueue from 'p-queue';
import { WorkerPool } from '../src/index.js';
import { CONCURRENCY, TASKS, type Contender } from './pool-contenders.js';
import { fmt, gc, ratio, table } from './harness.js';

/** tasks/s of one contender, measured in a process of its own. */
async function measure(contender: Contender): Promise<number> {
  const script = fileURLToPath(new URL('./pool-contenders.ts', import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '--import', 'tsx', script, contender]);
  return Number(stdout.trim());
}

const WAITING = 100_000;

type HeapContender = 'sluice' | 'sluice-signal' | 'sluice-await' | 'p-limit' | 'p-queue';

/** Heap bytes per task waiting in the queue (the pool's running slots are blocked). */
async function heapPerWaiting(kind: HeapContender): Promise<number> {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const blocked = () => gate;
  // Callers' signals made before the first sample (a caller owns them); 100 of them, as Node's
  // EventTarget walks a signal's listeners on every addEventListener.
  const callers = Array.from({ length: 100 }, () => new AbortController().signal);
  gc();
  const before = process.memoryUsage().heapUsed;
  const tasks: Promise<unknown>[] = [];
  if (kind === 'sluice' || kind === 'sluice-signal') {
    const pool = new WorkerPool({ maxConcurrency: CONCURRENCY, maxQueueSize: WAITING });
    for (let i = 0; i < WAITING + CONCURRENCY; i++) {
      const r = kind === 'sluice-signal' ? pool.submit(blocked, { signal: callers[i % callers.length]! }) : pool.submit(blocked);
      if (r.ok) tasks.push(r.task);
    }
  } else if (kind === 'sluice-await') {
    const pool = new WorkerPool({ maxConcurrency: CONCURRENCY, maxQueueSize: WAITING });
    for (let i = 0; i < WAITING + CONCURRENCY; i++) tasks.push(pool.submitAwait(blocked, Infinity));
  } else if (kind === 'p-limit') {
    const limit = pLimit(CONCURRENCY);
    for (let i = 0; i < WAITING + CONCURRENCY; i++) tasks.push(limit(blocked));
  } else {
    const queue = new PQueue({ concurrency: CONCURRENCY });
    for (let i = 0; i < WAITING + CONCURRENCY; i++) tasks.push(queue.add(blocked));
  }
  await new Promise((r) => setTimeout(r, 10));
  gc();
  const perTask = (process.memoryUsage().heapUsed - before) / WAITING;
  release();
  await Promise.all(tasks);
  return perTask;
}

export async function run(): Promise<string> {
  const runs = 7;
  // Rounds alternate the contenders, so a slow stretch of a shared machine hits them all alike;
  // each ratio is the median of the per-round ratios, which cancels most of that drift.
  const rounds: Record<Contender, number>[] = [];
  for (let round = 0; round < runs; round++) {
    rounds.push({ sluice: await measure('sluice'), limit: await measure('limit'), bounded: await measure('bounded'), queue: await measure('queue') });
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1]!;
  const rate = (k: Contender) => median(rounds.map((r) => r[k]));
  const vsLimit = (k: Contender) => `${median(rounds.map((r) => r[k] / r.limit)).toFixed(2)}×`;
  const heap = {
    sluice: await heapPerWaiting('sluice'),
    limit: await heapPerWaiting('p-limit'),
    queue: await heapPerWaiting('p-queue'),
    signal: await heapPerWaiting('sluice-signal'),
    await: await heapPerWaiting('sluice-await'),
  };
  return [
    '## Pool: submit + complete, trivial async tasks',
    '',
    `${fmt(TASKS)} tasks of \`async () => {}\`, concurrency ${CONCURRENCY}, a fresh process per measurement, median of ${runs} alternating rounds (ratios: median of the per-round ratios). Target: sluice ≥ 2× p-limit.`,
    '',
    table(
      ['contender', 'tasks/s', 'vs p-limit'],
      [
        ['sluice WorkerPool (all submitted at once)', fmt(rate('sluice')), vsLimit('sluice')],
        ['sluice WorkerPool (producer bounded to 16 + 64, waits on overload)', fmt(rate('bounded')), vsLimit('bounded')],
        ['p-limit', fmt(rate('limit')), '1.00×'],
        ['p-queue', fmt(rate('queue')), vsLimit('queue')],
      ],
    ),
    '',
    `Heap per waiting task (${fmt(WAITING)} tasks queued behind ${CONCURRENCY} blocked ones). Target: sluice \`submit\` ≤ 0.5× p-limit (which has no signal or timeout: the last two rows are for reading).`,
    '',
    table(
      ['contender', 'bytes / waiting task', 'vs p-limit'],
      [
        ['sluice WorkerPool', fmt(heap.sluice), ratio(heap.sluice, heap.limit)],
        ['p-limit', fmt(heap.limit), ratio(heap.limit, heap.limit)],
        ['p-queue', fmt(heap.queue), ratio(heap.queue, heap.limit)],
        ['sluice WorkerPool, submit with a caller signal', fmt(heap.signal), ratio(heap.signal, heap.limit)],
        ['sluice WorkerPool, submitAwait without a timeout', fmt(heap.await), ratio(heap.await, heap.limit)],
      ],
    ),
  ].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) console.log(await run());
