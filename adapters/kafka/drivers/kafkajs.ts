/**
 * The kafkajs driver (the default): a kafkajs consumer run with `eachBatch`, `autoCommit: false`
 * and `eachBatchAutoResolve: false`, whose batch payload is the port's as it is (no copy per
 * batch or message), and an idempotent kafkajs producer.
 */
import type { Consumer, Kafka, Producer } from 'kafkajs';
import type { CommitOffset, DriverHandlers, DriverProducer, GroupMember, JoinOptions, KafkaDriver, OutgoingMessage } from '../driver.js';

/** Commit failures that only mean "the group moved on": the next owner reads from what was committed before. */
const REBALANCE_ERRORS = new Set(['REBALANCE_IN_PROGRESS', 'ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID', 'NOT_COORDINATOR']);

export class KafkajsDriver implements KafkaDriver {
  readonly name = 'kafkajs';

  constructor(readonly kafka: Kafka) {}

  member(options: JoinOptions, handlers: DriverHandlers): GroupMember {
    return new KafkajsMember(this.kafka, options, handlers);
  }

  producer({ allowAutoTopicCreation }: { allowAutoTopicCreation: boolean }): DriverProducer {
    return new KafkajsProducer(this.kafka.producer({ idempotent: true, maxInFlightRequests: 5, allowAutoTopicCreation }));
  }

  isRebalanceError(error: unknown): boolean {
    const type = (error as { type?: string } | undefined)?.type;
    return type !== undefined && REBALANCE_ERRORS.has(type);
  }
}

/**
 * kafkajs has no revoke callback: a join (`GROUP_JOIN`, with the whole assignment) is where
 * partitions come and go; `REBALANCING` is the last moment of the old generation. Its own loop
 * fetches and heartbeats while a batch callback has returned, and restarts after a crash.
 */
class KafkajsMember implements GroupMember {
  readonly client: Consumer;

  constructor(
    kafka: Kafka,
    private readonly o: JoinOptions,
    private readonly handlers: DriverHandlers,
  ) {
    const client = kafka.consumer({
      groupId: o.groupId,
      sessionTimeout: o.sessionTimeout,
      heartbeatInterval: o.heartbeatInterval,
      rebalanceTimeout: o.rebalanceTimeout,
      maxWaitTimeInMs: o.maxWaitTimeInMs,
    });
    client.on(client.events.GROUP_JOIN, ({ payload }) => handlers.assigned(payload.memberAssignment));
    client.on(client.events.REBALANCING, () => handlers.rebalancing());
    client.on(client.events.CRASH, ({ payload }) => handlers.crashed(payload.error, payload.restart));
    if (handlers.fetched) client.on(client.events.FETCH, () => handlers.fetched?.());
    // A round also ends after a fetch error kafkajs recovers from by itself; only a network answer shows a broker serving.
    if (handlers.fetchAnswered) client.on(client.events.REQUEST, ({ payload }) => payload.apiName === 'Fetch' && handlers.fetchAnswered?.());
    this.client = client;
  }

  connect(): Promise<void> {
    return this.client.connect();
  }

  async run(): Promise<void> {
    const { client, o, handlers } = this;
    await client.subscribe({ topics: o.topics, fromBeginning: o.fromBeginning });
    await client.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: (payload) => handlers.batch(payload) });
  }

  pause(topic: string, partition: number): void {
    this.client.pause([{ topic, partitions: [partition] }]);
  }

  resume(topic: string, partition: number): void {
    this.client.resume([{ topic, partitions: [partition] }]);
  }


  async commit(offsets: CommitOffset[]): Promise<void> {
    await this.client.commitOffsets(offsets.map(({ topic, partition, offset }) => ({ topic, partition, offset: String(offset) })));
  }

  leave(): Promise<void> {
    return this.client.disconnect();
  }
}

class KafkajsProducer implements DriverProducer {
  constructor(readonly client: Producer) {}

  connect(): Promise<void> {
    return this.client.connect();
  }

  send(topic: string, messages: OutgoingMessage[]): Promise<unknown> {
    return this.client.send({ topic, messages, acks: -1 });
  }

  disconnect(): Promise<void> {
    return this.client.disconnect();
  }
}
