/**
 * What chaos workers leave behind: one append-only file per process, a line per handled id,
 * written synchronously before the handler returns (a line means the handler completed). Each
 * line is one write(2), so a SIGKILL never leaves half a record.
 */
import { closeSync, existsSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';

/** One handled message: its id, the worker's number, when (ms since epoch) and, on Kafka, where it was read. */
export interface Handled {
  id: number;
  worker: number;
  at: number;
  partition?: number;
  offset?: number;
}

/** Appends one line per handled message to a worker's record file. */
export class RecordWriter {
  readonly #fd: number;

  constructor(path: string) {
    this.#fd = openSync(path, 'a');
  }

  handled(id: number, where?: { partition: number; offset: number }): void {
    const tail = where ? `\t${where.partition}\t${where.offset}` : '';
    writeSync(this.#fd, `${id}\t${Date.now()}${tail}\n`);
  }

  close(): void {
    closeSync(this.#fd);
  }
}

/** Every complete line of a worker's record file. */
export function readRecords(path: string, worker: number): Handled[] {
  if (!existsSync(path)) return [];
  const text = readFileSync(path, 'utf8');
  const lines = text.split('\n');
  lines.pop(); // after the last newline: '' (or a cut line, which is not a record)
  return lines.map((line) => {
    const f = line.split('\t').map(Number);
    if (f.length < 2 || f.some((n) => !Number.isFinite(n))) throw new Error(`${path}: unreadable record ${JSON.stringify(line)}`);
    const h: Handled = { id: f[0]!, worker, at: f[1]! };
    if (f.length >= 4) Object.assign(h, { partition: f[2]!, offset: f[3]! });
    return h;
  });
}

/** Whether a worker has recorded anything yet (cheap: the file's size). */
export function hasRecords(path: string): boolean {
  return existsSync(path) && statSync(path).size > 0;
}
