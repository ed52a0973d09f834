import type { ConsumerStatus } from '../../src/index.js';

export interface Tally {
  published: number;
  processedIds: Set<string>;
  duplicates: number;
}

/** More fields for the live line (breaker state, admitted rate); empty without the flow flags. */
export type Extra = () => string[];

function line(status: ConsumerStatus, tally: Tally, extra?: Extra): string {
  return [
    `processed ${String(status.handled).padStart(5)}/${tally.published}`,
    `active ${String(status.pool.active).padStart(2)}/${status.pool.maxConcurrency}`,
    `pending ${String(status.pool.pending).padStart(2)}/${status.pool.maxQueueSize}`,
    `overloaded ${String(status.overloaded).padStart(4)}`,
    `retried ${String(status.retried).padStart(3)}`,
    `dead-lettered ${String(status.deadLettered).padStart(3)}`,
    ...(extra ? extra() : []),
    status.paused ? 'PAUSED' : '      ',
  ].join('  ');
}

/** A line of its own above the live line (a breaker transition): on a terminal the live line is redrawn below it. */
export function log(text: string, out: NodeJS.WriteStream = process.stdout): void {
  out.write(out.isTTY === true ? `\r\x1b[2K${text}\n` : `${text}\n`);
}

/** Live progress: one redrawn line on a terminal, a plain line every second when piped. */
export function startProgress(status: () => ConsumerStatus, tally: Tally, out: NodeJS.WriteStream = process.stdout, extra?: Extra): () => void {
  const tty = out.isTTY === true;
  const timer = setInterval(() => {
    if (tty) out.write(`\r\x1b[2K${line(status(), tally, extra)}`);
    else out.write(`${line(status(), tally, extra)}\n`);
  }, tty ? 100 : 1000);
  return () => {
    clearInterval(timer);
    if (tty) out.write(`\r\x1b[2K${line(status(), tally, extra)}\n`);
  };
}

export function summary(status: ConsumerStatus, tally: Tally, deadLettered: number, elapsedMs: number, extraRows: [string, string | number][] = []): string {
  const rows: [string, string | number][] = [
    ['published', tally.published],
    ['processed (acked)', status.handled],
    ['unique ids processed', tally.processedIds.size],
    ['duplicates', tally.duplicates],
    ['handler failures', status.failed],
    ['retried', status.retried],
    ['dead-lettered', `${status.deadLettered} (${deadLettered} in the dead-letter queue)`],
    ['overloaded → given back', status.givenBack],
    ['max concurrency', status.pool.maxConcurrency],
    ['pool rejected (overloaded)', status.pool.rejected],
    ['elapsed', `${(elapsedMs / 1000).toFixed(1)} s`],
    ...extraRows,
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n');
}
