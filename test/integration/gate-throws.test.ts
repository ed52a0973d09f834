/**
 * A flow gate is user code that must not throw. When one does, the exception must not reach the
 * broker client (the runtime is called from inside its reader or consume callback): on a real
 * RabbitMQ, JetStream and Kafka, a gate whose admit() throws for a while and whose done() and
 * capacity() always throw costs refusals and `error` events (during 'gate', naming the gate), never the consumer:
 * every message is handled exactly once and nothing is left at the broker.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsConsumer } from '../../adapters/nats/index.js';
import { rabbitConsumer } from '../../adapters/rabbitmq/index.js';
import type { Consumer } from '../../src/consumer.js';
import type { FlowGate } from '../../src/flow/gate.js';
import { kafkaFixture, type KafkaFixture } from '../helpers/kafka.js';
import { natsFixture, unique, type NatsFixture } from '../helpers/nats.js';
import { rabbitFixture, type RabbitFixture } from '../helpers/rabbit.js';
import { until } from '../helpers/wait.js';

let rabbit: RabbitFixture;
let nats: NatsFixture;
let kafka: KafkaFixture;
beforeAll(async () => {
  [rabbit, nats, kafka] = await Promise.all([rabbitFixture(), natsFixture(), kafkaFixture({ deleteOnClose: true })]);
});
afterAll(async () => {
  await Promise.all([rabbit?.close(), nats?.close(), kafka?.close()]);
});

const THROWS = 5;

/** admit() throws on its first THROWS calls, done() on every call, capacity() throws or answers undefined. */
function throwingGate(): FlowGate & { admitted: number } {
  let calls = 0;
  let capacityCalls = 0;
  return {
    name: 'buggy',
    admitted: 0,
    admit() {
      if (++calls <= THROWS) throw new Error(`admit bug #${calls}`);
      this.admitted++;
      return { admit: true };
    },
    done() {
      throw new Error('done bug');
    },
    // Asked by the pull-based sources (JetStream, Kafka) when they size a pull: throws, or
    // answers nothing (NaN in a pull size would stop the pulls).
    capacity() {
      if (++capacityCalls % 2 === 1) throw new Error('capacity bug');
      return undefined as unknown as number;
    },
  };
}

/** Runs `consumer` until `ids` are all handled; returns handler calls per id and the gate's error events. */
async function run(consumer: Consumer, ids: string[], calls: Map<string, number>, asksCapacity: boolean) {
  const errors: string[] = [];
  consumer.on('error', ({ error, during }) => {
    if (during === 'gate') errors.push(error instanceof Error ? error.message : String(error));
  });
  await consumer.start();
  try {
    await until(() => ids.every((id) => calls.has(id)), () => `every id handled (${calls.size} of ${ids.length}; ${JSON.stringify(consumer.status())})`, 30_000);
  } finally {
    await consumer.stop();
  }
  expect([...calls.keys()].sort()).toEqual([...ids].sort());
  expect([...calls.entries()].filter(([, n]) => n !== 1)).toEqual([]);
  expect(errors.filter((e) => /flow gate "buggy" threw in admit\(\): admit bug/.test(e))).toHaveLength(THROWS);
  expect(errors.filter((e) => /flow gate "buggy" threw in done\(\): done bug/.test(e)).length).toBeGreaterThanOrEqual(ids.length);
  expect(errors.some((e) => /threw in capacity\(\): capacity bug/.test(e))).toBe(asksCapacity);
  expect(errors.some((e) => /threw in capacity\(\): it returned undefined, not a number ≥ 0/.test(e))).toBe(asksCapacity);
  expect(consumer.status().gated).toBe(THROWS);
}

const handler = (calls: Map<string, number>) => async (m: { id: string }) => void calls.set(m.id, (calls.get(m.id) ?? 0) + 1);

describe('a flow gate that throws never reaches the broker client', () => {
  it('RabbitMQ', async () => {
    const queue = rabbit.queue('sluice-gate-throws');
    const ids = await rabbit.fill(queue, 20);
    const calls = new Map<string, number>();
    const gate = throwingGate();
    await run(rabbitConsumer({ url: rabbit.url, queue, pool: { maxConcurrency: 4, maxQueueSize: 4 }, flow: { gates: [gate] }, handler: handler(calls) }), ids, calls, false);
    expect((await rabbit.depth(queue)).messageCount).toBe(0);
  });

  it('NATS JetStream', async () => {
    const { stream, subject, dlq } = await nats.stream('gate-throws');
    const ids = await nats.fill(subject, 20, 'g');
    const calls = new Map<string, number>();
    const durable = unique('d');
    const consumer = natsConsumer({
      servers: nats.url,
      stream,
      durable,
      consumerConfig: {},
      deadLetter: { subject: dlq },
      pool: { maxConcurrency: 4, maxQueueSize: 4 },
      flow: { gates: [throwingGate()] },
      handler: handler(calls),
    });
    await run(consumer, ids, calls, true);
    const info = await nats.jsm.consumers.info(stream, durable);
    expect(info.num_pending + info.num_ack_pending).toBe(0);
  });

  it('Kafka', async () => {
    const topic = await kafka.topic(3, 'sluice-gate-throws');
    const groupId = kafka.group('sluice-gate-throws-g');
    const ids = (await kafka.fill(topic, 20, 5, 'g')).map((s) => s.id);
    const calls = new Map<string, number>();
    const consumer = kafka.consumer({ groupId, topics: [topic], pool: { maxConcurrency: 4, maxQueueSize: 4 }, flow: { gates: [throwingGate()] }, handler: handler(calls) });
    await run(consumer, ids, calls, true);
    const { committed, end } = await kafka.offsets(groupId, topic);
    expect(committed).toEqual(end);
  });
});
