/**
 * The @platformatic/kafka driver (`kafka: { client: 'platformatic', brokers, ... }`; Node >= 22.22,
 * an optional peer dependency loaded only when used).
 *
 * @platformatic/kafka's `MessagesStream` fetches every assigned partition as one stream and has no
 * per-partition pause or fetch position, which the adapter's bound needs (pause a partition whose
 * pool is full, fetch again from the first message not taken). So this driver keeps the client's group
 * membership (join, heartbeats, rebalances: the client's own) and runs its own fetch loop on the
 * client's `fetch()` (fetch sessions, leaders and retries are the client's): each round fetches
 * the assigned partitions that are not paused, from the driver's own position per partition, and
 * hands each partition's records to the adapter as one batch, fetching that partition again only
 * after the batch returned — as kafkajs's `eachBatch` does. Heartbeats are the client's own timer,
 * so `heartbeat()` only says whether the batch is outdated; the client rejoins by itself, so an
 * assignment change is announced when the client makes it, not when the loop comes round.
 */
import { isRebalance, RebalanceAwareCommits } from './platformatic-commit.js';
import type { CommitOffset, DriverBatchPayload, DriverHandlers, DriverProducer, GroupMember, JoinOptions, KafkaDriver, KafkaMessageRecord, OutgoingMessage } from '../driver.js';

/** The lowest Node the driver supports (the client's `engines`). */
export const PLATFORMATIC_MIN_NODE = [22, 22] as const;

/** The `kafka` option for this driver: `brokers` (as for kafkajs) and @platformatic/kafka's own client options. */
export interface PlatformaticKafkaConfig {
  client: 'platformatic';
  brokers: string[];
  clientId?: string;
  /** `'classic'` (default) or `'consumer'` (KIP-848; the broker's `group.consumer.*` settings then govern session and heartbeats). */
  groupProtocol?: 'classic' | 'consumer';
  /** Any other @platformatic/kafka client option (`sasl`, `tls`, `retries`, `retryDelay`, `connectTimeout`, `requestTimeout`, ...). */
  [option: string]: unknown;
}

/** Throws unless this Node can run @platformatic/kafka, naming the running version. */
export function assertPlatformaticNode(owner: string, version = process.versions.node): void {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  const [needMajor, needMinor] = PLATFORMATIC_MIN_NODE;
  if (major > needMajor || (major === needMajor && minor >= needMinor)) return;
  throw new Error(`${owner}: kafka.client 'platformatic' (@platformatic/kafka) needs Node >= ${needMajor}.${needMinor}, this is Node v${version}; use Node ${needMajor}.${needMinor} or later, or the kafkajs client`);
}

type Platformatic = typeof import('@platformatic/kafka');
type PConsumer = import('@platformatic/kafka').Consumer;
type PProducer = import('@platformatic/kafka').Producer;

let loading: Promise<Platformatic> | undefined;
/** The client module, loaded once, when first used. */
function load(): Promise<Platformatic> {
  loading ??= import('@platformatic/kafka').catch((error: unknown) => {
    loading = undefined;
    throw new Error(`kafka.client 'platformatic' needs the @platformatic/kafka package: npm install @platformatic/kafka (${String((error as Error)?.message ?? error)})`, { cause: error });
  });
  return loading;
}

/** The client's error with the reasons it nests (MultipleErrors hide "connect ECONNREFUSED …" under "Cannot connect to any broker."). */
function withReasons(error: unknown): Error {
  const reasons = new Set<string>();
  const walk = (e: unknown, depth: number) => {
    if (typeof e !== 'object' || e === null || depth > 5) return;
    const inner = [...(Array.isArray((e as { errors?: unknown }).errors) ? (e as { errors: unknown[] }).errors : []), (e as { cause?: unknown }).cause].filter((x) => x !== undefined);
    if (inner.length === 0 && depth > 0 && typeof (e as Error).message === 'string') reasons.add((e as Error).message);
    for (const x of inner) walk(x, depth + 1);
  };
  walk(error, 0);
  const message = String((error as Error)?.message ?? error);
  return reasons.size === 0 ? (error as Error) : new Error(`${message} (${[...reasons].join('; ')})`, { cause: error });
}

const IS_CONTROL = 0b10_0000;
const OFFSET_OUT_OF_RANGE = 1;
const EARLIEST = -2n;
const LATEST = -1n;
const noop = () => {};

export class PlatformaticDriver implements KafkaDriver {
  readonly name = 'platformatic';
  readonly #base: Record<string, unknown>;
  readonly #groupProtocol: 'classic' | 'consumer';

  constructor(config: PlatformaticKafkaConfig) {
    const { client: _client, brokers, clientId, groupProtocol, ...rest } = config;
    this.#base = { clientId: clientId ?? 'sluice', bootstrapBrokers: brokers, ...rest };
    this.#groupProtocol = groupProtocol ?? 'classic';
  }

  member(options: JoinOptions, handlers: DriverHandlers): GroupMember {
    return new PlatformaticMember(this.#base, this.#groupProtocol, options, handlers);
  }

  producer({ allowAutoTopicCreation }: { allowAutoTopicCreation: boolean }): DriverProducer {
    return new PlatformaticProducer(this.#base, allowAutoTopicCreation);
  }

  isRebalanceError(error: unknown): boolean {
    return isRebalance(error);
  }
}

/** The driver's view of one assigned partition. */
interface Part {
  topic: string;
  partition: number;
  /** The next offset to fetch; undefined until the committed offset (or the fallback) is known. */
  position: bigint | undefined;
  paused: boolean;
  /** Bumped by the revoke: a fetch or batch of an older generation is outdated. */
  gen: number;
  revoked: boolean;
}

const key = (topic: string, partition: number) => `${topic}\u0000${partition}`;

class PlatformaticMember implements GroupMember {
  #client: PConsumer | undefined;
  readonly #parts = new Map<string, Part>();
  /** The client's assignment array we last announced (the client makes a new one on every change). */
  #announced: unknown;
  #dirty = false;
  #running = false;
  #closed = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  /** The fetch loop failed and has not fetched since: the next successful round announces the assignment again (`recovered`). */
  #failing = false;
  #anchor: { close(): Promise<void> } | undefined;
  /** Classic protocol: commits sent again after a rebalance (platformatic-commit.ts). */
  #commits: RebalanceAwareCommits | undefined;

  constructor(
    private readonly base: Record<string, unknown>,
    private readonly protocol: 'classic' | 'consumer',
    private readonly o: JoinOptions,
    private readonly handlers: DriverHandlers,
  ) {}

  get client(): PConsumer | undefined {
    return this.#client;
  }

  async connect(): Promise<void> {
    const pk = await load();
    if (this.#closed) throw new Error('the group member was closed');
    const o = this.o;
    const group =
      this.protocol === 'consumer'
        ? { groupProtocol: 'consumer' as const, rebalanceTimeout: o.rebalanceTimeout }
        : { sessionTimeout: o.sessionTimeout, heartbeatInterval: o.heartbeatInterval, rebalanceTimeout: o.rebalanceTimeout };
    const client = new pk.Consumer({ ...this.base, groupId: o.groupId, autocommit: false, maxWaitTime: o.maxWaitTimeInMs, ...group } as never) as PConsumer;
    this.#client = client;
    if (this.protocol === 'classic') this.#commits = new RebalanceAwareCommits(client, o.rebalanceTimeout);
    // The client rejoins on its own timer, also while the loop waits inside a batch: a changed
    // assignment is announced at once, so that nothing of a revoked partition is started here
    // after its next owner has it (the loop fetches the new partitions' positions). A join is
    // always announced: after a rebalance the adapter commits again only once told.
    client.on('consumer:group:join', () => {
      this.#dirty = true;
      this.#announceNow();
    });
    // KIP-848: the assignment changes between heartbeats, without a join.
    client.on('consumer:heartbeat:start', () => this.#announceNow());
    client.on('consumer:heartbeat:end', () => this.#announceNow());
    client.on('consumer:group:rebalance', () => this.handlers.rebalancing());
    // A rejoin that failed (the client emits it and stops heartbeating): the loop joins again.
    client.on('error', (error: unknown) => this.#crash(error));
    await client.listApis().catch((error: unknown) => {
      throw withReasons(error);
    });
  }

  async run(): Promise<void> {
    const client = this.#client!;
    const o = this.o;
    if (this.protocol === 'consumer') {
      // KIP-848 membership starts with a stream; this one is never read (the driver fetches itself).
      const stream = await client.consume({ topics: o.topics, autocommit: false, mode: 'committed', fallbackMode: o.fromBeginning ? 'earliest' : 'latest' } as never);
      stream.on('error', (error: unknown) => this.#crash(error));
      this.#anchor = stream as unknown as { close(): Promise<void> };
    } else {
      for (const topic of o.topics) client.topics.track(topic);
      await this.#joinClassic();
    }
    this.#running = true;
    this.#changed();
    this.#loop = this.#fetchLoop();
  }

  #joinClassic(): Promise<string> {
    const o = this.o;
    return this.#client!.joinGroup({ sessionTimeout: o.sessionTimeout, heartbeatInterval: o.heartbeatInterval, rebalanceTimeout: o.rebalanceTimeout });
  }

  #crash(error: unknown): void {
    this.#commits?.interrupted();
    if (this.#closed) return;
    this.#failing = true;
    this.handlers.crashed(error, true);
    this.#changed();
  }

  #changed(): void {
    this.#dirty = true;
    this.#wake?.();
  }

  #announceNow(): void {
    const client = this.#client;
    if (this.#running && client && (this.#dirty || client.assignments !== this.#announced)) this.#announce(client);
    this.#wake?.();
  }

  pause(topic: string, partition: number): void {
    const part = this.#parts.get(key(topic, partition));
    if (part) part.paused = true;
  }

  resume(topic: string, partition: number): void {
    const part = this.#parts.get(key(topic, partition));
    if (!part || !part.paused) return;
    part.paused = false;
    this.#wake?.();
  }


  async commit(offsets: CommitOffset[]): Promise<void> {
    const client = this.#client;
    if (!client) throw new Error('not connected');
    if (this.#commits) return this.#commits.commit(offsets);
    await client.commit({ offsets: offsets.map(({ topic, partition, offset }) => ({ topic, partition, offset: BigInt(offset), leaderEpoch: -1 })) });
  }

  async leave(): Promise<void> {
    this.#closed = true;
    this.#running = false;
    this.#wake?.();
    this.#commits?.interrupted();
    const client = this.#client;
    await this.#loop?.catch(noop);
    await this.#anchor?.close().catch(noop);
    if (client) await client.close(true).catch(noop);
  }

  // --- the fetch loop -----------------------------------------------------------------------

  /** Resolves on a resume, assignment change or leave, or after `ms`. */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.#wake = () => {
        this.#wake = undefined;
        done();
      };
    });
  }

  async #fetchLoop(): Promise<void> {
    let backoff = 100;
    while (this.#running) {
      try {
        const client = this.#client!;
        if (this.#failing && this.protocol === 'classic' && client.memberId === null) await this.#joinClassic();
        if (this.#dirty || client.assignments !== this.#announced) this.#announce(client);
        const unknown = [...this.#parts.values()].filter((p) => p.position === undefined);
        if (unknown.length > 0) await this.#positions(client, unknown);
        const ready = [...this.#parts.values()].filter((p) => !p.paused && !p.revoked && p.position !== undefined);
        if (ready.length === 0) {
          await this.#sleep(this.o.maxWaitTimeInMs);
          this.handlers.fetched?.();
          continue;
        }
        await this.#round(client, ready);
        this.handlers.fetched?.();
        if (this.#failing) {
          this.#failing = false;
          this.#dirty = true; // announce again: the adapter reports `recovered`
        }
        backoff = 100;
      } catch (error) {
        if (!this.#running) return;
        if (!this.#failing) this.#crash(error);
        await this.#sleep(backoff);
        backoff = Math.min(backoff * 2, 5000);
      }
    }
  }

  /** Takes the client's current assignment and tells the adapter: revoked partitions are dropped, new ones wait for their position. */
  #announce(client: PConsumer): void {
    this.#dirty = false;
    const assignments = client.assignments;
    this.#announced = assignments;
    if (assignments === null) return; // not joined (yet)
    const assignment: Record<string, number[]> = {};
    const wanted = new Set<string>();
    for (const { topic, partitions } of assignments) {
      assignment[topic] = [...partitions];
      for (const partition of partitions) {
        const k = key(topic, partition);
        wanted.add(k);
        if (!this.#parts.has(k)) {
          this.#parts.set(k, { topic, partition, position: undefined, paused: false, gen: 0, revoked: false });
        }
      }
    }
    for (const [k, part] of this.#parts) {
      if (wanted.has(k)) continue;
      part.revoked = true;
      part.gen++;
      this.#parts.delete(k);
    }
    // The adapter may pause (its pause reasons) from here.
    this.handlers.assigned(assignment);
  }

  /** The committed offset of each partition, or the earliest / latest one for a group that has none. */
  async #positions(client: PConsumer, parts: Part[]): Promise<void> {
    const byTopic = new Map<string, number[]>();
    for (const p of parts) byTopic.set(p.topic, [...(byTopic.get(p.topic) ?? []), p.partition]);
    const topics = [...byTopic].map(([topic, partitions]) => ({ topic, partitions }));
    const committed = await client.listCommittedOffsets({ topics });
    const missing = parts.filter((p) => (committed.get(p.topic)?.[p.partition] ?? -1n) < 0n);
    let fallback: Map<string, bigint[]> | undefined;
    if (missing.length > 0) {
      const partitions: Record<string, number[]> = {};
      for (const p of missing) (partitions[p.topic] ??= []).push(p.partition);
      fallback = await client.listOffsets({ topics: Object.keys(partitions), partitions, timestamp: this.o.fromBeginning ? EARLIEST : LATEST });
    }
    for (const p of parts) {
      if (p.position !== undefined || p.revoked) continue; // known meanwhile
      const at = committed.get(p.topic)?.[p.partition] ?? -1n;
      p.position = at >= 0n ? at : fallback?.get(p.topic)?.[p.partition];
    }
  }

  /** One fetch per leader, in parallel; each partition's records go to the adapter as one batch, one partition at a time per leader. */
  async #round(client: PConsumer, ready: Part[]): Promise<void> {
    const metadata = await client.metadata({ topics: this.o.topics });
    const byNode = new Map<number, { part: Part; gen: number; position: bigint }[]>();
    for (const part of ready) {
      const topic = metadata.topics.get(part.topic);
      const leader = topic?.partitions[part.partition]?.leader;
      if (leader === undefined || leader < 0) continue;
      let list = byNode.get(leader);
      if (!list) byNode.set(leader, (list = []));
      list.push({ part, gen: part.gen, position: part.position! });
    }
    if (byNode.size === 0) {
      await this.#sleep(this.o.maxWaitTimeInMs);
      return;
    }
    await Promise.all([...byNode].map(([node, wanted]) => this.#fetchNode(client, metadata, node, wanted)));
  }

  async #fetchNode(
    client: PConsumer,
    metadata: Awaited<ReturnType<PConsumer['metadata']>>,
    node: number,
    wanted: { part: Part; gen: number; position: bigint }[],
  ): Promise<void> {
    const topicIds = new Map<string, string>();
    const request = new Map<string, { partition: number; fetchOffset: bigint; partitionMaxBytes: number; currentLeaderEpoch: number; lastFetchedEpoch: number }[]>();
    for (const { part, position } of wanted) {
      const id = metadata.topics.get(part.topic)!.id;
      topicIds.set(id, part.topic);
      let list = request.get(id);
      if (!list) request.set(id, (list = []));
      list.push({ partition: part.partition, fetchOffset: position, partitionMaxBytes: 1_048_576, currentLeaderEpoch: -1, lastFetchedEpoch: -1 });
    }
    const response = await client.fetch({
      node,
      topics: [...request].map(([topicId, partitions]) => ({ topicId, partitions })),
      maxWaitTime: this.o.maxWaitTimeInMs,
    });
    // The client retries a dead or unreachable leader on its own: an answer is what says it can fetch.
    this.handlers.fetchAnswered?.();
    const asked = new Map(wanted.map((w) => [key(w.part.topic, w.part.partition), w]));
    for (const topicResponse of response.responses) {
      const topic = topicIds.get(topicResponse.topicId);
      if (topic === undefined) continue;
      for (const p of topicResponse.partitions) {
        const w = asked.get(key(topic, p.partitionIndex));
        if (!w) continue;
        const { part, gen, position } = w;
        // Revoked or paused since the request: its records are fetched again later.
        if (part.gen !== gen || part.revoked || part.paused || !this.#running) continue;
        if (p.errorCode === OFFSET_OUT_OF_RANGE) {
          part.position = undefined;
          await this.#positions(client, [part]);
          continue;
        }
        if (p.errorCode !== 0 || !p.records || p.records.length === 0) continue;
        await this.#deliver(part, gen, position, p.records);
      }
    }
  }

  /** Hands one partition's records to the adapter; its position moves to after what it resolved. */
  async #deliver(part: Part, gen: number, from: bigint, batches: import('@platformatic/kafka').RecordsBatch[]): Promise<void> {
    const messages: KafkaMessageRecord[] = [];
    let last = from - 1n;
    for (const batch of batches) {
      const end = batch.firstOffset + BigInt(batch.lastOffsetDelta);
      if (end > last) last = end;
      if (batch.attributes & IS_CONTROL) continue;
      for (const record of batch.records) {
        const offset = batch.firstOffset + BigInt(record.offsetDelta);
        if (offset < from) continue; // the fetch answers from the start of a record batch
        let headers: KafkaMessageRecord['headers'];
        if (record.headers.length > 0) {
          headers = {};
          for (const [k, v] of record.headers) {
            if (k === null) continue;
            const name = k.toString();
            const value = v ?? Buffer.alloc(0);
            const had = headers[name];
            headers[name] = had === undefined ? value : Array.isArray(had) ? [...had, value] : [had, value];
          }
        }
        messages.push({ offset: String(offset), key: record.key, value: record.value, headers, timestamp: String(batch.firstTimestamp + record.timestampDelta) });
      }
    }
    if (last < from) return;
    let resolved: bigint | undefined;
    const lastOffset = String(last);
    const payload: DriverBatchPayload = {
      batch: { topic: part.topic, partition: part.partition, messages, lastOffset: () => lastOffset },
      resolveOffset: (offset) => {
        if (part.gen === gen) resolved = BigInt(offset);
      },
      // The client heartbeats on its own timer; a batch outdated meanwhile (its partition revoked)
      // fails here, which ends the adapter's wait inside it, as kafkajs's does in a rebalance.
      heartbeat: () => (part.gen !== gen || part.revoked ? Promise.reject(new Error('the batch is outdated: its partition was revoked')) : Promise.resolve()),
      isRunning: () => this.#running,
      isStale: () => part.gen !== gen || part.revoked,
    };
    await this.handlers.batch(payload);
    if (part.gen !== gen || part.revoked) return; // revoked: its next owner starts at the last commit
    const lastMessage = messages.length > 0 ? BigInt(messages[messages.length - 1]!.offset) : undefined;
    // Everything taken: step over what carries no message (transaction markers) too.
    if (lastMessage === undefined || resolved === lastMessage) part.position = last + 1n;
    else if (resolved !== undefined) part.position = resolved + 1n;
  }
}

class PlatformaticProducer implements DriverProducer {
  #client: PProducer | undefined;

  constructor(
    private readonly base: Record<string, unknown>,
    private readonly allowAutoTopicCreation: boolean,
  ) {}

  get client(): PProducer | undefined {
    return this.#client;
  }

  async connect(): Promise<void> {
    const pk = await load();
    // An idempotent producer retries for ever unless told otherwise (a missing dead-letter topic
    // would hang the produce): bounded as kafkajs's default is, unless the config says.
    const retries = (this.base.retries as number | boolean | undefined) ?? 5;
    if (!this.#client) this.#client = new pk.Producer({ ...this.base, retries, idempotent: true, acks: -1, autocreateTopics: this.allowAutoTopicCreation } as never) as PProducer;
    await this.#client.listApis().catch((error: unknown) => {
      throw withReasons(error);
    });
  }

  async send(topic: string, messages: OutgoingMessage[]): Promise<unknown> {
    if (!this.#client) await this.connect();
    const toBuffer = (v: Buffer | string | null | undefined) => (v === null || v === undefined ? undefined : typeof v === 'string' ? Buffer.from(v) : v);
    return this.#client!.send({
      messages: messages.map((m) => ({
        topic,
        key: toBuffer(m.key),
        value: toBuffer(m.value),
        headers: m.headers ? new Map(Object.entries(m.headers).map(([k, v]) => [Buffer.from(k), toBuffer(v) ?? Buffer.alloc(0)])) : undefined,
        ...(m.partition === undefined ? {} : { partition: m.partition }),
      })),
      acks: -1,
      idempotent: true,
      autocreateTopics: this.allowAutoTopicCreation,
    } as never);
  }

  async disconnect(): Promise<void> {
    const client = this.#client;
    this.#client = undefined;
    await client?.close(true);
  }
}
