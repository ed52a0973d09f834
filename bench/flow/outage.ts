/**
 * The outage scenario of issue 11: the downstream fails everything for 10 s in a 30 s run.
 * Two consumers run side by side in the same run, each with its own broker queue, pool and
 * simulated downstream on the same schedule: one with a CircuitBreaker, one without (baseline).
 * Messages arrive at a steady rate well below the downstream's capacity, so before and after the
 * outage both keep up; during it the baseline burns its attempts and dead-letters, the breaker
 * pauses consumption at the broker and lets only its probes through.
 *
 * Measured (from breaker and consumer events, and on RabbitMQ also from the queue's consumer count):
 * dead letters; downstream calls while it was failing, split by what the breaker was doing
 * when each message was admitted; time from each opening to the consumer paused under the
 * breaker's name; time from the closing (the last probe succeeded) to the consumer resumed.
 *
 * `FLOW_SCALE` (default 1) multiplies every duration (0.2 → a 6 s run with a 2 s outage); the
 * section says which scale it ran at.
 */
import { randomUUID } from 'node:crypto';
import { connect, type Channel, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { CircuitBreaker, WorkerPool, type CircuitBreakerOptions, type CircuitBreakerState, type Consumer, type ConsumerOptions, type GatedConsumer, type GateDecision, type Message } from '../../src/index.js';
import { MemoryBroker, memoryConsumer } from '../../adapters/memory/index.js';
import { fmt, table } from '../harness.js';
import { Downstream, DownstreamUnavailableError } from './downstream.js';

export interface OutageConfig {
  /** Every duration below is already multiplied by it. */
  readonly scale: number;
  readonly runMs: number;
  readonly outageAtMs: number;
  readonly outageMs: number;
  /** Messages published per second, for runMs. */
  readonly ratePerSecond: number;
  readonly downstream: { capacity: number; latencyMs: number; jitter: number; failLatencyMs: number };
  readonly pool: { maxConcurrency: number; maxQueueSize: number };
  readonly retry: NonNullable<ConsumerOptions['retry']>;
  /** The sides run at the same time; one without a breaker is the baseline. */
  readonly variants: readonly OutageVariant[];
  /** After runMs, how long the consumers may take to settle the backlog. */
  readonly settleMs: number;
}

export function outageConfig(scale = Number(process.env.FLOW_SCALE ?? 1)): OutageConfig {
  if (!(scale > 0)) throw new RangeError(`FLOW_SCALE must be > 0, got ${process.env.FLOW_SCALE}`);
  const s = (ms: number) => Math.round(ms * scale);
  const rate: CircuitBreakerOptions = { name: 'downstream', failureRate: 0.5, minCalls: 20, windowMs: s(10_000), openMs: s(2_000), halfOpenProbes: 3 };
  return {
    scale,
    runMs: s(30_000),
    outageAtMs: s(10_000),
    outageMs: s(10_000),
    ratePerSecond: 200,
    // Capacity 16 × 1000 / 20 ms = 800 calls/s: four times the arrival rate, so the backlog of the outage drains.
    downstream: { capacity: 16, latencyMs: 20, jitter: 0.25, failLatencyMs: 2 },
    pool: { maxConcurrency: 16, maxQueueSize: 16 },
    retry: { maxAttempts: 3, backoff: { initialMs: s(100), maxMs: s(1_000) } },
    variants: [
      { label: 'breaker: failure rate or 10 in a row', breaker: { ...rate, consecutiveFailures: 10 } },
      { label: 'breaker: failure rate only', breaker: rate },
      { label: 'baseline: no breaker' },
    ],
    settleMs: s(30_000) + 10_000,
  };
}

export interface OutageVariant {
  readonly label: string;
  /** Absent: no breaker (the baseline). A name is required for the pause reason; default 'downstream'. */
  readonly breaker?: CircuitBreakerOptions;
}

/** One side's numbers. */
export interface OutageSide {
  readonly variant: OutageVariant;
  readonly published: number;
  readonly handled: number;
  readonly deadLettered: number;
  /** In the dead-letter queue at the end (the broker's count). */
  readonly deadLetterQueue: number;
  /** Downstream calls that failed because it was down. */
  readonly failedCalls: number;
  /** ...of which admitted while the breaker was closed (what it took to notice), open (admitted before, ran after), half-open (probes). */
  readonly failedByState: Record<CircuitBreakerState, number>;
  /** Probes admitted while the downstream was down, and half-open rounds in all. */
  readonly probesDuringOutage: number;
  readonly halfOpenRounds: number;
  readonly opened: number;
  /** Per opening: ms from the breaker's `open` event to the consumer's `paused` (reason: the breaker); 0 when already paused by it. */
  readonly pauseMs: number[];
  /** Per closing: ms from the breaker's `close` event (the last probe succeeded) to the consumer's `resumed`; 0 when it was not paused. */
  readonly resumeMs: number[];
  /** RabbitMQ only: ms from opening to the queue's consumer count 0, and from closing to it > 0 (polled every 20 ms). */
  readonly brokerPauseMs?: number[];
  readonly brokerResumeMs?: number[];
  /** ms from the downstream coming back to the breaker closing. */
  readonly backToClosedMs: number | undefined;
  /** Given back without counting an attempt: excused failures, refused by the breaker. */
  readonly excused: number;
  readonly gated: number;
  /** Every message handled or dead-lettered by the end. */
  readonly settled: boolean;
}

export interface OutageResult {
  readonly broker: string;
  readonly config: OutageConfig;
  readonly sides: readonly OutageSide[];
}

/** A breaker that also remembers in which state it admitted each message (probes are those admitted half-open). */
class ObservedBreaker extends CircuitBreaker {
  readonly admittedIn = new WeakMap<Message, CircuitBreakerState>();
  probesAdmitted = 0;
  override admit(message: Message, consumer?: GatedConsumer): GateDecision {
    const state = this.state;
    const decision = super.admit(message, consumer);
    if (decision.admit) {
      this.admittedIn.set(message, state);
      if (state === 'half-open') this.probesAdmitted++;
    }
    return decision;
  }
}

/** What the scenario needs from a broker. */
interface Bench {
  readonly name: string;
  publish(side: number, id: string, body: unknown): Promise<void> | void;
  consumer(side: number, options: Omit<ConsumerOptions, 'name'>): Consumer;
  deadLetterQueue(side: number): Promise<number>;
  /** Consumers attached to the side's queue at the broker; undefined when the broker cannot say. */
  consumerCount?(side: number): Promise<number>;
  close(): Promise<void>;
}

function memoryBench(sides: number): Bench {
  const brokers = Array.from({ length: sides }, () => new MemoryBroker());
  return {
    name: 'memory',
    publish: (side, id, body) => void brokers[side]!.publishJson('work', body, { id }),
    consumer: (side, options) => memoryConsumer({ ...options, broker: brokers[side]!, queue: 'work' }),
    deadLetterQueue: async (side) => brokers[side]!.depth('work.dlq').ready,
    close: async () => brokers.forEach((b) => b.close()),
  };
}

async function rabbitBench(sides: number): Promise<Bench> {
  const url = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
  const { rabbitConsumer } = await import('../../adapters/rabbitmq/index.js');
  const admin: ChannelModel = await connect(url);
  const pub: ConfirmChannel = await admin.createConfirmChannel();
  const probe: Channel = await admin.createChannel();
  const queues = Array.from({ length: sides }, () => `sluice-bench-outage-${randomUUID().slice(0, 8)}`);
  for (const q of queues) await pub.assertQueue(q, { durable: false });
  return {
    name: 'rabbitmq',
    publish: (side, id, body) => void pub.sendToQueue(queues[side]!, Buffer.from(JSON.stringify(body)), { messageId: id, contentType: 'application/json' }),
    consumer: (side, options) => rabbitConsumer({ ...options, url, queue: queues[side]!, declare: { durable: false } }),
    deadLetterQueue: async (side) => (await probe.checkQueue(`${queues[side]!}.dlq`)).messageCount,
    consumerCount: async (side) => (await probe.checkQueue(queues[side]!)).consumerCount,
    close: async () => {
      await pub.waitForConfirms().catch(() => {});
      for (const q of queues) {
        await probe.deleteQueue(q).catch(() => {});
        await probe.deleteQueue(`${q}.dlq`).catch(() => {});
      }
      await admin.close();
    },
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface SideRun {
  consumer: Consumer;
  downstream: Downstream;
  breaker: ObservedBreaker | undefined;
  pool: WorkerPool;
  finish(): Promise<OutageSide>;
}

function side(bench: Bench, index: number, cfg: OutageConfig, variant: OutageVariant, t0: () => number, published: () => number): SideRun {
  const downstreamBackAt = cfg.outageAtMs + cfg.outageMs;
  const downstream = new Downstream({
    ...cfg.downstream,
    schedule: [
      { atMs: cfg.outageAtMs, failing: true },
      { atMs: downstreamBackAt, failing: false },
    ],
  });
  const breakerOptions = variant.breaker ? { name: 'downstream', ...variant.breaker } : undefined;
  const withBreaker = breakerOptions !== undefined;
  const breaker = breakerOptions ? new ObservedBreaker(breakerOptions) : undefined;
  const pool = new WorkerPool({ name: `outage-${index}`, ...cfg.pool });
  const failedByState: Record<CircuitBreakerState, number> = { closed: 0, open: 0, 'half-open': 0 };
  let failedCalls = 0;
  let probesDuringOutage = 0;
  const consumer = bench.consumer(index, {
    pool,
    retry: cfg.retry,
    handlerTimeoutMs: 5_000,
    flow: { gates: breaker ? [breaker] : [] },
    handler: async (message, { signal }) => {
      const state = breaker?.admittedIn.get(message) ?? 'closed';
      const failing = downstream.state.failing;
      if (failing && state === 'half-open') probesDuringOutage++;
      try {
        await downstream.call(signal);
      } catch (error) {
        if (error instanceof DownstreamUnavailableError) {
          failedCalls++;
          failedByState[state]++;
        }
        throw error;
      }
    },
  });

  let deadLettered = 0;
  let excused = 0;
  let gated = 0;
  consumer.on('deadLettered', () => deadLettered++);
  consumer.on('givenBack', ({ reason }) => {
    if (reason === 'excused') excused++;
    else if (reason === 'gated') gated++;
  });

  // Pause / resume latencies from events: each opening waits for the consumer's pause under the breaker's name.
  const pauseMs: number[] = [];
  const resumeMs: number[] = [];
  let openedAt: number | undefined;
  let closedAt: number | undefined;
  let backToClosedMs: number | undefined;
  let halfOpenRounds = 0;
  const name = breaker?.name ?? '';
  const pausedByBreaker = () => consumer.status().pausedBy.includes(name);
  consumer.on('paused', ({ reason }) => {
    if (reason !== name || openedAt === undefined) return;
    pauseMs.push(t0() - openedAt);
    openedAt = undefined;
  });
  consumer.on('resumed', ({ reason }) => {
    if (reason !== name || closedAt === undefined) return;
    resumeMs.push(t0() - closedAt);
    closedAt = undefined;
  });
  // Broker-side view (RabbitMQ): the queue's consumer count, polled.
  const brokerPauseMs: number[] = [];
  const brokerResumeMs: number[] = [];
  let brokerWaitZeroSince: number | undefined;
  let brokerWaitOneSince: number | undefined;
  breaker?.on('open', () => {
    if (pausedByBreaker()) pauseMs.push(0);
    else openedAt = t0();
    brokerWaitZeroSince = t0();
    brokerWaitOneSince = undefined;
  });
  breaker?.on('halfOpen', () => halfOpenRounds++);
  breaker?.on('close', () => {
    const now = t0();
    if (backToClosedMs === undefined && now >= downstreamBackAt) backToClosedMs = now - downstreamBackAt;
    if (pausedByBreaker()) closedAt = now;
    else resumeMs.push(0);
    brokerWaitZeroSince = undefined;
    brokerWaitOneSince = now;
  });
  let polling = bench.consumerCount !== undefined && withBreaker;
  const poller = (async () => {
    while (polling) {
      const count = await bench.consumerCount!(index).catch(() => undefined);
      const now = t0();
      if (count === 0 && brokerWaitZeroSince !== undefined) {
        brokerPauseMs.push(now - brokerWaitZeroSince);
        brokerWaitZeroSince = undefined;
      }
      if (count !== undefined && count > 0 && brokerWaitOneSince !== undefined) {
        brokerResumeMs.push(now - brokerWaitOneSince);
        brokerWaitOneSince = undefined;
      }
      await sleep(20);
    }
  })();

  return {
    consumer,
    downstream,
    breaker,
    pool,
    async finish() {
      polling = false;
      await poller;
      const status = consumer.status();
      return {
        variant,
        published: published(),
        handled: status.handled,
        deadLettered,
        deadLetterQueue: await bench.deadLetterQueue(index),
        failedCalls,
        failedByState,
        probesDuringOutage,
        halfOpenRounds,
        opened: breaker?.status().opened ?? 0,
        pauseMs,
        resumeMs,
        ...(bench.consumerCount && withBreaker ? { brokerPauseMs, brokerResumeMs } : {}),
        backToClosedMs,
        excused,
        gated,
        settled: status.handled + status.deadLettered === published(),
      };
    },
  };
}

/** Runs the scenario once on `broker`: both sides at the same time, the same arrivals and the same downstream schedule. */
export async function outageScenario(broker: 'memory' | 'rabbitmq', cfg: OutageConfig = outageConfig()): Promise<OutageResult> {
  const bench = broker === 'memory' ? memoryBench(cfg.variants.length) : await rabbitBench(cfg.variants.length);
  let start = 0;
  const t0 = () => performance.now() - start;
  let published = 0;
  const sides = cfg.variants.map((v, i) => side(bench, i, cfg, v, t0, () => published));
  try {
    await Promise.all(sides.map((s) => s.consumer.start()));
    start = performance.now();
    for (const s of sides) s.downstream.start();
    // Steady arrivals: as many as are due by now, every 5 ms, to both sides.
    const total = Math.round((cfg.ratePerSecond * cfg.runMs) / 1000);
    while (published < total) {
      const due = Math.min(total, Math.floor((t0() * cfg.ratePerSecond) / 1000));
      for (; published < due; published++) {
        const id = `m-${published}`;
        for (let i = 0; i < sides.length; i++) await bench.publish(i, id, { id, amountCents: 100 + published });
      }
      await sleep(5);
    }
    // Let both settle what is left (the breaker's backlog of the outage).
    const deadline = performance.now() + cfg.settleMs;
    const settled = () => sides.every((s) => s.consumer.status().handled + s.consumer.status().deadLettered >= published);
    while (!settled() && performance.now() < deadline) await sleep(20);
    await Promise.all(sides.map((s) => s.consumer.stop({ timeoutMs: 5_000 })));
    return { broker: bench.name, config: cfg, sides: await Promise.all(sides.map((s) => s.finish())) };
  } finally {
    for (const s of sides) {
      s.downstream.stop();
      await s.pool.close({ drain: false }).catch(() => {});
    }
    await bench.close();
  }
}

const ms = (values: readonly number[] | undefined) =>
  values === undefined || values.length === 0 ? 'n/a' : `${fmt(Math.max(...values))} ms (max of ${values.length}: ${values.map((v) => fmt(v)).join(', ')})`;

/** The scenario's rows for the flow section: one column per variant. */
export function outageTable(r: OutageResult): string {
  const sides = r.sides;
  const withBreaker = sides.filter((x) => x.variant.breaker);
  const cell = (x: OutageSide, f: (x: OutageSide) => string) => (x.variant.breaker ? f(x) : '—');
  const row = (measure: string, f: (x: OutageSide) => string, target: string, all = false) => [measure, ...sides.map((x) => (all ? f(x) : cell(x, f))), target];
  const rabbit = withBreaker.some((x) => x.brokerPauseMs !== undefined);
  const rows: string[][] = [
    row('messages published / handled', (x) => `${fmt(x.published)} / ${fmt(x.handled)}${x.settled ? '' : ' (NOT all settled)'}`, 'all settled', true),
    row('dead-lettered (in the dead-letter queue)', (x) => `**${fmt(x.deadLettered)}** (${fmt(x.deadLetterQueue)})`, '0 with the breaker', true),
    row('downstream calls while it was down', (x) => fmt(x.failedCalls), 'after opening: only the probes', true),
    row('… admitted closed (before it opened) / open (admitted before, ran after) / half-open (probes)', (x) => `${fmt(x.failedByState.closed)} / ${fmt(x.failedByState.open)} / ${fmt(x.failedByState['half-open'])}`, ''),
    row('probes let through while down (half-open rounds in all; times opened)', (x) => `${fmt(x.probesDuringOutage)} (${x.halfOpenRounds}; ${x.opened})`, `halfOpenProbes (${withBreaker[0]?.variant.breaker?.halfOpenProbes ?? '?'}) per round`),
    row('given back without an attempt: excused failures / refused by the breaker', (x) => `${fmt(x.excused)} / ${fmt(x.gated)}`, ''),
    row('opened → consumer paused (event, reason = breaker; 0: already paused by it)', (x) => ms(x.pauseMs), '≤ 1 s'),
    ...(rabbit ? [row('opened → the queue has no consumer (polled every 20 ms)', (x) => ms(x.brokerPauseMs), '≤ 1 s')] : []),
    row('closed (last probe succeeded) → consumer resumed (event)', (x) => ms(x.resumeMs), '≤ 1 s'),
    ...(rabbit ? [row('closed → the queue has a consumer again (polled every 20 ms)', (x) => ms(x.brokerResumeMs), '≤ 1 s')] : []),
    row('downstream back → breaker closed', (x) => (x.backToClosedMs === undefined ? 'never' : `${fmt(x.backToClosedMs)} ms`), `≤ openMs (${fmt(withBreaker[0]?.variant.breaker?.openMs ?? 0)} ms) + a probe`),
  ];
  return table(['measure', ...sides.map((x) => x.variant.label), 'target'], rows);
}

export function outageHeading(r: OutageResult): string {
  const c = r.config;
  const b = c.variants.find((v) => v.breaker)?.breaker;
  const scaled = c.scale === 1 ? '' : ` **Scaled by FLOW_SCALE=${c.scale}** (the issue's run is 30 s with a 10 s outage).`;
  return (
    `On ${r.broker}: the downstream (${c.downstream.capacity} at once × ${c.downstream.latencyMs} ms ± ${c.downstream.jitter * 100} %, ` +
    `queueing the rest; failing calls fail in ${c.downstream.failLatencyMs} ms) fails everything from ${fmt(c.outageAtMs / 1000, 1)} s to ${fmt((c.outageAtMs + c.outageMs) / 1000, 1)} s of a ${fmt(c.runMs / 1000, 1)} s run; ` +
    `${c.ratePerSecond} messages/s arrive throughout; pool ${c.pool.maxConcurrency} + ${c.pool.maxQueueSize}, ${c.retry.maxAttempts} attempts ` +
    `(backoff from ${c.retry.backoff?.initialMs} ms)` +
    (b ? `; breakers: failureRate ${b.failureRate} over ${fmt(b.windowMs ?? 0)} ms (minCalls ${b.minCalls}), openMs ${fmt(b.openMs ?? 0)}, halfOpenProbes ${b.halfOpenProbes}` : '') +
    `. Every side runs at the same time on its own queue, pool and downstream (same schedule, same arrivals).${scaled}`
  );
}
