import type { Batch } from './batch.js';
import type { HandlerContext } from './handler.js';
import type { FinishJob, PoolJob } from './pool/job.js';
import type { PoolShare } from './pool/share.js';
import type { Delivery } from './source.js';

/** What the consumer runtime does when the pool starts or cancels one of its jobs (an entry, a batch). */
export interface JobRunner<J> {
  process(job: J): void;
  cancelled(job: J, reason: unknown): void;
  /** The consumer's share of a shared pool (its `share` option), made once per consumer; undefined: the pool's default share. */
  readonly share: PoolShare | undefined;
}

export type EntryRunner = JobRunner<Entry>;

/**
 * The runtime's record of one dispatched message, and at the same time its pool job: one
 * object per message, because per-message allocation is what a fast consumer pays for most.
 */
export class Entry implements PoolJob {
  /** The pool's bookkeeping: 'running' once it has a slot (synchronously inside dispatch when one was free). */
  state: PoolJob['state'] = 'new';
  /** The pool's queue links (not `prev`/`next`: an entry is in the in-flight list at the same time). */
  queuePrev: PoolJob | undefined = undefined;
  queueNext: PoolJob | undefined = undefined;
  settled = false;
  /** The flow gates have heard how it ended (once per entry). */
  gatesTold = false;
  /** Why the handler must stop (its timeout, the stop deadline); undefined while it may run. */
  abortReason: unknown = undefined;
  /**
   * The handler's signal, made only when the handler reads `ctx.signal`: an AbortController per
   * message is costly next to a fast handler, so it is not paid unless used.
   */
  controller: AbortController | undefined = undefined;
  /** Ends the timeout race at once when the entry is aborted. */
  onAbort: ((reason: unknown) => void) | undefined = undefined;
  /** The pool's lifetime signal and its end-of-job callback, given by `start`. */
  poolSignal: AbortSignal | undefined = undefined;
  finish: FinishJob | undefined = undefined;
  /** The handler's own promise when a timeout races it: the slot is held until it really ends. */
  handlerDone: Promise<void> | undefined = undefined;
  /** The handler failed (not its message's fault): an adaptive pool hears it when the slot is released. */
  failed = false;
  /** performance.now() when the handler began; read only when someone takes durations. */
  startedAt: number | undefined = undefined;
  /** Links of the in-flight list (intrusive: no Set entry per message). */
  prev: Entry | undefined = undefined;
  next: Entry | undefined = undefined;
  inFlight = false;
  /** The batch it was gathered into (batch handlers); undefined for a message handled on its own. */
  batch: Batch | undefined = undefined;

  constructor(
    readonly runner: EntryRunner,
    readonly delivery: Delivery,
  ) {}

  /** The consumer's pool share, read through the runner: no field per message. */
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

  /**
   * Releases the pool slot (once; later calls do nothing); `failed` tells an adaptive pool the
   * handler failed; `keepPlace`: the message waits to be batched, its slot becomes a held place.
   */
  release(failed = false, keepPlace = false): void {
    const finish = this.finish;
    this.finish = undefined;
    finish?.(this, failed, keepPlace);
  }
}

export function abortEntry(entry: Entry, reason: unknown): void {
  if (entry.abortReason !== undefined) return;
  entry.abortReason = reason;
  entry.controller?.abort(reason);
  entry.onAbort?.(reason);
  // A running batch stops as a whole; one still gathering or waiting leaves this entry out when it starts.
  if (entry.batch?.state === 'running') entry.batch.abort(reason);
}

/**
 * The handler's `ctx`: a class, so that its `signal` getter is not a new closure per message.
 * The AbortController is made only when the handler reads `signal` (see Entry.controller).
 */
export class Context implements HandlerContext {
  /** Private: a handler must not reach the delivery's acknowledger through its ctx. */
  readonly #entry: Entry;

  constructor(
    entry: Entry,
    readonly attempt: number,
  ) {
    this.#entry = entry;
  }

  get signal(): AbortSignal {
    return jobSignal(this.#entry);
  }
}

/**
 * The signal of a job (an entry, a batch), made on first read: aborted already if the job was
 * aborted (timeout, stop deadline) or its pool closed without draining before anyone asked.
 */
export function jobSignal(job: { controller: AbortController | undefined; poolSignal: AbortSignal | undefined; abortReason: unknown }): AbortSignal {
  if (!job.controller) {
    job.controller = new AbortController();
    const poolSignal = job.poolSignal;
    const reason = job.abortReason ?? (poolSignal?.aborted ? poolSignal.reason : undefined);
    if (reason !== undefined) job.controller.abort(reason);
  }
  return job.controller.signal;
}

/** Entries accepted and not yet ended, in dispatch order; O(1) add and delete without allocating. */
export class InFlight {
  #head: Entry | undefined;
  #tail: Entry | undefined;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  add(entry: Entry): void {
    if (entry.inFlight) return;
    entry.inFlight = true;
    entry.prev = this.#tail;
    entry.next = undefined;
    if (this.#tail) this.#tail.next = entry;
    else this.#head = entry;
    this.#tail = entry;
    this.#size++;
  }

  delete(entry: Entry): void {
    if (!entry.inFlight) return;
    entry.inFlight = false;
    if (entry.prev) entry.prev.next = entry.next;
    else this.#head = entry.next;
    if (entry.next) entry.next.prev = entry.prev;
    else this.#tail = entry.prev;
    entry.prev = entry.next = undefined;
    this.#size--;
  }

  /** A copy: callers settle or abort entries while they iterate. */
  snapshot(): Entry[] {
    const out: Entry[] = [];
    for (let e = this.#head; e; e = e.next) out.push(e);
    return out;
  }
}
