import { redactError, type SourceEvent } from '../../src/adapter/index.js';
import type { DriverBatchPayload, GroupMember, KafkaDriver } from './driver.js';
import { FetchWatch } from './fetch-watch.js';
import type { ResolvedKafkaOptions } from './options.js';
import { PartitionState, partitionId, type PauseReason } from './partition.js';

const noop = () => {};
/** The shortest time without a fetch answered reported as "cannot consume" (the default maxWaitTimeInMs is 500). */
const FETCH_OVERDUE_MIN_MS = 2000;

export interface GroupHooks {
  eachBatch(payload: DriverBatchPayload): Promise<void>;
  /** A rebalance starts: the last moment of the old generation ("commit on revoke"). */
  rebalancing(): void;
  report(event: SourceEvent): void;
}

/**
 * Group membership: the driver's group member, its assignment (one PartitionState per assigned
 * partition and assignment: the epoch) and what the client is told about each partition (pause,
 * resume). The driver reports whole assignments at each join: a join is where partitions
 * come and go.
 */
export class Group {
  member: GroupMember | undefined;
  readonly states = new Map<string, PartitionState>();
  /** Joined and not rebalancing or crashed: commits may be sent. */
  joined = false;
  /** Paused by the runtime (`Source.pause`): new assignments start paused too. */
  paused = false;
  /** `Source.stop()` was called: nothing new is taken, ever. */
  stopped = false;
  /** Times a partition was paused / resumed in the client (any reason). */
  pauses = 0;
  resumes = 0;
  #crashes = 0;
  /** Reports a member that stays in the group but whose fetches nobody answers (the partition leaders down or unreachable). */
  readonly fetchWatch: FetchWatch;
  /** The partitions of the batches with the adapter now: the client fetches no more from their broker until they return. */
  readonly #inBatch = new Set<PartitionState | undefined>();

  constructor(
    private readonly o: ResolvedKafkaOptions,
    private readonly name: string,
    private readonly hooks: GroupHooks,
  ) {
    const afterMs = Math.max(FETCH_OVERDUE_MIN_MS, 4 * o.maxWaitTimeInMs);
    // A batch the adapter waits in (for the pool's room, for held messages: its partition paused)
    // holds the client's loop: no answers are due then. One that is merely being handed over is not a wait.
    const waitingInBatch = () => [...this.#inBatch].some((s) => s?.pausedInClient === true);
    const due = () => this.joined && !this.stopped && !waitingInBatch() && [...this.states.values()].some((s) => !s.pausedInClient && !s.revoked);
    this.fetchWatch = new FetchWatch(due, afterMs, name, (event) => this.hooks.report(event));
  }

  get driver(): KafkaDriver {
    return this.o.driver;
  }

  /** The client's own consumer object of the current member. */
  get client(): unknown {
    return this.member?.client;
  }

  /**
   * One start attempt: connect a fresh group member (bounded by `connectTimeoutMs`, and then
   * `extra`, the dead-letter producer's connect, with the same bound), subscribe, run, and resolve
   * once it has joined. On failure nothing is left connected.
   */
  async join(signal: AbortSignal, extra: () => Promise<void>): Promise<void> {
    const o = this.o;
    let joined!: () => void;
    let failed!: (error: unknown) => void;
    const ready = new Promise<void>((resolve, reject) => ((joined = resolve), (failed = reject)));
    ready.catch(noop); // a crash after a failed connect has nobody waiting for it
    let started = false;
    const member = o.driver.member(
      {
        groupId: o.groupId,
        topics: o.topics,
        fromBeginning: o.fromBeginning,
        sessionTimeout: o.sessionTimeout,
        heartbeatInterval: o.heartbeatInterval,
        rebalanceTimeout: o.rebalanceTimeout,
        maxWaitTimeInMs: o.maxWaitTimeInMs,
      },
      {
        batch: (payload) => this.#eachBatch(payload),
        fetchAnswered: () => this.fetchWatch.answered(),
        assigned: (assignment) => {
          this.#onJoin(assignment);
          joined();
        },
        rebalancing: () => {
          this.hooks.rebalancing();
          this.joined = false;
        },
        crashed: (error, restart) => {
          this.joined = false;
          if (!started) return failed(error);
          this.#crashes++;
          const report = this.hooks.report;
          const client = o.driver.name;
          report({ type: 'disconnected', error: new Error(redactError(error)), detail: `${this.name}: ${client} consumer crashed${restart ? '; it restarts' : ' and does not restart'}` });
          if (!restart) report({ type: 'error', error: new Error(`${this.name}: ${client} gave up after: ${redactError(error)}`), detail: 'recovery gave up' });
        },
      },
    );
    this.member = member;
    try {
      await within(member.connect(), o.connectTimeoutMs, 'the group member', () => member.leave());
      await extra();
      await member.run();
      await abortable(ready, signal);
      started = true;
    } catch (error) {
      this.member = undefined;
      this.states.clear();
      await member.leave().catch(noop);
      throw error;
    }
  }

  async #eachBatch(payload: DriverBatchPayload): Promise<void> {
    const state = this.state(payload.batch.topic, payload.batch.partition);
    this.#inBatch.add(state);
    try {
      await this.hooks.eachBatch(payload);
    } finally {
      this.#inBatch.delete(state);
    }
  }

  /** Leaves the group and disconnects. */
  async leave(): Promise<void> {
    const member = this.member;
    this.member = undefined;
    this.joined = false;
    await member?.leave().catch((error: unknown) => this.hooks.report({ type: 'error', error: new Error(redactError(error)), detail: 'disconnect' }));
  }

  state(topic: string, partition: number): PartitionState | undefined {
    return this.states.get(partitionId(topic, partition));
  }

  #onJoin(assignment: Record<string, number[]>): void {
    const assigned = new Set<string>();
    for (const [topic, partitions] of Object.entries(assignment)) {
      for (const partition of partitions) {
        const id = partitionId(topic, partition);
        assigned.add(id);
        // A partition kept across the rebalance may be fetched again from its committed offset
        // (kafkajs): the intake steps over what it already took (tracker.next). No seek: kafkajs
        // keeps a seek it has not applied when the partition moves away, and applies it when the
        // partition comes back, generations later.
        if (this.states.has(id)) continue;
        const state = new PartitionState(topic, partition);
        if (this.paused) state.reasons.add('source');
        if (this.stopped) state.reasons.add('stopped');
        this.states.set(id, state);
      }
    }
    for (const [id, state] of this.states) {
      if (assigned.has(id)) continue;
      // Revoked: its deliveries are stale from now on (not started if still queued in the pool).
      state.revoke();
      this.states.delete(id);
    }
    // A client may keep (kafkajs; or, after a crash, forget) pause state on its own: say it again.
    for (const state of this.states.values()) this.#apply(state, true);
    this.joined = true;
    if (this.#crashes > 0) {
      this.hooks.report({ type: 'recovered', detail: `${this.name} rejoined group ${this.o.groupId}`, attempts: this.#crashes });
      this.#crashes = 0;
    }
  }

  // --- what the client is told per partition ---------------------------------------------

  pause(state: PartitionState, reason: PauseReason): void {
    state.reasons.add(reason);
    this.#apply(state);
  }

  unpause(state: PartitionState, reason: PauseReason): void {
    if (state.reasons.delete(reason)) this.#apply(state);
  }

  pauseAll(reason: PauseReason): void {
    for (const state of this.states.values()) this.pause(state, reason);
  }

  unpauseAll(reason: PauseReason): void {
    for (const state of this.states.values()) this.unpause(state, reason);
  }

  #apply(state: PartitionState, force = false): void {
    const want = state.reasons.size > 0;
    if (!force && want === state.pausedInClient) return;
    const member = this.member;
    if (!member || state.revoked) return;
    try {
      if (want) member.pause(state.topic, state.partition);
      else member.resume(state.topic, state.partition);
      if (want !== state.pausedInClient) {
        if (want) this.pauses++;
        else this.resumes++;
      }
      state.pausedInClient = want;
    } catch (error) {
      // Between a crash and kafkajs's restart there is no group to pause; the next join applies it.
      this.hooks.report({ type: 'error', error: new Error(redactError(error)), detail: want ? 'pause' : 'resume' });
    }
  }

}

/**
 * `connecting` within `ms` (`connectTimeoutMs`), else an error naming `who`. A client's connect
 * may not be cancellable (kafkajs's retries go on after a disconnect), so when it settles late,
 * `cleanup` disconnects what it connected.
 */
export function within(connecting: Promise<void>, ms: number, who: string, cleanup: () => Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let late = false;
  return new Promise<void>((resolve, reject) => {
    timer = setTimeout(() => {
      late = true;
      reject(new Error(`${who} got no connection within ${ms} ms (connectTimeoutMs)`));
      connecting.then(() => cleanup().catch(noop), noop);
    }, ms);
    connecting.then(
      () => (clearTimeout(timer), late || resolve()),
      (error: unknown) => (clearTimeout(timer), late || reject(new Error(`${who} could not connect: ${redactError(error)}`, { cause: error }))),
    );
  });
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
