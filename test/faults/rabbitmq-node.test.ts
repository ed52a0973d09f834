/**
 * One private RabbitMQ node (scripts/rabbitmq-node, port 5700), a durable queue and persistent
 * messages: (a) the broker application restarted (stop_app / start_app), (b) the node killed
 * (SIGKILL) and started again, (c) a memory alarm and a disk alarm (`connection.blocked`) while
 * handlers fail, (d) a consumer_timeout shorter than a handler. Each time every id is handled (or
 * dead-lettered where the handler always fails), duplicates stay within what was unacked at the
 * fault, and the queue ends empty.
 */
import { connect } from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PublishBlockedError } from '../../adapters/rabbitmq/index.js';
import { countingConsumer, declareQueues, publishNumbered, queueDepth, type CountingConsumer } from '../helpers/rabbit-faults.js';
import { startRabbitNode, type RabbitNode } from '../helpers/rabbit-node.js';
import { unique } from '../helpers/names.js';
import { until } from '../helpers/wait.js';

const POOL = { maxConcurrency: 8, maxQueueSize: 8 };
const PREFETCH = POOL.maxConcurrency + POOL.maxQueueSize;
/** The alarm tests' prefetch: more than their failing messages (20). */
const PREFETCH_ALARM = 32;

let node: RabbitNode & { dispose(): Promise<void> };
beforeAll(async () => {
  node = await startRabbitNode({ name: 'sluicen1', port: 5700 });
});
afterAll(async () => {
  await node?.dispose();
});

/** A counting consumer of a fresh durable queue holding `n` persistent messages, started. */
async function consume(
  n: number,
  options: Partial<Parameters<typeof countingConsumer>[0]> = {},
  type: 'classic' | 'quorum' = 'classic',
): Promise<{ queue: string; ids: string[]; c: CountingConsumer }> {
  const queue = unique(`sluice-node-${type}`);
  const c = countingConsumer({
    url: node.url,
    queue,
    declare: { durable: true, type },
    pool: POOL,
    recovery: { backoff: { initialMs: 50, maxMs: 500 } },
    ...options,
  });
  await c.consumer.start();
  const ids = await publishNumbered(node.url, queue, n);
  return { queue, ids, c };
}

async function expectEmpty(queue: string): Promise<void> {
  expect(await queueDepth(node, queue)).toEqual({ ready: 0, unacked: 0 });
}

/** Ids of the messages now in `queue` (taken). */
async function take(queue: string): Promise<string[]> {
  const connection = await connect(node.url);
  try {
    const channel = await connection.createChannel();
    const ids: string[] = [];
    for (let m = await channel.get(queue, { noAck: true }); m !== false; m = await channel.get(queue, { noAck: true })) ids.push(String(m.properties.messageId));
    return ids;
  } finally {
    await connection.close();
  }
}

/**
 * Holds handlers once a third is handled, restarts the broker with `restart`, lets them go; every
 * id must then be handled. Duplicates: at most `bound(acked before the fault)`.
 */
async function survivesRestart(
  type: 'classic' | 'quorum',
  restart: (c: CountingConsumer) => Promise<void>,
  bound: (ackedAtFault: number) => number = () => PREFETCH,
): Promise<void> {
  const n = 1000;
  const { queue, ids, c } = await consume(n, {}, type);
  await until(() => c.calls.size >= n / 3, 'a third handled', 60_000);
  c.hold();
  const handledAtFault = c.consumer.status().handled;
  try {
    await restart(c);
    await until(() => c.connection.some((e) => e.state === 'recovered'), 'recovered after the restart', 60_000).catch((error: Error) => {
      throw new Error(`${error.message}: ${c.describe()}`);
    });
  } finally {
    c.release();
  }
  expect(c.calls.size, 'the fault came before the last message').toBeLessThan(n);
  await until(() => ids.every((id) => c.succeeded.has(id)), 'every id handled after the restart', 60_000).catch(async (error: Error) => {
    const missing = ids.filter((id) => !c.succeeded.has(id));
    throw new Error(`${error.message}: ${missing.length} missing (${missing.slice(0, 5).join(',')}…), queue ${JSON.stringify(await queueDepth(node, queue))}; ${c.describe()}`);
  });
  await until(() => c.consumer.health().status === 'ok', 'health ok again', 30_000);
  expect(c.consumer.status().handled, 'acks go on after the restart').toBeGreaterThan(handledAtFault);
  await c.consumer.stop();
  expect([...c.calls.keys()].sort()).toEqual([...ids].sort());
  expect(c.duplicates()).toBeLessThanOrEqual(bound(handledAtFault));
  await expectEmpty(queue);
  expect(c.errors.join('\n')).not.toContain('guest:guest');
  const lost = c.connection.find((e) => e.state === 'disconnected')!;
  const back = c.connection.find((e) => e.state === 'recovered')!;
  console.log(`${type} queue: ${back.at - lost.at} ms without a connection; ${c.duplicates()} duplicate call(s), ${handledAtFault} acked before the fault`);
}

/** While the broker is down, health is not ok and not ready (seen at the disconnect and a moment later). */
async function expectDownWhileDown(c: CountingConsumer): Promise<void> {
  await until(() => c.connection.some((e) => e.state === 'disconnected'), 'the consumer saw the connection go', 30_000);
  const lost = c.connection.find((e) => e.state === 'disconnected')!;
  expect(lost.health).not.toBe('ok');
  expect(c.consumer.health()).toMatchObject({ ready: false });
  expect(c.consumer.health().status).not.toBe('ok');
}

describe('rabbitConsumer on a private RabbitMQ node', () => {
  it('recovers from a broker application restart (stop_app / start_app)', async () => {
    await survivesRestart('classic', async (c) => {
      await node.ctl('stop_app');
      await expectDownWhileDown(c);
      await node.ctl('start_app');
    });
  });

  it('recovers from a hard kill (SIGKILL) and a start: persistent messages survive; acks not yet on disk come back', async () => {
    // A classic queue writes acks to its index lazily: a hard kill forgets the latest, and those
    // messages are delivered again (RabbitMQ's durability, not the consumer's): up to everything
    // acked since the last sync, on top of the prefetch. Nothing is lost. (Single-node quorum
    // queues are not used here: on 3.10.8 one did not come back after a SIGKILL, see docs/rabbitmq.md.)
    await survivesRestart(
      'classic',
      async (c) => {
        await node.kill();
        await expectDownWhileDown(c);
        await node.start();
      },
      (acked) => PREFETCH + acked,
    );
  });

  for (const alarm of [
    { name: 'memory', set: ['set_vm_memory_high_watermark', '0.0001'], clear: ['set_vm_memory_high_watermark', '0.4'] },
    { name: 'disk', set: ['set_disk_free_limit', '100000GB'], clear: ['set_disk_free_limit', '50MB'] },
  ]) {
    it(`under a ${alarm.name} alarm acks, consumption and stop() go on; failing messages reach their retry and dead letter once it clears`, async () => {
      const n = 200;
      const failing = (id: string) => Number(id.split('-')[1]) % 10 === 0;
      const options = {
        // Larger than the failing messages: while they cycle (given back, delivered again) the others still find room.
        pool: { maxConcurrency: PREFETCH_ALARM / 2, maxQueueSize: PREFETCH_ALARM / 2 },
        retry: { maxAttempts: 2, backoff: { initialMs: 10, maxMs: 10 } },
        settlement: { tries: 2, backoff: { initialMs: 50, maxMs: 200 }, deferMs: 0 },
        fail: (m: { id: string }) => failing(m.id),
      };
      const queue = unique(`sluice-alarm-${alarm.name}`);
      await declareQueues(node.url, queue, 'classic');
      const ids = await publishNumbered(node.url, queue, n);
      const healthy = ids.filter((id) => !failing(id));
      const failingIds = ids.filter(failing);
      await node.ctl(...alarm.set);
      let cleared = false;
      try {
        const a = countingConsumer({ url: node.url, queue, declare: { durable: true }, recovery: { backoff: { initialMs: 50, maxMs: 500 } }, ...options });
        await a.consumer.start();
        await until(() => a.errors.some((e) => e.startsWith('connection.blocked')), 'connection.blocked reported', 60_000);
        // Acks reach the broker although publishing is blocked: only the failing messages stay in the queue.
        await until(() => healthy.every((id) => a.succeeded.has(id)), 'every healthy message handled during the alarm', 60_000);
        let depth = { ready: -1, unacked: -1 };
        await until(() => depth.ready + depth.unacked <= n - healthy.length, 'the healthy ones acked at the broker', 30_000, async () => {
          depth = await queueDepth(node, queue);
        });
        // Retries were refused fast and the messages handed back: no settlement waits for the alarm.
        await until(() => a.consumer.status().givenBack > 0, 'a refused retry handed back', 30_000);
        expect(a.errors.some((e) => e.includes(PublishBlockedError.name) || e.includes('blocks publishing'))).toBe(true);
        expect(a.consumer.health().status).not.toBe('ok');
        expect(a.consumer.status().retried + a.consumer.status().deadLettered, 'nothing published during the alarm').toBe(0);
        // stop() within its deadline (3 s), the hang guard well beyond it.
        const stopped = await Promise.race([a.consumer.stop({ timeoutMs: 3_000 }), new Promise((r) => setTimeout(() => r('hung'), 20_000))]);
        expect(stopped, 'stop() returned during the alarm').not.toBe('hung');
        await node.ctl(...alarm.clear);
        cleared = true;
        // The alarm cleared: a new consumer takes what is left; the failing ones are retried, then dead-lettered.
        const b = countingConsumer({ url: node.url, queue, declare: { durable: true }, ...options });
        await b.consumer.start();
        depth = { ready: -1, unacked: -1 };
        await until(() => depth.ready + depth.unacked === 0 && b.consumer.status().inFlight === 0, 'the queue drained', 60_000, async () => {
          depth = await queueDepth(node, queue);
        });
        await b.consumer.stop();
        await expectEmpty(queue);
        const dead = await take(`${queue}.dlq`);
        expect([...new Set(dead)].sort()).toEqual(ids.filter(failing).sort());
        // A publish on its way when the broker blocked the connection was given up (the message handed
        // back), yet the broker may still take it once the alarm clears: at most one extra copy per
        // message unacked at the block.
        expect(dead.length - failingIds.length).toBeLessThanOrEqual(PREFETCH_ALARM);
        console.log(`${alarm.name} alarm: ${dead.length - failingIds.length} extra dead letter(s), ${a.consumer.status().givenBack} give-backs during the alarm`);
        // Healthy messages: each handled once (nothing of theirs was redelivered).
        for (const id of healthy) expect((a.calls.get(id) ?? 0) + (b.calls.get(id) ?? 0)).toBe(1);
        expect([...a.errors, ...b.errors].join('\n')).not.toContain('guest:guest');
      } finally {
        if (!cleared) await node.ctl(...alarm.clear);
      }
    });
  }

  it('a handler slower than consumer_timeout: the broker closes the channel and the runtime recovers; handlerTimeoutMs below it avoids that', async () => {
    // Read by a channel when it opens: consumers started after this get a 2 s timeout, checked
    // every second (each channel's tick; 60 s by default).
    await node.ctl('eval', 'application:set_env(rabbit, consumer_timeout, 2000), application:set_env(rabbit, channel_tick_interval, 1000).');
    try {
      // Without handlerTimeoutMs: m-5's first call outlives the timeout. RabbitMQ closes the channel
      // (PRECONDITION_FAILED, delivery acknowledgement timed out) and requeues what was unacked on it.
      const once = await consume(40, { handlerMs: (m, call) => (m.id === 'm-5' && call === 1 ? 6_000 : 5) });
      await until(() => once.ids.every((id) => once.c.succeeded.has(id)), 'every id handled', 60_000);
      const lost = once.c.connection.find((e) => e.state === 'disconnected');
      expect(lost?.detail).toMatch(/PRECONDITION.FAILED.*timed out/i);
      expect(lost?.health).not.toBe('ok');
      expect(once.c.connection.some((e) => e.state === 'recovered')).toBe(true);
      // Its slow call's ack found the channel closed: neither a handler failure nor a retry; the redelivery was handled.
      await until(() => once.c.consumer.status().skippedStale > 0 || once.c.errors.some((e) => e.startsWith('ack')), 'the late ack dropped', 30_000);
      expect(once.c.consumer.status().failed).toBe(0);
      expect(once.c.calls.get('m-5')).toBe(2);
      // Only what was unacked on the closed channel came again.
      expect(once.c.duplicates()).toBeLessThanOrEqual(PREFETCH);
      await until(() => once.c.consumer.health().status === 'ok', 'health ok again', 30_000);
      await once.c.consumer.stop();
      await expectEmpty(once.queue);
      console.log(`consumer_timeout, no handlerTimeoutMs: ${once.c.duplicates()} duplicate call(s); errors: ${once.c.errors.length}`);

      // handlerTimeoutMs below consumer_timeout: m-7, always slow, fails each attempt at 1 s and is
      // retried (a new copy, the original acked in time), then dead-lettered; the channel stays.
      const timed = await consume(40, {
        handlerMs: (m) => (m.id === 'm-7' ? 6_000 : 5),
        handlerTimeoutMs: 1_000,
        retry: { maxAttempts: 2, backoff: { initialMs: 10, maxMs: 10 } },
      });
      await until(() => timed.c.consumer.status().deadLettered === 1, 'm-7 dead-lettered', 60_000);
      await until(() => timed.ids.every((id) => id === 'm-7' || timed.c.succeeded.has(id)), 'every other id handled', 60_000);
      await timed.c.consumer.stop();
      expect(timed.c.connection.map((e) => e.state)).toEqual(['connected']);
      expect(timed.c.consumer.status().failed).toBe(2);
      expect(await take(`${timed.queue}.dlq`)).toEqual(['m-7']);
      await expectEmpty(timed.queue);
    } finally {
      await node.ctl('eval', 'application:set_env(rabbit, consumer_timeout, 1800000), application:set_env(rabbit, channel_tick_interval, 60000).');
    }
  });
});
