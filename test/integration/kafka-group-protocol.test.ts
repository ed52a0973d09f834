/**
 * KIP-848 (`groupProtocol: 'consumer'`) on the @platformatic/kafka driver, against a real Kafka 4
 * broker: the broker assigns partitions and moves them one by one through heartbeats (no join
 * barrier, no eager revoke of everything). Two members and a rebalance: every id handled, a
 * partition that moved is not started again by the member that gave it up, and the committed
 * offsets reach the log end. It runs on every Node the driver supports (>= 22.22), whichever
 * driver the pass's other Kafka tests use; on an older Node the driver's refusal is what is
 * tested. The kafkajs driver has only the classic protocol: asking it for another is refused.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kafkaConsumer, type KafkaClientOption } from '../../adapters/kafka/index.js';
import { assertPlatformaticNode } from '../../adapters/kafka/drivers/platformatic.js';
import { WorkerPool } from '../../src/index.js';
import { kafkaFixture, type FixtureConsumerOptions, type KafkaFixture } from '../helpers/kafka.js';
import { until } from '../helpers/wait.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

const platformaticRuns = (() => {
  try {
    assertPlatformaticNode('check');
    return true;
  } catch {
    return false;
  }
})();

describe('KIP-848 group protocol', () => {
  let kafka: KafkaFixture;
  beforeAll(async () => {
    kafka = await kafkaFixture({ deleteOnClose: true, stopTimeoutMs: 2000 });
  });
  afterAll(async () => {
    await kafka?.close();
  });

  /** A consumer on @platformatic/kafka with the consumer group protocol (the broker's `group.consumer.*` settings govern its heartbeats). */
  const member = (options: FixtureConsumerOptions) =>
    kafka.consumer({
      kafka: { client: 'platformatic', brokers: kafka.brokers, clientId: 'sluice-test', retries: 2, retryDelay: 100, groupProtocol: 'consumer' } as KafkaClientOption,
      ...options,
    });

  /** The group's type as the broker lists it: 'consumer' for a KIP-848 group, 'classic' otherwise. */
  async function groupType(groupId: string): Promise<string | undefined> {
    const { Admin } = await import('@platformatic/kafka');
    const admin = new Admin({ clientId: 'sluice-test', bootstrapBrokers: kafka.brokers });
    try {
      return (await admin.listGroups({ types: ['consumer', 'classic'] })).get(groupId)?.groupType;
    } finally {
      await admin.close();
    }
  }

  it('kafkajs has only the classic protocol: groupProtocol in a kafkajs config is refused at construction, naming the driver that has it', () => {
    const build = () =>
      kafkaConsumer({
        kafka: { brokers: kafka.brokers, groupProtocol: 'consumer' } as KafkaClientOption,
        groupId: 'never-joined',
        topics: ['never-read'],
        pool: { maxConcurrency: 1, maxQueueSize: 1 },
        handler: async () => {},
      });
    expect(build).toThrow(/option "kafka.groupProtocol".*kafkajs.*client: 'platformatic'/);
  });

  if (!platformaticRuns) {
    it(`on Node ${process.versions.node} the platformatic driver is refused at construction, naming the Node it needs`, () => {
      expect(() => member({ groupId: 'never-joined', topics: ['never-read'], pool: { maxConcurrency: 1, maxQueueSize: 1 }, handler: async () => {} })).toThrow(/needs Node >= 22\.22, this is Node v/);
    });
    return;
  }

  it('two members and a rebalance: every id handled, nothing of a moved partition started again by its old owner, committed offsets at the log end', async () => {
    const name = await kafka.topic(4, 'sluice-kip848');
    const sent = await kafka.fill(name, 400, 400);
    const groupId = kafka.group('sluice-kip848-g');
    const handled = new Map<string, number>();
    const byA = new Set<string>();
    const byB = new Set<string>();
    // Partitions B owns and has started a message of: A starting one of them would be a duplicate
    // beyond what A had in flight when the broker took the partition from it.
    let ownedB = new Set<number>();
    const startedByB = new Set<number>();
    const startedAfterB: string[] = [];
    const poolA = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 40 });
    const a = member({
      groupId,
      topics: [name],
      pool: poolA,
      ordering: 'unordered',
      handler: async (m) => {
        if (ownedB.has(m.raw.partition) && startedByB.has(m.raw.partition)) startedAfterB.push(m.id);
        byA.add(m.id);
        await sleep(50); // 400 take A alone 10 s: work is left when the broker moves partitions to B
        handled.set(m.id, (handled.get(m.id) ?? 0) + 1);
      },
    });
    await a.start();
    expect(Object.keys(a.source.status().partitions)).toHaveLength(4);
    expect(await groupType(groupId)).toBe('consumer');
    await until(() => poolA.status().pending >= 20, "A's pool queue deep", 30_000);

    const b = member({
      groupId,
      topics: [name],
      pool: { maxConcurrency: 4, maxQueueSize: 4 },
      ordering: 'unordered',
      handler: async (m) => {
        startedByB.add(m.raw.partition);
        byB.add(m.id);
        await sleep(5);
        handled.set(m.id, (handled.get(m.id) ?? 0) + 1);
      },
    });
    kafka.watch(b).on('assigned', (assignment) => {
      ownedB = new Set(assignment[name] ?? []);
      for (const p of startedByB) if (!ownedB.has(p)) startedByB.delete(p);
    });
    await b.start();
    // The broker moves partitions at the members' heartbeats (group.consumer.heartbeat.interval.ms, 5 s by default).
    await until(() => ownedB.size > 0, 'B assigned partitions', 30_000);
    await until(() => sent.every((s) => handled.has(s.id)), 'every id handled', 40_000);
    const aOwns = Object.keys(a.source.status().partitions).length;
    await b.stop();
    await a.stop();

    expect(aOwns + ownedB.size).toBe(4);
    expect(startedAfterB).toEqual([]);
    expect(byB.size).toBeGreaterThan(0);
    const twice = [...handled].filter(([, n]) => n > 1).map(([id]) => id);
    console.log(`KIP-848: B took ${ownedB.size} partitions; ${byA.size} ids handled by A, ${byB.size} by B, ${twice.length} twice`);
    // Twice only for what both started (A before the broker moved the partition).
    expect(twice.filter((id) => !(byA.has(id) && byB.has(id)))).toEqual([]);
    // Both members are gone: what they committed is final.
    const { committed, end } = await kafka.offsets(groupId, name);
    expect(committed).toEqual(end);
    await poolA.close();
  }, 60_000);
});
