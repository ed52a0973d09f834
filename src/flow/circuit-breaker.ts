import { TypedEmitter } from '../emitter.js';
import { PermanentError, ShutdownError } from '../errors.js';
import type { Message } from '../message.js';
import { functionOption, integerOption, numberOption, objectOption, stringOption } from '../validate.js';
import { ADMIT, type FlowGate, type GateDecision, type GatedConsumer, type GateOutcome } from './gate.js';

export interface CircuitBreakerOptions {
  /**
   * Names the gate: the pause reason in `status().pausedBy` and `paused` events, `gated` events, the
   * metric's `breaker` label. Default `'circuit-breaker'`. Give each breaker its own name when one
   * consumer uses two (one per downstream).
   */
  name?: string;
  /**
   * Opens when failures / calls over the window reach this, once the window holds at least
   * `minCalls`. A number with 0 < failureRate ≤ 1. Default `0.5`.
   */
  failureRate?: number;
  /** Fewer calls than this in the window never open it by rate. An integer ≥ 1. Default `20`. */
  minCalls?: number;
  /**
   * The time-based sliding window of outcomes, in ms. It slides in tenths of itself: an outcome
   * leaves the window between 0.9 × windowMs and windowMs after it was recorded. Default `60_000`.
   */
  windowMs?: number;
  /** How long it stays open before it lets probes through (half-open), in ms. Default `30_000`. */
  openMs?: number;
  /**
   * Messages let through when half-open, across every consumer that uses this breaker. All of
   * them succeeding closes it; one failing opens it again for `openMs`. An integer ≥ 1. Default `3`.
   */
  halfOpenProbes?: number;
  /**
   * Also opens after this many counted failures in a row, whatever the window says (a success
   * resets the run). An integer ≥ 1. Default: off.
   */
  consecutiveFailures?: number;
  /**
   * Which handler errors are the downstream's fault and count as failures. An error it says
   * `false` to counts as a success (the downstream answered; the message was at fault), as in
   * resilience4j. Default: every error except `PermanentError` and its subclass `DecodeError`,
   * which are the message's fault, not the downstream's. A predicate that throws counts the error
   * as a failure. A `ShutdownError` (the consumer stopping) never counts either way.
   */
  isFailure?: (error: unknown) => boolean;
}

export type CircuitBreakerState = 'closed' | 'open' | 'half-open';

export interface CircuitBreakerStatus {
  name: string;
  state: CircuitBreakerState;
  /** Failures / calls over the window; 0 when the window is empty. Recorded only while closed. */
  failureRate: number;
  /** Calls (successes + failures) in the window. */
  calls: number;
  failures: number;
  /** Counted failures in a row (while closed). */
  consecutiveFailures: number;
  /** When it last opened (`Date.now()`), while open or half-open; `undefined` when closed. */
  openedAt: number | undefined;
  /** Half-open: probes not yet admitted, admitted and running, and succeeded so far (all 0 otherwise). */
  probes: { left: number; inFlight: number; succeeded: number };
  /** How many times it has opened since it was made. */
  opened: number;
}

export type CircuitBreakerOpenReason = 'failure-rate' | 'consecutive-failures' | 'probe-failed' | 'manual';

export interface CircuitBreakerEvents {
  /** Every transition. */
  state: { from: CircuitBreakerState; to: CircuitBreakerState; status: CircuitBreakerStatus };
  /** It opened: every consumer using it pauses at its next delivery. `error`: the last failure counted (none when opened by hand). */
  open: { reason: CircuitBreakerOpenReason; error: unknown; status: CircuitBreakerStatus };
  /** `openMs` passed (or `halfOpen()` was called): probes may go through; paused consumers resume. */
  halfOpen: { status: CircuitBreakerStatus };
  /** Every probe succeeded: consumers resume. */
  close: { status: CircuitBreakerStatus };
}

const OWNER = 'CircuitBreaker';
/** The window is kept as this many slices of windowMs / SLICES each. */
const SLICES = 10;

/** Is this error the downstream's fault? The default: anything but the message's own fault. */
export function defaultIsFailure(error: unknown): boolean {
  return !(error instanceof PermanentError);
}

/**
 * A circuit breaker as a flow gate, shareable by every consumer that calls the same downstream.
 *
 * Closed, it admits everything and records each outcome (from `done()`) in a time-based sliding
 * window; it opens when the failure rate over at least `minCalls` reaches `failureRate` (or after
 * `consecutiveFailures` in a row). Open, it refuses every message with a `resumeWhen` that
 * settles when it goes half-open, so each consumer pauses at the broker under the breaker's name
 * instead of spinning on redeliveries; failures it counts while open are excused (given back
 * without counting the attempt), so an outage never walks healthy messages into the dead-letter
 * queue. After `openMs` it is half-open: exactly `halfOpenProbes` messages go through, across
 * all consumers, and the rest are refused with a pause until the probes end. Every probe
 * succeeding closes it (consumers resume); one failing opens it again.
 *
 * Outcomes of messages admitted in an earlier state (in flight when it opened) never count as
 * probes or in a later window: only what it admitted in its current state decides.
 */
export class CircuitBreaker extends TypedEmitter<CircuitBreakerEvents> implements FlowGate {
  readonly name: string;
  readonly failureRate: number;
  readonly minCalls: number;
  readonly windowMs: number;
  readonly openMs: number;
  readonly halfOpenProbes: number;
  readonly consecutiveFailures: number | undefined;
  readonly #isFailure: (error: unknown) => boolean;

  #state: CircuitBreakerState = 'closed';
  /** Raised on every transition; each admitted message remembers the one it was admitted in. */
  #epoch = 0;
  readonly #admitted = new WeakMap<Message, number>();

  // The sliding window: SLICES cells, each holding one slice of time; #slice is the newest slice's index.
  readonly #sliceMs: number;
  readonly #calls = new Array<number>(SLICES).fill(0);
  readonly #failures = new Array<number>(SLICES).fill(0);
  #slice: number;
  #totalCalls = 0;
  #totalFailures = 0;
  #streak = 0;
  /** The last failure recorded while closed: what the `open` event names even when a success tipped the rate. */
  #lastFailure: unknown;

  #openedAt: number | undefined;
  #opened = 0;
  #timer: NodeJS.Timeout | undefined;
  #probesLeft = 0;
  #probesInFlight = 0;
  #probesSucceeded = 0;
  /** The refusal handed out until it may admit again (closed, half-open, or a probe's place freed); shared by every consumer. */
  #refusal: { decision: GateDecision; resolve: () => void } | undefined;

  constructor(options: CircuitBreakerOptions = {}) {
    super();
    const o = objectOption(OWNER, 'options', options) as CircuitBreakerOptions;
    this.name = stringOption(OWNER, 'name', o.name, 'circuit-breaker');
    this.failureRate = numberOption(OWNER, 'failureRate', o.failureRate, { min: 0, max: 1, fallback: 0.5 });
    if (this.failureRate === 0) throw new RangeError(`${OWNER}: option "failureRate" must be > 0 and <= 1, got 0`);
    this.minCalls = integerOption(OWNER, 'minCalls', o.minCalls, { min: 1, fallback: 20 });
    this.windowMs = numberOption(OWNER, 'windowMs', o.windowMs, { min: 1, fallback: 60_000 });
    this.openMs = numberOption(OWNER, 'openMs', o.openMs, { min: 0, fallback: 30_000 });
    this.halfOpenProbes = integerOption(OWNER, 'halfOpenProbes', o.halfOpenProbes, { min: 1, fallback: 3 });
    this.consecutiveFailures = o.consecutiveFailures === undefined ? undefined : integerOption(OWNER, 'consecutiveFailures', o.consecutiveFailures, { min: 1 });
    this.#isFailure = o.isFailure === undefined ? defaultIsFailure : functionOption(OWNER, 'isFailure', o.isFailure);
    this.#sliceMs = this.windowMs / SLICES;
    this.#slice = Math.floor(performance.now() / this.#sliceMs);
  }

  get state(): CircuitBreakerState {
    return this.#state;
  }

  // --- the gate ---------------------------------------------------------------------------

  admit(message: Message, _consumer?: GatedConsumer): GateDecision {
    if (this.#state === 'closed') {
      this.#admitted.set(message, this.#epoch);
      return ADMIT;
    }
    if (this.#state === 'half-open' && this.#probesLeft > 0) {
      this.#probesLeft--;
      this.#probesInFlight++;
      this.#admitted.set(message, this.#epoch);
      return ADMIT;
    }
    return this.#refuse();
  }

  done(message: Message, outcome: GateOutcome, _consumer?: GatedConsumer): void {
    const epoch = this.#admitted.get(message);
    if (epoch === undefined) return;
    this.#admitted.delete(message);
    // Admitted in an earlier state: evidence from before the last transition decides nothing now.
    if (epoch !== this.#epoch) return;
    const verdict = this.#verdict(outcome);
    if (this.#state === 'closed') {
      if (verdict !== 'skip') this.#record(verdict === 'fail', outcome.error);
      return;
    }
    // Half-open (nothing is admitted while open, so the epoch matches only a probe).
    this.#probesInFlight--;
    if (verdict === 'skip') {
      // It never really ran: its place goes back, and paused consumers wake to bring another.
      this.#probesLeft++;
      this.#wake();
    } else if (verdict === 'fail') {
      this.#open('probe-failed', outcome.error);
    } else if (++this.#probesSucceeded >= this.halfOpenProbes) {
      this.#close();
    }
  }

  /**
   * True while open or half-open for an error it counts: the downstream is down, so the runtime
   * gives the message back without counting its attempt. The failure that opens the breaker is
   * excused too (`done()` runs before this is asked). A message's own fault (by `isFailure`) is
   * never excused, so a poison message still reaches the dead-letter queue during an outage.
   */
  excuses(error: unknown, _message?: Message, _consumer?: GatedConsumer): boolean {
    return this.#state !== 'closed' && !(error instanceof ShutdownError) && this.#counts(error);
  }

  /** Closed: no limit. Open: 0. Half-open: the probes not yet admitted. */
  capacity(_consumer?: GatedConsumer): number {
    if (this.#state === 'closed') return Number.POSITIVE_INFINITY;
    return this.#state === 'open' ? 0 : this.#probesLeft;
  }

  // --- control and status -----------------------------------------------------------------

  /** Moves an open breaker to half-open now instead of after `openMs` (the downstream is known to be back). False if it was not open. */
  halfOpen(): boolean {
    if (this.#state !== 'open') return false;
    this.#halfOpen();
    return true;
  }

  /** Opens it now (maintenance of the downstream); it half-opens after `openMs` as usual. False if it was already open. */
  open(): boolean {
    if (this.#state === 'open') return false;
    this.#open('manual', undefined);
    return true;
  }

  status(): CircuitBreakerStatus {
    this.#advance(performance.now());
    const calls = this.#totalCalls;
    const halfOpen = this.#state === 'half-open';
    return {
      name: this.name,
      state: this.#state,
      failureRate: calls === 0 ? 0 : this.#totalFailures / calls,
      calls,
      failures: this.#totalFailures,
      consecutiveFailures: this.#streak,
      openedAt: this.#openedAt,
      probes: halfOpen ? { left: this.#probesLeft, inFlight: this.#probesInFlight, succeeded: this.#probesSucceeded } : { left: 0, inFlight: 0, succeeded: 0 },
      opened: this.#opened,
    };
  }

  // --- internals --------------------------------------------------------------------------

  #counts(error: unknown): boolean {
    try {
      return this.#isFailure(error) !== false;
    } catch {
      return true;
    }
  }

  #verdict(outcome: GateOutcome): 'ok' | 'fail' | 'skip' {
    if (outcome.result === 'succeeded') return 'ok';
    if (outcome.result === 'skipped' || outcome.error instanceof ShutdownError) return 'skip';
    return this.#counts(outcome.error) ? 'fail' : 'ok';
  }

  /** One refusal object per waiting period, shared by every consumer; it pauses them until #wake. */
  #refuse(): GateDecision {
    if (this.#refusal !== undefined) return this.#refusal.decision;
    let resolve!: () => void;
    const resumeWhen = new Promise<void>((r) => (resolve = r));
    this.#refusal = { decision: Object.freeze({ admit: false, resumeWhen }), resolve };
    return this.#refusal.decision;
  }

  /** It may admit again: consumers paused by its refusals resume. */
  #wake(): void {
    const refusal = this.#refusal;
    if (refusal === undefined) return;
    this.#refusal = undefined;
    refusal.resolve();
  }

  /** Drops the slices that have slid out of the window by `now`. */
  #advance(now: number): void {
    const slice = Math.floor(now / this.#sliceMs);
    if (slice === this.#slice) return;
    if (slice < this.#slice || slice - this.#slice >= SLICES) {
      // A clock that went back (fake timers installed later) or a window that slid out entirely.
      this.#clearWindow();
    } else {
      for (let s = this.#slice + 1; s <= slice; s++) {
        const i = s % SLICES;
        this.#totalCalls -= this.#calls[i]!;
        this.#totalFailures -= this.#failures[i]!;
        this.#calls[i] = 0;
        this.#failures[i] = 0;
      }
    }
    this.#slice = slice;
  }

  #clearWindow(): void {
    this.#calls.fill(0);
    this.#failures.fill(0);
    this.#totalCalls = 0;
    this.#totalFailures = 0;
  }

  #record(failed: boolean, error: unknown): void {
    this.#advance(performance.now());
    const i = this.#slice % SLICES;
    this.#calls[i]!++;
    this.#totalCalls++;
    if (failed) {
      this.#failures[i]!++;
      this.#totalFailures++;
      this.#streak++;
      this.#lastFailure = error;
    } else {
      this.#streak = 0;
    }
    if (this.consecutiveFailures !== undefined && this.#streak >= this.consecutiveFailures) {
      this.#open('consecutive-failures', this.#lastFailure);
    } else if (this.#totalCalls >= this.minCalls && this.#totalFailures / this.#totalCalls >= this.failureRate) {
      this.#open('failure-rate', this.#lastFailure);
    }
  }

  #transition(to: CircuitBreakerState): CircuitBreakerState {
    const from = this.#state;
    this.#state = to;
    this.#epoch++;
    this.#probesLeft = 0;
    this.#probesInFlight = 0;
    this.#probesSucceeded = 0;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    return from;
  }

  #open(reason: CircuitBreakerOpenReason, error: unknown): void {
    const from = this.#transition('open');
    this.#opened++;
    this.#openedAt = Date.now();
    this.#streak = 0;
    // Not kept alive by this timer alone: broker connections keep a service running.
    this.#timer = setTimeout(() => this.#halfOpen(), this.openMs);
    this.#timer.unref?.();
    const status = this.status();
    this.emit('state', { from, to: 'open', status });
    this.emit('open', { reason, error, status });
  }

  #halfOpen(): void {
    const from = this.#transition('half-open');
    this.#probesLeft = this.halfOpenProbes;
    this.#wake();
    const status = this.status();
    this.emit('state', { from, to: 'half-open', status });
    this.emit('halfOpen', { status });
  }

  #close(): void {
    const from = this.#transition('closed');
    this.#openedAt = undefined;
    this.#streak = 0;
    this.#lastFailure = undefined;
    this.#clearWindow();
    this.#wake();
    const status = this.status();
    this.emit('state', { from, to: 'closed', status });
    this.emit('close', { status });
  }
}
