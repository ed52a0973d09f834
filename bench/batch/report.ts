/** The batch suite's markdown: what was measured, the rates and ratios per broker, and the checks made in the same runs. */
import { fmt, table } from '../harness.js';
import type { BrokerName } from './brokers.js';
import type { DrainConfig, DrainResult } from './drain.js';

export const TARGET = 10;

export interface BrokerRows {
  readonly name: string;
  readonly setup: string;
  readonly n: number;
  /** Each round's runs, and the 1-minute load average at its start: what else the 2 cores were doing. */
  readonly rounds: readonly { single: DrainResult; batch: DrainResult; noop: DrainResult; load: number }[];
}

export type BrokerOutcome = BrokerRows | { name: BrokerName; error: string };

export const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};

/** Messages/s at these costs if nothing but the downstream took time: `maxConcurrency` calls of `rows` rows at a time. */
function ideal(c: DrainConfig, rows: number): number {
  return (c.maxConcurrency * rows * 1000) / (c.callMs + c.rowMs * rows);
}

const rate = (x: DrainResult) => x.messagesPerSecond;
const range = (ratios: readonly number[], digits = 1) => `${Math.min(...ratios).toFixed(digits)}–${Math.max(...ratios).toFixed(digits)}×`;

export function section(c: DrainConfig, rounds: number, results: readonly BrokerOutcome[]): string {
  const rates: (string | number)[][] = [];
  const checks: (string | number)[][] = [];
  const setups: string[] = [];
  for (const r of results) {
    if ('error' in r) {
      rates.push([r.name, '—', '—', `not measured: ${r.error}`, '—', '—', '—', '—']);
      continue;
    }
    setups.push(`${r.name}: ${r.setup}; N = ${fmt(r.n)} per run.`);
    const single = r.rounds.map((x) => x.single);
    const batch = r.rounds.map((x) => x.batch);
    const noop = r.rounds.map((x) => x.noop);
    const ratios = r.rounds.map((x) => rate(x.batch) / rate(x.single));
    const ofCeiling = r.rounds.map((x) => rate(x.batch) / rate(x.noop));
    const ratio = median(ratios);
    rates.push([
      r.name,
      fmt(median(single.map(rate))),
      fmt(median(batch.map(rate))),
      `**${ratio.toFixed(1)}×**${ratio >= TARGET ? '' : ' (below target)'}`,
      range(ratios),
      fmt(median(noop.map(rate))),
      `${median(ofCeiling).toFixed(2)}× (${range(ofCeiling, 2)})`,
      r.rounds.map((x) => `${fmt(rate(x.single))} / ${fmt(rate(x.batch))} / ${fmt(rate(x.noop))} (${x.load.toFixed(1)})`).join(', '),
    ]);
    const all = [...single, ...batch];
    const violations = batch.reduce((s, x) => s + x.pool.violations, 0);
    const callMs = (runs: readonly DrainResult[]) => median(runs.map((x) => x.downstream.serviceMs / x.downstream.calls)).toFixed(2);
    const cpu = (runs: readonly DrainResult[]) => median(runs.map((x) => x.cpuMicrosPerMessage)).toFixed(1);
    const sum = (runs: readonly DrainResult[], f: (x: DrainResult) => number) => runs.reduce((s, x) => s + f(x), 0);
    const everyRun = [...all, ...noop];
    checks.push([
      r.name,
      `${callMs(single)} / ${callMs(batch)}`,
      `${cpu(single)} / ${cpu(batch)} / ${cpu(noop)}`,
      `${median(batch.map((x) => x.meanCallSize)).toFixed(1)} (max ${Math.max(...batch.map((x) => x.maxCallSize))})`,
      `${Math.max(...all.map((x) => x.downstream.maxInService))} / ${Math.max(...all.map((x) => x.downstream.maxWaiting))}`,
      `${Math.max(...batch.map((x) => x.pool.maxUsed))} of ${batch[0]!.pool.capacity} (held ≤ ${Math.max(...batch.map((x) => x.pool.maxHeld))}, active ≤ ${Math.max(...batch.map((x) => x.pool.maxActive))})`,
      violations === 0
        ? `none in ${fmt(sum(batch, (x) => x.pool.samples))} samples`
        : `**${violations}**, first: ${batch.find((x) => x.pool.firstViolation !== undefined)!.pool.firstViolation}`,
      `${sum(everyRun, (x) => x.duplicates)} / ${sum(everyRun, (x) => x.failed + x.deadLettered)} / ${sum(everyRun, (x) => x.givenBack)}`,
    ]);
  }
  const idealSingle = ideal(c, 1);
  const idealBatch = ideal(c, c.batchSize);
  return [
    '## Batch handlers',
    '',
    `Issue 12: a single-message \`handler\` against a \`batchHandler\` with \`batch: { size: ${c.batchSize}, timeoutMs: ${c.batchTimeoutMs} }\`, ` +
      `the same pool (${c.maxConcurrency} running + ${fmt(c.maxQueueSize)} waiting) and the same simulated bulk downstream ` +
      `(\`bench/batch/downstream.ts\`: a call of n rows takes ${c.callMs} + ${c.rowMs} · n ms, waited with a timer, at most ${c.maxConcurrency} calls in service at once, ` +
      `the rest queued inside it as at a connection pool of that size). Both handlers parse every message's JSON (a row); the single one makes a call of 1 row, ` +
      `the batch one a call of all its rows. Beside them, a no-op handler (parses, calls nothing) on the same consumer and pool: the most this broker, its client and the runtime deliver here, which bounds what any batch size can reach. ` +
      `Each run drains N pre-filled messages; the clock runs from the first handler call to the N-th message acknowledged (\`handled\`). ` +
      `${rounds} rounds rotating which contender goes first; ratios are medians of the per-round ratios, ranges the lowest–highest of them. ` +
      `If only the downstream took time: single ${fmt(idealSingle)} msgs/s, batch ${fmt(idealBatch)} msgs/s (${(idealBatch / idealSingle).toFixed(1)}×). Target: batch ≥ ${TARGET}× single.`,
    '',
    ...setups.map((s) => `- ${s}`),
    '',
    table(
      ['broker', 'single msgs/s (median)', 'batch msgs/s (median)', 'batch / single', 'range', 'no-op msgs/s (median)', 'batch / no-op (range)', 'each round: single / batch / no-op msgs/s (1-min load average at its start)'],
      rates,
    ),
    '',
    "The same runs, checked: the downstream's call as its timers really took it (medians of the per-run means), process CPU (user + system) per message over the run, " +
      'messages per batch call, whether a call ever waited inside the downstream, and the pool\'s bound during the batch runs ' +
      '(`pool.status()`: active + pending + held ≤ maxConcurrency + maxQueueSize, sampled at each handler call\'s start and end and every 5 ms).',
    '',
    table(
      ['broker', 'call ms, single / batch', 'CPU µs/msg, single / batch / no-op', 'messages per batch call', 'downstream: max in service / max waiting', 'pool used in batch runs (max)', 'bound violations', 'duplicates / failed / given back (all runs)'],
      checks,
    ),
  ].join('\n');
}
