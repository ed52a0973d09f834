import { setMaxListeners } from 'node:events';
import { deadLetterInfo } from './dead-letter.js';
import { TypedEmitter } from './emitter.js';
import { PermanentError, ShutdownError, TaskTimeoutError } from './errors.js';
import type { ConsumerEvents, ConsumerHealth, ConsumerState, ConsumerStatus, StopOptions, StopResult } from './consumer-events.js';
import { resolveConsumerOptions, type ConsumerOptions, type ResolvedConsumerOptions } from './consumer-options.js';
import type { Delivery, DispatchResult, Source, SourceContext, SourceEvent } from './source.js';
import { abortEntry, Context, Entry, InFlight, type EntryRunner } from './entry.js';
import { RUN_JOB } from './pool/job.js';
import { StallWatchdog } from './watchdog.js';
import { abortableDelay } from './reconnect.js';

type Outcome = { ok: true } | { ok: false; error: unknown };
const SUCCEEDED: Outcome = { ok: true };

const noop = () => {};

/**
 * The consumer runtime: the one place where a handler's outcome becomes a broker action.
 * Adapters supply a Source (pull, pause, resume) and Deliveries (ack, retry, dead-letter,
 * give back); this class owns retry, dead-letter decisions, overload, timeouts and shutdown.
 */
export class Consumer<Raw = unknown> extends TypedEmitter<ConsumerEvents> implements AsyncDisposable {
  readonly name: string;
  readonly source: Source;
  // Raw only types the handler given to the constructor: a Consumer<StoredMessage> is usable as a Consumer.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  readonly #o: ResolvedConsumerOptions<any>;
  #state: ConsumerState = 'new';
  #inFlight = new InFlight();
  /** How entries reach this consumer when the pool starts or cancels them (one object, not a closure per message). */
  readonly #runner: EntryRunner = {
    process: (entry) => this.#process(entry),
    cancelled: (entry) => this.#cancelled(entry),
  };
  #stopping = new AbortController();
  #paused = false;
  #overloadStreak = 0;
  #watchdog: StallWatchdog;
  #stopped: Promise<StopResult> | undefined;
  #counts = { handled: 0, failed: 0, retried: 0, deadLettered: 0, givenBack: 0, overloaded: 0 };
  #connection: 'unknown' | 'connected' | 'disconnected' = 'unknown';
  /** The pool's lifetime signal, watched once: its abort (close without drain) reaches every handler signal. */
  #poolSignal: AbortSignal | undefined;
  #consecutiveFailures = 0;

  constructor(source: Source, options: ConsumerOptions<Raw>) {
    super();
    this.#o = resolveConsumerOptions(options, source.name);
    this.name = this.#o.name;
    this.source = source;
    // Adapters and pause waits listen on this one signal; many at once is expected, not a leak.
    setMaxListeners(0, this.#stopping.signal);
    this.#watchdog = new StallWatchdog(this.#o.stallTimeoutMs, () => this.#inFlight.size, {
      stalled: (e) => this.emit('stalled', e),
      unstalled: (e) => this.emit('unstalled', e),
    });
  }

  get pool() {
    return this.#o.pool;
  }

  get state(): ConsumerState {
    return this.#state;
  }

  /** Connects and begins consuming. Rejects with the adapter's error if the broker cannot be reached. */
  async start(): Promise<void> {
    if (this.#state !== 'new') throw new Error(`consumer "${this.name}": start() called in state ${this.#state}`);
    this.#setState('starting');
    const context: SourceContext = {
      dispatch: (delivery) => this.#dispatch(delivery),
      freeCapacity: () => this.#o.pool.freeCapacity,
      whenAvailable: (signal) => this.#o.pool.whenAvailable(signal),
      signal: this.#stopping.signal,
      report: (event) => this.#report(event),
    };
    try {
      await this.source.start(context);
    } catch (error) {
      this.#setState('stopped');
      await this.source.close().catch(noop);
      if (this.#o.ownsPool) await this.#o.pool.close({ drain: false });
      throw error;
    }
    if (this.#connection === 'unknown') this.#connection = 'connected';
    this.#watchdog.start();
    this.#setState('running');
  }

  /**
   * Stops pulling, lets in-flight work finish and settle, and gives back what did not finish by
   * the deadline (its handlers' signals are aborted). Idempotent.
   */
  stop(options: StopOptions = {}): Promise<StopResult> {
    this.#stopped ??= this.#stop(options.timeoutMs ?? this.#o.stopTimeoutMs);
    return this.#stopped;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }

  status(): ConsumerStatus {
    return {
      name: this.name,
      state: this.#state,
      paused: this.#paused,
      stalled: this.#watchdog.stalled,
      inFlight: this.#inFlight.size,
      ...this.#counts,
      pool: this.#o.pool.status(),
    };
  }

  /** Liveness and readiness from state, connection, pause, the stall watchdog and failures in a row. */
  health(): ConsumerHealth {
    const state = this.#state;
    const reasons: string[] = [];
    let status: ConsumerHealth['status'] = 'ok';
    const worst = (s: ConsumerHealth['status'], reason: string) => {
      reasons.push(reason);
      if (s === 'down' || status === 'ok') status = s;
    };
    if (state === 'new' || state === 'starting' || state === 'stopped') worst('down', `state is ${state}`);
    if (state === 'stopping') worst('degraded', 'draining');
    if (this.#connection === 'disconnected') worst('down', 'broker connection lost');
    if (this.#watchdog.stalled) worst('degraded', `stalled: ${this.#inFlight.size} in flight, nothing completed for ${this.#o.stallTimeoutMs} ms`);
    if (this.#paused) worst('degraded', 'paused: the pool is full');
    if (this.#consecutiveFailures >= this.#o.degradedAfterFailures) worst('degraded', `${this.#consecutiveFailures} handler failures in a row`);
    return {
      status,
      ready: state === 'running' && this.#connection !== 'disconnected',
      details: {
        name: this.name,
        state,
        connection: this.#connection,
        paused: this.#paused,
        stalled: this.#watchdog.stalled,
        consecutiveFailures: this.#consecutiveFailures,
        inFlight: this.#inFlight.size,
        reasons,
      },
    };
  }

  // --- dispatch ---------------------------------------------------------------------------

  #dispatch(delivery: Delivery): DispatchResult {
    const entry = new Entry(this.#runner, delivery);
    if (this.#state === 'stopping' || this.#state === 'stopped') {
      this.#settle(entry, 'give-back', () => this.#giveBack(entry, 'shutdown'));
      return 'stopping';
    }
    // In flight before the pool may start it (the handler runs inside this call when a slot is free).
    const idle = this.#inFlight.size === 0;
    this.#inFlight.add(entry);
    const result = this.#o.pool[RUN_JOB](entry);
    // Queued and cancelled at once (a 'saturated' listener closed the pool): #cancelled gave it back.
    if (result === 'queued' && entry.state === 'done') return 'stopping';
    if (result === 'started' || result === 'queued') {
      if (idle) this.#watchdog.progress();
      this.#overloadStreak = 0;
      return 'accepted';
    }
    this.#inFlight.delete(entry);
    if (result === 'closed') {
      // A shared pool closed under a running consumer: hand the message back and stop pulling, no resume loop.
      this.#settle(entry, 'give-back', () => this.#giveBack(entry, 'shutdown'));
      if (!this.#paused) {
        this.#paused = true;
        this.emit('error', { error: new Error(`consumer "${this.name}": its pool is closed; consumption paused`), during: 'dispatch' });
        void this.source.pause().catch((error: unknown) => this.emit('error', { error, during: 'pause' }));
      }
      return 'stopping';
    }
    this.#overload(entry);
    return 'overloaded';
  }

  /** A queued entry the pool cancelled (closed without drain): it was not processed, give it back. */
  #cancelled(entry: Entry): void {
    this.#inFlight.delete(entry);
    this.#settle(entry, 'give-back', () => this.#giveBack(entry, 'shutdown'));
  }

  /** The pool gave the entry a slot. Never throws; ends with #end, which frees the slot. */
  #process(entry: Entry): void {
    // Aborted while it waited in the pool's queue (stop deadline): it never runs; give it back.
    if (entry.abortReason !== undefined) {
      this.#inFlight.delete(entry);
      void this.#settle(entry, 'give-back', () => this.#giveBack(entry, 'shutdown')).then(() => entry.release());
      return;
    }
    this.#watchPool(entry.poolSignal!);
    const { message } = entry.delivery;
    // The clock is read only when someone takes durations (metrics do): per message it was a visible cost.
    if (this.listenerCount('handled') + this.listenerCount('failed') > 0) entry.startedAt = performance.now();
    const ctx = new Context(entry, message.deliveryAttempt);
    let handlerDone: Promise<void> | void;
    try {
      handlerDone = this.#o.handler(message as never, ctx);
    } catch (error) {
      handlerDone = Promise.reject(error);
    }
    if (this.#o.handlerTimeoutMs !== undefined) {
      void this.#processTimed(entry, Promise.resolve(handlerDone));
      return;
    }
    // No timeout to race (the hot path): one reaction on the handler's own promise, no async
    // function. A handler that returned no promise is settled a microtask later all the same:
    // adapters may rely on no outcome arriving while their dispatch() call is still running.
    const done = handlerDone instanceof Promise ? handlerDone : Promise.resolve(handlerDone);
    done.then(
      () => this.#outcome(entry, SUCCEEDED),
      // Failed because it was aborted (the stop deadline): whatever it threw, that is a give-back.
      (error: unknown) => this.#outcome(entry, { ok: false, error: entry.abortReason ?? error }),
    );
  }

  /** The handler's outcome becomes one broker action; the slot is freed once that action is done. */
  #outcome(entry: Entry, outcome: Outcome): void {
    const settling = this.#settleOutcome(entry, outcome);
    if (settling === undefined) this.#end(entry);
    else settling.then(() => this.#end(entry), () => this.#end(entry));
  }

  #end(entry: Entry): void {
    this.#watchdog.progress();
    this.#inFlight.delete(entry);
    entry.release();
  }

  /** #process with a handler timeout: the handler races its timer. */
  async #processTimed(entry: Entry, handlerDone: Promise<void>): Promise<void> {
    const outcome = await this.#withTimeout(handlerDone, entry);
    try {
      const settling = this.#settleOutcome(entry, outcome);
      if (settling !== undefined) await settling;
    } finally {
      this.#watchdog.progress();
      // A handler that ignored its signal and lost the race still holds its slot until it really ends: the bound stays true.
      await handlerDone.catch(noop);
      this.#inFlight.delete(entry);
      entry.release();
    }
  }

  /** Races the handler against its timeout; the timeout aborts the signal and counts as a failure. */
  #withTimeout(handlerDone: Promise<void>, entry: Entry): Promise<Outcome> {
    const settled = handlerDone.then(
      (): Outcome => SUCCEEDED,
      (error: unknown): Outcome => ({ ok: false, error }),
    );
    const timeoutMs = this.#o.handlerTimeoutMs;
    if (entry.abortReason !== undefined) return Promise.resolve({ ok: false, error: entry.abortReason });
    return new Promise<Outcome>((resolve) => {
      const timer = timeoutMs === undefined ? undefined : setTimeout(() => abortEntry(entry, new TaskTimeoutError(timeoutMs)), timeoutMs);
      entry.onAbort = (reason) => resolve({ ok: false, error: reason });
      settled.then((outcome) => {
        clearTimeout(timer);
        entry.onAbort = undefined;
        resolve(outcome);
      });
    });
  }

  /** One listener per pool, not per message: closing the pool without drain aborts running handlers' signals. */
  #watchPool(poolSignal: AbortSignal): void {
    if (this.#poolSignal === poolSignal) return;
    this.#poolSignal = poolSignal;
    poolSignal.addEventListener(
      'abort',
      () => {
        for (const entry of this.#inFlight.snapshot()) entry.controller?.abort(poolSignal.reason);
      },
      { once: true },
    );
  }

  /** Exactly one broker action for the outcome. Synchronous (no promise) for a success acked synchronously. */
  #settleOutcome(entry: Entry, outcome: Outcome): void | Promise<void> {
    const attempt = entry.delivery.message.deliveryAttempt;
    const durationMs = entry.startedAt === undefined ? 0 : performance.now() - entry.startedAt;
    if (outcome.ok) return this.#ack(entry, attempt, durationMs);
    return this.#settleFailure(entry, outcome.error, attempt, durationMs);
  }

  /** #settle for the common case, inlined: no closure, and no promise when the adapter acks synchronously. */
  #ack(entry: Entry, attempt: number, durationMs: number): void | Promise<void> {
    if (entry.settled) return;
    entry.settled = true;
    let done: void | Promise<void>;
    try {
      done = entry.delivery.ack();
    } catch (error) {
      return this.#ackFailed(entry, error);
    }
    // Anything but a thenable is a synchronous ack (a `() => void` may still return a value).
    if (typeof (done as Promise<void> | undefined)?.then !== 'function') return this.#acked(entry, attempt, durationMs);
    return (done as Promise<void>).then(
      () => this.#acked(entry, attempt, durationMs),
      (error: unknown) => this.#ackFailed(entry, error),
    );
  }

  #acked(entry: Entry, attempt: number, durationMs: number): void {
    this.#counts.handled++;
    this.#consecutiveFailures = 0;
    // No event object when nobody listens.
    if (this.listenerCount('handled') > 0) this.emit('handled', { message: entry.delivery.message, attempt, durationMs });
  }

  #ackFailed(entry: Entry, error: unknown): void {
    this.emit('error', { error, during: 'ack', message: entry.delivery.message });
  }

  async #settleFailure(entry: Entry, error: unknown, attempt: number, durationMs: number): Promise<void> {
    const { message } = entry.delivery;
    this.#counts.failed++;
    this.#consecutiveFailures++;
    if (error instanceof ShutdownError) {
      this.emit('failed', { message, error, attempt, durationMs, next: 'give-back' });
      await this.#settle(entry, 'give-back', () => this.#giveBack(entry, 'shutdown'));
      return;
    }
    const permanent = error instanceof PermanentError;
    if (permanent || attempt >= this.#o.retry.maxAttempts) {
      this.emit('failed', { message, error, attempt, durationMs, next: 'dead-letter' });
      const info = deadLetterInfo(error, attempt, message.source, permanent ? 'permanent-error' : 'max-attempts');
      await this.#settle(entry, 'dead-letter', async () => {
        await entry.delivery.deadLetter(info);
        this.#counts.deadLettered++;
        this.emit('deadLettered', { message, info });
      });
      return;
    }
    this.emit('failed', { message, error, attempt, durationMs, next: 'retry' });
    const delayMs = this.#o.retry.delayMs(attempt);
    await this.#settle(entry, 'retry', async () => {
      await entry.delivery.retry(delayMs, attempt + 1);
      this.#counts.retried++;
      this.emit('retried', { message, nextAttempt: attempt + 1, delayMs });
    });
  }

  /** Runs exactly one broker action per delivery; a failing action is reported, never thrown. */
  async #settle(entry: Entry, during: string, action: () => Promise<void>): Promise<void> {
    if (entry.settled) return;
    entry.settled = true;
    try {
      await action();
    } catch (error) {
      this.emit('error', { error, during, message: entry.delivery.message });
    }
  }

  async #giveBack(entry: Entry, reason: 'overload' | 'shutdown'): Promise<void> {
    await entry.delivery.giveBack();
    this.#counts.givenBack++;
    this.emit('givenBack', { message: entry.delivery.message, reason });
  }

  // --- overload ---------------------------------------------------------------------------

  #overload(entry: Entry): void {
    this.#counts.overloaded++;
    const policy = this.#o.onOverload;
    this.emit('overloaded', { message: entry.delivery.message, policy, pool: this.#o.pool.status() });
    this.#settle(entry, 'give-back', () => this.#giveBack(entry, 'overload'));
    if (this.#paused) return;
    const stop = this.#stopping.signal;
    const pool = this.#o.pool;
    if (policy === 'pause') {
      void this.#pauseUntil(() => pool.whenAvailable(stop).catch(noop));
    } else {
      const delay = this.#o.overloadBackoff.delayMs(++this.#overloadStreak);
      void this.#pauseUntil(() => abortableDelay(delay, stop).catch(noop));
    }
  }

  async #pauseUntil(room: () => Promise<void>): Promise<void> {
    this.#paused = true;
    const since = performance.now();
    this.emit('paused', { reason: 'overload' });
    await this.source.pause().catch((error: unknown) => this.emit('error', { error, during: 'pause' }));
    await room();
    if (this.#state === 'running' || this.#state === 'starting') {
      await this.source.resume().catch((error: unknown) => this.emit('error', { error, during: 'resume' }));
    }
    this.#paused = false;
    this.emit('resumed', { pausedMs: performance.now() - since });
  }

  // --- shutdown ---------------------------------------------------------------------------

  async #stop(timeoutMs: number): Promise<StopResult> {
    if (this.#state === 'new') {
      this.#setState('stopped');
      if (this.#o.ownsPool) await this.#o.pool.close({ drain: false });
      return { drained: true, givenBack: 0 };
    }
    this.#setState('stopping');
    const givenBackBefore = this.#counts.givenBack;
    this.#stopping.abort(new ShutdownError());
    await this.source.stop().catch((error: unknown) => this.emit('error', { error, during: 'stop' }));
    const drained = await this.#inFlightDone(timeoutMs);
    if (!drained) {
      const reason = new ShutdownError(`consumer "${this.name}": stop deadline of ${timeoutMs} ms passed`);
      for (const entry of this.#inFlight.snapshot()) abortEntry(entry, reason);
      // Handlers that honour their signal settle (and give back) now; the rest are given back for them.
      await this.#inFlightDone(Math.min(1000, Math.max(50, timeoutMs / 10)));
      for (const entry of this.#inFlight.snapshot()) await this.#settle(entry, 'give-back', () => this.#giveBack(entry, 'shutdown'));
    }
    this.#watchdog.stop();
    await this.source.close().catch((error: unknown) => this.emit('error', { error, during: 'close' }));
    if (this.#o.ownsPool) await this.#o.pool.close({ drain: false, timeoutMs: 0 });
    this.#setState('stopped');
    return { drained, givenBack: this.#counts.givenBack - givenBackBefore };
  }

  async #inFlightDone(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (this.#inFlight.size > 0) {
      const left = deadline - performance.now();
      if (left <= 0) return false;
      await new Promise((r) => setTimeout(r, Math.min(left, 10)));
    }
    return true;
  }

  #report(event: SourceEvent): void {
    if (event.type === 'error') return this.emit('error', { error: event.error, during: event.detail ?? 'source' });
    this.#connection = event.type === 'disconnected' ? 'disconnected' : 'connected';
    if (event.type === 'disconnected') this.emit('connection', { state: 'disconnected', detail: event.detail, error: event.error });
    else this.emit('connection', { state: event.type, detail: event.detail });
  }

  #setState(state: ConsumerState): void {
    this.#state = state;
    this.emit('state', { state });
  }
}

export type { ConsumerOptions, Middleware } from './consumer-options.js';
