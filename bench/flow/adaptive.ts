/**
 * Adaptive concurrency vs fixed limits (issue 11), on the simulated downstream of ./downstream.ts
 * (C = 16 calls in service at once, 20 ms ± 10 %, the rest queue inside it): one WorkerPool kept
 * backlogged (its free places refilled on every completion), each call a task. Rows for fixed
 * limits 4, C, 4C, 16C and the adaptive pool (gradient, aimd; maxConcurrency 16C), one after the
 * other in one process; goodput and the calls' p50 / p99 latency after a warm-up. Then the
 * downstream's capacity changes mid-run (C → C/4 → 2C) and the adaptive pools' recovery is timed.
 *
 * `FLOW_SCALE` (default 1) multiplies every duration.
 */
import { WorkerPool, type AdaptiveOptions } from '../../src/index.js';
import { Downstream, type DownstreamPhase } from './downstream.js';
import { table } from '../harness.js';

const C = 16;
const LATENCY_MS = 20;
const JITTER = 0.1;

interface Sample {
  /** ms since start when the call ended, and the latency it saw. */
  at: number;
  latency: number;
}

interface Result {
  samples: Sample[];
  limits: { at: number; limit: number }[];
}

/** Runs a backlogged pool against a downstream for `durationMs`. */
async function drive(pool: WorkerPool, schedule: DownstreamPhase[], durationMs: number): Promise<Result> {
  const downstream = new Downstream({ capacity: C, latencyMs: LATENCY_MS, jitter: JITTER, schedule });
  const samples: Sample[] = [];
  const limits = [{ at: 0, limit: pool.limit }];
  let stopped = false;
  let started = 0;
  pool.on('limit', ({ to }) => limits.push({ at: performance.now() - started, limit: to }));
  const task = async (signal: AbortSignal) => {
    // Not the pool's lifetime signal: thousands of calls would each add a listener to that one signal.
    void signal;
    const latency = await downstream.call();
    samples.push({ at: performance.now() - started, latency });
  };
  const fill = () => {
    while (!stopped && pool.freeCapacity > 0) {
      const r = pool.submit(task);
      if (!r.ok) break;
      r.task.then(fill, fill);
    }
  };
  started = performance.now();
  downstream.start();
  fill();
  await new Promise((r) => setTimeout(r, durationMs));
  stopped = true;
  await pool.close({ drain: true, timeoutMs: 5_000 });
  downstream.stop();
  return { samples, limits };
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

interface Row {
  name: string;
  goodput: number;
  p50: number;
  p99: number;
  limit: string;
}

function summarize(name: string, r: Result, fromMs: number, toMs: number): Row {
  const inRun = r.samples.filter((s) => s.at >= fromMs && s.at < toMs);
  const lat = inRun.map((s) => s.latency).sort((a, b) => a - b);
  const limits = r.limits.filter((l) => l.at < toMs);
  const settled = limits.filter((l) => l.at >= fromMs).map((l) => l.limit);
  const last = limits.at(-1)!.limit;
  const range = settled.length === 0 ? `${last}` : `${Math.min(...settled, last)}–${Math.max(...settled, last)}`;
  return { name, goodput: inRun.length / ((toMs - fromMs) / 1000), p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), limit: range };
}

const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toFixed(digits) : '—');

/**
 * Time from `atMs` until the run is back near the new optimum: two 250 ms windows in a row with
 * goodput ≥ 90 % of capacity / L and (for `latencyToo`) mean latency ≤ 1.5 L.
 */
function recovery(r: Result, atMs: number, endMs: number, capacity: number, latencyToo: boolean): number | undefined {
  const windowMs = 250;
  const optimum = capacity / (LATENCY_MS / 1000);
  let good = 0;
  for (let t = atMs; t + windowMs <= endMs; t += windowMs) {
    const w = r.samples.filter((s) => s.at >= t && s.at < t + windowMs);
    const goodput = w.length / (windowMs / 1000);
    const mean = w.reduce((a, s) => a + s.latency, 0) / Math.max(1, w.length);
    const ok = goodput >= 0.9 * optimum && (!latencyToo || mean <= 1.5 * LATENCY_MS);
    good = ok ? good + 1 : 0;
    if (good === 2) return t - windowMs - atMs;
  }
  return undefined;
}

export async function adaptiveVsFixed(scale = Number(process.env.FLOW_SCALE ?? 1)): Promise<string> {
  if (!(scale > 0)) throw new RangeError(`FLOW_SCALE must be > 0, got ${process.env.FLOW_SCALE}`);
  const s = (ms: number) => Math.round(ms * scale);
  const duration = s(8_000);
  const warmup = s(2_000);
  const rows: Row[] = [];
  for (const limit of [4, C, 4 * C, 16 * C]) {
    const pool = new WorkerPool({ name: `fixed-${limit}`, maxConcurrency: limit, maxQueueSize: limit });
    rows.push(summarize(`fixed ${limit}${limit === C ? ' (= C)' : limit === 4 ? '' : ` (${limit / C}C)`}`, await drive(pool, [], duration), warmup, duration));
  }
  const adaptive = (algorithm: AdaptiveOptions['algorithm']) =>
    new WorkerPool({ name: `adaptive-${algorithm}`, maxConcurrency: 16 * C, maxQueueSize: 16 * C, adaptive: { algorithm, min: 1 } });
  const adaptiveRows: Row[] = [];
  for (const algorithm of ['gradient', 'aimd'] as const) {
    const row = summarize(`adaptive ${algorithm} (1–${16 * C})`, await drive(adaptive(algorithm), [], duration), warmup, duration);
    adaptiveRows.push(row);
    rows.push(row);
  }
  const fixed = rows.filter((r) => r.name.startsWith('fixed'));
  // The best fixed limit: the highest goodput, and among those within 2 % of it the lowest p99.
  const top = Math.max(...fixed.map((r) => r.goodput));
  const best = fixed.filter((r) => r.goodput >= 0.98 * top).sort((a, b) => a.p99 - b.p99)[0]!;
  const steady = table(
    ['pool', 'limit (after warm-up)', 'goodput /s', 'p50 ms', 'p99 ms', 'vs best fixed: goodput', 'p99'],
    rows.map((r) => [r.name, r.limit, fmt(r.goodput), fmt(r.p50, 1), fmt(r.p99, 1), `${fmt((100 * r.goodput) / best.goodput)} %`, `${fmt(r.p99 / best.p99, 2)}×`]),
  );
  const verdicts = adaptiveRows.map((r) => {
    const ok = r.goodput >= 0.9 * best.goodput && r.p99 <= 1.5 * best.p99;
    return `${r.name}: ${ok ? 'meets' : '**misses**'} the target (≥ 90 % of the best fixed limit's goodput, p99 ≤ 1.5× its p99).`;
  });

  // Capacity changes mid-run: C → C/4 → 2C.
  const phase = s(5_000);
  const schedule: DownstreamPhase[] = [
    { atMs: phase, capacity: C / 4 },
    { atMs: 2 * phase, capacity: 2 * C },
  ];
  const changeRows: (string | number)[][] = [];
  for (const algorithm of ['gradient', 'aimd'] as const) {
    const r = await drive(adaptive(algorithm), schedule, 3 * phase);
    for (const [at, capacity, label] of [
      [phase, C / 4, `C → C/4 (${C / 4})`],
      [2 * phase, 2 * C, `C/4 → 2C (${2 * C})`],
    ] as const) {
      const g = recovery(r, at, at + phase, capacity, false);
      const both = recovery(r, at, at + phase, capacity, true);
      const settled = summarize('', r, at + phase / 2, at + phase);
      changeRows.push([
        algorithm,
        label,
        g === undefined ? 'not within the phase' : `${fmt(g)} ms`,
        both === undefined ? 'not within the phase' : `${fmt(both)} ms`,
        settled.limit,
        fmt(settled.goodput),
        fmt(settled.p99, 1),
      ]);
    }
  }
  const change = table(
    ['adaptive', 'change', 'goodput ≥ 90 % of new optimum after', '… and mean latency ≤ 1.5 L after', 'limit (2nd half of phase)', 'goodput /s (2nd half)', 'p99 ms (2nd half)'],
    changeRows,
  );
  const scaled = scale === 1 ? '' : ` **Scaled by FLOW_SCALE=${scale}.**`;
  return [
    `Downstream: C = ${C} in service at once, ${LATENCY_MS} ms ± ${JITTER * 100} % each, the rest queue inside it (optimum: ${(C / LATENCY_MS) * 1000} calls/s at ${LATENCY_MS} ms). ` +
      `Each pool is kept backlogged; goodput and latency from ${warmup / 1000} s to ${duration / 1000} s of each run; the adaptive pools start at limit 1.${scaled}`,
    '',
    steady,
    '',
    `Best fixed limit: ${best.name}. ${verdicts.join(' ')}`,
    '',
    `Capacity changes every ${phase / 1000} s (C → C/4 → 2C); recovery = two 250 ms windows in a row at the new optimum's level, measured from the change (goodput ≥ 90 % of capacity / L; and also mean latency ≤ 1.5 L). Target ≤ 5 s.`,
    '',
    change,
  ].join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await adaptiveVsFixed());
