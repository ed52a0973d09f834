/**
 * A simulated bulk downstream for the batch bench: a database or bulk API where a call costs
 * `callMs` plus `rowMs` per row, so one call with n rows takes callMs + rowMs × n, waited with a
 * timer (no CPU burnt: the bench's own process must not pay for the downstream's work).
 *
 * It serves at most `capacity` calls at once and queues the others first come first served, as
 * a connection pool of that size in front of a database would: a batch handler cannot look faster
 * only because the sink is infinitely parallel. The bench sets `capacity` to the consumer pool's
 * maxConcurrency, so neither contender should ever wait in it; `stats().maxWaiting` shows whether
 * one did. (bench/flow/downstream.ts has a knee and a failure schedule but one service time for
 * every call; this one's service time depends on the call's size, and nothing else.)
 */
import { LinkedQueue } from '../../src/adapter/index.js';

export interface BulkDownstreamOptions {
  /** Calls served at once; the rest wait. */
  readonly capacity: number;
  /** Cost of a call, whatever its size, in ms. */
  readonly callMs: number;
  /** Cost of each row of a call, in ms. */
  readonly rowMs: number;
}

export interface BulkDownstreamStats {
  readonly calls: number;
  readonly rows: number;
  /** Sum over calls of the time in service, as the timers really took it (ms). */
  readonly serviceMs: number;
  /** The most calls in service at once. */
  readonly maxInService: number;
  /** The most calls waiting for a service place at once (0: the callers never exceeded capacity). */
  readonly maxWaiting: number;
}

export class BulkDownstream {
  readonly #waiting = new LinkedQueue<() => void>();
  #inService = 0;
  #stats = { calls: 0, rows: 0, serviceMs: 0, maxInService: 0, maxWaiting: 0 };

  constructor(readonly options: BulkDownstreamOptions) {
    if (!(Number.isInteger(options.capacity) && options.capacity >= 1)) throw new RangeError(`BulkDownstream: capacity must be an integer >= 1, got ${options.capacity}`);
  }

  /** The service time a call of `rows` rows is asked to take (ms). */
  costMs(rows: number): number {
    return this.options.callMs + this.options.rowMs * rows;
  }

  /** One call carrying `rows` rows; resolves when it has been served. */
  async call(rows: number): Promise<void> {
    this.#stats.calls++;
    this.#stats.rows += rows;
    if (this.#inService >= this.options.capacity) {
      await new Promise<void>((resolve) => {
        this.#waiting.push(resolve);
        if (this.#waiting.size > this.#stats.maxWaiting) this.#stats.maxWaiting = this.#waiting.size;
      });
    } else {
      this.#inService++;
    }
    if (this.#inService > this.#stats.maxInService) this.#stats.maxInService = this.#inService;
    const started = performance.now();
    try {
      await new Promise((resolve) => setTimeout(resolve, this.costMs(rows)));
    } finally {
      this.#stats.serviceMs += performance.now() - started;
      // The place passes straight to the next waiting call (inService unchanged), or is freed.
      const next = this.#waiting.shift();
      if (next) next();
      else this.#inService--;
    }
  }

  stats(): BulkDownstreamStats {
    return { ...this.#stats };
  }
}
