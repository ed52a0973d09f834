/**
 * Refused deliveries on quorum queues are held, not given back, on the real RabbitMQ: a quorum
 * queue counts every `nack` with requeue toward its `delivery-limit` (3.10 as RabbitMQ 4.0–4.2 do;
 * 4.0 sets a default of 20), so giving back each refusal of a busy gate or a full pool would drop
 * or dead-letter healthy messages. Here every queue has `x-delivery-limit: 2` and a broker-side
 * dead-letter queue: a message refused three times and nacked each time would land there. Held,
 * it is never redelivered (no `redelivered` flag, no `x-delivery-count`), is handled exactly once,
 * in delivery order; stop() gives back what is held; a dead channel's held deliveries are dropped
 * (RabbitMQ requeues them) and handled once after recovery.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rabbitConsumer, type ConsumeMessage, type RabbitSource } from '../../adapters/rabbitmq/index.js';
import { RateLimiter, WorkerPool, type Consumer, type FlowGate, type Message } from '../../src/index.js';
import { rabbitFixture, type RabbitFixture } from '../helpers/rabbit.js';
import { until } from '../helpers/wait.js';

let rabbit: RabbitFixture;
beforeAll(async () => {
  rabbit = await rabbitFixture();
});
afterAll(async () => {
  await rabbit?.close();
});

/** The queue arguments of every work queue here: quorum, at most 2 redeliveries, the broker's dead letters kept. */
function quorumArguments(brokerDlq: string): Record<string, unknown> {
  return { 'x-delivery-limit': 2, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': brokerDlq };
}

/** Declares a quorum queue with `x-delivery-limit: 2` whose broker-side dead letters go to `<queue>.broker-dlq`; fills it. */
async function limitedQueue(prefix: string, n: number, idPrefix = 'm') {
  const queue = rabbit.queue(prefix);
  const brokerDlq = `${queue}.broker-dlq`;
  const args = quorumArguments(brokerDlq);
  await rabbit.withChannel(async (ch) => {
    await ch.assertQueue(brokerDlq, { durable: true });
    await ch.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum', ...args } });
  });
  rabbit.cleanup({ queues: [queue, brokerDlq] });
  const ids = await rabbit.fill(queue, n, idPrefix);
  return { queue, brokerDlq, args, ids };
}

/** Handler calls per id, in order, with what the broker said about each delivery. */
function tally() {
  const calls = new Map<string, number>();
  const order: string[] = [];
  const redelivered: string[] = [];
  const counted: string[] = [];
  return {
    calls,
    order,
    redelivered,
    counted,
    record(m: Message<ConsumeMessage>) {
      calls.set(m.id, (calls.get(m.id) ?? 0) + 1);
      order.push(m.id);
      if (m.raw.fields.redelivered) redelivered.push(m.id);
      if (m.headers['x-delivery-count'] !== undefined) counted.push(m.id);
    },
    expectEachOnce(ids: string[]) {
      expect([...calls.keys()].sort()).toEqual([...ids].sort());
      expect([...calls.entries()].filter(([, n]) => n !== 1)).toEqual([]);
    },
  };
}

/** Refuses each message the first `times` times it is asked about, with a short pause each time. */
function refuseFirst(times: number): FlowGate & { refusals: number } {
  const asked = new Map<string, number>();
  return {
    name: 'refuse-first',
    refusals: 0,
    admit(message) {
      const n = (asked.get(message.id) ?? 0) + 1;
      asked.set(message.id, n);
      if (n > times) return { admit: true };
      this.refusals++;
      return { admit: false, resumeAfterMs: 2 };
    },
  };
}

/** Samples the source's held count until stopped: the largest seen. */
function watchHeld(consumer: Consumer<ConsumeMessage>) {
  const source = consumer.source as RabbitSource;
  let most = 0;
  const timer = setInterval(() => (most = Math.max(most, source.held)), 1);
  return {
    get most() {
      return Math.max(most, source.held);
    },
    stop: () => clearInterval(timer),
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Waits until every message has ended somewhere: handled, or dead-lettered (or dropped) by the
 * broker past its delivery limit — so that a consumer that gives refusals back fails on what the
 * broker did to the messages, not on a timeout.
 */
async function allSettled(seen: { order: string[] }, total: number, brokerDlqs: string[]): Promise<number> {
  let deadLettered = 0;
  const refresh = async () => {
    deadLettered = 0;
    for (const q of brokerDlqs) deadLettered += (await rabbit.depth(q)).messageCount;
  };
  await until(() => new Set(seen.order).size + deadLettered >= total, `${total} handled or dead-lettered by the broker`, 60_000, refresh).catch(() => {});
  return deadLettered;
}

describe('rabbitConsumer holds refused deliveries on a quorum queue (x-delivery-limit: 2)', () => {
  it('a gate refusing every message three times: each handled once, in delivery order, never redelivered, nothing dead-lettered by the broker', async () => {
    const { queue, brokerDlq, args, ids } = await limitedQueue('sluice-held-gate', 60);
    const gate = refuseFirst(3);
    const seen = tally();
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      declare: { type: 'quorum', arguments: args },
      prefetch: 10,
      // One at a time: the pool keeps delivery order, so the handler sees the order the adapter offered.
      pool: { maxConcurrency: 1, maxQueueSize: 4 },
      flow: { gates: [gate] },
      handler: async (m) => void seen.record(m),
    });
    const held = watchHeld(consumer);
    await consumer.start();
    const source = consumer.source as RabbitSource;
    let brokerDeadLettered: number;
    try {
      brokerDeadLettered = await allSettled(seen, ids.length, [brokerDlq]);
    } finally {
      held.stop();
      await consumer.stop();
    }
    expect(brokerDeadLettered, 'dead-lettered by the broker past x-delivery-limit').toBe(0);
    seen.expectEachOnce(ids);
    expect(seen.order).toEqual(ids);
    expect(seen.redelivered).toEqual([]);
    expect(seen.counted).toEqual([]);
    expect(gate.refusals).toBe(3 * ids.length);
    expect(consumer.status().gated).toBe(3 * ids.length);
    expect(held.most).toBeGreaterThan(1);
    expect(source.status()).toEqual({ held: 0, holdsRefused: true, prefetch: 10 });
    expect(await rabbit.depth(queue)).toMatchObject({ messageCount: 0 });
    expect(await rabbit.depth(`${queue}.dlq`)).toMatchObject({ messageCount: 0 });
  }, 90_000);

  it('a RateLimiter well below the arrival rate, on a quorum queue it did not declare: each handled once, never redelivered, nothing dead-lettered by the broker', async () => {
    const { queue, brokerDlq, ids } = await limitedQueue('sluice-held-rate', 120);
    const limiter = new RateLimiter({ perSecond: 150, burst: 4, initialTokens: 0 });
    const seen = tally();
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue, // not declared: found to be a quorum queue when it refuses the channel-wide prefetch
      prefetch: 20,
      pool: { maxConcurrency: 4, maxQueueSize: 16 },
      flow: { gates: [limiter] },
      handler: async (m) => void seen.record(m),
    });
    const held = watchHeld(consumer);
    await consumer.start();
    const source = consumer.source as RabbitSource;
    let brokerDeadLettered: number;
    try {
      brokerDeadLettered = await allSettled(seen, ids.length, [brokerDlq]);
    } finally {
      held.stop();
      await consumer.stop();
    }
    expect(brokerDeadLettered, 'dead-lettered by the broker past x-delivery-limit').toBe(0);
    seen.expectEachOnce(ids);
    expect(seen.redelivered).toEqual([]);
    expect(seen.counted).toEqual([]);
    expect(source.holdsRefused).toBe(true);
    // Each pause lasts until the bucket holds half a burst again: about one refusal per two messages.
    expect(consumer.status().gated).toBeGreaterThan(ids.length / 4);
    expect(held.most).toBeGreaterThan(1);
    expect(await rabbit.depth(queue)).toMatchObject({ messageCount: 0 });
  }, 90_000);

  for (const onOverload of ['pause', 'nack'] as const) {
    it(`two quorum queues into one shared pool that overflows, onOverload '${onOverload}': each handled once, never redelivered, nothing dead-lettered by the broker`, async () => {
      const a = await limitedQueue('sluice-held-ovl-a', 150, 'a');
      const b = await limitedQueue('sluice-held-ovl-b', 150, 'b');
      const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 2 });
      const seen = tally();
      const consumers = [a, b].map(({ queue, args }) =>
        rabbitConsumer({
          url: rabbit.url,
          queue,
          declare: { type: 'quorum', arguments: args },
          pool,
          // Each alone may fill the pool four times over: together they overflow it on every window.
          prefetch: 16,
          onOverload,
          overloadBackoff: { initialMs: 5, maxMs: 50 },
          handler: async (m) => {
            seen.record(m);
            await sleep(2);
          },
        }),
      );
      const held = consumers.map(watchHeld);
      await Promise.all(consumers.map((c) => c.start()));
      let brokerDeadLettered: number;
      try {
        brokerDeadLettered = await allSettled(seen, a.ids.length + b.ids.length, [a.brokerDlq, b.brokerDlq]);
      } finally {
        for (const h of held) h.stop();
        await Promise.all(consumers.map((c) => c.stop()));
      }
      expect(brokerDeadLettered, 'dead-lettered by the broker past x-delivery-limit').toBe(0);
      seen.expectEachOnce([...a.ids, ...b.ids]);
      expect(seen.redelivered).toEqual([]);
      expect(seen.counted).toEqual([]);
      expect(consumers.reduce((n, c) => n + c.status().overloaded, 0)).toBeGreaterThan(0);
      expect(Math.max(...held.map((h) => h.most))).toBeGreaterThan(1);
      for (const { queue } of [a, b]) expect(await rabbit.depth(queue)).toMatchObject({ messageCount: 0 });
      await pool.close();
    }, 90_000);
  }

  it('stop() while deliveries are held gives every one back: a second consumer handles all, once each', async () => {
    const { queue, brokerDlq, args, ids } = await limitedQueue('sluice-held-stop', 20);
    let refused = 0;
    const never = new Promise<void>(() => {});
    const closed: FlowGate = {
      name: 'closed',
      admit: () => {
        refused++;
        return { admit: false, resumeWhen: never };
      },
    };
    let firstHandled = 0;
    const first = rabbitConsumer({
      url: rabbit.url,
      queue,
      declare: { type: 'quorum', arguments: args },
      prefetch: 8,
      pool: { maxConcurrency: 2, maxQueueSize: 2 },
      flow: { gates: [closed] },
      handler: async () => void firstHandled++,
    });
    await first.start();
    const source = first.source as RabbitSource;
    // The first refusal pauses (basic.cancel); the rest of the prefetch window joins it, unacked.
    await until(() => source.held === 8, 'the whole prefetch window held');
    let depth = { messageCount: -1, consumerCount: -1 };
    // (Not consumerCount: a quorum queue still counts a cancelled consumer while it has unacked deliveries.)
    await until(() => depth.messageCount === 12, '12 ready beside the 8 held', 10_000, async () => (depth = await rabbit.depth(queue)));
    // Only the first was asked: the others joined the held list behind it without being offered.
    expect(refused).toBe(1);
    const stopped = await first.stop({ timeoutMs: 2_000 });
    expect(stopped.drained).toBe(true);
    expect(source.held).toBe(0);
    expect(firstHandled).toBe(0);
    await until(() => depth.messageCount === 20, 'all 20 back in the queue', 10_000, async () => (depth = await rabbit.depth(queue)));

    const seen = tally();
    const second = rabbitConsumer({
      url: rabbit.url,
      queue,
      declare: { type: 'quorum', arguments: args },
      pool: { maxConcurrency: 2, maxQueueSize: 2 },
      handler: async (m) => void seen.record(m),
    });
    await second.start();
    await until(() => seen.order.length >= ids.length, 'the second consumer handled all 20', 30_000);
    await second.stop();
    seen.expectEachOnce(ids);
    // The 8 given back by stop() were redelivered (one nack each), the 12 never delivered before were not.
    expect(seen.redelivered.sort()).toEqual(ids.slice(0, 8).sort());
    expect(await rabbit.depth(brokerDlq)).toMatchObject({ messageCount: 0 });
    expect(await rabbit.depth(queue)).toMatchObject({ messageCount: 0 });
  }, 60_000);

  it("held deliveries of a channel that dies are dropped (RabbitMQ requeues them): handled once after recovery, never on the dead channel", async () => {
    const { queue, brokerDlq, args, ids } = await limitedQueue('sluice-held-lost', 20);
    let refusing = true;
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    const gate: FlowGate = {
      name: 'switch',
      admit: () => (refusing ? { admit: false, resumeWhen: opened } : { admit: true }),
    };
    const seen = tally();
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      declare: { type: 'quorum', arguments: args },
      prefetch: 8,
      pool: { maxConcurrency: 2, maxQueueSize: 2 },
      flow: { gates: [gate] },
      handler: async (m) => void seen.record(m),
    });
    const connection: string[] = [];
    consumer.on('connection', ({ state }) => connection.push(state));
    await consumer.start();
    const source = consumer.source as RabbitSource;
    await until(() => source.held === 8, 'the whole prefetch window held');
    // A protocol error (an unknown delivery tag) closes the consume channel.
    source.channel!.ack({ fields: { deliveryTag: 987_654_321 } } as never);
    await until(() => connection.includes('recovered'), 'recovered on a new channel', 30_000);
    expect(source.held).toBe(0);
    // Still paused under the gate: nothing consumed, all 20 ready again.
    let depth = { messageCount: -1, consumerCount: -1 };
    await until(() => depth.messageCount === 20 && depth.consumerCount === 0, 'all 20 ready, no consumer while paused', 10_000, async () => (depth = await rabbit.depth(queue)));
    refusing = false;
    open();
    await until(() => seen.order.length >= ids.length, 'every message handled after the gate opened', 30_000);
    await consumer.stop();
    seen.expectEachOnce(ids);
    expect(await rabbit.depth(brokerDlq)).toMatchObject({ messageCount: 0 });
    expect(await rabbit.depth(queue)).toMatchObject({ messageCount: 0 });
  }, 60_000);

  it('a classic queue gives a refusal back at once (nack): nothing held, the refused message comes back redelivered', async () => {
    const queue = rabbit.queue('sluice-held-classic');
    const ids = await rabbit.fill(queue, 10);
    const gate = refuseFirst(1);
    const seen = tally();
    const consumer = rabbitConsumer({
      url: rabbit.url,
      queue,
      prefetch: 4,
      pool: { maxConcurrency: 2, maxQueueSize: 2 },
      flow: { gates: [gate] },
      handler: async (m) => void seen.record(m),
    });
    const held = watchHeld(consumer);
    await consumer.start();
    const source = consumer.source as RabbitSource;
    expect(source.holdsRefused).toBe(false);
    try {
      await until(() => seen.order.length >= ids.length, 'every message handled', 30_000);
    } finally {
      held.stop();
      await consumer.stop();
    }
    seen.expectEachOnce(ids);
    expect(held.most).toBe(0);
    expect(seen.redelivered.sort()).toEqual([...ids].sort());
  }, 60_000);
});
