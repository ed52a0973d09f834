/**
 * The Kafka adapter against the real broker: 20,000 messages in key order with committed
 * offsets at the end, overload pause/resume, crash/restart, a rebalance, a poison message, bad
 * input. Exact outcomes by message id (the `message-id` header).
 */
import { connect, type Socket } from 'node:net';
import { logLevel } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kafkaConsumer, ORIGIN_HEADERS, type KafkaConsumer, type KafkaRecord } from '../../adapters/kafka/index.js';
import { DEAD_LETTER_HEADERS, PermanentError, WorkerPool, type Message } from '../../src/index.js';
import { KAFKA_DRIVER as kafka_driver, kafkaClient, kafkaFixture, type KafkaFixture, type Sent } from '../helpers/kafka.js';
import { until } from '../helpers/wait.js';

let kafka: KafkaFixture;

beforeAll(async () => {
  kafka = await kafkaFixture();
});

afterAll(async () => {
  await kafka?.close();
});

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const body = (m: Message<KafkaRecord>) => m.json<Sent>();

describe('kafkaConsumer on a real Kafka', () => {
  it("20,000 messages over 6 partitions, pool 8 + 16, 'key' ordering: every id, per-key order, offsets committed to the end", async () => {
    const name = await kafka.topic(6);
    const sent = await kafka.fill(name, 20_000, 300);
    const pool = new WorkerPool({ maxConcurrency: 8, maxQueueSize: 16 });
    const groupId = kafka.group();
    const handled = new Map<string, number>();
    const lastSeq = new Map<string, number>();
    const outOfOrder: string[] = [];
    const running = new Set<string>();
    let concurrentSameKey = 0;
    let maxPending = 0;
    const c = kafka.consumer({
      groupId,
      topics: [name],
      pool,
      ordering: 'key',
      handler: async (m) => {
        const s = body(m);
        if (running.has(s.key)) concurrentSameKey++;
        running.add(s.key);
        if ((lastSeq.get(s.key) ?? -1) + 1 !== s.seq) outOfOrder.push(`${s.key}#${s.seq}`);
        lastSeq.set(s.key, s.seq);
        maxPending = Math.max(maxPending, pool.status().pending);
        await sleep(s.seq % 4);
        running.delete(s.key);
        handled.set(m.id, (handled.get(m.id) ?? 0) + 1);
      },
    });
    await c.start();
    // The driver under test (SLUICE_KAFKA_DRIVER) is the one consuming.
    expect(c.source.driver).toBe(kafka_driver);
    const client = c.source.client as unknown as Record<string, unknown>;
    expect(typeof client[kafka_driver === 'kafkajs' ? 'commitOffsets' : 'listCommittedOffsets']).toBe('function'); // kafkajs's consumer, or @platformatic/kafka's
    await until(() => handled.size === 20_000, '20,000 handled', 90_000);
    const stopped = await c.stop();
    expect(stopped.drained).toBe(true);
    expect([...handled.keys()].sort()).toEqual(sent.map((s) => s.id).sort());
    expect([...handled.values()].every((n) => n === 1)).toBe(true);
    expect(outOfOrder).toEqual([]);
    expect(concurrentSameKey).toBe(0);
    expect(maxPending).toBeLessThanOrEqual(16);
    const { committed, end } = await kafka.offsets(groupId, name);
    expect(committed).toEqual(end);
    expect(end.reduce((a, b) => a + b, 0)).toBe(20_000);
    await pool.close();
  }, 120_000);

  it('overload with a shared pool and a fast producer: partitions pause and resume, nothing lost, bounds kept', async () => {
    const [ta, tb] = [await kafka.topic(3), await kafka.topic(3)];
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 4 });
    const handled = new Map<string, number>();
    let maxPending = 0;
    let maxHeld = 0;
    const handler = async (m: Message<KafkaRecord>) => {
      maxPending = Math.max(maxPending, pool.status().pending);
      await sleep(2 + (body(m).seq % 3));
      handled.set(m.id, (handled.get(m.id) ?? 0) + 1);
    };
    const groupId = kafka.group();
    const a = kafka.consumer({ groupId, topics: [ta], pool, handler, maxHeldPerPartition: 8 });
    // The second one in 'partition' order: never two messages of one partition at once.
    const busy = new Set<number>();
    let overlap = 0;
    const b = kafka.consumer({
      groupId: `${groupId}-b`,
      topics: [tb],
      pool,
      ordering: 'partition',
      maxHeldPerPartition: 8,
      handler: async (m) => {
        if (busy.has(m.raw.partition)) overlap++;
        busy.add(m.raw.partition);
        await handler(m);
        busy.delete(m.raw.partition);
      },
    });
    await a.start();
    await b.start();
    const sources = [a.source, b.source];
    let sawPaused = false;
    const sampler = setInterval(() => {
      for (const s of sources) {
        for (const p of Object.values(s.status().partitions)) {
          maxHeld = Math.max(maxHeld, p.held);
          if (p.paused.length > 0) sawPaused = true;
        }
      }
    }, 2);
    // The producer is much faster than 2 handlers at a few ms each.
    const sent = [...(await kafka.fill(ta, 600, 40, 'a')), ...(await kafka.fill(tb, 600, 40, 'b'))];
    await until(() => handled.size === 1200, '1200 handled', 60_000);
    clearInterval(sampler);
    await a.stop();
    await b.stop();
    expect([...handled.keys()].sort()).toEqual(sent.map((s) => s.id).sort());
    expect([...handled.values()].every((n) => n === 1)).toBe(true);
    expect(maxPending).toBeLessThanOrEqual(4);
    // Held outside the pool: the bound, plus at most what the pool returned to it (retries, give-backs).
    expect(maxHeld).toBeLessThanOrEqual(8 + 6);
    expect(sawPaused).toBe(true);
    expect(overlap).toBe(0);
    for (const s of sources) {
      const st = s.status();
      expect(st.pauses).toBeGreaterThan(0);
      expect(st.resumes).toBeGreaterThan(0);
    }
    await pool.close();
  }, 90_000);

  it("the runtime's overload path: a pool that hides its capacity makes dispatch answer 'overloaded'; paused, resumed, nothing lost", async () => {
    const name = await kafka.topic(2);
    /** Reports room it does not have, so the adapter dispatches into a full pool and the runtime refuses. */
    class BlindPool extends WorkerPool {
      override get freeCapacity(): number {
        return 1_000;
      }
    }
    const pool = new BlindPool({ maxConcurrency: 2, maxQueueSize: 2 });
    const handled = new Map<string, number>();
    let maxPending = 0;
    const c = kafka.consumer({
      groupId: kafka.group(),
      topics: [name],
      pool,
      ordering: 'unordered',
      handler: async (m) => {
        maxPending = Math.max(maxPending, pool.status().pending);
        await sleep(3);
        handled.set(m.id, (handled.get(m.id) ?? 0) + 1);
      },
    });
    const events = { overloaded: 0, paused: 0, resumed: 0, givenBack: 0 };
    c.on('overloaded', () => events.overloaded++);
    c.on('paused', () => events.paused++);
    c.on('resumed', () => events.resumed++);
    c.on('givenBack', () => events.givenBack++);
    const sent = await kafka.fill(name, 300, 300);
    await c.start();
    await until(() => handled.size === 300, '300 handled', 60_000);
    await c.stop();
    expect([...handled.keys()].sort()).toEqual(sent.map((s) => s.id).sort());
    expect([...handled.values()].every((n) => n === 1)).toBe(true);
    expect(maxPending).toBeLessThanOrEqual(2);
    expect(events.overloaded).toBeGreaterThan(0);
    expect(events.givenBack).toBe(events.overloaded);
    expect(events.paused).toBeGreaterThan(0);
    expect(events.resumed).toBe(events.paused);
    await pool.close();
  }, 60_000);

  it('crash/restart: stop mid-stream abandoning what is in flight, a new member resumes: every id at least once, duplicates only past the commit', async () => {
    const name = await kafka.topic(3);
    const sent = await kafka.fill(name, 1500, 100);
    const groupId = kafka.group();
    const first = new Map<string, { partition: number; offset: number }>();
    const pool1 = new WorkerPool({ maxConcurrency: 4, maxQueueSize: 8 });
    const c1 = kafka.consumer({
      groupId,
      topics: [name],
      pool: pool1,
      handler: async (m, { signal }) => {
        await sleep(2);
        if (signal.aborted) throw signal.reason;
        first.set(m.id, { partition: m.raw.partition, offset: Number(m.raw.message.offset) });
      },
    });
    await c1.start();
    await until(() => first.size >= 500, '500 handled by the first member', 60_000);
    const stopped = await c1.stop({ timeoutMs: 0 });
    expect(first.size).toBeLessThan(1500);
    const { committed } = await kafka.offsets(groupId, name);
    const second = new Map<string, { partition: number; offset: number }>();
    const pool2 = new WorkerPool({ maxConcurrency: 4, maxQueueSize: 8 });
    const c2 = kafka.consumer({
      groupId,
      topics: [name],
      pool: pool2,
      handler: async (m) => {
        second.set(m.id, { partition: m.raw.partition, offset: Number(m.raw.message.offset) });
      },
    });
    await c2.start();
    const all = () => new Set([...first.keys(), ...second.keys()]);
    await until(() => all().size === 1500, 'every id handled by one of the two', 60_000);
    await c2.stop();
    expect([...all()].sort()).toEqual(sent.map((s) => s.id).sort());
    // The second member starts exactly at the committed offsets…
    for (const { partition, offset } of second.values()) expect(offset).toBeGreaterThanOrEqual(committed[partition]!);
    // …so an id is handled twice only if the first member had not committed it.
    const duplicates = [...second.keys()].filter((id) => first.has(id));
    for (const id of duplicates) expect(first.get(id)!.offset).toBeGreaterThanOrEqual(committed[first.get(id)!.partition]!);
    // Below the commit: handled by the first member, and only by it.
    for (const [id, at] of first) if (at.offset < committed[at.partition]!) expect(second.has(id)).toBe(false);
    // The stop really abandoned work in flight (a pool of 4 + 8 is full at any moment), and it came back.
    expect(stopped.drained).toBe(false);
    expect(stopped.givenBack).toBeGreaterThan(0);
    expect(duplicates.length + [...second.keys()].filter((id) => !first.has(id)).length).toBe(second.size);
    const end = await kafka.offsets(groupId, name);
    expect(end.committed).toEqual(end.end);
    await pool1.close();
    await pool2.close();
  }, 90_000);

  it('rebalance: a second member joins mid-stream and leaves again: no loss, no commit for a partition not owned', async () => {
    const name = await kafka.topic(6);
    const groupId = kafka.group();
    const handled = new Map<string, number>();
    const byMember = { a: 0, b: 0 };
    const handler = (who: 'a' | 'b') => async (m: Message<KafkaRecord>) => {
      await sleep(1 + (body(m).seq % 3));
      handled.set(m.id, (handled.get(m.id) ?? 0) + 1);
      byMember[who]++;
    };
    const violations: string[] = [];
    /** Every commit a member sends must be for partitions of its latest assignment (the driver's join). */
    const watch = (c: KafkaConsumer, who: string) => {
      const source = c.source;
      const driver = kafka.watch(c);
      // start() resolved after the first join: the adapter's partitions are that assignment.
      let owned = new Set(Object.keys(source.status().partitions).map((tp) => Number(tp.split('/').pop())));
      const joins: number[][] = [[...owned]];
      driver.on('assigned', (assignment) => {
        owned = new Set(assignment[name] ?? []);
        joins.push([...owned]);
      });
      driver.on('commit', (offsets) => {
        for (const p of offsets) if (!owned.has(p.partition)) violations.push(`${who} committed ${p.partition} owning ${[...owned]}`);
      });
      return joins;
    };
    const sent = await kafka.fill(name, 1000, 200, 'r1');
    const a = kafka.consumer({ groupId, topics: [name], pool: { maxConcurrency: 4, maxQueueSize: 8 }, handler: handler('a') });
    await a.start();
    const joinsA = watch(a, 'a');
    await until(() => handled.size >= 300, '300 handled by the first member', 60_000);
    const b = kafka.consumer({ groupId, topics: [name], pool: { maxConcurrency: 4, maxQueueSize: 8 }, handler: handler('b') });
    await b.start();
    const joinsB = watch(b, 'b');
    await until(() => joinsA[joinsA.length - 1]!.length < 6, 'the first member gave partitions up', 30_000);
    sent.push(...(await kafka.fill(name, 1000, 200, 'r2')));
    await until(() => byMember.b >= 200, 'the second member handled 200', 60_000);
    await b.stop();
    await until(() => joinsA[joinsA.length - 1]!.length === 6, 'the first member owns all partitions again', 30_000);
    sent.push(...(await kafka.fill(name, 1000, 200, 'r3')));
    await until(() => handled.size === 3000, 'all 3000 handled', 60_000);
    await a.stop();
    expect([...handled.keys()].sort()).toEqual(sent.map((s) => s.id).sort());
    expect(joinsB[0]!.length).toBeGreaterThan(0);
    expect(violations).toEqual([]);
    const { committed, end } = await kafka.offsets(groupId, name);
    expect(committed).toEqual(end);
  }, 120_000);

  it('handlers longer than sessionTimeout, with the pool full meanwhile: the member stays in the group (no rebalance), each message once', async () => {
    const name = await kafka.topic(1);
    const sent = await kafka.fill(name, 4, 4);
    const handled = new Map<string, number>();
    const c = kafka.consumer({
      groupId: kafka.group(),
      topics: [name],
      sessionTimeout: 6000, // the broker's group.min.session.timeout.ms
      heartbeatInterval: 1000,
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      handler: async (m) => {
        // The first is slower than the session timeout; the batch loop waits for room meanwhile.
        await sleep(m.id === sent[0]!.id ? 8000 : 10);
        handled.set(m.id, (handled.get(m.id) ?? 0) + 1);
      },
    });
    await c.start();
    const driver = kafka.watch(c);
    let joins = 0;
    let rebalances = 0;
    driver.on('assigned', () => joins++);
    driver.on('rebalancing', () => rebalances++);
    await until(() => handled.size === 4, 'all 4 handled', 30_000);
    await c.stop();
    expect([...handled.values()]).toEqual([1, 1, 1, 1]);
    expect(joins).toBe(0);
    expect(rebalances).toBe(0);
  }, 60_000);

  it('poison message: retried maxAttempts times, then in the dead-letter topic with headers; its partition keeps flowing', async () => {
    const name = await kafka.topic(2);
    const sent = await kafka.fill(name, 200, 20);
    const poison = sent[42]!;
    const attempts: number[] = [];
    const handled = new Map<string, number>();
    const samePartitionWhileRetrying = new Set<string>();
    let poisonPartition = -1;
    let retrying = false;
    const c = kafka.consumer({
      groupId: kafka.group(),
      topics: [name],
      pool: { maxConcurrency: 4, maxQueueSize: 8 },
      ordering: 'key',
      retry: { maxAttempts: 3, backoff: { initialMs: 150, maxMs: 300, jitter: 0 } },
      handler: async (m, { attempt }) => {
        if (m.id === poison.id) {
          attempts.push(attempt);
          poisonPartition = m.raw.partition;
          retrying = true;
          throw new Error('card declined for good');
        }
        if (retrying && m.raw.partition === poisonPartition) samePartitionWhileRetrying.add(m.id);
        await sleep(1);
        handled.set(m.id, (handled.get(m.id) ?? 0) + 1);
      },
    });
    const dead: string[] = [];
    c.on('deadLettered', ({ message }) => {
      dead.push(message.id);
      retrying = false;
    });
    await c.start();
    await until(() => handled.size === 199 && dead.length === 1, '199 handled and 1 dead-lettered', 60_000);
    await c.stop();
    expect(attempts).toEqual([1, 2, 3]);
    expect(dead).toEqual([poison.id]);
    expect(handled.has(poison.id)).toBe(false);
    expect([...handled.values()].every((n) => n === 1)).toBe(true);
    expect(samePartitionWhileRetrying.size).toBeGreaterThan(0);
    const [dl] = await kafka.readTopic(`${name}.dlq`, 1);
    expect(dl!.key).toBe(poison.key);
    expect(JSON.parse(dl!.value)).toEqual(poison);
    expect(dl!.headers[DEAD_LETTER_HEADERS.attempts]).toBe('3');
    expect(dl!.headers[DEAD_LETTER_HEADERS.error]).toBe('card declined for good');
    expect(dl!.headers[DEAD_LETTER_HEADERS.reason]).toBe('max-attempts');
    expect(dl!.headers[DEAD_LETTER_HEADERS.messageId]).toBe(poison.id);
    expect(dl!.headers[ORIGIN_HEADERS.topic]).toBe(name);
    expect(dl!.headers[ORIGIN_HEADERS.partition]).toBe(String(poisonPartition));
    expect(dl!.headers['message-id']).toBe(poison.id);
  }, 60_000);

  it('a dead-letter produce that fails leaves the offset uncommitted; the handler runs once, the dead letter is set aside and tried again; the partition flows', async () => {
    const name = await kafka.topic(1);
    const sent = await kafka.fill(name, 30, 5);
    const poison = sent[10]!;
    let runs = 0;
    const handled = new Set<string>();
    const groupId = kafka.group();
    const c = kafka.consumer({
      groupId,
      topics: [name],
      pool: { maxConcurrency: 2, maxQueueSize: 2 },
      deadLetter: { topic: 'not a valid topic name!' },
      handler: async (m) => {
        if (m.id === poison.id) {
          runs++;
          throw new PermanentError('unprocessable');
        }
        handled.add(m.id);
      },
    });
    const errors: string[] = [];
    c.on('error', ({ during, message }) => errors.push(`${during}:${message?.id}`));
    await c.start();
    // Other keys flow; the poison's own key waits behind it (order per key holds while it cannot be dead-lettered).
    const otherKeys = sent.filter((s) => s.key !== poison.key);
    const sameKeyAfter = sent.filter((s) => s.key === poison.key && s.seq > poison.seq);
    await until(() => otherKeys.every((s) => handled.has(s.id)) && c.status().deferred >= 2, 'the other keys handled, the dead letter set aside twice', 30_000);
    expect(sameKeyAfter.filter((s) => handled.has(s.id))).toEqual([]);
    expect(handled.size).toBe(sent.length - 1 - sameKeyAfter.length);
    await c.stop();
    // The runtime remembers the pending dead letter: the handler is not run again for it.
    expect(runs).toBe(1);
    expect(errors.filter((e) => e === `dead-letter:${poison.id}`).length).toBeGreaterThanOrEqual(2);
    expect(c.status().deadLettered).toBe(0);
    // Nothing at or after the poison's offset (10 on a single partition) was committed.
    const { committed } = await kafka.offsets(groupId, name);
    expect(committed).toEqual([10]);
  }, 60_000);

  it('bad input: unreachable brokers fail start clearly, invalid options throw at construction, a non-JSON body is dead-lettered', async () => {
    // Unreachable: a clear error after the configured attempts, no hang, no password in it.
    const groupId = kafka.group();
    const unreachable = kafkaConsumer({
      kafka:
        kafka_driver === 'kafkajs'
          ? { brokers: ['127.0.0.1:1'], logLevel: logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 500, sasl: { mechanism: 'plain', username: 'u', password: 's3cret-pw' } }
          : { client: 'platformatic', brokers: ['127.0.0.1:1'], retries: 0, connectTimeout: 500, sasl: { mechanism: 'PLAIN', username: 'u', password: 's3cret-pw' } },
      groupId,
      topics: ['t'],
      pool: { maxConcurrency: 1, maxQueueSize: 1 },
      recovery: { startAttempts: 2, backoff: { initialMs: 20, maxMs: 20, jitter: 0 } },
      handler: () => {},
    });
    const retries: string[] = [];
    unreachable.on('error', ({ during }) => retries.push(during));
    const failure = await unreachable.start().then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    const where = `127.0.0.1:1 (group "${groupId}")`;
    expect(failure).toBeInstanceOf(Error);
    expect(failure!.message).toMatch(new RegExp(`^kafka:t: could not connect to ${escape(where)} after 2 attempt\\(s\\): the group member could not connect: `));
    expect(failure!.message).not.toContain('s3cret-pw');
    expect(retries).toEqual([`kafka:t: connect attempt 1 of 2 to ${where} failed; next in 20 ms`]);
    expect(unreachable.state).toBe('stopped');

    // Invalid options: named at construction.
    const base = { kafka: { brokers: kafka.brokers }, groupId: 'g', topics: ['t'], pool: { maxConcurrency: 1, maxQueueSize: 1 }, handler: () => {} };
    const invalid: [Record<string, unknown>, RegExp][] = [
      [{ groupId: '' }, /option "groupId" must be a non-empty string, got ""/],
      [{ topics: [] }, /option "topics" must be a non-empty array/],
      [{ topics: ['ok', 7] }, /option "topics\[1\]" must be a non-empty string, got 7/],
      [{ kafka: undefined }, /option "kafka" must be an object, got undefined/],
      [{ kafka: { brokers: [] } }, /option "kafka.brokers" must be a non-empty array/],
      [{ ordering: 'random' }, /option "ordering" must be one of 'partition' \| 'key' \| 'unordered', got "random"/],
      [{ commitIntervalMs: 0 }, /option "commitIntervalMs" must be between|option "commitIntervalMs" must be >= 10, got 0/],
      [{ maxHeldPerPartition: 1.5 }, /option "maxHeldPerPartition" must be an integer >= 1, got 1.5/],
      [{ sessionTimeout: 6000, heartbeatInterval: 6000 }, /option "heartbeatInterval" must be below "sessionTimeout" \(6000\), got 6000/],
      [{ deadLetter: { topic: '' } }, /option "deadLetter.topic" must be a non-empty string/],
      [{ fromBeginning: 'yes' }, /option "fromBeginning" must be a boolean, got "yes"/],
      [{ pool: undefined }, /option "pool" must be a WorkerPool/],
      [{ handler: 'nope' }, /option "handler" must be a function, got "nope"/],
    ];
    for (const [patch, message] of invalid) {
      expect(() => kafkaConsumer({ ...base, ...patch } as never), JSON.stringify(patch)).toThrow(message);
    }

    // A body no JSON handler can read: dead-lettered at once, the rest handled.
    const name = await kafka.topic(1);
    await kafka.publisher.publish(name, [
      { key: 'x', value: JSON.stringify({ ok: 1 }), headers: { 'message-id': 'good-1' } },
      { key: 'x', value: 'this is not json', headers: { 'message-id': 'malformed-1' } },
      { key: 'x', value: JSON.stringify({ ok: 2 }), headers: { 'message-id': 'good-2' } },
    ]);
    const handled: string[] = [];
    const c = kafka.consumer({
      groupId: kafka.group(),
      topics: [name],
      pool: { maxConcurrency: 2, maxQueueSize: 2 },
      handler: async (m) => {
        m.json();
        handled.push(m.id);
      },
    });
    const dead: { id: string; attempts: number; reason: string }[] = [];
    c.on('deadLettered', ({ message, info }) => dead.push({ id: message.id, attempts: info.attempts, reason: info.reason }));
    await c.start();
    await until(() => handled.length === 2 && dead.length === 1, 'two handled, one dead-lettered', 30_000);
    await c.stop();
    expect(handled).toEqual(['good-1', 'good-2']);
    expect(dead).toEqual([{ id: 'malformed-1', attempts: 1, reason: 'permanent-error' }]);
    const [dl] = await kafka.readTopic(`${name}.dlq`, 1);
    expect(dl!.value).toBe('this is not json');
    expect(dl!.headers[DEAD_LETTER_HEADERS.errorName]).toBe('DecodeError');
    expect(dl!.headers[ORIGIN_HEADERS.offset]).toBe('1');
  }, 60_000);

  it('connection cut mid-stream: the client loses every connection, the adapter reports it, the client recovers and nothing is lost', async () => {
    const name = await kafka.topic(3);
    const sent = await kafka.fill(name, 1500, 100);
    const sockets = new Set<Socket>();
    let refuse = false;
    // kafkajs: every connection of this consumer goes through its socketFactory, so the test can cut them all.
    const socketFactory = ({ host, port, onConnect }: { host: string; port: number; onConnect: () => void }) => {
      const socket = refuse ? connect({ host: '127.0.0.1', port: 1 }) : connect({ host, port }, onConnect);
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      return socket;
    };
    // @platformatic/kafka: every connection it makes is announced on its diagnostics channels;
    // while refusing, a connection is cut as soon as its socket exists.
    const unsubscribe: (() => void)[] = [];
    if (kafka_driver === 'platformatic') {
      const { instancesChannel, connectionsConnectsChannel } = await import('@platformatic/kafka');
      const track = (socket: Socket | undefined) => {
        if (!socket) return;
        sockets.add(socket);
        socket.once('close', () => sockets.delete(socket));
      };
      const onEnd = (ctx: { connection?: { socket?: Socket } }) => {
        const socket = ctx.connection?.socket;
        track(socket);
        if (refuse) socket?.destroy(new Error('connection refused by the test'));
      };
      const handlers = { end: onEnd } as unknown as Parameters<typeof connectionsConnectsChannel.subscribe>[0];
      connectionsConnectsChannel.subscribe(handlers);
      unsubscribe.push(() => connectionsConnectsChannel.unsubscribe(handlers));
      const onInstance = (message: unknown) => {
        const { type, instance } = message as { type: string; instance: { socket?: Socket } };
        if (type === 'connection') setImmediate(() => track(instance.socket));
      };
      instancesChannel.subscribe(onInstance);
      unsubscribe.push(() => instancesChannel.unsubscribe(onInstance));
    }
    const handled = new Map<string, number>();
    const groupId = kafka.group();
    const c = kafka.consumer({
      kafka: kafkaClient(kafka.brokers, { kafkajs: { retry: { retries: 1, initialRetryTime: 100, maxRetryTime: 200 }, socketFactory }, platformatic: { retries: 1, retryDelay: 100 } }),
      groupId,
      topics: [name],
      pool: { maxConcurrency: 4, maxQueueSize: 8 },
      handler: async (m) => {
        await sleep(2);
        handled.set(m.id, (handled.get(m.id) ?? 0) + 1);
      },
    });
    const connection: string[] = [];
    c.on('connection', ({ state }) => connection.push(state));
    await c.start();
    await until(() => handled.size >= 300, '300 handled before the cut', 30_000);
    refuse = true;
    const cut = sockets.size;
    for (const s of sockets) s.destroy(new Error('connection cut by the test')); // as a reset by the network does
    await until(() => connection.includes('disconnected'), 'the crash reported as disconnected', 30_000);
    refuse = false;
    await until(() => handled.size === 1500, 'all 1500 handled after the cut', 60_000);
    await until(() => connection.lastIndexOf('recovered') > connection.indexOf('disconnected'), 'recovered reported', 30_000);
    await c.stop();
    for (const u of unsubscribe) u();
    expect(cut).toBeGreaterThan(0);
    expect([...handled.keys()].sort()).toEqual(sent.map((s) => s.id).sort());
    expect(c.health().ready).toBe(false); // stopped
    const { committed, end } = await kafka.offsets(groupId, name);
    expect(committed).toEqual(end);
  }, 90_000);
});
