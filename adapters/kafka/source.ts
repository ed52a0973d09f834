import type { Consumer as KafkajsConsumer, EachBatchPayload } from 'kafkajs';
import { withRetries } from '../../src/reconnect.js';
import { redactError } from '../../src/redact.js';
import type { DispatchResult, Source, SourceContext } from '../../src/source.js';
import { KafkaDelivery, type DeliveryHooks } from './delivery.js';
import { laneOf } from './key-scheduler.js';
import type { ResolvedKafkaOptions } from './options.js';
import { PartitionState, partitionId, type PauseReason, type Work } from './partition.js';
import { kafkaPublisher, type KafkaPublisher } from './publisher.js';

const noop = () => {};

/** Commit failures that only mean "the group moved on": the next owner reads from what was committed before. */
const REBALANCE_ERRORS = new Set(['REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID', 'NOT_COORDINATOR']);

export interface KafkaSourceStatus {
  partitions: Record<string, { held: number; open: number; paused: PauseReason[]; committed: number | undefined }>;
  /** Times a partition was paused / resumed in kafkajs (any reason). */
  pauses: number;
  resumes: number;
}

interface Ready {
  state: PartitionState;
  work: Work;
}

/**
 * Kafka's Source: a kafkajs group member run with `eachBatch`, `autoCommit: false` and
 * `eachBatchAutoResolve: false`. Each message is handed to the runtime at once (or queued
 * behind its key, bounded); eachBatch never waits for handlers, so kafkajs's own loop keeps
 * fetching and heartbeating. The pool's overload, a full key buffer and the runtime's pause
 * pause a partition and rewind it to the first message not taken. Offsets are committed per
 * partition up to the first one not finished, periodically, on rebalance and on close.
 */
export class KafkaSource implements Source {
  readonly name: string;
  readonly #o: ResolvedKafkaOptions;
  #context: SourceContext | undefined;
  #client: KafkajsConsumer | undefined;
  #dlq: KafkaPublisher | undefined;
  #states = new Map<string, PartitionState>();
  /** Messages held for the pool (next heads of key lanes, retries due, given back): dispatched as room allows. */
  #ready: Ready[] = [];
  #readyHead = 0;
  #flushScheduled = false;
  #room: Promise<void> | undefined;
  #sourcePaused = false;
  #stopped = false;
  #joined = false;
  #crashes = 0;
  #pauses = 0;
  #resumes = 0;
  #commitTimer: NodeJS.Timeout | undefined;
  #commits: Promise<void> = Promise.resolve();
  #beating: Promise<undefined> | undefined;
  readonly #hooks: DeliveryHooks;

  constructor(o: ResolvedKafkaOptions) {
    this.#o = o;
    this.name = `kafka:${o.topics.join(',')}`;
    this.#hooks = {
      finished: (state, work) => this.#finished(state, work),
      retry: (state, work, delayMs, nextAttempt) => this.#retryLater(state, work, delayMs, nextAttempt),
      givenBack: (state, work) => this.#givenBack(state, work),
      publishDeadLetter: async (topic, message) => {
        if (!this.#dlq) throw new Error(`${this.name}: no dead-letter producer (the source is closed)`);
        await this.#dlq.publish(topic, [message]);
      },
      deadLetterTopic: (topic) => this.#o.deadLetterTopic(topic),
    };
  }

  /** The kafkajs consumer, for what sluice does not wrap (instrumentation events, `describeGroup`); undefined before start. */
  get client(): KafkajsConsumer | undefined {
    return this.#client;
  }

  /** What the adapter holds and pauses right now, per assigned partition (`topic/partition`), and pause counts so far. */
  status(): KafkaSourceStatus {
    const partitions: KafkaSourceStatus['partitions'] = {};
    for (const s of this.#states.values()) {
      partitions[`${s.topic}/${s.partition}`] = { held: s.held, open: s.tracker.open, paused: [...s.reasons], committed: s.tracker.committed };
    }
    return { partitions, pauses: this.#pauses, resumes: this.#resumes };
  }

  async start(context: SourceContext): Promise<void> {
    this.#context = context;
    const { startAttempts, backoff, where } = this.#o;
    await withRetries(() => this.#connect(), {
      policy: { maxAttempts: startAttempts, delayMs: (n) => backoff.delayMs(n) },
      signal: context.signal,
      onRetry: (error, attempt, delayMs) =>
        context.report({ type: 'error', error: new Error(redactError(error)), detail: `connect attempt ${attempt} of ${startAttempts} failed; next in ${delayMs} ms` }),
    }).catch((error: unknown) => {
      throw new Error(`${this.name}: could not start after ${startAttempts} attempt(s) against ${where}: ${redactError(error)}`, { cause: error });
    });
    this.#commitTimer = setInterval(() => void this.#commit(), this.#o.commitIntervalMs);
    this.#commitTimer.unref();
    context.report({ type: 'connected', detail: `${this.name} (group ${this.#o.groupId}) at ${where}` });
  }

  async pause(): Promise<void> {
    this.#sourcePaused = true;
    for (const s of this.#states.values()) this.#pause(s, 'source');
  }

  async resume(): Promise<void> {
    this.#sourcePaused = false;
    for (const s of this.#states.values()) this.#unpause(s, 'source');
  }

  /** Stops taking messages but stays in the group, so that what finishes can still be committed at close. */
  async stop(): Promise<void> {
    this.#stopped = true;
    for (const s of this.#states.values()) {
      // Retries not yet due are abandoned: their offsets stay uncommitted and Kafka delivers them again.
      for (const timer of s.retryTimers) clearTimeout(timer);
      s.retryTimers.clear();
      this.#pause(s, 'stopped');
    }
  }

  async close(): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#commitTimer);
    await this.#commit();
    const client = this.#client;
    this.#client = undefined;
    await client?.disconnect().catch((error: unknown) => this.#context?.report({ type: 'error', error: new Error(redactError(error)), detail: 'disconnect' }));
    await this.#dlq?.close();
    this.#dlq = undefined;
  }

  // --- connecting -------------------------------------------------------------------------

  /** One try: the dead-letter producer, then a fresh group member, resolved once it joined. */
  async #connect(): Promise<void> {
    this.#dlq ??= await kafkaPublisher({ kafka: this.#o.kafka });
    const o = this.#o;
    const client = o.kafka.consumer({
      groupId: o.groupId,
      sessionTimeout: o.sessionTimeout,
      heartbeatInterval: o.heartbeatInterval,
      rebalanceTimeout: o.rebalanceTimeout,
      maxWaitTimeInMs: o.maxWaitTimeInMs,
    });
    let joined!: () => void;
    let failed!: (error: unknown) => void;
    const ready = new Promise<void>((resolve, reject) => ((joined = resolve), (failed = reject)));
    const starting = { done: false };
    client.on(client.events.GROUP_JOIN, ({ payload }) => {
      this.#onJoin(payload.memberAssignment);
      joined();
    });
    client.on(client.events.REBALANCING, () => {
      // "Commit on revoke": kafkajs has no revoke callback; this is the last moment of the old generation.
      void this.#commit();
      this.#joined = false;
    });
    client.on(client.events.CRASH, ({ payload }) => {
      this.#joined = false;
      if (!starting.done) return failed(payload.error);
      this.#crashes++;
      this.#context?.report({ type: 'disconnected', error: new Error(redactError(payload.error)), detail: `${this.name}: kafkajs consumer crashed${payload.restart ? '; it restarts' : ' and does not restart'}` });
      if (!payload.restart) this.#context?.report({ type: 'error', error: new Error(`${this.name}: kafkajs gave up after: ${redactError(payload.error)}`), detail: 'recovery gave up' });
    });
    this.#client = client;
    try {
      await client.connect();
      await client.subscribe({ topics: o.topics, fromBeginning: o.fromBeginning });
      await client.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: (payload) => this.#eachBatch(payload) });
      await abortable(ready, this.#context!.signal);
      starting.done = true;
    } catch (error) {
      this.#client = undefined;
      this.#states.clear();
      await client.disconnect().catch(noop);
      throw error;
    }
  }

  #onJoin(assignment: Record<string, number[]>): void {
    const assigned = new Set<string>();
    for (const [topic, partitions] of Object.entries(assignment)) {
      for (const partition of partitions) {
        const id = partitionId(topic, partition);
        assigned.add(id);
        let state = this.#states.get(id);
        if (state === undefined) {
          state = new PartitionState(topic, partition);
          if (this.#sourcePaused) state.reasons.add('source');
          if (this.#stopped) state.reasons.add('stopped');
          this.#states.set(id, state);
        } else if (state.tracker.position !== undefined) {
          // Kept across the rebalance: kafkajs dropped its fetch position (it goes back to the
          // committed offset); go on from what we already took instead of taking it twice.
          this.#seek(state, state.tracker.position);
        }
      }
    }
    for (const [id, state] of this.#states) {
      if (assigned.has(id)) continue;
      // Revoked: its work may still finish, but can no longer mark, release or commit anything.
      state.revoke();
      this.#states.delete(id);
    }
    // kafkajs keeps (or, after a crash, forgets) pause state on its own: say it again.
    for (const state of this.#states.values()) this.#apply(state, true);
    this.#joined = true;
    if (this.#crashes > 0) {
      this.#context?.report({ type: 'recovered', detail: `${this.name} rejoined group ${this.#o.groupId}`, attempts: this.#crashes });
      this.#crashes = 0;
    }
  }

  // --- taking messages ----------------------------------------------------------------------

  async #eachBatch({ batch, resolveOffset, heartbeat, isRunning, isStale }: EachBatchPayload): Promise<void> {
    const state = this.#states.get(partitionId(batch.topic, batch.partition));
    if (state === undefined) return;
    const context = this.#context!;
    const max = this.#o.maxHeldPerPartition;
    const ordering = this.#o.ordering;
    const messages = batch.messages;
    // kafkajs's next fetch starts after the last resolved offset. Resolving costs a Long parse,
    // so it is done once per run of taken messages: before every wait and every return.
    let taken: string | undefined;
    const resolve = () => {
      if (taken !== undefined) resolveOffset(taken);
      taken = undefined;
    };
    // Only an await lets a rebalance, a stop or a seek in: check on entry and after each wait
    // (isStale() builds a string key per call; per message it was a visible cost).
    let check = true;
    for (let i = 0; i < messages.length; ) {
      const message = messages[i]!;
      if (check) {
        if (!isRunning() || isStale() || state.revoked) return resolve();
        check = false;
      }
      const offset = Number(message.offset);
      // Paused (by the runtime, the bound, a stop): the rest of the batch is fetched again later.
      if (state.reasons.size > 0 || this.#stopped) return (resolve(), this.#seek(state, offset));
      const position = state.tracker.position;
      if (position !== undefined && offset < position) {
        taken = message.offset; // taken before a rejoin reset kafkajs's position
        i++;
        continue;
      }
      const keyBytes = message.key ?? undefined;
      const key = keyBytes?.toString('utf8');
      // Its lane: one per key (a number; see laneOf), one per partition, or none.
      const lane = ordering === 'partition' ? 0 : ordering === 'key' && keyBytes !== undefined ? laneOf(keyBytes) : undefined;
      if (lane !== undefined && state.lanes.busy(lane)) {
        // Its key is busy: it waits here, counted against the partition's bound.
        if (state.held >= max) {
          resolve();
          check = true;
          // Waiting here keeps the fetched batch: a pause and seek back made kafkajs fetch it again
          // (and sleep maxWaitTimeInMs while every partition was paused) — 20× slower with hot keys.
          if (await this.#awaitRelease(state, heartbeat)) continue;
          this.#pause(state, 'held');
          return this.#seek(state, offset);
        }
        state.tracker.take(offset);
        state.lanes.enqueue(lane, { topic: batch.topic, partition: batch.partition, message, offset, key, lane, attempt: 1 });
        taken = message.offset;
        i++;
        continue;
      }
      // The pool is the credit: with no place free, wait here (kafkajs does not fetch meanwhile).
      if (context.freeCapacity() <= 0) {
        resolve();
        check = true;
        if (await this.#awaitRoom(state, heartbeat)) continue;
        return this.#seek(state, offset);
      }
      state.tracker.take(offset);
      if (lane !== undefined) state.lanes.begin(lane);
      const result = this.#dispatch(state, { topic: batch.topic, partition: batch.partition, message, offset, key, lane, attempt: 1 });
      if (result === 'accepted') {
        taken = message.offset;
        i++;
        continue;
      }
      // Refused (the runtime already gave it back): it was never taken.
      state.tracker.untake(offset);
      if (lane !== undefined) state.lanes.cancel(lane);
      resolve();
      check = true;
      if (result === 'overloaded' && (await this.#awaitRoom(state, heartbeat))) continue;
      return this.#seek(state, offset);
    }
    resolve();
    // Everything taken: also step over offsets that carry no message (transaction markers).
    state.tracker.advanceTo(Number(batch.lastOffset()) + 1);
  }

  /**
   * Pauses the partition until the pool has room, heartbeating meanwhile (the batch's
   * callback is what blocks kafkajs's loop). True when it may go on with the same batch.
   */
  async #awaitRoom(state: PartitionState, heartbeat: () => Promise<void>): Promise<boolean> {
    this.#pause(state, 'overload');
    if (!(await this.#heartbeatUntil(this.#waitForRoom(), heartbeat))) return false;
    // Paused by the runtime too (it refused a dispatch): let its resume, which waits on the same
    // pool event, run first. Otherwise go on at once: a macrotask hop per wait was a visible cost.
    if (state.reasons.has('source')) await new Promise((r) => setImmediate(r));
    return state.reasons.size === 0 && !state.revoked && !this.#stopped;
  }

  /**
   * Waits, inside the batch, until half of the partition's held messages have gone to the pool.
   * Bounded in time (a retry backing off for long must not hold kafkajs's loop): false when the
   * caller should pause and seek back instead.
   */
  async #awaitRelease(state: PartitionState, heartbeat: () => Promise<void>): Promise<boolean> {
    // Paused meanwhile, as for the pool's room: a cheap flag in kafkajs while the batch is kept.
    this.#pause(state, 'held');
    let timer: NodeJS.Timeout | undefined;
    const released = new Promise<boolean>((resolve) => {
      state.onRelease = () => resolve(true);
      timer = setTimeout(() => resolve(false), Math.max(1000, this.#o.maxWaitTimeInMs));
    });
    const ok = await this.#heartbeatUntil(released, heartbeat);
    clearTimeout(timer);
    state.onRelease = undefined;
    return ok && state.reasons.size === 0 && !state.revoked && !this.#stopped;
  }

  /**
   * Resolves every heartbeatInterval; shared by all waits, so that the many short waits of a busy
   * pool (one per pool's worth of messages) do not each arm and clear a timer. kafkajs's heartbeat()
   * sends only when its interval has passed, so an early beat costs nothing.
   */
  #beat(): Promise<undefined> {
    this.#beating ??= new Promise((resolve) => {
      setTimeout(() => {
        this.#beating = undefined;
        resolve(undefined);
      }, this.#o.heartbeatInterval).unref();
    });
    return this.#beating;
  }

  /** Waits for `ready`, heartbeating the group meanwhile; false when ready says so or a heartbeat fails (a rebalance). */
  async #heartbeatUntil(ready: Promise<unknown>, heartbeat: () => Promise<void>): Promise<boolean> {
    const done = ready.then((value) => value !== false);
    for (;;) {
      const result = await Promise.race([done, this.#beat()]);
      if (result !== undefined) return result;
      try {
        await heartbeat();
      } catch {
        return false; // a rebalance: kafkajs rejoins once this batch returns
      }
    }
  }

  #dispatch(state: PartitionState, work: Work): DispatchResult {
    const delivery = new KafkaDelivery(state, work, this.#hooks);
    const result = this.#context!.dispatch(delivery);
    delivery.dispatching = false;
    return result;
  }

  // --- outcomes -----------------------------------------------------------------------------

  #finished(state: PartitionState, work: Work): void {
    if (state.revoked) return;
    state.tracker.done(work.offset);
    const next = work.lane === undefined ? undefined : state.lanes.next(work.lane);
    if (next !== undefined) this.#hold(state, next);
    this.#release(state);
  }

  #retryLater(state: PartitionState, work: Work, delayMs: number, nextAttempt: number): void {
    // In process, not republished: the offset stays open (a crash redelivers it) and the key's
    // lane stays busy (its followers keep waiting: order per key holds across retries).
    if (state.revoked || this.#stopped) return;
    state.waiting++;
    const timer = setTimeout(() => {
      state.retryTimers.delete(timer);
      state.waiting--;
      if (!state.revoked && !this.#stopped) this.#hold(state, { ...work, attempt: nextAttempt });
    }, delayMs);
    state.retryTimers.add(timer);
  }

  #givenBack(state: PartitionState, work: Work): void {
    // Accepted, then not processed (a closed pool, a cancelled task): dispatch it again when
    // there is room. At shutdown it is left open instead: uncommitted, Kafka delivers it again.
    if (state.revoked || this.#stopped) return;
    this.#hold(state, work);
    void this.#waitForRoom();
  }

  /** Queues a message for the pool, outside it (counted in `waiting`) until there is room. */
  #hold(state: PartitionState, work: Work): void {
    state.waiting++;
    this.#ready.push({ state, work });
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      // After the current task has left its pool slot: dispatching from inside an ack would
      // find the pool one place shorter than it is.
      setImmediate(() => this.#flush());
    }
  }

  #flush(): void {
    this.#flushScheduled = false;
    const context = this.#context!;
    while (this.#readyHead < this.#ready.length) {
      if (this.#stopped) return;
      const item = this.#ready[this.#readyHead]!;
      if (!item.state.revoked) {
        if (context.freeCapacity() <= 0) return void this.#waitForRoom();
        const result = this.#dispatch(item.state, item.work);
        if (result === 'overloaded') return void this.#waitForRoom();
        if (result === 'stopping') return;
        item.state.waiting--;
        this.#release(item.state);
      }
      this.#ready[this.#readyHead++] = undefined as never;
    }
    this.#ready = [];
    this.#readyHead = 0;
  }

  /** One wait for the pool's low-water mark, shared by every paused partition and held message. */
  #waitForRoom(): Promise<void> {
    if (this.#room) return this.#room;
    const context = this.#context!;
    this.#room = context
      .whenAvailable(context.signal)
      .then(async () => {
        // A closed or resized pool can say "available" with no place free: do not spin.
        if (context.freeCapacity() <= 0) await new Promise((r) => setTimeout(r, 20));
      })
      .then(
        () => {
          this.#room = undefined;
          for (const s of this.#states.values()) this.#unpause(s, 'overload');
          this.#flush();
        },
        () => void (this.#room = undefined),
      );
    return this.#room;
  }

  /** A message left the adapter's hands: once half of the bound is free, wake the batch waiting on it, or lift its pause. */
  #release(state: PartitionState): void {
    if (state.held > this.#o.maxHeldPerPartition / 2) return;
    const wake = state.onRelease;
    state.onRelease = undefined;
    wake?.();
    if (state.reasons.has('held')) this.#unpause(state, 'held');
  }

  // --- pause and seek -----------------------------------------------------------------------

  #pause(state: PartitionState, reason: PauseReason): void {
    state.reasons.add(reason);
    this.#apply(state);
  }

  #unpause(state: PartitionState, reason: PauseReason): void {
    if (state.reasons.delete(reason)) this.#apply(state);
  }

  #apply(state: PartitionState, force = false): void {
    const want = state.reasons.size > 0;
    if (!force && want === state.pausedInClient) return;
    const client = this.#client;
    if (!client || state.revoked) return;
    try {
      const tp = [{ topic: state.topic, partitions: [state.partition] }];
      if (want) client.pause(tp);
      else client.resume(tp);
      if (want !== state.pausedInClient) {
        if (want) this.#pauses++;
        else this.#resumes++;
      }
      state.pausedInClient = want;
    } catch (error) {
      // Between a crash and kafkajs's restart there is no group to pause; the next join applies it.
      this.#context?.report({ type: 'error', error: new Error(redactError(error)), detail: want ? 'pause' : 'resume' });
    }
  }

  #seek(state: PartitionState, offset: number): void {
    // A revoked partition's position is its next owner's business (it starts at the last commit).
    if (state.revoked) return;
    try {
      this.#client?.seek({ topic: state.topic, partition: state.partition, offset: String(offset) });
    } catch (error) {
      this.#context?.report({ type: 'error', error: new Error(redactError(error)), detail: 'seek' });
    }
  }

  // --- commits ------------------------------------------------------------------------------

  /**
   * Commits the done prefix of every partition that moved since its last commit. What to commit
   * is read now (a rebalance may be about to start); the sends go one at a time.
   */
  #commit(): Promise<void> {
    const client = this.#client;
    if (!client || !this.#joined) return this.#commits;
    const due: { state: PartitionState; offset: number }[] = [];
    for (const state of this.#states.values()) {
      const offset = state.tracker.pendingCommit();
      if (offset !== undefined) due.push({ state, offset });
    }
    if (due.length === 0) return this.#commits;
    this.#commits = this.#commits.then(() => this.#send(client, due));
    return this.#commits;
  }

  async #send(client: KafkajsConsumer, due: { state: PartitionState; offset: number }[]): Promise<void> {
    try {
      await client.commitOffsets(due.map(({ state, offset }) => ({ topic: state.topic, partition: state.partition, offset: String(offset) })));
      // kafkajs skips a commit silently while it restarts after a crash: count it only when still joined.
      if (this.#joined) for (const { state, offset } of due) state.tracker.markCommitted(offset);
    } catch (error) {
      const type = (error as { type?: string }).type;
      if ((type !== undefined && REBALANCE_ERRORS.has(type)) || !this.#joined) return;
      this.#context?.report({ type: 'error', error: new Error(redactError(error)), detail: 'commit' });
    }
  }
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => (signal.removeEventListener('abort', onAbort), resolve(v)),
      (e: unknown) => (signal.removeEventListener('abort', onAbort), reject(e)),
    );
  });
}
