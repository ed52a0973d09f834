/**
 * Idle cost: the process CPU of N idle consumers (nothing to consume) for sluice against the raw
 * client's own idle consume loop on the same broker, with the same client settings. A service
 * with forty queues is mostly idle, so what an idle consumer costs matters.
 *
 *   node --expose-gc --import tsx bench/idle.ts                 # all brokers that answer
 *   node --expose-gc --import tsx bench/idle.ts nats kafka      # some of them
 *   IDLE_N=20 IDLE_WINDOW_MS=15000 IDLE_ROUNDS=5 node --expose-gc --import tsx bench/idle.ts
 *   IDLE_PROFILE_DIR=/tmp/prof node … bench/idle.ts kafka        # also a .cpuprofile of each window
 *
 * Each measurement runs in a process of its own (`bench/idle.ts --child <broker> <contender>`):
 * in one process, the contender measured second paid for what the first left behind (V8's memory
 * reducer collecting the other's setup, timers and sockets being closed) and the first for
 * loading and compiling. The child makes its own topics / queues / stream, starts N consumers,
 * lets them settle (connected, joined, first long polls open), runs a full GC, then reads
 * process.cpuUsage() over the window in slices (a spike in one slice shows in the distribution),
 * and reports. Rounds alternate which contender goes first; the ratio reported is the median of
 * the per-round ratios (a slow stretch of the shared machine hits both sides of a round alike).
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { connect as connectNet } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { fmt, table } from './harness.js';

const N = Number(process.env.IDLE_N ?? 20);
const WINDOW_MS = Number(process.env.IDLE_WINDOW_MS ?? 15_000);
const SLICE_MS = Number(process.env.IDLE_SLICE_MS ?? 3_000);
const SETTLE_MS = Number(process.env.IDLE_SETTLE_MS ?? 5_000);
const ROUNDS = Number(process.env.IDLE_ROUNDS ?? 5);
const PROFILE_DIR = process.env.IDLE_PROFILE_DIR;
const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const KAFKA_BROKERS = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');
/**
 * The group settings both Kafka contenders run with: sluice's defaults, given to both explicitly.
 * kafkajs's own default maxWaitTimeInMs is 5000 (sluice's is 500, so that a paused-everything loop
 * looks again soon); an idle consumer's cost is mostly its empty fetches, one per maxWaitTimeInMs,
 * so comparing the two defaults compared 2 fetches/s with 0.2.
 */
const KAFKA_GROUP = { sessionTimeout: 30_000, heartbeatInterval: 3_000, rebalanceTimeout: 60_000, maxWaitTimeInMs: 500 };

type Stop = () => Promise<void>;
interface Contender {
  name: string;
  /** Starts `n` idle consumers; resolves, once they are connected and joined, with what stops them. */
  start(n: number): Promise<Stop>;
}
interface Broker {
  name: string;
  /** host:port that must answer, else the broker is reported as not measured. */
  probe: [string, number];
  setup(): Promise<{ sluice: Contender; raw: Contender; teardown(): Promise<void> }>;
}
type Side = 'sluice' | 'raw';
/** What a child reports: CPU % of one core over the whole window and per slice. */
interface Sample {
  name: string;
  cpu: number;
  slices: number[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const noop = async () => {};

function reachable(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connectNet(port, host, () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(false));
    s.setTimeout(1000, () => (s.destroy(), resolve(false)));
  });
}

/** Process CPU (user + system) as % of one core over `ms`. */
async function cpuOver(ms: number): Promise<number> {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await sleep(ms);
  const c = process.cpuUsage(c0);
  const elapsedUs = Number(process.hrtime.bigint() - t0) / 1000;
  return ((c.user + c.system) / elapsedUs) * 100;
}

const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const median = (xs: number[]) => {
  const s = sorted(xs);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

const nats: Broker = {
  name: 'NATS JetStream',
  probe: hostPort(NATS_URL, 4222),
  async setup() {
    const { AckPolicy, connect } = await import('nats');
    const { natsConsumer } = await import('../adapters/nats/index.js');
    const { WorkerPool } = await import('../src/pool/worker-pool.js');
    const nc = await connect({ servers: NATS_URL });
    const jsm = await nc.jetstreamManager();
    const stream = `IDLE_${randomUUID().slice(0, 8).toUpperCase()}`;
    await jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.>`] });
    const durables = async (prefix: string, n: number) => {
      const names = Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
      for (const name of names) await jsm.consumers.add(stream, { durable_name: name, ack_policy: AckPolicy.Explicit });
      return names;
    };
    return {
      sluice: {
        name: 'sluice natsConsumer on one pool (64 + 64), one connection',
        async start(n) {
          const names = await durables('s', n);
          const conn = await connect({ servers: NATS_URL });
          const pool = new WorkerPool({ maxConcurrency: 64, maxQueueSize: 64 });
          const consumers = names.map((durable) => natsConsumer({ connection: conn, stream, durable, pool, handler: noop }));
          await Promise.all(consumers.map((c) => c.start()));
          return async () => {
            await Promise.all(consumers.map((c) => c.stop()));
            await pool.close();
            await conn.close();
          };
        },
      },
      raw: {
        name: 'raw nats.js consume() loops, one connection',
        async start(n) {
          const names = await durables('r', n);
          const conn = await connect({ servers: NATS_URL });
          const js = conn.jetstream();
          const iterators = await Promise.all(names.map(async (durable) => (await js.consumers.get(stream, durable)).consume({ max_messages: 128 })));
          const loops = iterators.map(async (it) => {
            for await (const m of it) m.ack();
          });
          return async () => {
            for (const it of iterators) it.stop();
            await Promise.allSettled(loops);
            await conn.close();
          };
        },
      },
      async teardown() {
        await jsm.streams.delete(stream).catch(() => {});
        await nc.close();
      },
    };
  },
};

const rabbitmq: Broker = {
  name: 'RabbitMQ',
  probe: hostPort(AMQP_URL, 5672),
  async setup() {
    const amqp = await import('amqplib');
    const { rabbitConsumer } = await import('../adapters/rabbitmq/index.js');
    const { WorkerPool } = await import('../src/pool/worker-pool.js');
    const admin = await amqp.connect(AMQP_URL);
    const ch = await admin.createChannel();
    const queues: string[] = [];
    const make = async (n: number) => {
      const names = Array.from({ length: n }, () => `sluice-idle-${randomUUID().slice(0, 8)}`);
      for (const q of names) await ch.assertQueue(q, { durable: false });
      queues.push(...names);
      return names;
    };
    return {
      sluice: {
        name: 'sluice rabbitConsumer on one pool (64 + 64)',
        async start(n) {
          const names = await make(n);
          const pool = new WorkerPool({ maxConcurrency: 64, maxQueueSize: 64 });
          const consumers = names.map((queue) => rabbitConsumer({ url: AMQP_URL, queue, declare: { durable: false }, pool, handler: noop }));
          await Promise.all(consumers.map((c) => c.start()));
          return async () => {
            await Promise.all(consumers.map((c) => c.stop()));
            await pool.close();
          };
        },
      },
      raw: {
        name: 'raw amqplib consume() (a connection each, prefetch 128)',
        async start(n) {
          const names = await make(n);
          const conns = await Promise.all(
            names.map(async (queue) => {
              const conn = await amqp.connect(AMQP_URL);
              const c = await conn.createChannel();
              await c.prefetch(128);
              await c.consume(queue, (m) => m && c.ack(m));
              return conn;
            }),
          );
          return async () => {
            await Promise.all(conns.map((c) => c.close()));
          };
        },
      },
      async teardown() {
        for (const q of queues) await ch.deleteQueue(q).catch(() => {});
        await admin.close();
      },
    };
  },
};

const kafka: Broker = {
  name: 'Kafka',
  probe: hostPort(`kafka://${KAFKA_BROKERS[0]}`, 9092),
  async setup() {
    const { Kafka, logLevel } = await import('kafkajs');
    const { kafkaConsumer } = await import('../adapters/kafka/index.js');
    const { WorkerPool } = await import('../src/pool/worker-pool.js');
    const client = new Kafka({ brokers: KAFKA_BROKERS, clientId: 'sluice-idle-bench', logLevel: logLevel.NOTHING });
    const admin = client.admin();
    await admin.connect();
    const topics: string[] = [];
    const make = async (n: number) => {
      const names = Array.from({ length: n }, () => `sluice-idle-${randomUUID().slice(0, 8)}`);
      await admin.createTopics({ topics: names.map((topic) => ({ topic, numPartitions: 1 })), waitForLeaders: true });
      topics.push(...names);
      return names;
    };
    const settings = `maxWaitTimeInMs ${KAFKA_GROUP.maxWaitTimeInMs}, heartbeatInterval ${KAFKA_GROUP.heartbeatInterval}, sessionTimeout ${KAFKA_GROUP.sessionTimeout}`;
    return {
      sluice: {
        name: `sluice kafkaConsumer on one pool (64 + 64), ${settings}`,
        async start(n) {
          const names = await make(n);
          const pool = new WorkerPool({ maxConcurrency: 64, maxQueueSize: 64 });
          const consumers = names.map((topic) =>
            kafkaConsumer({ kafka: { brokers: KAFKA_BROKERS, clientId: 'sluice-idle', logLevel: logLevel.NOTHING }, groupId: `${topic}-g`, topics: [topic], fromBeginning: true, ...KAFKA_GROUP, pool, handler: noop }),
          );
          await Promise.all(consumers.map((c) => c.start())); // resolves once joined
          return async () => {
            await Promise.all(consumers.map((c) => c.stop()));
            await pool.close();
          };
        },
      },
      raw: {
        name: `raw kafkajs consumer.run({ eachMessage }), ${settings}`,
        async start(n) {
          const names = await make(n);
          const consumers = await Promise.all(
            names.map(async (topic) => {
              const c = client.consumer({ groupId: `${topic}-g`, ...KAFKA_GROUP });
              const joined = new Promise((r) => c.on(c.events.GROUP_JOIN, r));
              await c.connect();
              await c.subscribe({ topics: [topic], fromBeginning: true });
              await c.run({ eachMessage: noop });
              await joined; // as sluice's start(): run() resolves before the group is joined
              return c;
            }),
          );
          return async () => {
            await Promise.all(consumers.map((c) => c.disconnect()));
          };
        },
      },
      async teardown() {
        await admin.deleteTopics({ topics }).catch(() => {});
        await admin.disconnect();
      },
    };
  },
};

function hostPort(url: string, fallbackPort: number): [string, number] {
  const u = new URL(url);
  return [u.hostname || '127.0.0.1', Number(u.port) || fallbackPort];
}

const BROKERS: Record<string, Broker> = { nats, rabbitmq, kafka };

/** In the child: the idle CPU of one contender (or of the bare process: `floor`). */
async function child(brokerKey: string, side: Side | 'floor'): Promise<Sample> {
  const collect = (globalThis as { gc?: () => void }).gc;
  const window = async (name: string): Promise<Sample> => {
    collect?.();
    collect?.();
    const stopProfile = PROFILE_DIR ? await profile() : undefined;
    const slices: number[] = [];
    const c0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    for (let t = 0; t < WINDOW_MS; t += SLICE_MS) slices.push(await cpuOver(Math.min(SLICE_MS, WINDOW_MS - t)));
    const c = process.cpuUsage(c0);
    const cpu = ((c.user + c.system) / (Number(process.hrtime.bigint() - t0) / 1000)) * 100;
    await stopProfile?.(`${brokerKey}-${side}-${process.pid}.cpuprofile`);
    return { name, cpu, slices };
  };
  if (side === 'floor') {
    await sleep(SETTLE_MS);
    return window('bare process');
  }
  const broker = BROKERS[brokerKey];
  if (!broker) throw new Error(`unknown broker ${brokerKey}`);
  const contenders = await broker.setup();
  try {
    const contender = contenders[side];
    const stop = await contender.start(N);
    try {
      await sleep(SETTLE_MS);
      return await window(contender.name);
    } finally {
      await stop();
    }
  } finally {
    await contenders.teardown();
  }
}

/** A CPU profile of the window only (setup and teardown left out), written to IDLE_PROFILE_DIR. */
async function profile(): Promise<(file: string) => Promise<void>> {
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return async (file) => {
    const { profile: p } = await session.post('Profiler.stop');
    writeFileSync(join(PROFILE_DIR!, file), JSON.stringify(p));
    session.disconnect();
  };
}

/** In the parent: one measurement in a fresh process. */
async function measure(broker: string, side: Side | 'floor'): Promise<Sample> {
  const script = fileURLToPath(import.meta.url);
  const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '--import', 'tsx', script, '--child', broker, side], { maxBuffer: 1 << 20, timeout: WINDOW_MS + SETTLE_MS + 120_000 });
  const line = stdout.trim().split('\n').at(-1)!;
  return JSON.parse(line) as Sample;
}

const pct = (x: number) => fmt(x, 2);
/** min / median / max, for the distribution column. */
const spread = (xs: number[], f: (x: number) => string) => {
  const s = sorted(xs);
  return `${f(s[0]!)} / ${f(median(s))} / ${f(s.at(-1)!)}`;
};

async function measureBroker(key: string, b: Broker): Promise<string[][]> {
  if (!(await reachable(...b.probe))) return [[b.name, `not measured: nothing listens on ${b.probe.join(':')}`, '', '', '', '']];
  const ours: Sample[] = [];
  const theirs: Sample[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate who goes first, so a drift of the machine's load does not favour one side.
    if (round % 2 === 0) {
      ours.push(await measure(key, 'sluice'));
      theirs.push(await measure(key, 'raw'));
    } else {
      theirs.push(await measure(key, 'raw'));
      ours.push(await measure(key, 'sluice'));
    }
    const s = ours.at(-1)!;
    const r = theirs.at(-1)!;
    console.error(`idle ${b.name} round ${round + 1}: sluice ${pct(s.cpu)} % [${s.slices.map(pct).join(' ')}], raw ${pct(r.cpu)} % [${r.slices.map(pct).join(' ')}], ${(s.cpu / r.cpu).toFixed(2)}×`);
  }
  const ratios = ours.map((s, i) => s.cpu / theirs[i]!.cpu);
  const times = (x: number) => `${x.toFixed(2)}×`;
  return [
    [
      b.name,
      `${pct(median(ours.map((s) => s.cpu)))} % (${N} ${ours[0]!.name})`,
      `${pct(median(theirs.map((s) => s.cpu)))} % (${N} ${theirs[0]!.name})`,
      times(median(ratios)),
      `ratios ${spread(ratios, times)}; ${SLICE_MS / 1000} s slices: sluice ${spread(ours.flatMap((s) => s.slices), pct)} %, raw ${spread(theirs.flatMap((s) => s.slices), pct)} %`,
      '≤ 1.00×',
    ],
  ];
}

export async function run(only: string[] = []): Promise<string> {
  const rows: string[][] = [];
  const floor = await measure('none', 'floor');
  for (const [key, broker] of Object.entries(BROKERS)) {
    if (only.length > 0 && !only.includes(key)) continue;
    try {
      rows.push(...(await measureBroker(key, broker)));
    } catch (error) {
      rows.push([broker.name, `not measured: ${error instanceof Error ? error.message : String(error)}`, '', '', '', '']);
    }
  }
  return [
    '## Idle cost',
    '',
    `${N} idle consumers per contender (nothing published), each measurement in a process of its own: process CPU over ${WINDOW_MS / 1000} s after ${SETTLE_MS / 1000} s to settle and a full GC, % of one core; ${ROUNDS} rounds alternating which contender goes first. CPU columns: medians; sluice / raw: the median of the per-round ratios; distribution: per-round ratios and ${SLICE_MS / 1000} s slices of every window as min / median / max. A bare process over the same window: ${pct(floor.cpu)} %.`,
    '',
    table(['broker', 'sluice', 'raw client', 'sluice / raw', 'distribution', 'target'], rows),
  ].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  if (process.argv[2] === '--child') {
    const sample = await child(process.argv[3]!, process.argv[4] as Side | 'floor');
    console.log(JSON.stringify(sample));
  } else {
    console.log(await run(process.argv.slice(2)));
  }
  process.exit(0);
}
