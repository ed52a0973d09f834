/**
 * The JetStream adapter against a raw nats.js `consume()` loop on the same server in the same run:
 * (a) no-op handler throughput vs consume-and-ack at once;
 * (b) a 5 ms handler at concurrency 64 vs the ideal 64 / 5 ms.
 */
import { randomUUID } from 'node:crypto';
import { AckPolicy, connect, type JetStreamManager, type NatsConnection } from 'nats';
import { natsConsumer } from '../adapters/nats/index.js';
import { consumerRate, fmt, ratio, table } from './harness.js';

const URL_ = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const BODY = new TextEncoder().encode(JSON.stringify({ id: 'x'.repeat(16), amountCents: 1234, currency: 'EUR' }));

async function stream(jsm: JetStreamManager, nc: NatsConnection, n: number): Promise<string> {
  const name = `BENCH_${randomUUID().slice(0, 8).toUpperCase()}`;
  await jsm.streams.add({ name, subjects: [`${name.toLowerCase()}.>`] });
  await jsm.consumers.add(name, { durable_name: 'bench', ack_policy: AckPolicy.Explicit, max_ack_pending: 1000 });
  const js = nc.jetstream();
  for (let i = 0; i < n; i += 1000) {
    await Promise.all(Array.from({ length: Math.min(1000, n - i) }, () => js.publish(`${name.toLowerCase()}.in`, BODY)));
  }
  return name;
}

async function raw(nc: NatsConnection, name: string, n: number, batch: number): Promise<number> {
  const consumer = await nc.jetstream().consumers.get(name, 'bench');
  const messages = await consumer.consume({ max_messages: batch });
  let seen = 0;
  let started = 0;
  for await (const m of messages) {
    if (seen === 0) started = performance.now();
    m.ack();
    if (++seen === n) break;
  }
  const rate = n / ((performance.now() - started) / 1000);
  // Leaving the loop already stopped the iterator; awaiting close() after that can hang (nats 2.29).
  messages.stop();
  return rate;
}

function sluice(name: string, n: number, maxConcurrency: number, maxQueueSize: number, work?: () => Promise<void>): Promise<number> {
  return consumerRate(n, (handler) => natsConsumer({ servers: URL_, stream: name, durable: 'bench', pool: { maxConcurrency, maxQueueSize }, handler }), work);
}

export async function run(): Promise<string> {
  const nc = await connect({ servers: URL_ });
  const jsm = await nc.jetstreamManager();
  const made: string[] = [];
  try {
    const N = 20_000;
    const rawRates: number[] = [];
    const ours: number[] = [];
    for (let round = 0; round < 5; round++) {
      const a = await stream(jsm, nc, N);
      made.push(a);
      rawRates.push(await raw(nc, a, N, 128));
      const b = await stream(jsm, nc, N);
      made.push(b);
      ours.push(await sluice(b, N, 64, 64));
    }
    const M = 12_800;
    const slow = await stream(jsm, nc, M);
    made.push(slow);
    const slowRate = await sluice(slow, M, 64, 64, () => new Promise((r) => setTimeout(r, 5)));
    const ideal = 64 / 0.005;
    return [
      '## NATS JetStream',
      '',
      `nats-server at ${URL_}, best of 5 alternating rounds for throughput; both sides pull at most 128 messages at a time.`,
      '',
      table(
        ['measure', 'sluice', 'baseline', 'ratio', 'target'],
        [
          ['no-op handler, msgs/s (baseline: raw consume({ max_messages: 128 }) + ack)', fmt(Math.max(...ours)), fmt(Math.max(...rawRates)), ratio(Math.max(...ours), Math.max(...rawRates)), '≥ 0.90×'],
          ['5 ms handler at concurrency 64, msgs/s (baseline: ideal 64/5 ms)', fmt(slowRate), fmt(ideal), ratio(slowRate, ideal), '≥ 0.85×'],
        ],
      ),
    ].join('\n');
  } finally {
    for (const name of made) await jsm.streams.delete(name).catch(() => {});
    await nc.close();
  }
}
