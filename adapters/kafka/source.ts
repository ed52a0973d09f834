import type { Consumer as KafkajsConsumer } from 'kafkajs';
import { connectAtStart, type Source, type SourceCapabilities, type SourceContext, type SourceEvent } from '../../src/adapter/index.js';
import { Commits } from './commits.js';
import { DeadLetterProducer } from './dead-letters.js';
import { Group } from './group.js';
import { Intake } from './intake.js';
import type { ResolvedKafkaOptions } from './options.js';
import { Outcomes } from './outcomes.js';
import type { PauseReason } from './partition.js';

/** Retries wait in the adapter (the offset stays open), so the runtime never holds them; a refusal is a pause, and the refused message is fetched again. */
const CAPABILITIES: SourceCapabilities = Object.freeze({ delayedRetry: true, redelivery: true, pause: true });

export interface KafkaSourceStatus {
  partitions: Record<string, { held: number; open: number; paused: PauseReason[]; committed: number | undefined }>;
  /** Times a partition was paused / resumed in the client (any reason). */
  pauses: number;
  resumes: number;
}

/** What `consumer.source` offers on Kafka besides the Source contract (see kafkaConsumer). */
export interface KafkaSourceView<Client = KafkajsConsumer> {
  readonly name: string;
  /** The driver's name: `'kafkajs'` or `'platformatic'` (or a driver of your own). */
  readonly driver: string;
  /**
   * The client's consumer, for what sluice does not wrap (kafkajs: its `Consumer`, with
   * instrumentation events and `describeGroup`); undefined before start. Replaced at each start.
   */
  readonly client: Client | undefined;
  /** What the adapter holds and pauses right now, per assigned partition (`topic/partition`), and pause counts so far. */
  status(): KafkaSourceStatus;
}

/**
 * Kafka's Source: a group member of the driver's client (driver.ts: kafkajs run with
 * `eachBatch`, `autoCommit: false` and `eachBatchAutoResolve: false`, or @platformatic/kafka),
 * in four parts: the group (membership, assignment epochs, pause and seek: group.ts), the batch intake and its waits (intake.ts), the outcomes and held
 * messages (outcomes.ts) and the commits of each partition's done prefix (commits.ts).
 */
export class KafkaSource implements Source, KafkaSourceView {
  readonly name: string;
  readonly capabilities = CAPABILITIES;
  readonly #o: ResolvedKafkaOptions;
  readonly #group: Group;
  readonly #outcomes: Outcomes;
  readonly #intake: Intake;
  readonly #commits: Commits;
  #context: SourceContext | undefined;

  constructor(o: ResolvedKafkaOptions) {
    this.#o = o;
    this.name = `kafka:${o.topics.join(',')}`;
    const report = (event: SourceEvent) => this.#context?.report(event);
    this.#group = new Group(o, this.name, {
      eachBatch: (payload) => this.#intake.eachBatch(payload),
      rebalancing: () => void this.#commits.commit(),
      report,
    });
    this.#commits = new Commits(this.#group, o.commitIntervalMs, report);
    this.#outcomes = new Outcomes(o, this.#group, this.name, this.#commits);
    this.#intake = new Intake(o, this.#group, this.#outcomes, this.#commits);
  }

  get driver(): string {
    return this.#o.driver.name;
  }

  get client(): KafkajsConsumer | undefined {
    return this.#group.client as KafkajsConsumer | undefined;
  }

  status(): KafkaSourceStatus {
    const partitions: KafkaSourceStatus['partitions'] = {};
    for (const s of this.#group.states.values()) {
      partitions[`${s.topic}/${s.partition}`] = { held: s.held, open: s.tracker.open, paused: [...s.reasons], committed: s.tracker.confirmed };
    }
    return { partitions, pauses: this.#group.pauses, resumes: this.#group.resumes };
  }

  async start(context: SourceContext): Promise<void> {
    this.#context = context;
    this.#outcomes.context = context;
    const o = this.#o;
    const where = `${o.where} (group ${JSON.stringify(o.groupId)})`;
    await connectAtStart(this, where, o.recovery, context, () => this.#group.join(context.signal, () => this.#connectDeadLetters()));
    this.#commits.start();
    this.#group.fetchWatch.start();
    context.report({ type: 'connected', detail: `${this.name} (group ${o.groupId}) at ${o.where}` });
  }

  /** The dead-letter producer, connected within the same start attempt and bound (then only while dead letters go out). */
  async #connectDeadLetters(): Promise<void> {
    if (this.#outcomes.dlq) return;
    const dlq = new DeadLetterProducer(this.#o.driver, this.#o.deadLetterAutoCreate);
    await dlq.start(this.#o.connectTimeoutMs);
    this.#outcomes.dlq = dlq;
  }

  async pause(): Promise<void> {
    this.#group.paused = true;
    this.#group.pauseAll('source');
  }

  async resume(): Promise<void> {
    this.#group.paused = false;
    this.#group.unpauseAll('source');
    // Held messages a gate turned away go again now rather than at their timed retry.
    if (this.#context) this.#outcomes.scheduleFlush();
  }

  /** Stops taking messages but stays in the group, so that what finishes can still be committed at close. */
  async stop(): Promise<void> {
    const group = this.#group;
    group.stopped = true;
    this.#outcomes.stop();
    for (const state of group.states.values()) {
      // Retries and deferrals not yet due are abandoned: uncommitted, Kafka delivers them again.
      state.clearTimers();
      group.pause(state, 'stopped');
    }
  }

  async close(): Promise<void> {
    const group = this.#group;
    group.stopped = true;
    this.#outcomes.stop();
    this.#commits.stop();
    group.fetchWatch.stop();
    await this.#commits.commit();
    // The epoch ends: a delivery still out (abandoned at the stop deadline) is stale from now on.
    for (const state of group.states.values()) state.revoke();
    await group.leave();
    await this.#outcomes.dlq?.close();
    this.#outcomes.dlq = undefined;
  }
}
