/**
 * The RabbitMQ adapter against a raw amqplib consumer on the same broker in the same run:
 * (a) no-op handler throughput vs raw consume-and-ack with the same prefetch;
 * (b) a 5 ms handler at concurrency 64 vs the ideal 64 / 5 ms;
 * (c) RSS while 100,000 messages wait in the queue and the handler is slow: bounded by prefetch.
 */
import { randomUUID } from 'node:crypto';
import { connect, type ChannelModel } from 'amqplib';
import { rabbitConsumer } from '../adapters/rabbitmq/index.js';
import { consumerRate, fmt, gc, mb, ratio, rssWhileConsuming, table } from './harness.js';

const URL_ = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const BODY = Buffer.from(JSON.stringify({ id: 'x'.repeat(16), amountCents: 1234, currency: 'EUR' }));

async function fill(admin: ChannelModel, queue: string, n: number): Promise<void> {
  const ch = await admin.createConfirmChannel();
  await ch.assertQueue(queue, { durable: false });
  for (let i = 0; i < n; i++) {
    if (!ch.sendToQueue(queue, BODY, { messageId: String(i) })) await new Promise((r) => ch.once('drain', r));
    if (i % 5000 === 4999) await ch.waitForConfirms();
  }
  await ch.waitForConfirms();
  await ch.close();
}

async function rawConsume(admin: ChannelModel, queue: string, n: number, prefetch: number): Promise<number> {
  const ch = await admin.createChannel();
  await ch.prefetch(prefetch);
  let started = 0;
  let seen = 0;
  await new Promise<void>((resolve) => {
    void ch.consume(queue, (m) => {
      if (!m) return;
      if (seen === 0) started = performance.now();
      ch.ack(m);
      if (++seen === n) resolve();
    });
  });
  const rate = n / ((performance.now() - started) / 1000);
  await ch.close();
  return rate;
}

function sluiceConsume(queue: string, n: number, pool: { maxConcurrency: number; maxQueueSize: number }, work: () => Promise<void>): Promise<number> {
  return consumerRate(n, (handler) => rabbitConsumer({ url: URL_, queue, declare: { durable: false }, pool, handler }), work);
}

export async function run(): Promise<string> {
  const admin = await connect(URL_);
  const queues: string[] = [];
  const q = () => {
    const name = `sluice-bench-${randomUUID().slice(0, 8)}`;
    queues.push(name);
    return name;
  };
  try {
    // (a) no-op: best of 5 alternating runs, same prefetch (the pool's capacity, 64 + 64).
    const N = 20_000;
    const raw: number[] = [];
    const ours: number[] = [];
    for (let round = 0; round < 5; round++) {
      const a = q();
      await fill(admin, a, N);
      raw.push(await rawConsume(admin, a, N, 128));
      const b = q();
      await fill(admin, b, N);
      ours.push(await sluiceConsume(b, N, { maxConcurrency: 64, maxQueueSize: 64 }, async () => {}));
    }
    const rawBest = Math.max(...raw);
    const oursBest = Math.max(...ours);

    // (b) 5 ms handler, 64 at a time: the ideal is 64 / 5 ms = 12,800 messages/s.
    const M = 12_800;
    const slow = q();
    await fill(admin, slow, M);
    const ideal = 64 / 0.005;
    const slowRate = await sluiceConsume(slow, M, { maxConcurrency: 64, maxQueueSize: 64 }, () => new Promise((r) => setTimeout(r, 5)));

    // (c) 100,000 waiting, a slow handler: resident memory must follow prefetch, not queue depth.
    const deep = q();
    await fill(admin, deep, 100_000);
    gc();
    const before = process.memoryUsage().rss;
    const { early, late } = await rssWhileConsuming(
      rabbitConsumer({
        url: URL_,
        queue: deep,
        declare: { durable: false },
        pool: { maxConcurrency: 16, maxQueueSize: 16 },
        handler: () => new Promise((r) => setTimeout(r, 20)),
      }),
    );

    return [
      '## RabbitMQ',
      '',
      `RabbitMQ on ${new URL(URL_).host}, best of 5 alternating rounds for throughput.`,
      '',
      table(
        ['measure', 'sluice', 'baseline', 'ratio', 'target'],
        [
          ['no-op handler, msgs/s (baseline: raw amqplib consume + ack, prefetch 128)', fmt(oursBest), fmt(rawBest), ratio(oursBest, rawBest), '≥ 0.90×'],
          ['5 ms handler at concurrency 64, msgs/s (baseline: ideal 64/5 ms)', fmt(slowRate), fmt(ideal), ratio(slowRate, ideal), '≥ 0.85×'],
          [`RSS with 100,000 queued, slow handler: late / early sample (MB)`, `${mb(late)} / ${mb(early)}`, `start ${mb(before)}`, ratio(late, early), '≈ 1.00× (flat)'],
        ],
      ),
    ].join('\n');
  } finally {
    const ch = await admin.createChannel();
    for (const name of queues) await ch.deleteQueue(name).catch(() => {});
    await admin.close();
  }
}

