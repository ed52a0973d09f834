/**
 * The JetStream adapter against a raw nats.js `consume()` loop on the same server in the same run:
 * (a) no-op handler throughput vs consume-and-ack at once;
 * (b) a 5 ms handler, 64 at a time: sluice with a pool of 64 + 0 (window = concurrency) against
 *     the raw client at the same window (`consume({ max_messages: 64 })`, at most 64 handlers),
 *     and sluice with a waiting room (64 + 64); all against the ideal 64 / 5 ms.
 *
 *   npx tsx bench/nats.ts          # prints the section
 */
import { pathToFileURL } from 'node:url';
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

/** The raw client at a fixed window: `consume({ max_messages: window })`, at most `window` handlers at a time, ack after each. */
async function rawWindow(nc: NatsConnection, name: string, n: number, window: number, work: () => Promise<void>): Promise<number> {
  const consumer = await nc.jetstream().consumers.get(name, 'bench');
  const messages = await consumer.consume({ max_messages: window });
  let taken = 0;
  let finished = 0;
  let inFlight = 0;
  let started = 0;
  let wake: (() => void) | undefined;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  for await (const m of messages) {
    if (started === 0) started = performance.now();
    while (inFlight >= window) await new Promise<void>((r) => (wake = r));
    inFlight++;
    void work().then(() => {
      m.ack();
      inFlight--;
      if (++finished === n) done();
      const w = wake;
      wake = undefined;
      w?.();
    });
    if (++taken === n) break;
  }
  await all;
  const rate = n / ((performance.now() - started) / 1000);
  messages.stop();
  return rate;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

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
    // (b) 5 ms handler, 64 at a time; 3 rotating rounds, medians.
    const M = 12_800;
    const work = () => new Promise<void>((r) => setTimeout(r, 5));
    const rawSlow: number[] = [];
    const slow0: number[] = [];
    const slow64: number[] = [];
    for (let round = 0; round < 3; round++) {
      const runs: [number[], (name: string) => Promise<number>][] = [
        [rawSlow, (name) => rawWindow(nc, name, M, 64, work)],
        [slow0, (name) => sluice(name, M, 64, 0, work)],
        [slow64, (name) => sluice(name, M, 64, 64, work)],
      ];
      for (let i = 0; i < runs.length; i++) {
        const [into, measure] = runs[(i + round) % runs.length]!;
        const name = await stream(jsm, nc, M);
        made.push(name);
        into.push(await measure(name));
      }
    }
    const ideal = 64 / 0.005;
    const [r0, s0, s64] = [median(rawSlow), median(slow0), median(slow64)];
    return [
      '## NATS JetStream',
      '',
      `nats-server at ${URL_}. (a) best of 5 alternating rounds; both sides pull at most 128 messages at a time. (b) medians of 3 rotating rounds; ideal = 64 / 5 ms.`,
      '',
      table(
        ['measure', 'sluice', 'baseline', 'ratio', 'target'],
        [
          ['no-op handler, msgs/s (baseline: raw consume({ max_messages: 128 }) + ack)', fmt(Math.max(...ours)), fmt(Math.max(...rawRates)), ratio(Math.max(...ours), Math.max(...rawRates)), '≥ 0.90×'],
          ['5 ms handler, pool 64 + 0, msgs/s (baseline: raw consume({ max_messages: 64 }), ≤ 64 handlers)', fmt(s0), fmt(r0), ratio(s0, r0), '≥ 1.00×'],
          ['5 ms handler, pool 64 + 0 vs ideal 64/5 ms', fmt(s0), fmt(ideal), ratio(s0, ideal), ''],
          ['5 ms handler, raw at window 64 vs ideal', fmt(r0), fmt(ideal), ratio(r0, ideal), ''],
          ['5 ms handler, pool 64 + 64 vs ideal 64/5 ms', fmt(s64), fmt(ideal), ratio(s64, ideal), '≥ 0.85×'],
        ],
      ),
    ].join('\n');
  } finally {
    for (const name of made) await jsm.streams.delete(name).catch(() => {});
    await nc.close();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(await run());
  process.exit(0);
}
