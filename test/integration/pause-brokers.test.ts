/**
 * Pause and resume seen from the brokers themselves: a public `consumer.pause(reason)` and a flow
 * gate's refusal stop consumption at the broker (RabbitMQ: no consumer on the queue; Kafka: every
 * partition paused in the client, seen through the driver port on either driver; JetStream: no
 * waiting pull; core NATS in a queue group: the other member takes the traffic), nothing is
 * handled while paused although messages arrive, and resume brings every message, each handled
 * exactly once. Conditions are polled (broker-side where there is one), never slept on.
 */
import type { NatsConnection } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsConsumer, natsSubscriber, type CoreSource, type JetStreamSource } from '../../adapters/nats/index.js';
import { rabbitConsumer } from '../../adapters/rabbitmq/index.js';
import type { Consumer } from '../../src/consumer.js';
import type { FlowGate, GateDecision } from '../../src/flow/gate.js';
import type { Message } from '../../src/message.js';
import { kafkaFixture, type DriverWatch, type KafkaFixture } from '../helpers/kafka.js';
import { unique } from '../helpers/names.js';
import { natsConnect, natsFixture, type NatsFixture } from '../helpers/nats.js';
import { rabbitFixture, type RabbitFixture } from '../helpers/rabbit.js';
import { tick, until } from '../helpers/wait.js';

/** Polls an asynchronous (broker-side) condition; fails with `what` after `limitMs` (a hang guard, not a speed check). */
async function eventually(condition: () => Promise<boolean>, what: string, limitMs = 20_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await tick(20);
  }
}

/** Handler calls per message id. */
function tally() {
  const calls = new Map<string, number>();
  return {
    calls,
    record(message: Message) {
      calls.set(message.id, (calls.get(message.id) ?? 0) + 1);
    },
    get total() {
      let n = 0;
      for (const c of calls.values()) n += c;
      return n;
    },
    /** Every id in `ids` handled exactly once, and nothing else handled. */
    expectEachOnce(ids: string[]) {
      expect([...calls.keys()].sort()).toEqual([...ids].sort());
      expect([...calls.entries()].filter(([, n]) => n !== 1)).toEqual([]);
    },
  };
}

/**
 * A test gate: admits unless `refuse()` was called; while refusing, each refusal says to resume
 * when `open()` is called (one promise per refusing period), and remembers the refused ids.
 */
class SwitchGate implements FlowGate {
  readonly name = 'switch';
  refused: string[] = [];
  asked = 0;
  #open: { promise: Promise<void>; resolve: () => void } | undefined;

  refuse(): void {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.#open = { promise, resolve };
  }

  open(): void {
    const open = this.#open;
    this.#open = undefined;
    open?.resolve();
  }

  admit(message: Message): GateDecision {
    this.asked++;
    if (this.#open === undefined) return { admit: true };
    this.refused.push(message.id);
    return { admit: false, resumeWhen: this.#open.promise };
  }
}

const stopAll = async (consumers: Consumer<unknown>[]) => {
  for (const c of consumers) await c.stop({ timeoutMs: 2000 }).catch(() => {});
};

// --- RabbitMQ ----------------------------------------------------------------------------

describe('pause and resume at the broker: RabbitMQ', () => {
  let rabbit: RabbitFixture;
  const consumers: Consumer<unknown>[] = [];
  beforeAll(async () => {
    rabbit = await rabbitFixture();
  });
  afterAll(async () => {
    await stopAll(consumers);
    await rabbit?.close();
  });

  it("pause('a') + pause('b') cancels the consumer mid-backlog; resume('a') keeps it cancelled; resume('b') brings every message, each once", async () => {
    const queue = rabbit.queue('sluice-pause');
    const first = await rabbit.fill(queue, 100, 'a');
    const seen = tally();
    const events: string[] = [];
    // From the 20th message on, handlers wait until the pause is in place: the pause lands mid-backlog.
    let release!: () => void;
    let hold: Promise<void> | undefined;
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      pool: { maxConcurrency: 4, maxQueueSize: 8 },
      prefetch: 12,
      handler: async (m) => {
        seen.record(m);
        if (seen.total === 20) hold = new Promise<void>((r) => (release = r));
        await hold;
      },
    });
    consumers.push(consumer as Consumer<unknown>);
    consumer.on('paused', ({ reason }) => events.push(`paused:${reason}`));
    consumer.on('resumed', ({ reason }) => events.push(`resumed:${reason}`));
    await consumer.start();
    expect((await rabbit.depth(queue)).consumerCount).toBe(1);
    await until(() => hold !== undefined, '20 handled before the pause');

    await consumer.pause('a');
    // basic.cancel is answered by the broker once the queue has dropped the consumer.
    expect((await rabbit.depth(queue)).consumerCount).toBe(0);
    await consumer.pause('b');
    expect(consumer.status().pausedBy.sort()).toEqual(['a', 'b']);
    expect((await rabbit.depth(queue)).consumerCount).toBe(0);

    // What was delivered before the cancel finishes (and is acked); the rest stays ready at the broker.
    release();
    hold = undefined;
    await until(() => consumer.status().inFlight === 0, 'in-flight messages settled');
    const handledAtPause = seen.total;
    expect(handledAtPause).toBeLessThan(100);
    await eventually(async () => (await rabbit.depth(queue)).messageCount === 100 - handledAtPause, 'the unhandled rest ready in the queue');

    // Published while paused: they stay ready, none is delivered or handled.
    const second = await rabbit.fill(queue, 30, 'b');
    await eventually(async () => (await rabbit.depth(queue)).messageCount === 130 - handledAtPause, '30 more ready in the queue');
    expect(seen.total).toBe(handledAtPause);
    expect([...seen.calls.keys()].filter((id) => id.startsWith('b-'))).toEqual([]);

    // One reason lifted, the other still holds: still no consumer at the broker, still nothing handled.
    await consumer.resume('a');
    expect(consumer.status().pausedBy).toEqual(['b']);
    const depth = await rabbit.depth(queue);
    expect(depth.consumerCount).toBe(0);
    expect(depth.messageCount).toBe(130 - handledAtPause);
    expect(seen.total).toBe(handledAtPause);

    await consumer.resume('b');
    expect(consumer.status().paused).toBe(false);
    expect((await rabbit.depth(queue)).consumerCount).toBe(1);
    await until(() => seen.total >= 130, 'all 130 handled after the resume', 30_000);
    const stopped = await consumer.stop();
    expect(stopped.drained).toBe(true);
    seen.expectEachOnce([...first, ...second]);
    expect(consumer.status().failed).toBe(0);
    expect(events).toEqual(['paused:a', 'paused:b', 'resumed:a', 'resumed:b']);
    const end = await rabbit.depth(queue);
    expect(end).toMatchObject({ messageCount: 0, consumerCount: 0 });
  }, 60_000);

  it('a flow gate that refuses cancels the consumer until its resumeWhen settles; refused messages come back and are handled once', async () => {
    const queue = rabbit.queue('sluice-gate');
    const before = await rabbit.fill(queue, 10, 'a');
    const gate = new SwitchGate();
    const seen = tally();
    const redelivered = new Map<string, boolean>();
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      pool: { maxConcurrency: 2, maxQueueSize: 4 },
      prefetch: 6,
      flow: { gates: [gate] },
      handler: async (m) => {
        seen.record(m);
        redelivered.set(m.id, m.redelivered);
      },
    });
    consumers.push(consumer as Consumer<unknown>);
    await consumer.start();
    await until(() => seen.total === 10, 'the first 10 handled');
    await until(() => consumer.status().inFlight === 0, 'the first 10 settled');

    gate.refuse();
    const refusedBatch = await rabbit.fill(queue, 20, 'b');
    // The first refusal pauses under the gate's name: basic.cancel, and every refused message goes back.
    await until(() => gate.refused.length > 0, 'the gate refused a message');
    await eventually(async () => (await rabbit.depth(queue)).consumerCount === 0, 'no consumer on the queue while the gate refuses');
    expect(consumer.status().pausedBy).toEqual(['switch']);
    await eventually(async () => (await rabbit.depth(queue)).messageCount === 20, 'all 20 refused or undelivered ready again');
    expect(seen.total).toBe(10);
    expect(consumer.status().gated).toBe(gate.refused.length);

    // More messages while the gate still refuses: no consumer, nothing delivered (the gate is not even asked).
    const askedWhilePaused = gate.asked;
    const later = await rabbit.fill(queue, 10, 'c');
    await eventually(async () => (await rabbit.depth(queue)).messageCount === 30, '10 more ready while refusing');
    const depth = await rabbit.depth(queue);
    expect(depth.consumerCount).toBe(0);
    expect(gate.asked).toBe(askedWhilePaused);
    expect(seen.total).toBe(10);

    gate.open();
    await eventually(async () => (await rabbit.depth(queue)).consumerCount === 1, 'the consumer back on the queue once the gate opens');
    await until(() => seen.total >= 40, 'all 40 handled after the gate opened', 30_000);
    await consumer.stop();
    seen.expectEachOnce([...before, ...refusedBatch, ...later]);
    // A refused message was given back to the broker (nack with requeue), not lost or kept: it comes back redelivered.
    for (const id of new Set(gate.refused)) expect(redelivered.get(id), id).toBe(true);
    expect(consumer.status().pausedBy).toEqual([]);
    expect((await rabbit.depth(queue)).messageCount).toBe(0);
  }, 60_000);
});

// --- Kafka -------------------------------------------------------------------------------

describe('pause and resume at the broker: Kafka', () => {
  let kafka: KafkaFixture;
  beforeAll(async () => {
    kafka = await kafkaFixture({ deleteOnClose: true, stopTimeoutMs: 2000 });
  });
  afterAll(async () => {
    await kafka?.close();
  });

  const produce = async (topic: string, n: number, prefix: string): Promise<string[]> => (await kafka.fill(topic, n, 7, prefix)).map((s) => s.id);

  const logEnd = async (topic: string) => (await kafka.admin.fetchTopicOffsets(topic)).reduce((sum, p) => sum + Number(p.offset), 0);

  async function committedEqualsEnd(groupId: string, topic: string): Promise<boolean> {
    const { committed, end } = await kafka.offsets(groupId, topic);
    return committed.every((offset, p) => offset === end[p]);
  }

  /** A fresh 3-partition topic and group, and a consumer of it whose handler records into `seen`. */
  async function setup(seen: ReturnType<typeof tally>, gates: FlowGate[] = []) {
    const topic = await kafka.topic(3, 'sluice-pause');
    const groupId = kafka.group('sluice-pause-g');
    const consumer = kafka.consumer({
      groupId,
      topics: [topic],
      pool: { maxConcurrency: 4, maxQueueSize: 8 },
      flow: { gates },
      handler: async (m) => {
        seen.record(m);
      },
    });
    return { topic, groupId, consumer };
  }

  const allPartitions = (topic: string) => [{ topic, partitions: [0, 1, 2] }];

  /**
   * Batches with messages the driver hands over during `rounds` rounds of its fetch loop, counted
   * after two rounds that may have been sent before the pause (a fetch already out may still bring
   * records). With every partition paused in the client and new messages in the log: none.
   */
  async function batchesWhilePaused(driver: DriverWatch, rounds: number): Promise<number> {
    await driver.fetchRounds(2);
    let batches = 0;
    const count = (_topic: string, _partition: number, messages: number) => void (batches += messages > 0 ? 1 : 0);
    driver.on('batch', count);
    try {
      await driver.fetchRounds(rounds);
    } finally {
      driver.off('batch', count);
    }
    return batches;
  }

  it('pause pauses every partition in the client; nothing is handled while messages are produced; resume handles all once and commits to the log end', async () => {
    const seen = tally();
    const { topic, groupId, consumer } = await setup(seen);
    const first = await produce(topic, 30, 'a');
    await consumer.start();
    await until(() => seen.total === 30, 'the first 30 handled', 30_000);

    await consumer.pause('user');
    const driver = kafka.watch(consumer);
    expect(driver.paused()).toEqual(allPartitions(topic));
    const partitions = consumer.source.status().partitions;
    expect(Object.keys(partitions).sort()).toEqual([`${topic}/0`, `${topic}/1`, `${topic}/2`]);
    for (const p of Object.values(partitions)) expect(p.paused).toContain('source');

    const second = await produce(topic, 30, 'b');
    await eventually(async () => (await logEnd(topic)) === 60, 'all 60 in the log');
    // Rounds of the driver's fetch loop with the new messages in the log: had any partition been
    // fetching, a batch of them would have come.
    expect(await batchesWhilePaused(driver, 2)).toBe(0);
    expect(seen.total).toBe(30);
    expect(driver.paused()).toEqual(allPartitions(topic));
    // What was handled before the pause is committed meanwhile; the new messages are not.
    await eventually(async () => {
      const [fetched] = await kafka.admin.fetchOffsets({ groupId, topics: [topic] });
      return fetched!.partitions.reduce((sum, p) => sum + Number(p.offset), 0) === 30;
    }, 'the first 30 committed while paused');

    await consumer.resume('user');
    expect(driver.paused()).toEqual([]);
    await until(() => seen.total >= 60, 'all 60 handled after the resume', 30_000);
    await eventually(() => committedEqualsEnd(groupId, topic), 'committed offsets at the log end');
    await consumer.stop();
    seen.expectEachOnce([...first, ...second]);
    expect(consumer.status().failed).toBe(0);
  }, 90_000);

  it('a flow gate that refuses pauses every partition until its resumeWhen settles; refused messages are fetched again and handled once, at attempt 1', async () => {
    const seen = tally();
    const gate = new SwitchGate();
    const attempts: number[] = [];
    const { topic, groupId, consumer } = await setup(seen, [gate]);
    const driver = kafka.watch(consumer);
    consumer.on('handled', ({ attempt }) => attempts.push(attempt));
    const first = await produce(topic, 10, 'a');
    await consumer.start();
    await until(() => seen.total === 10, 'the first 10 handled', 30_000);

    gate.refuse();
    const refusedBatch = await produce(topic, 20, 'b');
    await until(() => gate.refused.length > 0, 'the gate refused a message', 30_000);
    await until(() => driver.paused().length > 0, 'partitions paused');
    expect(consumer.status().pausedBy).toEqual(['switch']);
    expect(driver.paused()).toEqual(allPartitions(topic));
    // Nothing more is taken while it refuses: the gate is not asked again, nothing handled.
    const asked = gate.asked;
    const later = await produce(topic, 10, 'c');
    await eventually(async () => (await logEnd(topic)) === 40, 'all 40 in the log');
    expect(await batchesWhilePaused(driver, 2)).toBe(0);
    expect(gate.asked).toBe(asked);
    expect(seen.total).toBe(10);

    gate.open();
    await until(() => seen.total >= 40, 'all 40 handled after the gate opened', 30_000);
    expect(driver.paused()).toEqual([]);
    await eventually(() => committedEqualsEnd(groupId, topic), 'committed offsets at the log end');
    await consumer.stop();
    seen.expectEachOnce([...first, ...refusedBatch, ...later]);
    // A refusal is not an attempt: Kafka's attempt is the adapter's own count.
    expect(attempts.filter((a) => a !== 1)).toEqual([]);
  }, 90_000);
});

// --- NATS --------------------------------------------------------------------------------

describe('pause and resume at the broker: NATS', () => {
  let nats: NatsFixture;
  const consumers: Consumer<unknown>[] = [];
  const connections: NatsConnection[] = [];
  beforeAll(async () => {
    nats = await natsFixture();
  });
  afterAll(async () => {
    await stopAll(consumers);
    for (const nc of connections) await nc.close().catch(() => {});
    await nats?.close();
  });

  const pullExpiresMs = 1000;

  /**
   * A fresh stream (and its dead-letter stream), a durable pull consumer of it whose handler records
   * into `seen`, the server's info on that consumer, and a wait for the server to have nothing pending or unacked.
   */
  async function jetStream(prefix: string, durable: string, seen: ReturnType<typeof tally>, gates: FlowGate[] = []) {
    const { stream, subject, dlq } = await nats.stream(prefix);
    const consumer = natsConsumer({
      servers: nats.url,
      stream,
      durable,
      consumerConfig: {},
      deadLetter: { subject: dlq },
      pullExpiresMs,
      flow: { gates },
      pool: { maxConcurrency: 4, maxQueueSize: 8 },
      handler: async (m) => {
        seen.record(m);
      },
    });
    consumers.push(consumer as Consumer<unknown>);
    const info = () => nats.jsm.consumers.info(stream, durable);
    const nothingPendingAtServer = () =>
      eventually(async () => {
        const i = await info();
        return i.num_ack_pending === 0 && i.num_pending === 0;
      }, 'nothing pending or unacked at the server');
    return { subject, consumer, info, nothingPendingAtServer };
  }

  it('JetStream: pause leaves no waiting pull once the open one expires; published messages stay pending; resume handles all once', async () => {
    const seen = tally();
    const { subject, consumer, info, nothingPendingAtServer } = await jetStream('SLUICE_PAUSE', 'paused', seen);
    const first = await nats.fill(subject, 20, 'a');
    await consumer.start();
    await until(() => seen.total === 20, 'the first 20 handled');
    // Idle and running: a long poll waits at the server.
    await eventually(async () => (await info()).num_waiting > 0, 'an open pull while running');

    await consumer.pause('user');
    // No new pull after the pause. The one open is not cancelled (until it expires, pullExpiresMs,
    // it would still deliver what is published): it expires and is not renewed.
    await eventually(async () => (await info()).num_waiting === 0, 'no waiting pull while paused', 10 * pullExpiresMs + 10_000);
    expect(seen.total).toBe(20);

    const second = await nats.fill(subject, 30, 'b');
    await eventually(async () => (await info()).num_pending === 30, '30 pending at the server while paused');
    let now = await info();
    expect(now.num_waiting).toBe(0);
    expect(now.num_ack_pending).toBe(0);
    expect(now.delivered.stream_seq).toBe(20);
    expect(now.delivered.consumer_seq).toBe(20);
    expect(seen.total).toBe(20);

    await consumer.resume('user');
    await until(() => seen.total >= 50, 'all 50 handled after the resume', 30_000);
    await nothingPendingAtServer();
    await consumer.stop();
    seen.expectEachOnce([...first, ...second]);
    now = await info();
    expect(now.num_ack_pending).toBe(0);
    expect(consumer.status().failed).toBe(0);
  }, 60_000);

  it('JetStream: a flow gate that refuses stops the pulls until its resumeWhen settles; refused messages are held and handled once', async () => {
    const gate = new SwitchGate();
    const seen = tally();
    const { subject, consumer, info, nothingPendingAtServer } = await jetStream('SLUICE_GATE', 'gated', seen, [gate]);
    const first = await nats.fill(subject, 10, 'a');
    await consumer.start();
    await until(() => seen.total === 10, 'the first 10 handled');

    gate.refuse();
    const refusedBatch = await nats.fill(subject, 10, 'b');
    await until(() => gate.refused.length > 0, 'the gate refused a message');
    expect(consumer.status().pausedBy).toEqual(['switch']);
    // The refused one and what the open pull still delivers are held by the adapter (kept alive,
    // not nak'ed: a nak would count a delivery attempt); the open pull expires and no new one is sent.
    // Every delivery the server made was either admitted by the gate or is held.
    const source = consumer.source as JetStreamSource;
    await eventually(async () => {
      const i = await info();
      return i.num_waiting === 0 && gate.asked - gate.refused.length + source.status().held === i.delivered.consumer_seq;
    }, 'no waiting pull while the gate refuses, every delivery admitted or held', 20_000);
    const asked = gate.asked;
    // The refusals used up the open pull's batch, maybe before every 'b' was delivered once.
    const pendingBefore = (await info()).num_pending;
    const later = await nats.fill(subject, 10, 'c');
    await eventually(async () => (await info()).num_pending === pendingBefore + 10, 'the 10 new ones pending at the server');
    expect((await info()).num_waiting).toBe(0);
    expect(gate.asked).toBe(asked);
    expect(seen.total).toBe(10);

    gate.open();
    await until(() => seen.total >= 30, 'all 30 handled after the gate opened', 30_000);
    await nothingPendingAtServer();
    await consumer.stop();
    seen.expectEachOnce([...first, ...refusedBatch, ...later]);
    // Not asserted here: the attempt numbers of the refused messages (each nak counts as a JetStream delivery).
  }, 60_000);

  it('core NATS in a queue group: pause unsubscribes, so the other member takes all the traffic; resume shares it again', async () => {
    const subject = unique('sluice.pause-core');
    const group = 'pause-workers';
    // The paused member's own connection, to know when the server has seen its UNSUB / SUB (a flush round trip).
    const ncA = await natsConnect({ servers: nats.url });
    connections.push(ncA);
    const handledBy = new Map<string, string[]>();
    const make = (name: string, options: { connection: NatsConnection } | { servers: string }) =>
      natsSubscriber({
        ...options,
        subject,
        queueGroup: group,
        pool: { maxConcurrency: 4, maxQueueSize: 256 },
        handler: async (m) => {
          const id = m.text();
          handledBy.set(id, [...(handledBy.get(id) ?? []), name]);
        },
      });
    const a = make('a', { connection: ncA });
    const b = make('b', { servers: nats.url });
    consumers.push(a as Consumer<unknown>, b as Consumer<unknown>);
    await a.start();
    await b.start();

    const publish = async (prefix: string, n: number) => {
      const ids = Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
      for (const id of ids) nats.nc.publish(subject, id);
      await nats.nc.flush();
      return ids;
    };
    const by = (name: string, ids: string[]) => ids.filter((id) => handledBy.get(id)?.includes(name)).length;

    await a.pause('user');
    await ncA.flush(); // the server has removed a's subscription from the group
    const whilePaused = await publish('p', 200);
    await until(() => whilePaused.every((id) => handledBy.has(id)), 'all 200 handled while a is paused');
    expect(by('a', whilePaused)).toBe(0);
    expect(by('b', whilePaused)).toBe(200);
    expect(a.status().handled).toBe(0);
    expect((a.source as CoreSource).dropped).toBe(0);

    await a.resume('user');
    await ncA.flush(); // subscribed again
    const afterResume = await publish('r', 200);
    await until(() => afterResume.every((id) => handledBy.has(id)), 'all 200 handled after the resume');
    await Promise.all([a.stop(), b.stop()]);
    // Each message to one member once; a takes its share again (all 200 to b has odds 2^-200).
    expect([...handledBy.values()].filter((names) => names.length !== 1)).toEqual([]);
    expect(handledBy.size).toBe(400);
    expect(by('a', afterResume)).toBeGreaterThan(0);
    expect(by('a', afterResume) + by('b', afterResume)).toBe(200);
    expect((a.source as CoreSource).dropped + (b.source as CoreSource).dropped).toBe(0);
  }, 30_000);
});
