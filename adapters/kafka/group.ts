import type { Consumer as KafkajsConsumer, EachBatchPayload } from 'kafkajs';
import { redactError, type SourceEvent } from '../../src/adapter/index.js';
import type { ResolvedKafkaOptions } from './options.js';
import { PartitionState, partitionId, type PauseReason } from './partition.js';

const noop = () => {};

export interface GroupHooks {
  eachBatch(payload: EachBatchPayload): Promise<void>;
  /** A rebalance starts: the last moment of the old generation ("commit on revoke"). */
  rebalancing(): void;
  report(event: SourceEvent): void;
}

/**
 * Group membership: the kafkajs consumer, its assignment (one PartitionState per assigned
 * partition and assignment: the epoch) and what kafkajs is told about each partition (pause,
 * resume, seek). kafkajs has no revoke callback: a join is where partitions come and go.
 */
export class Group {
  client: KafkajsConsumer | undefined;
  readonly states = new Map<string, PartitionState>();
  /** Joined and not rebalancing or crashed: commits may be sent. */
  joined = false;
  /** Paused by the runtime (`Source.pause`): new assignments start paused too. */
  paused = false;
  /** `Source.stop()` was called: nothing new is taken, ever. */
  stopped = false;
  /** Times a partition was paused / resumed in kafkajs (any reason). */
  pauses = 0;
  resumes = 0;
  #crashes = 0;

  constructor(
    private readonly o: ResolvedKafkaOptions,
    private readonly name: string,
    private readonly hooks: GroupHooks,
  ) {}

  /**
   * One start attempt: connect a fresh group member (bounded by `connectTimeoutMs`, and then
   * `extra`, the dead-letter producer's connect, with the same bound), subscribe, run, and resolve
   * once it has joined. On failure nothing is left connected.
   */
  async join(signal: AbortSignal, extra: () => Promise<void>): Promise<void> {
    const o = this.o;
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
    ready.catch(noop); // a crash after a failed connect has nobody waiting for it
    let started = false;
    client.on(client.events.GROUP_JOIN, ({ payload }) => {
      this.#onJoin(payload.memberAssignment);
      joined();
    });
    client.on(client.events.REBALANCING, () => {
      this.hooks.rebalancing();
      this.joined = false;
    });
    client.on(client.events.CRASH, ({ payload }) => {
      this.joined = false;
      if (!started) return failed(payload.error);
      this.#crashes++;
      const report = this.hooks.report;
      report({ type: 'disconnected', error: new Error(redactError(payload.error)), detail: `${this.name}: kafkajs consumer crashed${payload.restart ? '; it restarts' : ' and does not restart'}` });
      if (!payload.restart) report({ type: 'error', error: new Error(`${this.name}: kafkajs gave up after: ${redactError(payload.error)}`), detail: 'recovery gave up' });
    });
    this.client = client;
    try {
      await within(client.connect(), o.connectTimeoutMs, 'the group member', () => client.disconnect());
      await extra();
      await client.subscribe({ topics: o.topics, fromBeginning: o.fromBeginning });
      await client.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: (payload) => this.hooks.eachBatch(payload) });
      await abortable(ready, signal);
      started = true;
    } catch (error) {
      this.client = undefined;
      this.states.clear();
      await client.disconnect().catch(noop);
      throw error;
    }
  }

  /** Leaves the group and disconnects. */
  async leave(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.joined = false;
    await client?.disconnect().catch((error: unknown) => this.hooks.report({ type: 'error', error: new Error(redactError(error)), detail: 'disconnect' }));
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
        let state = this.states.get(id);
        if (state === undefined) {
          state = new PartitionState(topic, partition);
          if (this.paused) state.reasons.add('source');
          if (this.stopped) state.reasons.add('stopped');
          this.states.set(id, state);
        } else if (state.tracker.next !== undefined) {
          // Kept across the rebalance: kafkajs dropped its fetch position (it goes back to the
          // committed offset); go on from what we already took instead of taking it twice.
          this.seek(state, state.tracker.next);
        }
      }
    }
    for (const [id, state] of this.states) {
      if (assigned.has(id)) continue;
      // Revoked: its deliveries are stale from now on (not started if still queued in the pool).
      state.revoke();
      this.states.delete(id);
    }
    // kafkajs keeps (or, after a crash, forgets) pause state on its own: say it again.
    for (const state of this.states.values()) this.#apply(state, true);
    this.joined = true;
    if (this.#crashes > 0) {
      this.hooks.report({ type: 'recovered', detail: `${this.name} rejoined group ${this.o.groupId}`, attempts: this.#crashes });
      this.#crashes = 0;
    }
  }

  // --- what kafkajs is told per partition -------------------------------------------------

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
    const client = this.client;
    if (!client || state.revoked) return;
    try {
      const tp = [{ topic: state.topic, partitions: [state.partition] }];
      if (want) client.pause(tp);
      else client.resume(tp);
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

  /** Rewinds kafkajs's fetch position of the partition (the first message not taken). */
  seek(state: PartitionState, offset: number): void {
    // A revoked partition's position is its next owner's business (it starts at the last commit).
    if (state.revoked) return;
    try {
      this.client?.seek({ topic: state.topic, partition: state.partition, offset: String(offset) });
    } catch (error) {
      this.hooks.report({ type: 'error', error: new Error(redactError(error)), detail: 'seek' });
    }
  }
}

/**
 * `connecting` within `ms` (`connectTimeoutMs`), else an error naming `who`. kafkajs's connect
 * cannot be cancelled (its retries go on after a disconnect), so when it settles late, `cleanup`
 * disconnects what it connected.
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
