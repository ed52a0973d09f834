/**
 * Runtime-v2 settlement on a real Kafka: a dead-letter topic that refuses (missing, auto-create
 * off) and a rebalance with a deep pool queue (revoked partitions' queued deliveries never start).
 */
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kafkaConsumer, kafkaPublisher, ORIGIN_HEADERS, type KafkaConsumer, type KafkaPublisher } from '../../adapters/kafka/index.js';
import { DEAD_LETTER_HEADERS, PermanentError, WorkerPool } from '../../src/index.js';
import { kafkaBrokers } from '../helpers/brokers.js';
import { tick } from '../helpers/wait.js';

let brokers: string[];
let kafka: Kafka;
let admin: Admin;
let publisher: KafkaPublisher;
const consumers: KafkaConsumer[] = [];

beforeAll(async () => {
  brokers = await kafkaBrokers();
  kafka = new Kafka({ clientId: 'sluice-test', brokers, logLevel: logLevel.NOTHING });
  admin = kafka.admin();
  await admin.connect();
  publisher = await kafkaPublisher({ kafka });
});

afterAll(async () => {
  for (const c of consumers) await c.stop({ timeoutMs: 1000 }).catch(() => {});
  await publisher?.close();
  await admin?.disconnect();
});

const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;
/** Polls `condition` (refreshing what it reads with `refresh` first) until true; `limitMs` only guards against a hang. */
async function until(condition: () => boolean, what: string, limitMs = 10_000, refresh?: () => Promise<unknown>): Promise<void> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    if (refresh) await refresh();
    if (condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await tick(refresh ? 100 : 5);
  }
}
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function topic(partitions: number): Promise<string> {
  const name = unique('sluice-ks');
  await admin.createTopics({ topics: [{ topic: name, numPartitions: partitions }], waitForLeaders: true });
  return name;
}

interface Sent {
  id: string;
  key: string;
  seq: number;
}

async function fill(name: string, n: number, keys: number): Promise<Sent[]> {
  const sent: Sent[] = [];
  const seqs = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const key = `k${i % keys}`;
    const seq = seqs.get(key) ?? 0;
    seqs.set(key, seq + 1);
    sent.push({ id: `m-${i}`, key, seq });
  }
  await publisher.publish(name, sent.map((s) => ({ key: s.key, value: JSON.stringify(s), headers: { 'message-id': s.id } })));
  return sent;
}

async function offsets(groupId: string, name: string): Promise<{ committed: number[]; end: number[] }> {
  const [fetched] = await admin.fetchOffsets({ groupId, topics: [name] });
  const ends = await admin.fetchTopicOffsets(name);
  const byPartition = <T extends { partition: number; offset: string }>(list: T[]) => [...list].sort((a, b) => a.partition - b.partition).map((p) => Number(p.offset));
  return { committed: byPartition(fetched!.partitions), end: byPartition(ends) };
}

function consumer(options: Partial<Parameters<typeof kafkaConsumer>[0]> & Pick<Parameters<typeof kafkaConsumer>[0], 'handler' | 'pool' | 'groupId' | 'topics'>): KafkaConsumer {
  const c = kafkaConsumer({
    kafka: { brokers, clientId: 'sluice-test', logLevel: logLevel.NOTHING, retry: { retries: 2, initialRetryTime: 100 } },
    fromBeginning: true,
    sessionTimeout: 10_000,
    heartbeatInterval: 250,
    commitIntervalMs: 200,
    maxWaitTimeInMs: 100,
    ...options,
  });
  consumers.push(c);
  return c;
}

/** Every message of a topic, read from the beginning with a plain kafkajs consumer once the topic holds `n`. */
async function readTopic(name: string, n: number) {
  const reader = kafka.consumer({ groupId: unique('sluice-reader'), sessionTimeout: 10_000, heartbeatInterval: 1000, maxWaitTimeInMs: 100 });
  const got: { key: string | undefined; value: string; headers: Record<string, string> }[] = [];
  await reader.connect();
  await reader.subscribe({ topic: name, fromBeginning: true });
  await reader.run({
    eachMessage: async ({ message }) => {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(message.headers ?? {})) headers[k] = String(v);
      got.push({ key: message.key?.toString(), value: message.value?.toString() ?? '', headers });
    },
  });
  try {
    await until(() => got.length >= n, `${n} message(s) in ${name}`, 30_000);
  } finally {
    await reader.disconnect();
  }
  return got;
}

async function topicSize(name: string): Promise<number> {
  const offsets = await admin.fetchTopicOffsets(name);
  return offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
}

describe('kafkaConsumer settlement on a real Kafka', () => {
  it('a dead-letter topic that does not exist (auto-create off): healthy messages flow, nothing is lost or committed past the failing ones, and once it exists each reaches it exactly once', async () => {
    const name = await topic(2);
    const dlq = unique('sluice-ks-dlq'); // not created yet
    const sent = await fill(name, 60, 6);
    // The third message of keys k0, k1, k2 fails for good.
    const failing = new Set(sent.filter((s) => ['k0', 'k1', 'k2'].includes(s.key) && s.seq === 2).map((s) => s.id));
    const blocked = sent.filter((s) => ['k0', 'k1', 'k2'].includes(s.key) && s.seq > 2);
    const healthy = sent.filter((s) => !failing.has(s.id) && !blocked.includes(s));
    const runs = new Map<string, number>();
    const where = new Map<string, { partition: number; offset: number }>();
    const handled = new Map<string, number>();
    const groupId = unique('sluice-g');
    const c = consumer({
      groupId,
      topics: [name],
      pool: { maxConcurrency: 2, maxQueueSize: 2 },
      ordering: 'key',
      deadLetter: { topic: dlq, allowAutoTopicCreation: false },
      handler: async (m) => {
        if (failing.has(m.id)) {
          runs.set(m.id, (runs.get(m.id) ?? 0) + 1);
          where.set(m.id, { partition: m.raw.partition, offset: Number(m.raw.message.offset) });
          throw new PermanentError(`declined ${m.id}`);
        }
        await sleep(1);
        handled.set(m.id, (handled.get(m.id) ?? 0) + 1);
      },
    });
    const errors: { during: string; id: string | undefined }[] = [];
    c.on('error', ({ during, message }) => errors.push({ during, id: message?.id }));
    await c.start();

    // Healthy messages of other keys (and those before the failing ones on their own keys) flow.
    await until(() => healthy.every((s) => handled.has(s.id)), 'every healthy message handled', 30_000);
    await until(() => [...failing].every((id) => errors.some((e) => e.during === 'dead-letter' && e.id === id)), "a 'dead-letter' error for each failing message", 30_000);
    await until(() => c.status().deferred >= failing.size, 'the failing messages set aside', 30_000);
    expect(blocked.filter((s) => handled.has(s.id))).toEqual([]); // order per key: they wait behind the failing head
    expect(c.status().deadLettered).toBe(0);
    // Committed up to the first failing message of each partition (the done prefix), never past it.
    const firstFailing = (partition: number) => Math.min(...[...where.values()].filter((w) => w.partition === partition).map((w) => w.offset));
    let before = await offsets(groupId, name);
    const expected = () => before.end.map((end, p) => Math.min(end, firstFailing(p)));
    await until(() => before.committed.every((o, p) => o === expected()[p]), 'the done prefix committed', 30_000, async () => (before = await offsets(groupId, name)));
    expect(before.committed).toEqual(expected());
    expect(c.status().deadLettered).toBe(0);

    // The destination accepts again: each failing message reaches it, once.
    await admin.createTopics({ topics: [{ topic: dlq, numPartitions: 1 }], waitForLeaders: true });
    await until(() => c.status().deadLettered === failing.size, 'the failing messages dead-lettered', 60_000);
    await until(() => sent.every((s) => failing.has(s.id) || handled.has(s.id)), 'the blocked followers handled', 30_000);
    await c.stop();
    // The handler ran once per failing message: redeliveries of a set-aside dead letter go straight to dead-letter.
    expect([...runs.values()]).toEqual([...failing].map(() => 1));
    expect([...handled.values()].every((n) => n === 1)).toBe(true);
    expect(await topicSize(dlq)).toBe(failing.size);
    const dead = await readTopic(dlq, failing.size);
    expect(dead.map((d) => d.headers[DEAD_LETTER_HEADERS.messageId]).sort()).toEqual([...failing].sort());
    for (const d of dead) {
      const id = d.headers[DEAD_LETTER_HEADERS.messageId]!;
      expect(d.headers[DEAD_LETTER_HEADERS.error]).toBe(`declined ${id}`);
      expect(d.headers[DEAD_LETTER_HEADERS.reason]).toBe('permanent-error');
      expect(d.headers[DEAD_LETTER_HEADERS.attempts]).toBe('1');
      expect(d.headers[DEAD_LETTER_HEADERS.source]).toBe(name);
      expect(d.headers[ORIGIN_HEADERS.topic]).toBe(name);
      expect(d.headers[ORIGIN_HEADERS.partition]).toBe(String(where.get(id)!.partition));
      expect(d.headers[ORIGIN_HEADERS.offset]).toBe(String(where.get(id)!.offset));
      expect(d.headers['message-id']).toBe(id);
      expect(JSON.parse(d.value).id).toBe(id);
    }
    const after = await offsets(groupId, name);
    expect(after.committed).toEqual(after.end);
    await admin.deleteTopics({ topics: [dlq] }).catch(() => {});
  }, 120_000);

  it("a rebalance with a deep pool queue: a revoked partition's queued deliveries are never started", async () => {
    const name = await topic(4);
    const sent = await fill(name, 240, 240);
    const groupId = unique('sluice-g');
    const startsA = new Map<string, number>();
    const startsB = new Map<string, number>();
    const done = new Set<string>();
    let ownedA = new Set<number>();
    const startedAfterRevoke: string[] = [];
    const poolA = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 80 });
    const a = consumer({
      groupId,
      topics: [name],
      pool: poolA,
      ordering: 'unordered',
      handler: async (m) => {
        startsA.set(m.id, (startsA.get(m.id) ?? 0) + 1);
        if (!ownedA.has(m.raw.partition)) startedAfterRevoke.push(m.id);
        await sleep(100);
        done.add(m.id);
      },
    });
    await a.start();
    ownedA = new Set(Object.keys(a.source.status().partitions).map((tp) => Number(tp.split('/').pop())));
    expect(ownedA.size).toBe(4);
    // Registered after the adapter's own listener: by the time this runs, the revoked states are stale.
    a.source.client!.on(a.source.client!.events.GROUP_JOIN, ({ payload }) => {
      ownedA = new Set(payload.memberAssignment[name] ?? []);
    });
    await until(() => poolA.status().pending >= 60, "A's pool queue deep", 30_000);
    const b = consumer({
      groupId,
      topics: [name],
      pool: { maxConcurrency: 4, maxQueueSize: 4 },
      ordering: 'unordered',
      handler: async (m) => {
        startsB.set(m.id, (startsB.get(m.id) ?? 0) + 1);
        await sleep(10);
        done.add(m.id);
      },
    });
    await b.start();
    await until(() => ownedA.size < 4, 'A gave partitions up', 30_000);
    await until(() => sent.every((s) => done.has(s.id)), 'every message handled', 60_000);
    await b.stop();
    await a.stop();
    expect(startedAfterRevoke).toEqual([]);
    expect(a.status().skippedStale).toBeGreaterThan(0);
    // Each handler start per id: at most once per member, and twice overall only for what A started before its revoke.
    expect([...startsA.values()].every((n) => n === 1)).toBe(true);
    expect([...startsB.values()].every((n) => n === 1)).toBe(true);
    const twice = [...startsB.keys()].filter((id) => startsA.has(id));
    console.log(`rebalance: ${a.status().skippedStale} stale deliveries skipped by A, ${twice.length} ids started by both members`);
    const { committed, end } = await offsets(groupId, name);
    expect(committed).toEqual(end);
    await poolA.close();
  }, 120_000);
});
