/**
 * A three-node private RabbitMQ cluster (scripts/rabbitmq-node, ports 5701-5703) and a quorum
 * queue, consumed by a rabbitConsumer given all three URLs. (a) The node the consumer is connected
 * to is stopped gracefully: it fails over to the next URL. (b) The node leading the queue is killed
 * (SIGKILL) while the consumer is on another node, then (c) while it is on that node. Each time:
 * every id handled, duplicates only among what was unacked at the fault (at most the prefetch),
 * acks go on after it, health is not ok while the consumer has no connection and ok after, and the
 * queue and its dead-letter queue end empty. The cluster is started once for the file; a stopped or
 * killed node is started again at the end of its test.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countingConsumer, declareQueues, publishNumbered, queueDepth, queueLeader, type CountingConsumer } from '../helpers/rabbit-faults.js';
import { startRabbitCluster, type RabbitNode, type RabbitNodes } from '../helpers/rabbit-node.js';
import { unique } from '../helpers/names.js';
import { until } from '../helpers/wait.js';

const N = 1500;
const POOL = { maxConcurrency: 8, maxQueueSize: 8 };
/** The prefetch (the pool's capacity): what can be unacked, hence redelivered, at one fault. */
const PREFETCH = POOL.maxConcurrency + POOL.maxQueueSize;

let cluster: RabbitNodes;
let nodes: RabbitNode[];
beforeAll(async () => {
  cluster = await startRabbitCluster({ names: ['sluicec1', 'sluicec2', 'sluicec3'], ports: [5701, 5702, 5703] });
  nodes = cluster.nodes;
});
afterAll(async () => {
  await cluster?.dispose();
});

const byPort = (address: string) => nodes.find((n) => address.includes(`:${n.port}`));
const byName = (erlangName: string) => nodes.find((n) => erlangName === `${n.name}@localhost`);

/** Declares a quorum queue through `leader` (3.10 places the leader on the declaring node), fills it, and starts a consumer on `urls`. */
async function consume(queue: string, leader: RabbitNode, urls: string[]): Promise<{ ids: string[]; c: CountingConsumer }> {
  // The consumer declares them again, with the same arguments: its dead-letter queue is a quorum queue too.
  await declareQueues(leader.url, queue, 'quorum');
  const ids = await publishNumbered(leader.url, queue, N);
  const c = countingConsumer({
    url: urls,
    queue,
    declare: { type: 'quorum' },
    pool: POOL,
    recovery: { backoff: { initialMs: 50, maxMs: 500 } },
    handlerMs: 5,
  });
  await c.consumer.start();
  return { ids, c };
}

/** Holds the handlers once a third is handled, makes the fault, lets them go; then everything must be handled. */
async function faultMidStream(c: CountingConsumer, fault: () => Promise<void>): Promise<{ handledAtFault: number; releasedAt: number }> {
  await until(() => c.calls.size >= N / 3, 'a third handled before the fault', 60_000);
  c.hold();
  let handledAtFault: number;
  try {
    handledAtFault = c.consumer.status().handled;
    await fault();
  } finally {
    c.release();
  }
  expect(c.calls.size, 'the fault came before the last message').toBeLessThan(N);
  return { handledAtFault, releasedAt: Date.now() };
}

async function expectAllDone(c: CountingConsumer, ids: string[], queue: string, alive: RabbitNode): Promise<void> {
  await until(() => ids.every((id) => c.succeeded.has(id)), 'every id handled after the fault', 90_000).catch((error: Error) => {
    throw new Error(`${error.message}: ${ids.filter((id) => !c.succeeded.has(id)).length} missing; ${c.describe()}`);
  });
  await until(() => c.consumer.health().status === 'ok', 'health ok after the fault', 30_000);
  await c.consumer.stop();
  expect([...c.calls.keys()].sort()).toEqual([...ids].sort());
  // Only what was unacked at the fault (the prefetch) can come again.
  expect(c.duplicates()).toBeLessThanOrEqual(PREFETCH);
  expect(c.errors.join('\n')).not.toContain('guest:guest');
  // A quorum queue's counts reach list_queues through periodic metrics: read until they settle.
  for (const name of [queue, `${queue}.dlq`]) {
    let depth = { ready: -1, unacked: -1 };
    await until(() => depth.ready === 0 && depth.unacked === 0, `${name} empty (last seen ${JSON.stringify(depth)})`, 30_000, async () => {
      depth = await queueDepth(alive, name);
    });
  }
}

/** The connection events around a fault, and what the pause cost: for the report, not asserted. */
function describeFault(what: string, c: CountingConsumer, releasedAt: number): void {
  const lost = c.connection.find((e) => e.state === 'disconnected');
  const back = c.connection.find((e) => e.state === 'recovered');
  const outage = lost && back ? `${back.at - lost.at} ms without a connection` : 'no connection lost';
  console.log(`${what}: ${outage}; longest wait between acks after the fault ${c.longestGap(releasedAt)} ms; ${c.duplicates()} duplicate call(s)`);
}

describe('rabbitConsumer on a three-node cluster with a quorum queue', () => {
  it('fails over to the next URL when the node it is connected to stops (graceful)', async () => {
    const [n1, n2, n3] = nodes as [RabbitNode, RabbitNode, RabbitNode];
    const queue = unique('sluice-cluster-stop');
    // Leader on n3, consumer on n1 (the first URL): this fault is the connection's, not the queue's.
    const { ids, c } = await consume(queue, n3, [n1.url, n2.url, n3.url]);
    expect(byPort(c.source.connectedTo)).toBe(n1);
    const { handledAtFault, releasedAt } = await faultMidStream(c, async () => {
      await n1.stop();
      await until(() => c.connection.some((e) => e.state === 'recovered'), 'recovered on another node', 60_000);
    });
    const restart = n1.start();
    try {
      // n1 is tried last now; n2 (the next URL) answers.
      expect(byPort(c.source.connectedTo)).toBe(n2);
      expectHealthFollowedConnection(c);
      await expectAllDone(c, ids, queue, n2);
      expect(c.consumer.status().handled, 'acks go on after the failover').toBeGreaterThan(handledAtFault);
      describeFault('graceful stop of the connected node', c, releasedAt);
    } finally {
      await restart;
    }
  });

  it('keeps consuming through a leader election when the node leading the queue is killed (SIGKILL)', async () => {
    const [n1, n2, n3] = nodes as [RabbitNode, RabbitNode, RabbitNode];
    const queue = unique('sluice-cluster-kill');
    const { ids, c } = await consume(queue, n1, [n2.url, n3.url, n1.url]);
    expect(await queueLeader(n2, queue)).toBe(`${n1.name}@localhost`);
    expect(byPort(c.source.connectedTo)).toBe(n2);
    let leader: RabbitNode | undefined;
    const { handledAtFault, releasedAt } = await faultMidStream(c, async () => {
      await n1.kill();
      // A new leader among the two left (a Raft election); the consumer's channel on n2 stays.
      await until(() => leader !== undefined && leader !== n1, 'a new leader', 60_000, async () => {
        leader = byName(await queueLeader(n2, queue).catch(() => ''));
      });
    });
    const restart = n1.start();
    try {
      await expectAllDone(c, ids, queue, n2);
      expect(c.consumer.status().handled, 'acks go on after the leader changed').toBeGreaterThan(handledAtFault);
      // Its connection was not to the killed node: nothing to recover, health stayed ok.
      expect(c.connection.map((e) => e.state)).toEqual(['connected']);
      describeFault('SIGKILL of the queue leader (consumer on another node)', c, releasedAt);
    } finally {
      await restart;
    }
  });

  it('fails over and waits out the election when the killed leader also held its connection', async () => {
    const [n1, n2, n3] = nodes as [RabbitNode, RabbitNode, RabbitNode];
    const queue = unique('sluice-cluster-kill-both');
    const { ids, c } = await consume(queue, n3, [n3.url, n1.url, n2.url]);
    expect(await queueLeader(n1, queue)).toBe(`${n3.name}@localhost`);
    expect(byPort(c.source.connectedTo)).toBe(n3);
    const { handledAtFault, releasedAt } = await faultMidStream(c, async () => {
      await n3.kill();
      await until(() => c.connection.some((e) => e.state === 'recovered'), 'recovered on another node', 60_000);
    });
    const restart = n3.start();
    try {
      expect(byPort(c.source.connectedTo)).toBe(n1);
      expectHealthFollowedConnection(c);
      await expectAllDone(c, ids, queue, n1);
      expect(c.consumer.status().handled, 'acks go on after the failover').toBeGreaterThan(handledAtFault);
      describeFault('SIGKILL of the queue leader holding the connection', c, releasedAt);
    } finally {
      await restart;
    }
  });
});

/** At the moment the connection was lost, health was not ok and not ready; at recovery, ready. */
function expectHealthFollowedConnection(c: CountingConsumer): void {
  const lost = c.connection.find((e) => e.state === 'disconnected');
  const back = c.connection.find((e) => e.state === 'recovered');
  expect(lost, 'a disconnected event').toBeDefined();
  expect(lost!.health, 'health while the connection is lost').not.toBe('ok');
  expect(lost!.ready).toBe(false);
  expect(back!.ready).toBe(true);
}
