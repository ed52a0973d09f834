import type { ConsumerStatus } from '../../src/index.js';

export interface Tally {
  published: number;
  processedIds: Set<string>;
  duplicates: number;
}

function line(status: ConsumerStatus, tally: Tally): string {
  return [
    `processed ${String(status.handled).padStart(5)}/${tally.published}`,
    `active ${String(status.pool.active).padStart(2)}/${status.pool.maxConcurrency}`,
    `pending ${String(status.pool.pending).padStart(2)}/${status.pool.maxQueueSize}`,
    `overloaded ${String(status.overloaded).padStart(4)}`,
    `retried ${String(status.retried).padStart(3)}`,
    `dead-lettered ${String(status.deadLettered).padStart(3)}`,
    status.paused ? 'PAUSED' : '      ',
  ].join('  ');
}

/** Live progress: one redrawn line on a terminal, a plain line every second when piped. */
export function startProgress(status: () => ConsumerStatus, tally: Tally, out: NodeJS.WriteStream = process.stdout): () => void {
  const tty = out.isTTY === true;
  const timer = setInterval(() => {
    if (tty) out.write(`\r\x1b[2K${line(status(), tally)}`);
    else out.write(`${line(status(), tally)}\n`);
  }, tty ? 100 : 1000);
  return () => {
    clearInterval(timer);
    if (tty) out.write(`\r\x1b[2K${line(status(), tally)}\n`);
  };
}

export function summary(status: ConsumerStatus, tally: Tally, deadLettered: number, elapsedMs: number): string {
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
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n');
}
