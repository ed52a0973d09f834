/**
 * What chaos workers leave behind: one append-only file per process, a line per handled id,
 * written synchronously before the handler returns (a line means the handler completed), and on
 * Kafka a line per group event (a rebalance starts, an assignment arrives). Each line is one
 * write(2), so a SIGKILL never leaves half a record.
 */
import { closeSync, existsSync, openSync, readFileSync, writeSync } from 'node:fs';

/** One handled message: its id, the worker's number, when the handler started and ended (ms since epoch), whether the broker said it was delivered before and, on Kafka, where it was read. */
export interface Handled {
  id: number;
  worker: number;
  started: number;
  at: number;
  redelivered: boolean;
  partition?: number;
  offset?: number;
}

/** A Kafka group event of one worker: told a rebalance starts (the adapter commits its done prefix then), or given its new assignment. */
export interface GroupEvent {
  worker: number;
  at: number;
  kind: 'rebalancing' | 'assigned';
  /** With `assigned`: the partitions per topic. */
  assignment?: Record<string, number[]>;
}

/** Appends one line per handled message (and group event) to a worker's record file. */
export class RecordWriter {
  readonly #fd: number;

  constructor(path: string) {
    this.#fd = openSync(path, 'a');
  }

  handled(id: number, started: number, redelivered: boolean, where?: { partition: number; offset: number }): void {
    const tail = where ? `\t${where.partition}\t${where.offset}` : '';
    writeSync(this.#fd, `${id}\t${started}\t${Date.now()}\t${redelivered ? 1 : 0}${tail}\n`);
  }

  group(kind: GroupEvent['kind'], assignment?: Record<string, number[]>): void {
    writeSync(this.#fd, `#${kind}\t${Date.now()}${assignment ? `\t${JSON.stringify(assignment)}` : ''}\n`);
  }

  close(): void {
    closeSync(this.#fd);
  }
}

/** Every complete line of a worker's record file. */
export function readRecords(path: string, worker: number): { handled: Handled[]; events: GroupEvent[] } {
  const handled: Handled[] = [];
  const events: GroupEvent[] = [];
  if (!existsSync(path)) return { handled, events };
  const lines = readFileSync(path, 'utf8').split('\n');
  lines.pop(); // after the last newline: '' (or a cut line, which is not a record)
  for (const line of lines) {
    const [head, ...rest] = line.split('\t');
    if (head === '#rebalancing' || head === '#assigned') {
      const event: GroupEvent = { worker, at: Number(rest[0]), kind: head.slice(1) as GroupEvent['kind'] };
      if (rest[1] !== undefined) event.assignment = JSON.parse(rest[1]) as Record<string, number[]>;
      events.push(event);
      continue;
    }
    const f = rest.map(Number);
    const id = Number(head);
    if (f.length < 3 || !Number.isFinite(id) || f.some((n) => !Number.isFinite(n))) throw new Error(`${path}: unreadable record ${JSON.stringify(line)}`);
    const h: Handled = { id, worker, started: f[0]!, at: f[1]!, redelivered: f[2] === 1 };
    if (f.length >= 5) Object.assign(h, { partition: f[3]!, offset: f[4]! });
    handled.push(h);
  }
  return { handled, events };
}
