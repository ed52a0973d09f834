import { setMaxListeners } from 'node:events';
import { abortableDelay } from './backoff.js';
import { deadLetterInfo, type DeadLetterInfo } from './dead-letter.js';
import { TypedEmitter } from './emitter.js';
import { PermanentError, SettlementError, ShutdownError, TaskTimeoutError, ValidationError } from './errors.js';
import { validateMessage } from './schema.js';
import { PoolDisplacedError } from './pool/share.js';
import type { ConsumerEvents, ConsumerHealth, ConsumerState, ConsumerStatus, StopOptions, StopResult } from './consumer-events.js';
import { resolveConsumerOptions, type ConsumerOptions, type FailureDecision, type ResolvedConsumerOptions } from './consumer-options.js';
import type { Delivery, DispatchResult, Source, SourceContext, SourceEvent } from './source.js';
import { abortEntry, Context, Entry, InFlight, type EntryRunner } from './entry.js';
import { Batch, BatchCallContext, Batcher, type BatchRunner } from './batch.js';
import type { BatchResult } from './handler.js';
import type { Message } from './message.js';
import type { FlowGate, GateDecision, GatedConsumer, GateOutcome } from './flow/gate.js';
import { PauseReasons } from './pause.js';
import { HOLD_PLACE, RELEASE_PLACES, RUN_JOB } from './pool/job.js';
import { carryOut, PendingDeadLetters } from './settle.js';
import type { GiveBackReason, Settlement } from './settlement.js';
import { StallWatchdog } from './watchdog.js';

const noop = () => {};
const SUCCEEDED: GateOutcome = Object.freeze({ result: 'succeeded', durationMs: 0 });
const SKIPPED: GateOutcome = Object.freeze({ result: 'skipped', durationMs: 0 });

/**
 * The consumer runtime: the one place where a handler's outcome becomes a settlement, and the one
 * owner of carrying it out. Adapters supply a Source (pull, pause, resume) and Deliveries (the
 * broker's ack, retry, dead-letter, give back, defer); this class owns gates, overload, retry and
 * dead-letter decisions, failing broker actions, timeouts, pauses and shutdown.
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
  readonly #runner: EntryRunner;
  #stopping = new AbortController();
  readonly #pauses: PauseReasons;
  #overloadStreak = 0;
  /** Refusals in a row by a gate that gave no time to resume: the pause after each grows. */
  #gatedStreak = 0;
  #watchdog: StallWatchdog;
  #stopped: Promise<StopResult> | undefined;
  #counts = {
    handled: 0,
    failed: 0,
    retried: 0,
    deadLettered: 0,
    givenBack: 0,
    overloaded: 0,
    gated: 0,
    skippedStale: 0,
    settlementFailures: 0,
    deferred: 0,
    abandoned: 0,
    batches: 0,
  };
  #connection: 'unknown' | 'connected' | 'disconnected' = 'unknown';
  /** The pool's lifetime signal, watched once: its abort (close without drain) reaches every handler signal. */
  #poolSignal: AbortSignal | undefined;
  #consecutiveFailures = 0;
  /** True from a settlement that had to fall back until a retry or dead-letter next succeeds. */
  #settlementFailing = false;
  /** Retries or dead letters in a row handed back because the broker refused them and their deferral: the pause after each grows. */
  #refusedStreak = 0;
  readonly #pendingDeadLetters = new PendingDeadLetters<DeadLetterInfo>();
  /** Retries whose delay the runtime waits out (sources without delayedRetry), off the pool. */
  readonly #delayed = new Map<Entry, { timer: NodeJS.Timeout; settlement: Settlement }>();
  /** Settlements carried out off the pool (delayed retries): stop() waits for them. */
  #offPool = 0;
  /** The entry whose dispatch is running, so that a cancellation inside it becomes a refusal. */
  #dispatching: Entry | undefined;
  readonly #gates: FlowGate[];
  /** What gates see of this consumer. */
  readonly #gated: GatedConsumer;
  /** Gathers messages for `batchHandler`; undefined without one. */
  readonly #batcher: Batcher | undefined;

  // Data (the schema's output) only types the handlers: the runtime sets message.data itself.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  constructor(source: Source, options: ConsumerOptions<Raw, any>) {
    super();
    this.#o = resolveConsumerOptions(options, source.name);
    this.name = this.#o.name;
    this.source = source;
    this.#gates = this.#o.gates;
    this.#runner = {
      process: (entry) => this.#process(entry),
      cancelled: (entry, reason) => this.#cancelled(entry, reason),
      share: this.#o.share,
    };
    const batch = this.#o.batch;
    if (batch !== undefined) {
      const credit = source.credit;
      if (credit !== undefined && credit < batch.size) {
        throw new RangeError(
          `consumer "${this.name}": option "batch.size" ${batch.size} is larger than the broker's credit ${credit} (${source.name}'s prefetch): ` +
            `a batch could never fill; raise the prefetch or lower batch.size`,
        );
      }
      const runner: BatchRunner = {
        process: (b) => this.#processBatch(b),
        cancelled: (b, reason) => this.#batchCancelled(b, reason),
        share: this.#o.share,
      };
      this.#batcher = new Batcher(batch.size, batch.timeoutMs, runner, (b) => this.#runBatch(b));
    }
    const inFlight = this.#inFlight;
    this.#gated = {
      name: this.name,
      get inFlight() {
        return inFlight.size;
      },
    };
    // Adapters and pause waits listen on this one signal; many at once is expected, not a leak.
    setMaxListeners(0, this.#stopping.signal);
    this.#watchdog = new StallWatchdog(this.#o.stallTimeoutMs, () => this.#inFlight.size, {
      stalled: (e) => this.emit('stalled', e),
      unstalled: (e) => this.emit('unstalled', e),
    });
    this.#pauses = new PauseReasons({
      pauseSource: () => this.source.pause().catch((error: unknown) => this.emit('error', { error, during: 'pause' })),
      resumeSource: () => this.source.resume().catch((error: unknown) => this.emit('error', { error, during: 'resume' })),
      mayResume: () => this.#state === 'running' || this.#state === 'starting',
      paused: (reason) => {
        this.emit('paused', { reason });
        this.#flushStarved();
      },
      resumed: (reason, pausedMs) => this.emit('resumed', { reason, pausedMs }),
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
      name: this.name,
      dispatch: (delivery) => this.#dispatch(delivery),
      freeCapacity: () => this.#freeCapacity(),
      whenAvailable: (signal) => this.#o.pool.whenAvailable(signal),
      signal: this.#stopping.signal,
      report: (event) => this.#report(event),
      batchSize: this.#o.batch?.size ?? 1,
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
   * Stops consumption at the broker for `reason` (default `'user'`) until `resume(reason)`.
   * Reasons are counted: the consumer resumes only when every reason is lifted (overload, flow
   * gates and callers each hold their own). Messages already taken go on and settle.
   */
  pause(reason = 'user'): Promise<void> {
    return this.#pauses.pause(reason);
  }

  /** Lifts `reason` (default `'user'`); consumption resumes when no other reason holds. */
  resume(reason = 'user'): Promise<void> {
    return this.#pauses.resume(reason);
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
      paused: this.#pauses.paused,
      pausedBy: this.#pauses.reasons(),
      stalled: this.#watchdog.stalled,
      inFlight: this.#inFlight.size,
      delayedRetries: this.#delayed.size,
      batching: this.#batcher?.gathering ?? 0,
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
    if (this.#pauses.paused) worst('degraded', `paused: ${this.#pauses.reasons().join(', ')}`);
    if (this.#consecutiveFailures >= this.#o.degradedAfterFailures) worst('degraded', `${this.#consecutiveFailures} handler failures in a row`);
    if (this.#settlementFailing) worst('degraded', 'the broker refuses retries or dead letters: messages are being set aside');
    return {
      status,
      ready: state === 'running' && this.#connection !== 'disconnected',
      details: {
        name: this.name,
        state,
        connection: this.#connection,
        paused: this.#pauses.paused,
        stalled: this.#watchdog.stalled,
        consecutiveFailures: this.#consecutiveFailures,
        settlementFailing: this.#settlementFailing,
        inFlight: this.#inFlight.size,
        reasons,
      },
    };
  }

  // --- dispatch ---------------------------------------------------------------------------

  #freeCapacity(): number {
    let free = this.#o.pool.freeCapacity;
    for (const gate of this.#gates) {
      if (!gate.capacity) continue;
      try {
        const capacity = gate.capacity(this.#gated);
        // NaN would stop a pull-based source from ever asking again.
        if (!(capacity >= 0)) throw new TypeError(`it returned ${String(capacity)}, not a number ≥ 0`);
        free = Math.min(free, capacity);
      } catch (error) {
        this.#gateThrew(gate, 'capacity', error); // no limit from it: admit() still decides
      }
    }
    return free;
  }

  /**
   * A gate is user code that must not throw; if it does, the exception must not reach the
   * adapter (it runs inside the broker client's reader). Reported, and the gate's answer is the
   * safe one: admit() refuses (the message is given back), excuses() says no, done() and
   * capacity() count for nothing. So does an answer of the wrong kind from admit() or capacity().
   */
  #gateThrew(gate: FlowGate, call: string, error: unknown, message?: Delivery['message']): void {
    const reason = error instanceof Error ? error.message : String(error);
    this.emit('error', { error: new Error(`consumer "${this.name}": flow gate "${gate.name}" threw in ${call}(): ${reason}`, { cause: error }), during: 'gate', message });
  }

  /** Refusals are the return value: the adapter gives a refused message back itself. */
  #dispatch(delivery: Delivery): DispatchResult {
    if (this.#state === 'stopping' || this.#state === 'stopped') {
      this.#refused(delivery, 'shutdown');
      return 'stopping';
    }
    const gates = this.#gates;
    if (gates.length > 0 && !this.#admit(delivery)) return 'gated';
    const entry = new Entry(this.#runner, delivery);
    // In flight before the pool may start it (the handler runs inside this call when a slot is free).
    const idle = this.#inFlight.size === 0;
    if (this.#batcher !== undefined && this.#o.handler === undefined) return this.#dispatchToBatch(entry, idle);
    this.#inFlight.add(entry);
    this.#dispatching = entry;
    const result = this.#o.pool[RUN_JOB](entry);
    this.#dispatching = undefined;
    // Queued and cancelled at once (a 'saturated' listener closed the pool): refused, the adapter gives it back.
    if (result === 'queued' && entry.state === 'done') {
      this.#refused(delivery, 'shutdown');
      return 'stopping';
    }
    if (result === 'started' || result === 'queued') {
      if (idle) this.#watchdog.busy();
      this.#overloadStreak = 0;
      return 'accepted';
    }
    this.#inFlight.delete(entry);
    this.#gatesDone(delivery, SKIPPED);
    if (result === 'closed') return this.#poolClosed(delivery);
    this.#overload(delivery);
    return 'overloaded';
  }

  /** A shared pool closed under a running consumer: refuse and stop pulling, no resume loop. */
  #poolClosed(delivery: Delivery): 'stopping' {
    this.#refused(delivery, 'shutdown');
    if (!this.#pauses.has('pool-closed')) {
      this.emit('error', { error: new Error(`consumer "${this.name}": its pool is closed; consumption paused`), during: 'dispatch' });
      void this.#pauses.pause('pool-closed');
    }
    return 'stopping';
  }

  /** Without a per-message handler, a message goes straight into its batch, holding a place of the pool. */
  #dispatchToBatch(entry: Entry, idle: boolean): DispatchResult {
    const { delivery } = entry;
    const pool = this.#o.pool;
    if (!pool[HOLD_PLACE]()) {
      this.#gatesDone(delivery, SKIPPED);
      if (pool.closed) return this.#poolClosed(delivery);
      this.#flushStarved();
      this.#overload(delivery);
      return 'overloaded';
    }
    this.#inFlight.add(entry);
    if (idle) this.#watchdog.busy();
    this.#overloadStreak = 0;
    this.#gather(entry);
    return 'accepted';
  }

  /** Puts an entry (holding a place of the pool) into its batch; a key that cannot be computed dead-letters it. */
  #gather(entry: Entry): void {
    const keyOf = this.#o.batch!.key;
    let key: string | undefined;
    if (keyOf !== undefined) {
      let error: unknown;
      try {
        key = keyOf(entry.delivery.message);
        if (typeof key !== 'string') error = new TypeError(`batch.key returned ${typeof key}, not a string`);
      } catch (e) {
        error = e;
      }
      if (error !== undefined) {
        this.#o.pool[RELEASE_PLACES](1);
        const permanent = new PermanentError(`batch.key failed for message ${entry.delivery.message.id}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
        this.emit('error', { error: permanent, during: 'batch-key', message: entry.delivery.message });
        const { message } = entry.delivery;
        return this.#finishWithout(entry, { type: 'dead-letter', info: deadLetterInfo(permanent, message.deliveryAttempt, message.source, 'permanent-error') });
      }
    }
    this.#batcher!.add(entry, key);
    this.#flushStarved();
  }

  /**
   * When nothing more can come to fill the open batches (the pool is full, this consumer holds all
   * of the broker's credit, or it is paused), waiting for size or timeout would leave a free slot
   * idle: the largest open batch starts now, as long as slots are free. Without a free slot a
   * batch stays open, so that it can still grow when places come back. Checked when a message is
   * gathered or refused, when a slot frees and when consumption pauses.
   */
  #flushStarved(): void {
    const batcher = this.#batcher;
    if (batcher === undefined || batcher.gathering === 0) return;
    const pool = this.#o.pool;
    const credit = this.source.credit;
    while (
      batcher.gathering > 0 &&
      pool.active + pool.pending < pool.limit &&
      (pool.freeCapacity === 0 || this.#pauses.paused || (credit !== undefined && this.#inFlight.size >= credit))
    ) {
      if (!batcher.flushLargest()) return;
    }
  }

  /** Asks every gate; the first refusal decides, and the gates that had admitted it hear it was skipped. */
  #admit(delivery: Delivery): boolean {
    const gates = this.#gates;
    const message = delivery.message;
    for (let i = 0; i < gates.length; i++) {
      const gate = gates[i]!;
      let decision: GateDecision;
      try {
        decision = gate.admit(message, this.#gated);
        if (typeof decision?.admit !== 'boolean') throw new TypeError(`it returned ${String(decision)}, not { admit: true | false }`);
      } catch (error) {
        this.#gateThrew(gate, 'admit', error, message);
        decision = { admit: false };
      }
      if (decision.admit) continue;
      for (let j = 0; j < i; j++) this.#gateDone(gates[j]!, message, SKIPPED);
      this.#counts.gated++;
      this.emit('gated', { message, gate: gate.name });
      this.#refused(delivery, 'gated');
      // Without a time to resume, a short growing pause all the same: the broker would otherwise
      // hand the refused message straight back, and the consumer would spin on it.
      if (!this.#pauses.has(gate.name)) {
        const { resumeAfterMs, resumeWhen } = decision;
        const until =
          resumeWhen ?? abortableDelay(resumeAfterMs ?? this.#o.overloadBackoff.delayMs(++this.#gatedStreak), this.#stopping.signal);
        void this.#pauseUntil(gate.name, until);
      }
      return false;
    }
    this.#gatedStreak = 0;
    return true;
  }

  /** Tells the gates how an accepted entry ended, once. */
  #tellGates(entry: Entry, outcome: GateOutcome): void {
    if (entry.gatesTold || this.#gates.length === 0) return;
    entry.gatesTold = true;
    this.#gatesDone(entry.delivery, outcome);
  }

  #gatesDone(delivery: Delivery, outcome: GateOutcome): void {
    const gates = this.#gates;
    for (let i = 0; i < gates.length; i++) this.#gateDone(gates[i]!, delivery.message, outcome);
  }

  #gateDone(gate: FlowGate, message: Delivery['message'], outcome: GateOutcome): void {
    if (gate.done === undefined) return;
    try {
      gate.done(message, outcome, this.#gated);
    } catch (error) {
      this.#gateThrew(gate, 'done', error, message);
    }
  }

  /** A refused message: the adapter hands it back; the runtime only counts and tells. */
  #refused(delivery: Delivery, reason: GiveBackReason): void {
    this.#counts.givenBack++;
    if (this.listenerCount('givenBack') > 0) this.emit('givenBack', { message: delivery.message, reason });
  }

  /** A queued entry the pool cancelled (closed without drain): it was not processed, give it back. */
  #cancelled(entry: Entry, reason: unknown): void {
    this.#inFlight.delete(entry);
    this.#tellGates(entry, SKIPPED);
    // Cancelled inside its own dispatch: that is a refusal, which dispatch returns.
    if (entry === this.#dispatching) return;
    // Displaced by a fairer share of the pool's waiting room: a give-back for overload, not for shutdown.
    void this.#carry(entry, { type: 'give-back', reason: reason instanceof PoolDisplacedError ? 'overload' : 'shutdown' });
  }

  /** The pool gave the entry a slot. Never throws; ends with #end, which frees the slot. */
  #process(entry: Entry): void {
    const delivery = entry.delivery;
    // Aborted while it waited in the pool's queue (stop deadline): it never runs; give it back.
    if (entry.abortReason !== undefined) return this.#finishWithout(entry, { type: 'give-back', reason: 'shutdown' });
    // Its channel or partition is gone: the broker delivers it again, so running it would only repeat the work.
    if (delivery.stale !== undefined && delivery.stale()) {
      this.#counts.skippedStale++;
      this.#tellGates(entry, SKIPPED);
      this.#end(entry);
      return;
    }
    const { message } = delivery;
    if (this.#pendingDeadLetters.size > 0) {
      const info = this.#pendingDeadLetters.take(message.id);
      if (info !== undefined) return this.#finishWithout(entry, { type: 'dead-letter', info });
    }
    const schema = this.#o.schema;
    if (schema !== undefined) {
      const invalid = validateMessage(schema, message);
      if (invalid instanceof Promise) {
        invalid.then((error) => (error === undefined ? this.#runHandler(entry) : this.#outcome(entry, error)));
        return;
      }
      if (invalid !== undefined) return this.#outcome(entry, invalid);
    }
    this.#runHandler(entry);
  }

  /** Runs the handler of an entry that has a slot and passed its checks; ends with #outcome. */
  #runHandler(entry: Entry): void {
    const { message } = entry.delivery;
    this.#watchPool(entry.poolSignal!);
    // The clock is read only when someone takes durations (metrics, gates): per message it costs.
    if (this.#gates.length > 0 || this.listenerCount('handled') + this.listenerCount('failed') > 0) entry.startedAt = performance.now();
    const ctx = new Context(entry, message.deliveryAttempt);
    let handlerDone: Promise<void> | void;
    try {
      handlerDone = this.#o.handler!(message as never, ctx);
    } catch (error) {
      handlerDone = Promise.reject(error);
    }
    // One reaction on the handler's own promise, no async function. A handler that returned no
    // promise is settled a microtask later all the same: adapters may rely on no outcome arriving
    // while their dispatch() call is still running.
    let done = handlerDone instanceof Promise ? handlerDone : Promise.resolve(handlerDone);
    if (this.#o.handlerTimeoutMs !== undefined) {
      // The slot is held until the handler really ends, even when it lost the race (see #end).
      entry.handlerDone = done;
      const timeoutMs = this.#o.handlerTimeoutMs;
      done = withTimeout(done, entry, timeoutMs, () => abortEntry(entry, new TaskTimeoutError(timeoutMs)));
    }
    done.then(
      () => this.#outcome(entry, undefined),
      // Failed because it was aborted (the stop deadline): whatever it threw, that is a give-back.
      (error: unknown) => this.#outcome(entry, entry.abortReason ?? error ?? new Error('handler rejected without a reason')),
    );
  }

  /** Settles an entry whose handler does not run (aborted in the queue, a remembered dead letter). */
  #finishWithout(entry: Entry, settlement: Settlement): void {
    this.#tellGates(entry, SKIPPED);
    const settling = this.#carry(entry, settlement);
    settling.then(() => this.#end(entry), () => this.#end(entry));
  }


  /** The handler's outcome (`error` undefined: it succeeded) becomes one settlement; the slot is freed once it is carried out. */
  #outcome(entry: Entry, error: unknown): void {
    // Already given back by stop() at its deadline: only the slot is left to free.
    if (entry.settled) return this.#end(entry);
    const durationMs = entry.startedAt === undefined ? 0 : performance.now() - entry.startedAt;
    let settling: void | Promise<void>;
    if (error === undefined && this.#batcher !== undefined && entry.batch === undefined) {
      // `handler` ran first and succeeded: its slot becomes a held place, and the message waits for its batch.
      entry.startedAt = undefined;
      entry.release(false, true);
      return this.#gather(entry);
    }
    if (error === undefined) {
      if (this.#gates.length > 0) this.#tellGates(entry, durationMs === 0 ? SUCCEEDED : { result: 'succeeded', durationMs });
      settling = this.#ack(entry, durationMs);
    } else {
      if (this.#gates.length > 0) this.#tellGates(entry, { result: 'failed', error, durationMs });
      // An adaptive pool shrinks on failures of the downstream, not on poison messages or a shutdown.
      entry.failed = !(error instanceof PermanentError || error instanceof ShutdownError);
      settling = this.#carry(entry, this.#decide(entry, error, durationMs));
    }
    if (settling === undefined) this.#end(entry);
    else settling.then(() => this.#end(entry), () => this.#end(entry));
  }

  #end(entry: Entry): void {
    const batch = entry.batch;
    if (batch !== undefined) {
      this.#watchdog.progress();
      this.#inFlight.delete(entry);
      return this.#batchPart(batch);
    }
    const handlerDone = entry.handlerDone;
    if (handlerDone !== undefined) {
      // A handler that ignored its signal and lost the timeout race keeps its slot until it really ends: the bound stays true.
      entry.handlerDone = undefined;
      handlerDone.then(() => this.#end(entry), () => this.#end(entry));
      return;
    }
    this.#watchdog.progress();
    this.#inFlight.delete(entry);
    entry.release(entry.failed);
    if (this.#batcher !== undefined) this.#flushStarved();
  }

  /** One listener per pool, not per message: closing the pool without drain aborts running handlers' signals. */
  #watchPool(poolSignal: AbortSignal): void {
    if (this.#poolSignal === poolSignal) return;
    this.#poolSignal = poolSignal;
    poolSignal.addEventListener(
      'abort',
      () => {
        for (const entry of this.#inFlight.snapshot()) {
          entry.controller?.abort(poolSignal.reason);
          entry.batch?.controller?.abort(poolSignal.reason);
        }
      },
      { once: true },
    );
  }

  // --- batches ----------------------------------------------------------------------------

  /** A full or timed-out batch goes to the pool; it brings its places, so it is never refused for overload. */
  #runBatch(batch: Batch): void {
    const result = this.#o.pool[RUN_JOB](batch);
    if (result === 'closed') this.#batchCancelled(batch, new ShutdownError(`consumer "${this.name}": its pool is closed`));
  }

  /** A batch that will not run (its pool closed): each message is given back. */
  #batchCancelled(batch: Batch, reason: unknown): void {
    this.#o.pool[RELEASE_PLACES](batch.heldPlaces);
    batch.heldPlaces = 0;
    // No slot to free: the entries end as if they had never been gathered.
    for (const entry of batch.entries) {
      entry.batch = undefined;
      this.#inFlight.delete(entry);
      this.#tellGates(entry, SKIPPED);
      void this.#carry(entry, { type: 'give-back', reason: reason instanceof PoolDisplacedError ? 'overload' : 'shutdown' });
    }
  }

  /** The pool gave the batch a slot: the live entries go to the handler in one call. Never throws. */
  #processBatch(batch: Batch): void {
    this.#counts.batches++;
    // One part for the handler phase, one per entry: the slot is freed when all have ended.
    batch.open = 1 + batch.entries.length;
    const run: Entry[] = [];
    for (const entry of batch.entries) {
      const { delivery } = entry;
      if (entry.abortReason !== undefined) {
        this.#finishWithout(entry, { type: 'give-back', reason: 'shutdown' });
      } else if (delivery.stale !== undefined && delivery.stale()) {
        this.#counts.skippedStale++;
        this.#tellGates(entry, SKIPPED);
        this.#end(entry);
      } else {
        const info = this.#pendingDeadLetters.size > 0 ? this.#pendingDeadLetters.take(delivery.message.id) : undefined;
        if (info !== undefined) this.#finishWithout(entry, { type: 'dead-letter', info });
        else run.push(entry);
      }
    }
    // With `handler` as well, the schema was checked before it ran.
    const schema = this.#o.handler === undefined ? this.#o.schema : undefined;
    if (schema !== undefined) {
      const checks = run.map((entry) => validateMessage(schema, entry.delivery.message));
      if (checks.some((c) => c instanceof Promise)) {
        void Promise.all(checks).then((results) => this.#callBatch(batch, this.#valid(run, results)));
        return;
      }
      return this.#callBatch(batch, this.#valid(run, checks as (Error | undefined)[]));
    }
    this.#callBatch(batch, run);
  }

  /** The entries that passed the schema; the others settle on their own (dead-lettered, or retried if the schema threw). */
  #valid(run: Entry[], results: (Error | undefined)[]): Entry[] {
    const valid: Entry[] = [];
    for (let i = 0; i < run.length; i++) {
      const error = results[i];
      if (error === undefined) valid.push(run[i]!);
      else this.#outcome(run[i]!, error);
    }
    return valid;
  }

  #callBatch(batch: Batch, run: Entry[]): void {
    batch.running = run;
    if (run.length === 0) return this.#batchPart(batch);
    this.#watchPool(batch.poolSignal!);
    batch.startedAt = performance.now();
    const messages = run.map((e) => e.delivery.message);
    const ctx = new BatchCallContext(batch);
    let result: Promise<BatchResult | void> | BatchResult | void;
    try {
      result = this.#o.batchHandler!(messages as never, ctx);
    } catch (error) {
      result = Promise.reject(error);
    }
    // Settled a microtask later even when synchronous: a batch may start inside an adapter's dispatch() call.
    let done: Promise<BatchResult | void> = result instanceof Promise ? result : Promise.resolve(result);
    const timeoutMs = this.#o.handlerTimeoutMs;
    if (timeoutMs !== undefined) {
      batch.handlerDone = done.then(noop, noop);
      done = withTimeout(done, batch, timeoutMs, () => batch.abort(new TaskTimeoutError(timeoutMs)));
    }
    done.then(
      (value) => this.#batchOutcome(batch, undefined, value),
      (error: unknown) => this.#batchOutcome(batch, batch.abortReason ?? error ?? new Error('batch handler rejected without a reason'), undefined),
    );
  }


  /** Each message of the call gets its own outcome: failed if the call threw or it was marked, else succeeded. */
  #batchOutcome(batch: Batch, thrown: unknown, result: BatchResult | void): void {
    const durationMs = performance.now() - batch.startedAt;
    let failures = batch.failures;
    if (thrown === undefined && result !== undefined && result !== null && result.failed !== undefined) {
      // Read whole before anything is applied: a result the runtime cannot read fails the whole call.
      const members = new Set(batch.running.map((e) => e.delivery.message));
      const named = new Map<Message, unknown>();
      try {
        for (const { message, error } of result.failed) {
          if (!members.has(message)) {
            throw new TypeError(`batch handler: its result's "failed" names a message that is not in this batch (id ${String((message as { id?: unknown } | undefined)?.id)})`);
          }
          named.set(message, error ?? new Error('marked failed without a reason'));
        }
        for (const [message, error] of named) (failures ??= new Map()).set(message, error);
      } catch (error) {
        thrown = error;
      }
    }
    let failed = 0;
    let succeeded = 0;
    for (const entry of batch.running) {
      const message = entry.delivery.message;
      const error = failures?.get(message) ?? thrown;
      // Given back by stop() at its deadline while the call ran: neither succeeded nor failed in it.
      if (!entry.settled) {
        if (error === undefined) succeeded++;
        else failed++;
      }
      entry.startedAt = batch.startedAt;
      this.#outcome(entry, error);
    }
    // An adaptive pool hears of a failing downstream, not of poison messages or a shutdown.
    batch.failed = thrown !== undefined && !(thrown instanceof PermanentError || thrown instanceof ShutdownError);
    if (this.listenerCount('batch') > 0) this.emit('batch', { key: batch.key, size: batch.running.length, durationMs, succeeded, failed });
    this.#batchPart(batch);
  }

  /** One part of a batch ended (an entry settled, or the handler phase); the last one frees the slot. */
  #batchPart(batch: Batch): void {
    if (--batch.open > 0) return;
    const handlerDone = batch.handlerDone;
    if (handlerDone !== undefined) {
      // A handler that ignored its signal and lost the timeout race keeps the slot until it really ends.
      batch.handlerDone = undefined;
      batch.open = 1;
      handlerDone.then(() => this.#batchPart(batch));
      return;
    }
    batch.release();
    this.#flushStarved();
  }

  // --- settlement -------------------------------------------------------------------------

  /** A failed handler's settlement: the default rule, or what `failurePolicy` decides instead. */
  #decide(entry: Entry, error: unknown, durationMs: number): Settlement {
    const { message } = entry.delivery;
    const attempt = message.deliveryAttempt;
    this.#counts.failed++;
    this.#consecutiveFailures++;
    let settlement: Settlement;
    if (error instanceof ShutdownError) {
      settlement = { type: 'give-back', reason: 'shutdown' };
    } else if (this.#gates.length > 0 && this.#excused(error, message)) {
      settlement = { type: 'give-back', reason: 'excused' };
    } else {
      const maxAttempts = this.#o.retry.maxAttempts;
      const permanent = error instanceof PermanentError;
      let decision: FailureDecision =
        permanent || attempt >= maxAttempts ? { action: 'dead-letter' } : { action: 'retry', delayMs: this.#o.retry.delayMs(attempt) };
      const policy = this.#o.failurePolicy;
      if (policy !== undefined) {
        try {
          decision = policy(error, { message, attempt, maxAttempts, next: decision }) ?? decision;
        } catch (policyError) {
          this.emit('error', { error: policyError, during: 'failure-policy', message });
        }
      }
      if (decision.action === 'dead-letter') {
        const reason = error instanceof ValidationError ? 'invalid' : permanent ? 'permanent-error' : attempt >= maxAttempts ? 'max-attempts' : 'failure-policy';
        settlement = { type: 'dead-letter', info: deadLetterInfo(error, attempt, message.source, reason) };
      } else if (decision.action === 'retry') {
        settlement = { type: 'retry', delayMs: Math.max(0, decision.delayMs ?? this.#o.retry.delayMs(attempt)), nextAttempt: attempt + 1 };
      } else {
        settlement = { type: 'give-back', reason: 'failure-policy' };
      }
    }
    this.emit('failed', { message, error, attempt, durationMs, next: settlement.type as 'retry' | 'dead-letter' | 'give-back' });
    return settlement;
  }

  /** A gate takes the blame for this failure (an open circuit breaker): the attempt does not count. */
  #excused(error: unknown, message: Delivery['message']): boolean {
    for (const gate of this.#gates) {
      try {
        if (gate.excuses?.(error, message, this.#gated) === true) return true;
      } catch (gateError) {
        this.#gateThrew(gate, 'excuses', gateError, message);
      }
    }
    return false;
  }

  /** The common case, inlined: no closure, and no promise when the adapter acks synchronously. */
  #ack(entry: Entry, durationMs: number): void | Promise<void> {
    entry.settled = true;
    let done: void | Promise<void>;
    try {
      done = entry.delivery.ack();
    } catch (error) {
      return this.#ackFailed(entry, durationMs, error);
    }
    // Anything but a thenable is a synchronous ack (a `() => void` may still return a value).
    if (typeof (done as Promise<void> | undefined)?.then !== 'function') return this.#acked(entry, durationMs);
    return (done as Promise<void>).then(
      () => this.#acked(entry, durationMs),
      (error: unknown) => this.#ackFailed(entry, durationMs, error),
    );
  }

  #acked(entry: Entry, durationMs: number): void {
    this.#counts.handled++;
    this.#consecutiveFailures = 0;
    // No event object when nobody listens.
    if (this.listenerCount('handled') > 0) this.emit('handled', { message: entry.delivery.message, attempt: entry.delivery.message.deliveryAttempt, durationMs });
  }

  /** An ack that failed on its first try: the settlement policy takes over from the second. */
  #ackFailed(entry: Entry, durationMs: number, error: unknown): Promise<void> {
    return this.#carryNow(entry, { type: 'ack' }, durationMs, { error });
  }

  /**
   * Carries out a settlement exactly once per delivery, through the one policy for failing broker
   * actions (settle.ts). A retry the broker cannot delay is first waited out here, off the pool.
   */
  #carry(entry: Entry, settlement: Settlement, durationMs = 0): Promise<void> {
    if (entry.settled) return Promise.resolve();
    entry.settled = true;
    if (settlement.type === 'retry' && settlement.delayMs > 0 && !this.source.capabilities.delayedRetry && this.#state !== 'stopping') {
      this.#delay(entry, settlement);
      return Promise.resolve();
    }
    return this.#carryNow(entry, settlement, durationMs);
  }

  async #carryNow(entry: Entry, settlement: Settlement, durationMs: number, firstFailure?: { error: unknown }): Promise<void> {
    const { delivery } = entry;
    const { message } = delivery;
    let tried = 0;
    const { result, error } = await carryOut(delivery, settlement, this.source.capabilities, this.#o.settlement, {
      failed: (during, e) => {
        tried++;
        this.#counts.settlementFailures++;
        this.emit('error', { error: e, during, message });
      },
      signal: entry.abortReason instanceof ShutdownError ? this.#stopping.signal : undefined,
    }, firstFailure);
    if (result === 'done') {
      if (tried > 0 || settlement.type === 'retry' || settlement.type === 'dead-letter') {
        this.#settlementFailing = false;
        this.#refusedStreak = 0;
      }
      this.#settled(entry, settlement, durationMs);
      return;
    }
    if (result === 'stale') {
      this.#counts.skippedStale++;
      return;
    }
    if (result === 'deferred' && settlement.type === 'dead-letter') this.#pendingDeadLetters.remember(message.id, settlement.info);
    if (result === 'deferred') this.#counts.deferred++;
    if (result === 'given-back') this.#counts.givenBack++;
    if (result === 'abandoned') this.#counts.abandoned++;
    if (settlement.type === 'retry' || settlement.type === 'dead-letter') {
      this.#settlementFailing = true;
      if (result !== 'deferred') this.#pauseAfterRefusal();
    }
    const tries = this.#o.settlement.tries;
    const fallback = result as 'deferred' | 'given-back' | 'abandoned';
    const failure = new SettlementError(
      `consumer "${this.name}": ${settlement.type} of message ${message.id} failed ${tries} time(s); ${describeFallback(fallback)}`,
      settlement.type,
      tries,
      fallback,
      { cause: error },
    );
    this.emit('error', { error: failure, during: settlement.type, message });
    if (result === 'deferred') this.emit('deferred', { message, settlement: settlement.type, error: failure });
  }

  #settled(entry: Entry, settlement: Settlement, durationMs: number): void {
    const { message } = entry.delivery;
    switch (settlement.type) {
      case 'ack':
        return this.#acked(entry, durationMs);
      case 'retry':
        this.#counts.retried++;
        return this.emit('retried', { message, nextAttempt: settlement.nextAttempt, delayMs: settlement.delayMs });
      case 'dead-letter':
        this.#counts.deadLettered++;
        return this.emit('deadLettered', { message, info: settlement.info });
      case 'give-back':
        this.#counts.givenBack++;
        return this.emit('givenBack', { message, reason: settlement.reason });
    }
  }

  /**
   * A retry or dead letter the broker refused, its deferral too (RabbitMQ under a memory alarm:
   * every publish is blocked): the message was handed back and comes straight back to fail the same
   * way. Consumption pauses, longer while it lasts, so that this is not a hot loop of deliveries.
   */
  #pauseAfterRefusal(): void {
    if (this.#state === 'stopping' || this.#pauses.has('settlement')) return;
    void this.#pauseUntil('settlement', abortableDelay(this.#o.overloadBackoff.delayMs(++this.#refusedStreak), this.#stopping.signal));
  }

  /** Waits a retry's delay off the pool; stop() ends the wait at once. */
  #delay(entry: Entry, settlement: Settlement & { type: 'retry' }): void {
    this.#offPool++;
    const timer = setTimeout(() => this.#undelay(entry), settlement.delayMs);
    this.#delayed.set(entry, { timer, settlement });
  }

  #undelay(entry: Entry): void {
    const delayed = this.#delayed.get(entry);
    if (delayed === undefined) return;
    this.#delayed.delete(entry);
    clearTimeout(delayed.timer);
    void this.#carryNow(entry, delayed.settlement, 0).finally(() => this.#offPool--);
  }

  // --- overload ---------------------------------------------------------------------------

  #overload(delivery: Delivery): void {
    this.#counts.overloaded++;
    const policy = this.#o.onOverload;
    this.emit('overloaded', { message: delivery.message, policy, pool: this.#o.pool.status() });
    this.#refused(delivery, 'overload');
    if (this.#pauses.has('overload')) return;
    const stop = this.#stopping.signal;
    const pool = this.#o.pool;
    if (policy === 'pause') void this.#pauseUntil('overload', pool.whenAvailable(stop));
    else void this.#pauseUntil('overload', abortableDelay(this.#o.overloadBackoff.delayMs(++this.#overloadStreak), stop));
  }

  /** Pauses for `reason` until `until` settles (either way), then lifts that reason. */
  async #pauseUntil(reason: string, until: Promise<unknown>): Promise<void> {
    const settled = until.catch(noop);
    if (this.#pauses.has(reason)) return;
    void this.#pauses.pause(reason);
    await settled;
    await this.#pauses.resume(reason);
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
    // Partial batches run now, within the deadline, rather than waiting for their size or timeout.
    this.#batcher?.flushAll();
    // Retries waiting out their delay go now rather than being dropped or held past the stop.
    for (const entry of [...this.#delayed.keys()]) this.#undelay(entry);
    const drained = await this.#inFlightDone(timeoutMs);
    if (!drained) {
      const reason = new ShutdownError(`consumer "${this.name}": stop deadline of ${timeoutMs} ms passed`);
      for (const entry of this.#inFlight.snapshot()) abortEntry(entry, reason);
      // Handlers that honour their signal settle (and give back) now; the rest are given back for them.
      await this.#inFlightDone(Math.min(1000, Math.max(50, timeoutMs / 10)));
      for (const entry of this.#inFlight.snapshot()) {
        if (entry.settled) continue;
        // Its handler may still end later; the gates hear now that it was not processed (a breaker's probe place comes back).
        this.#tellGates(entry, SKIPPED);
        await this.#carry(entry, { type: 'give-back', reason: 'shutdown' });
      }
    }
    this.#watchdog.stop();
    await this.source.close().catch((error: unknown) => this.emit('error', { error, during: 'close' }));
    if (this.#o.ownsPool) await this.#o.pool.close({ drain: false, timeoutMs: 0 });
    this.#setState('stopped');
    return { drained, givenBack: this.#counts.givenBack - givenBackBefore };
  }

  async #inFlightDone(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (this.#inFlight.size > 0 || this.#offPool > 0) {
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

/**
 * Races a handler's promise (an entry's or a batch's) against its timeout: at the timeout `abort`
 * aborts the job, whose `onAbort` ends the race at once; the timeout counts as a failure.
 */
function withTimeout<T>(done: Promise<T>, job: { abortReason: unknown; onAbort: ((reason: unknown) => void) | undefined }, timeoutMs: number, abort: () => void): Promise<T> {
  if (job.abortReason !== undefined) return Promise.reject(job.abortReason);
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(abort, timeoutMs);
    job.onAbort = reject;
    done.then(
      (value) => {
        clearTimeout(timer);
        job.onAbort = undefined;
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        job.onAbort = undefined;
        reject(error);
      },
    );
  });
}

function describeFallback(result: 'deferred' | 'given-back' | 'abandoned'): string {
  if (result === 'deferred') return 'set aside to come back later (broker credit freed, nothing lost)';
  if (result === 'given-back') return 'handed back unchanged';
  return 'left to the broker, which delivers it again when its channel or lease ends';
}

export type { ConsumerOptions, Middleware } from './consumer-options.js';
