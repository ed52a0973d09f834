import { jobSignal, type Entry, type JobRunner } from './entry.js';
import type { BatchContext } from './handler.js';
import type { Message } from './message.js';
import type { FinishJob, PoolJob } from './pool/job.js';
import type { PoolShare } from './pool/share.js';

export type BatchRunner = JobRunner<Batch>;

/**
 * Messages gathered under one batch key, and at the same time the pool job that runs them in one
 * slot. While it gathers and while it waits for a slot, each of its messages holds a place of the
 * pool (`heldPlaces`): batching never lets a consumer hold more than the pool's capacity.
 */
export class Batch implements PoolJob {
  state: PoolJob['state'] = 'new';
  queuePrev: PoolJob | undefined = undefined;
  queueNext: PoolJob | undefined = undefined;
  /** Pool bookkeeping: the places its messages hold until it starts. */
  heldPlaces = 0;
  readonly entries: Entry[] = [];
  /** The entries handed to the handler (the others were stale, aborted or remembered dead letters). */
  running: Entry[] = [];
  /** Entries not yet ended, plus one while the handler phase lasts: the slot is freed at 0. */
  open = 0;
  /** Flushes a partial batch `timeoutMs` after its first message. */
  timer: NodeJS.Timeout | undefined = undefined;
  /** Why the handler must stop (timeout, stop deadline). */
  abortReason: unknown = undefined;
  controller: AbortController | undefined = undefined;
  /** Ends the timeout race at once when the batch is aborted. */
  onAbort: ((reason: unknown) => void) | undefined = undefined;
  poolSignal: AbortSignal | undefined = undefined;
  finish: FinishJob | undefined = undefined;
  /** The handler's own promise when a timeout races it: the slot is held until it really ends. */
  handlerDone: Promise<void> | undefined = undefined;
  /** Messages marked failed by `ctx.fail`, made on the first mark. */
  failures: Map<Message, unknown> | undefined = undefined;
  startedAt = 0;
  /** The handler failed as a whole (not for poison messages or a shutdown): an adaptive pool hears it. */
  failed = false;

  constructor(
    readonly runner: BatchRunner,
    readonly key: string | undefined,
  ) {}

  get share(): PoolShare | undefined {
    return this.runner.share;
  }

  start(signal: AbortSignal, finish: FinishJob): void {
    this.poolSignal = signal;
    this.finish = finish;
    this.runner.process(this);
  }

  cancel(reason: unknown): void {
    this.runner.cancelled(this, reason);
  }

  abort(reason: unknown): void {
    if (this.abortReason !== undefined) return;
    this.abortReason = reason;
    this.controller?.abort(reason);
    this.onAbort?.(reason);
  }

  /** Frees the slot (once). */
  release(): void {
    const finish = this.finish;
    this.finish = undefined;
    finish?.(this, this.failed);
  }
}

/** The batch handler's `ctx`. */
export class BatchCallContext implements BatchContext {
  readonly #batch: Batch;
  #members: Set<Message> | undefined;

  constructor(batch: Batch) {
    this.#batch = batch;
  }

  get key(): string | undefined {
    return this.#batch.key;
  }

  get signal(): AbortSignal {
    return jobSignal(this.#batch);
  }

  fail(message: Message, error: unknown): void {
    const batch = this.#batch;
    this.#members ??= new Set(batch.running.map((e) => e.delivery.message));
    if (!this.#members.has(message)) {
      throw new TypeError(`batch handler: ctx.fail() was given a message that is not in this batch (id ${String((message as Message | undefined)?.id)})`);
    }
    (batch.failures ??= new Map()).set(message, error ?? new Error('marked failed without a reason'));
  }
}

/**
 * Gathers entries into open batches, one per key, and hands a batch on when it reaches `size`,
 * when `timeoutMs` has passed since its first message, or when everything is flushed (stop).
 */
export class Batcher {
  readonly #open = new Map<string | undefined, Batch>();
  #gathering = 0;
  /** From stop on: every message is flushed at once, nothing waits for a full batch. */
  #flushingAll = false;

  constructor(
    readonly size: number,
    readonly timeoutMs: number,
    readonly runner: BatchRunner,
    /** Hands a full or timed-out batch to the pool. */
    readonly flush: (batch: Batch) => void,
  ) {}

  /** Messages in open batches, not handed to the pool yet. */
  get gathering(): number {
    return this.#gathering;
  }

  add(entry: Entry, key: string | undefined): void {
    let batch = this.#open.get(key);
    if (batch === undefined) {
      batch = new Batch(this.runner, key);
      this.#open.set(key, batch);
      if (!this.#flushingAll) {
        const open = batch;
        open.timer = setTimeout(() => this.#close(open), this.timeoutMs);
      }
    }
    entry.batch = batch;
    batch.entries.push(entry);
    batch.heldPlaces++;
    this.#gathering++;
    if (batch.entries.length >= this.size || this.#flushingAll) this.#close(batch);
  }

  /** Flushes the open batch with the most messages; false when none is open. */
  flushLargest(): boolean {
    let largest: Batch | undefined;
    for (const batch of this.#open.values()) if (largest === undefined || batch.entries.length > largest.entries.length) largest = batch;
    if (largest === undefined) return false;
    this.#close(largest);
    return true;
  }

  /** Flushes every open batch now, and from now on each message as it comes (the consumer is stopping). */
  flushAll(): void {
    this.#flushingAll = true;
    for (const batch of [...this.#open.values()]) this.#close(batch);
  }

  #close(batch: Batch): void {
    if (this.#open.get(batch.key) !== batch) return;
    this.#open.delete(batch.key);
    clearTimeout(batch.timer);
    batch.timer = undefined;
    this.#gathering -= batch.entries.length;
    this.flush(batch);
  }
}
