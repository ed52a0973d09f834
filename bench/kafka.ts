/**
 * The Kafka adapter against raw kafkajs consumers on the same broker in the same run:
 * (a) no-op handler throughput vs a raw `eachMessage` consumer (autoCommit), best of 5;
 * (b) a 5 ms handler, 'key' ordering over many keys on a 3-partition topic, vs raw `eachMessage`
 *     with `partitionsConsumedConcurrently: 3` (the most kafkajs runs at once on 3 partitions).
 * Both clocks start at the first message received: joining the group is not what is compared.
 * On Node >= 22.22 with @platformatic/kafka installed, the same rounds also run (a) and (b) on it:
 * a raw @platformatic/kafka `MessagesStream` (autocommit, `for await`) and sluice on its driver
 * (`kafka: { client: 'platformatic' }`), beside raw kafkajs.
 */
import { randomUUID } from 'node:crypto';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import { kafkaConsumer, kafkaPublisher, type KafkaClientOption } from '../adapters/kafka/index.js';
import { consumerRate, fmt, gc, mb, ratio, rssWhileConsuming, table } from './harness.js';

const BROKERS = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',').map((b) => b.trim());
const BODY = JSON.stringify({ id: 'x'.repeat(16), amountCents: 1234, currency: 'EUR' });
const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

async function fill(kafka: Kafka, admin: Admin, topics: string[], n: number, keys: number): Promise<void> {
  await admin.createTopics({ topics: topics.map((topic) => ({ topic, numPartitions: 3 })), waitForLeaders: true });
  const publisher = await kafkaPublisher({ kafka });
  try {
    for (const topic of topics) {
      for (let i = 0; i < n; i += 5000) {
        const batch = Array.from({ length: Math.min(5000, n - i) }, (_, j) => ({ key: `k${(i + j) % keys}`, value: BODY }));
        await publisher.publish(topic, batch);
      }
    }
  } finally {
    await publisher.close();
  }
}

async function rawConsume(kafka: Kafka, topic: string, n: number, concurrency: number, work: () => Promise<void>): Promise<number> {
  const consumer = kafka.consumer({ groupId: unique('bench-raw'), maxWaitTimeInMs: 100 });
  let seen = 0;
  let started = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    partitionsConsumedConcurrently: concurrency,
    eachMessage: async () => {
      if (started === 0) started = performance.now();
      await work();
      if (++seen === n) done();
    },
  });
  await all;
  const rate = n / ((performance.now() - started) / 1000);
  await consumer.disconnect();
  return rate;
}

/** @platformatic/kafka runs on Node >= 22.22 only. */
const PLATFORMATIC = (() => {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  return major > 22 || (major === 22 && minor >= 22);
})();

/** A raw @platformatic/kafka consumer: one `MessagesStream` (autocommit) read with `for await`, `work` awaited per message. */
async function rawPlatformatic(topic: string, n: number, work: () => Promise<void>): Promise<number> {
  const { Consumer } = await import('@platformatic/kafka');
  const consumer = new Consumer({ clientId: 'sluice-bench', bootstrapBrokers: BROKERS, groupId: unique('bench-raw-plt'), maxWaitTime: 100 });
  const stream = await consumer.consume({ topics: [topic], mode: 'earliest', autocommit: true });
  let seen = 0;
  let started = 0;
  for await (const _ of stream) {
    if (started === 0) started = performance.now();
    await work();
    if (++seen === n) break;
  }
  const rate = n / ((performance.now() - started) / 1000);
  await consumer.close(true);
  return rate;
}

function sluiceConsume(topic: string, n: number, work: () => Promise<void>, capacity = 64, kafka: KafkaClientOption = { brokers: BROKERS, logLevel: logLevel.NOTHING }): Promise<number> {
  return consumerRate(
    n,
    (handler) =>
      kafkaConsumer({
        kafka,
        groupId: unique('bench-sluice'),
        topics: [topic],
        fromBeginning: true,
        ordering: 'key',
        maxWaitTimeInMs: 100,
        pool: { maxConcurrency: capacity, maxQueueSize: capacity },
        handler,
      }),
    work,
  );
}

export async function run(): Promise<string> {
  const kafka = new Kafka({ clientId: 'sluice-bench', brokers: BROKERS, logLevel: logLevel.NOTHING });
  const admin = kafka.admin();
  await admin.connect();
  const topics: string[] = [];
  try {
    // (a) no-op: the same 200,000 messages read by a fresh group each time; best of 5, alternating.
    // Enough for several fetches after the first: kafkajs decodes a whole fetch (≈ 40,000 of these
    // messages over 3 partitions) before the first message reaches a handler, so with 50,000 the
    // clock mostly timed handing out one already-decoded batch, not consuming a topic.
    const N = 200_000;
    const noop = unique('bench-noop');
    topics.push(noop);
    await fill(kafka, admin, [noop], N, 1000);
    const raw: number[] = [];
    const ours: number[] = [];
    // The same with a pool of 1024 + 1024: far more in flight than keys per partition, so
    // followers pile up past maxHeldPerPartition (256) and the batch loop waits for them.
    const wide: number[] = [];
    const onPlatformatic: KafkaClientOption = { client: 'platformatic', brokers: BROKERS, clientId: 'sluice-bench' };
    const rawPlt: number[] = [];
    const oursPlt: number[] = [];
    for (let round = 0; round < 5; round++) {
      raw.push(await rawConsume(kafka, noop, N, 1, async () => {}));
      ours.push(await sluiceConsume(noop, N, async () => {}));
      wide.push(await sluiceConsume(noop, N, async () => {}, 1024));
      if (PLATFORMATIC) {
        rawPlt.push(await rawPlatformatic(noop, N, async () => {}));
        oursPlt.push(await sluiceConsume(noop, N, async () => {}, 64, onPlatformatic));
      }
    }
    const rawBest = Math.max(...raw);
    const oursBest = Math.max(...ours);
    const wideBest = Math.max(...wide);

    // (b) 5 ms handler, 2,000 keys on 3 partitions: raw kafkajs runs at most 3 at once.
    const M = 3000;
    const slow = unique('bench-slow');
    topics.push(slow);
    await fill(kafka, admin, [slow], M, 2000);
    const wait5 = () => new Promise<void>((r) => setTimeout(r, 5));
    const rawSlow = await rawConsume(kafka, slow, M, 3, wait5);
    const oursSlow = await sluiceConsume(slow, M, wait5);
    const rawPltSlow = PLATFORMATIC ? await rawPlatformatic(slow, M, wait5) : 0;
    const oursPltSlow = PLATFORMATIC ? await sluiceConsume(slow, M, wait5, 64, onPlatformatic) : 0;

    // (c) 100,000 waiting, a slow handler: resident memory must follow the pool and the per-partition
    // bound, not the backlog.
    const deep = unique('bench-deep');
    topics.push(deep);
    await fill(kafka, admin, [deep], 100_000, 5000);
    gc();
    const before = process.memoryUsage().rss;
    const { early, late } = await rssWhileConsuming(
      kafkaConsumer({
        kafka: { brokers: BROKERS, logLevel: logLevel.NOTHING },
        groupId: unique('bench-deep'),
        topics: [deep],
        fromBeginning: true,
        maxWaitTimeInMs: 100,
        pool: { maxConcurrency: 16, maxQueueSize: 16 },
        handler: () => new Promise((r) => setTimeout(r, 20)),
      }),
    );

    return [
      '## Kafka',
      '',
      `Kafka (kafkajs 2.2.4) on ${BROKERS.join(',')}, topics of 3 partitions, sluice pool 64 running + 64 waiting, \`ordering: 'key'\`; best of 5 alternating rounds for (a).`,
      '',
      table(
        ['measure', 'sluice', 'baseline', 'ratio', 'target'],
        [
          [`no-op handler, msgs/s (baseline: raw kafkajs eachMessage, autoCommit), ${fmt(N)} messages`, fmt(oursBest), fmt(rawBest), ratio(oursBest, rawBest), '≥ 0.90×'],
          [`no-op handler, pool 1024 + 1024 (followers past maxHeldPerPartition), msgs/s (same baseline)`, fmt(wideBest), fmt(rawBest), ratio(wideBest, rawBest), 'as the row above'],
          [`5 ms handler, 2,000 keys, msgs/s (baseline: raw eachMessage, partitionsConsumedConcurrently 3), ${fmt(M)} messages`, fmt(oursSlow), fmt(rawSlow), ratio(oursSlow, rawSlow), 'well above 1×'],
          [`RSS with 100,000 waiting, slow handler, pool 16 + 16: late / early sample (MB)`, `${mb(late)} / ${mb(early)}`, `start ${mb(before)}`, ratio(late, early), '≈ 1.00× (flat)'],
        ],
      ),
      '',
      PLATFORMATIC
        ? [
            `The same rounds on @platformatic/kafka 2.12 (Node ${process.version}): a raw \`MessagesStream\` (autocommit, \`for await\`: one message at a time) and sluice on its driver (\`kafka: { client: 'platformatic' }\`), beside raw kafkajs.`,
            '',
            table(
              ['measure', 'sluice on platformatic', 'baseline', 'ratio', 'vs raw kafkajs'],
              [
                [`no-op handler, msgs/s (baseline: raw @platformatic/kafka MessagesStream), ${fmt(N)} messages`, fmt(Math.max(...oursPlt)), fmt(Math.max(...rawPlt)), ratio(Math.max(...oursPlt), Math.max(...rawPlt)), `${ratio(Math.max(...oursPlt), rawBest)} (raw platformatic ${ratio(Math.max(...rawPlt), rawBest)})`],
                [`5 ms handler, 2,000 keys, msgs/s (baseline: raw MessagesStream, one at a time), ${fmt(M)} messages`, fmt(oursPltSlow), fmt(rawPltSlow), ratio(oursPltSlow, rawPltSlow), `${ratio(oursPltSlow, rawSlow)} (raw platformatic ${ratio(rawPltSlow, rawSlow)})`],
              ],
            ),
          ].join('\n')
        : `@platformatic/kafka rows: not measured (Node ${process.version}; the driver needs Node >= 22.22).`,
    ].join('\n');
  } finally {
    await admin.deleteTopics({ topics }).catch(() => {});
    await admin.disconnect();
  }
}
