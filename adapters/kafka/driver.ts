/**
 * The Kafka driver port: the few client operations the adapter needs, so that everything that
 * makes it correct — done-prefix commits, assignment epochs, key lanes, pause and fetch again, held
 * messages (group.ts, intake.ts, outcomes.ts, commits.ts, partition.ts, key-scheduler.ts) — is
 * written once, above it, and a client is a driver below it: kafkajs (drivers/kafkajs.ts, the
 * default) or @platformatic/kafka (drivers/platformatic.ts). A driver translates; it decides
 * nothing about what is taken, committed, paused or dead-lettered.
 */

/** A consumed message as the adapter reads it (and a handler sees it as `msg.raw.message`); kafkajs's `KafkaMessage` is one. */
export interface KafkaMessageRecord {
  /** The offset as a decimal string. */
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  /** Header values as the client gives them (Buffers; a header sent twice may be an array). */
  headers?: Record<string, Buffer | string | (Buffer | string)[] | undefined>;
  /** Milliseconds since the epoch, as a decimal string. */
  timestamp: string;
}

/** Messages of one partition read by one fetch, in offset order. */
export interface DriverBatch {
  readonly topic: string;
  readonly partition: number;
  readonly messages: KafkaMessageRecord[];
  /** The last offset the fetch covered (transaction markers included): what "everything taken" steps over. */
  lastOffset(): string;

}

/**
 * One batch handed to the adapter (kafkajs's `eachBatch` payload is one). The driver fetches that
 * partition again only once the promise the adapter returns has settled, from after the last
 * offset resolved (from its committed offset after a rebalance).
 */
export interface DriverBatchPayload {
  readonly batch: DriverBatch;
  /** Everything up to this offset is taken: the partition's next fetch starts after it. */
  resolveOffset(offset: string): void;
  /**
   * Keeps the member in the group while the adapter waits inside the batch (where the client beats
   * by itself, only checks); rejects when the wait should end (a rebalance, the batch outdated).
   */
  heartbeat(): Promise<void>;
  /** False once the consumer is stopping. */
  isRunning(): boolean;
  /** True once the batch is outdated (its partition revoked since it was fetched). */
  isStale(): boolean;
}

/** A partition's committed position: the first offset not done. */
export interface CommitOffset {
  topic: string;
  partition: number;
  offset: number;
}

/** What the adapter is told by the group member. */
export interface DriverHandlers {
  batch(payload: DriverBatchPayload): Promise<void>;
  /** Joined (first time or after a rebalance): the member's whole assignment now, per topic. */
  assigned(assignment: Record<string, number[]>): void;
  /** A rebalance starts: the last moment of the old generation ("commit on revoke"). */
  rebalancing(): void;
  /** The member lost its connection or its group membership; `restart`: the client rejoins by itself. */
  crashed(error: unknown, restart: boolean): void;
  /**
   * A round of the fetch loop ended, with records or without (everything paused: the loop still
   * goes round). Only observed (tests, liveness); the adapter needs none.
   */
  fetched?(): void;
  /**
   * A broker answered a fetch request (empty answers too; not a round that ended in an error). What
   * lets the adapter see a member that can fetch nothing while its client retries silently
   * (fetch-watch.ts); a driver that never calls it is not judged by it.
   */
  fetchAnswered?(): void;
}

export interface JoinOptions {
  groupId: string;
  topics: string[];
  fromBeginning: boolean;
  sessionTimeout: number;
  heartbeatInterval: number;
  rebalanceTimeout: number;
  maxWaitTimeInMs: number;
}

/** One group member: made per start attempt, used until it leaves. */
export interface GroupMember {
  /** The client's own consumer object (`consumer.source.client`). */
  readonly client: unknown;
  /** Connects (the part `connectTimeoutMs` bounds). On a late settle after a timeout, `leave()` cleans up. */
  connect(): Promise<void>;
  /** Subscribes and starts consuming; resolves once running (the first `assigned` may come later). */
  run(): Promise<void>;
  /** Per partition: stop fetching it / fetch it again. Synchronous; may throw while the member is not in a group. */
  pause(topic: string, partition: number): void;
  resume(topic: string, partition: number): void;
  /** Commits the offsets under the member's current generation; rejects when the broker refuses. */
  commit(offsets: CommitOffset[]): Promise<void>;
  /** Leaves the group and disconnects; never rejects for a member that never connected. */
  leave(): Promise<void>;
}

/** A message to produce. */
export interface OutgoingMessage {
  key?: Buffer | string | null;
  value: Buffer | string | null;
  headers?: Record<string, Buffer | string>;
  partition?: number;
}

/** An idempotent producer that waits for every in-sync replica (acks = -1). */
export interface DriverProducer {
  /** The client's own producer object. */
  readonly client: unknown;
  connect(): Promise<void>;
  /** Resolves once every in-sync replica has the messages; rejects otherwise. Resolves with the client's own result. */
  send(topic: string, messages: OutgoingMessage[]): Promise<unknown>;
  disconnect(): Promise<void>;
}

/** A Kafka client behind the port: made once per consumer or publisher from the `kafka` option. */
export interface KafkaDriver {
  /** `'kafkajs'` or `'platformatic'`. */
  readonly name: string;
  member(options: JoinOptions, handlers: DriverHandlers): GroupMember;
  producer(options: { allowAutoTopicCreation: boolean }): DriverProducer;
  /** A commit failure that only means "the group moved on" (the next owner reads from the last commit). */
  isRebalanceError(error: unknown): boolean;
}
