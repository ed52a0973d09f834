/**
 * Idle cost: the process CPU of N idle consumers (nothing to consume) for sluice against the raw
 * client's own idle consume loop on the same broker, in the same run, contenders alternating.
 * A service with forty queues is mostly idle, so what an idle consumer costs matters.
 *
 *   node --expose-gc --import tsx bench/idle.ts                 # all brokers that answer
 *   node --expose-gc --import tsx bench/idle.ts nats rabbitmq   # some of them
 *   IDLE_N=20 IDLE_WINDOW_MS=10000 IDLE_ROUNDS=3 node --expose-gc --import tsx bench/idle.ts
 *
 * Each round starts one contender, lets it settle (connect, first pulls, group joins), reads
 * process.cpuUsage() over the window, and stops it; the other contender follows. Reported: the
 * median CPU (% of one core) per contender and sluice / raw. With --expose-gc, a full GC runs
 * before each window: otherwise V8's memory reducer collects what the previous contender's setup
 * left behind (tens of ms) inside whichever window comes next.
 */
import { randomUUID } from 'node:crypto';
import { connect as connectNet } from 'node:net';
import { pathToFileURL } from 'node:url';
import { fmt, table } from './harness.js';

const N = Number(process.env.IDLE_N ?? 20);
const WINDOW_MS = Number(process.env.IDLE_WINDOW_MS ?? 10_000);
const SETTLE_MS = Number(process.env.IDLE_SETTLE_MS ?? 3_000);
const ROUNDS = Number(process.env.IDLE_ROUNDS ?? 3);
const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';
const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const KAFKA_BROKERS = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',');

type Stop = () => Promise<void>;
interface Contender {
  name: string;
  /** Starts `n` idle consumers; resolves with what stops them. */
  start(n: number): Promise<Stop>;
}
interface Broker {
  name: string;
  /** host:port that must answer, else the broker is reported as not measured. */
  probe: [string, number];
  setup(): Promise<{ sluice: Contender; raw: Contender; teardown(): Promise<void> }>;
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

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

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
    let round = 0;
    const durables = async (prefix: string, n: number) => {
      const names = Array.from({ length: n }, (_, i) => `${prefix}${round}-${i}`);
      for (const name of names) await jsm.consumers.add(stream, { durable_name: name, ack_policy: AckPolicy.Explicit });
      return names;
    };
    return {
      sluice: {
        name: `${N} sluice natsConsumer on one pool (64 + 64), one connection`,
        async start(n) {
          round++;
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
        name: `${N} raw nats.js consume() loops, one connection`,
        async start(n) {
          round++;
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
        name: `${N} sluice rabbitConsumer on one pool (64 + 64)`,
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
        name: `${N} raw amqplib consume() (a connection each, prefetch 128)`,
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
    return {
      sluice: {
        name: `${N} sluice kafkaConsumer on one pool (64 + 64)`,
        async start(n) {
          const names = await make(n);
          const pool = new WorkerPool({ maxConcurrency: 64, maxQueueSize: 64 });
          const consumers = names.map((topic) =>
            kafkaConsumer({ kafka: { brokers: KAFKA_BROKERS, clientId: 'sluice-idle', logLevel: logLevel.NOTHING }, groupId: `${topic}-g`, topics: [topic], pool, handler: noop } as never),
          );
          await Promise.all(consumers.map((c) => c.start()));
          return async () => {
            await Promise.all(consumers.map((c) => c.stop()));
            await pool.close();
          };
        },
      },
      raw: {
        name: `${N} raw kafkajs consumer.run({ eachMessage })`,
        async start(n) {
          const names = await make(n);
          const consumers = await Promise.all(
            names.map(async (topic) => {
              const c = client.consumer({ groupId: `${topic}-g` });
              await c.connect();
              await c.subscribe({ topics: [topic], fromBeginning: true });
              await c.run({ eachMessage: noop });
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

async function measure(c: Contender): Promise<number> {
  const stop = await c.start(N);
  try {
    await sleep(SETTLE_MS);
    const collect = (globalThis as { gc?: () => void }).gc;
    collect?.();
    collect?.();
    return await cpuOver(WINDOW_MS);
  } finally {
    await stop();
  }
}

async function measureShort(c: Contender): Promise<void> {
  const stop = await c.start(N);
  await sleep(1000);
  await stop();
}

async function measureBroker(b: Broker): Promise<string[][]> {
  if (!(await reachable(...b.probe))) return [[b.name, `not measured: nothing listens on ${b.probe.join(':')}`, '', '', '']];
  const { sluice, raw, teardown } = await b.setup();
  const ours: number[] = [];
  const theirs: number[] = [];
  try {
    // One round of each, not counted: the first contender in a process also pays for loading and compiling.
    await measureShort(sluice);
    await measureShort(raw);
    for (let round = 0; round < ROUNDS; round++) {
      // Alternate who goes first, so a drift of the machine's load does not favour one side.
      if (round % 2 === 0) {
        ours.push(await measure(sluice));
        theirs.push(await measure(raw));
      } else {
        theirs.push(await measure(raw));
        ours.push(await measure(sluice));
      }
      console.error(`idle ${b.name} round ${round + 1}: sluice ${ours.at(-1)!.toFixed(2)} %, raw ${theirs.at(-1)!.toFixed(2)} %`);
    }
  } finally {
    await teardown();
  }
  const a = median(ours);
  const r = median(theirs);
  return [[b.name, `${fmt(a, 2)} % (${sluice.name})`, `${fmt(r, 2)} % (${raw.name})`, r > 0 ? `${(a / r).toFixed(2)}×` : 'n/a', '≤ 1.00×']];
}

const BROKERS: Record<string, Broker> = { nats, rabbitmq, kafka };

export async function run(only: string[] = []): Promise<string> {
  const rows: string[][] = [];
  const floor = await cpuOver(Math.min(WINDOW_MS, 3_000));
  for (const [key, broker] of Object.entries(BROKERS)) {
    if (only.length > 0 && !only.includes(key)) continue;
    try {
      rows.push(...(await measureBroker(broker)));
    } catch (error) {
      rows.push([broker.name, `not measured: ${error instanceof Error ? error.message : String(error)}`, '', '', '']);
    }
  }
  return [
    '## Idle cost',
    '',
    `${N} idle consumers per contender (nothing published), process CPU over ${WINDOW_MS / 1000} s after ${SETTLE_MS / 1000} s to settle, median of ${ROUNDS} alternating rounds after a warm-up round of each, % of one core${(globalThis as { gc?: unknown }).gc ? ', a full GC before each window' : ''}. The process with nothing running: ${fmt(floor, 2)} %.`,
    '',
    table(['broker', 'sluice', 'raw client', 'sluice / raw', 'target'], rows),
  ].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(await run(process.argv.slice(2)));
  process.exit(0);
}
