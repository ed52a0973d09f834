/**
 * The JetStream adapter against the other Node consumers on the same server in the same run:
 * (a) no-op handler throughput, four contenders alternating round by round on streams of the same
 *     size and message: sluice 64 + 64, sluice 64 + 0, a raw nats.js `consume()` loop acking at
 *     once, and @moleculer/channels' JetStream push consumer (maxInFlight 64, ack after the
 *     handler), each drained to the end; medians, and medians of per-round ratios;
 * (b) a 5 ms handler, 64 at a time: sluice with a pool of 64 + 0 (window = concurrency) against
 *     the raw client at the same window (`consume({ max_messages: 64 })`, at most 64 handlers),
 *     and at the same unacked bound (`consume({ max_messages: 32 })`, at most 32 handlers: 64, what
 *     sluice 64 + 0 may hold), and sluice with a waiting room (64 + 64), and moleculer at
 *     maxInFlight 64; all against the ideal 64 / 5 ms.
 *
 *   npx tsx bench/nats.ts          # prints the section
 */
import { pathToFileURL } from 'node:url';
import { randomUUID } from 'node:crypto';
import { AckPolicy, connect, type JetStreamManager, type NatsConnection } from 'nats';
import moleculer from 'moleculer';
import channels from '@moleculer/channels';
import { natsConsumer } from '../adapters/nats/index.js';
import { MemoryBroker, memoryConsumer } from '../adapters/memory/index.js';
import { consumerRate, fmt, ratio, table } from './harness.js';

const URL_ = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const BODY = new TextEncoder().encode(JSON.stringify({ id: 'x'.repeat(16), amountCents: 1234, currency: 'EUR' }));

const subjects = (name: string) => [`${name.toLowerCase()}.>`];
const subject = (name: string) => `${name.toLowerCase()}.in`;

/** A stream of `n` messages; with `durable`, the pull consumer 'bench' that sluice and raw read (moleculer makes its own push consumer). */
export async function stream(jsm: JetStreamManager, nc: NatsConnection, n: number, durable = true): Promise<string> {
  const name = `BENCH_${randomUUID().slice(0, 8).toUpperCase()}`;
  await jsm.streams.add({ name, subjects: subjects(name) });
  if (durable) await jsm.consumers.add(name, { durable_name: 'bench', ack_policy: AckPolicy.Explicit, max_ack_pending: 1000 });
  const js = nc.jetstream();
  for (let i = 0; i < n; i += 1000) {
    await Promise.all(Array.from({ length: Math.min(1000, n - i) }, () => js.publish(subject(name), BODY)));
  }
  return name;
}

export async function raw(nc: NatsConnection, name: string, n: number, batch: number): Promise<number> {
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

/**
 * The raw client at a fixed window: `consume({ max_messages: buffer })`, at most `window` handlers
 * at a time, ack after each. It holds up to window + buffer unacked: the buffer refills while every
 * handler runs.
 */
async function rawWindow(nc: NatsConnection, name: string, n: number, window: number, work: () => Promise<void>, buffer = window): Promise<number> {
  const consumer = await nc.jetstream().consumers.get(name, 'bench');
  const messages = await consumer.consume({ max_messages: buffer });
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

/**
 * @moleculer/channels' NATS adapter as its README sets it up: a ServiceBroker with the Channels
 * middleware, one channel with a handler; it makes a durable JetStream push consumer
 * (deliver_group, max_ack_pending = maxInFlight), calls `working()` when a message arrives and
 * `ack()` after the handler. `deliver_policy: 'all'` (its default is 'new') to drain the pre-filled
 * stream; its streamConfig repeats the stream's, so its stream add is a no-op. Its default JSON
 * serializer parses every body before the handler (sluice's no-op handler never reads it); with
 * 61-byte bodies that is a small share. The clock runs as in
 * consumerRate: from the first message to the n-th handler's end (its ack follows synchronously).
 */
export async function moleculerRate(name: string, n: number, maxInFlight: number, work?: () => Promise<void>): Promise<number> {
  let seen = 0;
  let started = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  // Its .d.ts files are generated from JSDoc and mark every option of every adapter required, and
  // its middleware's return type is not moleculer's Middleware: hence the casts.
  type Options = Parameters<typeof channels.Middleware>[0];
  const middleware = channels.Middleware({ adapter: { type: 'NATS', options: { nats: { url: URL_ }, maxInFlight } } } as unknown as Options);
  const broker = new moleculer.ServiceBroker({
    nodeID: `bench-${randomUUID().slice(0, 8)}`,
    logger: false,
    middlewares: [middleware as unknown as moleculer.Middleware],
  });
  broker.createService({
    name: 'bench',
    channels: {
      [subject(name)]: {
        group: 'moleculer',
        maxInFlight,
        nats: { streamConfig: { name, subjects: subjects(name) }, consumerOptions: { config: { deliver_policy: 'all' } } },
        async handler() {
          if (started === 0) started = performance.now();
          if (work) await work();
          if (++seen === n) setImmediate(done);
        },
      },
    },
  } as moleculer.ServiceSchema);
  await broker.start();
  await all;
  const rate = n / ((performance.now() - started) / 1000);
  await broker.stop();
  return rate;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export function sluice(name: string, n: number, maxConcurrency: number, maxQueueSize: number, work?: () => Promise<void>): Promise<number> {
  return consumerRate(n, (handler) => natsConsumer({ servers: URL_, stream: name, durable: 'bench', pool: { maxConcurrency, maxQueueSize }, handler }), work);
}

/** The broker-free ceiling: the same consumer and pool on the in-memory broker, so only the broker's part of the cost is missing. */
function ceiling(n: number, maxConcurrency: number, maxQueueSize: number, work: () => Promise<void>): Promise<number> {
  const broker = new MemoryBroker();
  for (let i = 0; i < n; i++) broker.publish('bench', BODY);
  return consumerRate(n, (handler) => memoryConsumer({ broker, queue: 'bench', pool: { maxConcurrency, maxQueueSize }, handler }), work);
}

interface Contender {
  label: string;
  rates: number[];
  /** Measures one run on a fresh stream of its own. */
  measure: (name: string) => Promise<number>;
  durable?: boolean;
}

/** Rounds of every contender, the order rotating by one each round so that no one always runs first or after the same neighbour. */
async function rotate(jsm: JetStreamManager, nc: NatsConnection, made: string[], rounds: number, n: number, contenders: Contender[]): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < contenders.length; i++) {
      const c = contenders[(i + round) % contenders.length]!;
      const name = await stream(jsm, nc, n, c.durable ?? true);
      made.push(name);
      c.rates.push(await c.measure(name));
      await jsm.streams.delete(name).catch(() => {});
    }
  }
}

/** Median of the per-round ratios a / b (the rounds line up: rotate() runs every contender once per round). */
const ratioOfRounds = (a: number[], b: number[]) => median(a.map((x, i) => x / b[i]!));
const times = (r: number) => `${r.toFixed(2)}×`;

export async function run(): Promise<string> {
  const nc = await connect({ servers: URL_ });
  const jsm = await nc.jetstreamManager();
  const made: string[] = [];
  try {
    // (a) no-op handler; 7 rotating rounds (the machine is shared: single rounds move by 2×).
    const N = 20_000;
    const ROUNDS = 7;
    const s64: Contender = { label: 'sluice, pool 64 + 64', rates: [], measure: (name) => sluice(name, N, 64, 64) };
    const s0: Contender = { label: 'sluice, pool 64 + 0', rates: [], measure: (name) => sluice(name, N, 64, 0) };
    const rawA: Contender = { label: 'raw nats.js consume({ max_messages: 128 }), ack at once', rates: [], measure: (name) => raw(nc, name, N, 128) };
    const mol: Contender = { label: '@moleculer/channels push consumer, maxInFlight 64', rates: [], measure: (name) => moleculerRate(name, N, 64), durable: false };
    const noop = [s64, s0, rawA, mol];
    await rotate(jsm, nc, made, ROUNDS, N, noop);

    // (b) 5 ms handler, 64 at a time; 5 rotating rounds, medians.
    const M = 12_800;
    const work = () => new Promise<void>((r) => setTimeout(r, 5));
    const rawSlow: Contender = { label: 'raw', rates: [], measure: (name) => rawWindow(nc, name, M, 64, work) };
    // The raw client holding what sluice 64 + 0 may hold (64 unacked): 32 handlers and a buffer of 32.
    const rawBound: Contender = { label: 'raw at 64 unacked', rates: [], measure: (name) => rawWindow(nc, name, M, 32, work, 32) };
    const slow0: Contender = { label: 'sluice 64 + 0', rates: [], measure: (name) => sluice(name, M, 64, 0, work) };
    const slow64: Contender = { label: 'sluice 64 + 64', rates: [], measure: (name) => sluice(name, M, 64, 64, work) };
    const molSlow: Contender = { label: 'moleculer', rates: [], measure: (name) => moleculerRate(name, M, 64, work), durable: false };
    const free64: Contender = { label: 'broker-free', rates: [], measure: () => ceiling(M, 64, 64, work), durable: false };
    const SLOW_ROUNDS = 5;
    await rotate(jsm, nc, made, SLOW_ROUNDS, M, [rawSlow, slow0, slow64, molSlow, free64, rawBound]);

    const ideal = 64 / 0.005;
    const [r0, q0, q64, m0, f64] = [rawSlow, slow0, slow64, molSlow, free64].map((c) => median(c.rates)) as [number, number, number, number, number];
    const best = Math.max(...noop.filter((c) => !c.label.startsWith('sluice')).map((c) => median(c.rates)));
    return [
      '## NATS JetStream',
      '',
      `nats-server at ${URL_}; streams of ${fmt(N)} (a) or ${fmt(M)} (b) messages of ${BODY.length} bytes, each contender on a stream of its own, drained to the end, acking every message. (a) ${ROUNDS} rounds, the order rotating each round; medians, and ratios as medians of the per-round ratios. (b) ${SLOW_ROUNDS} such rounds; ideal = 64 / 5 ms; the broker-free ceiling is the same consumer and pool on the in-memory broker. Target: sluice ≥ the best other Node consumer (${fmt(best)} msgs/s here), and ≥ 0.90× raw.`,
      '',
      table(
        ['no-op handler', 'msgs/s (median)', 'vs moleculer', 'vs raw consume()', 'rounds (msgs/s)'],
        noop.map((c) => [c.label, fmt(median(c.rates)), times(ratioOfRounds(c.rates, mol.rates)), times(ratioOfRounds(c.rates, rawA.rates)), c.rates.map((r) => fmt(r)).join(' / ')]),
      ),
      '',
      `Rounds of (b), msgs/s: sluice 64 + 0 ${slow0.rates.map((r) => fmt(r)).join(' / ')}; raw at window 64 ${rawSlow.rates.map((r) => fmt(r)).join(' / ')} (per-round ratios ${slow0.rates.map((r, i) => times(r / rawSlow.rates[i]!)).join(' / ')}); raw at 64 unacked ${rawBound.rates.map((r) => fmt(r)).join(' / ')}.`,
      '',
      table(
        ['measure', 'sluice', 'baseline', 'ratio', 'target'],
        [
          ['5 ms handler, pool 64 + 0, msgs/s (baseline: raw consume({ max_messages: 64 }), ≤ 64 handlers)', fmt(q0), fmt(r0), times(ratioOfRounds(slow0.rates, rawSlow.rates)), '≥ 1.00×'],
          ['5 ms handler, pool 64 + 0, msgs/s (baseline: raw at the same unacked bound: consume({ max_messages: 32 }), ≤ 32 handlers)', fmt(q0), fmt(median(rawBound.rates)), times(ratioOfRounds(slow0.rates, rawBound.rates)), ''],
          ['5 ms handler, pool 64 + 64, msgs/s (baseline: @moleculer/channels, maxInFlight 64)', fmt(q64), fmt(m0), times(ratioOfRounds(slow64.rates, molSlow.rates)), '≥ 1.00×'],
          ['5 ms handler, pool 64 + 0 vs ideal 64/5 ms', fmt(q0), fmt(ideal), ratio(q0, ideal), ''],
          ['5 ms handler, raw at window 64 vs ideal', fmt(r0), fmt(ideal), ratio(r0, ideal), ''],
          ['5 ms handler, moleculer at maxInFlight 64 vs ideal', fmt(m0), fmt(ideal), ratio(m0, ideal), ''],
          ['5 ms handler, pool 64 + 64 vs ideal 64/5 ms', fmt(q64), fmt(ideal), ratio(q64, ideal), '≥ 0.85×'],
          ['5 ms handler, pool 64 + 64 vs the broker-free ceiling (memory broker, pool 64 + 64)', fmt(q64), fmt(f64), times(ratioOfRounds(slow64.rates, free64.rates)), '≥ 0.97×'],
          ['5 ms handler, broker-free ceiling vs ideal', fmt(f64), fmt(ideal), ratio(f64, ideal), ''],
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
