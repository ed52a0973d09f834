/**
 * Where the integration tests find their brokers. For each broker, in order:
 *   1. the env var (AMQP_URL, NATS_URL, KAFKA_BROKERS comma-separated) when set;
 *   2. a broker already listening on the standard 127.0.0.1 port (5672 / 4222 / 9092, or KAFKA_PORT
 *      when set: the port `scripts/kafka` then uses too);
 *   3. a container started with testcontainers, when a Docker engine answers (rabbitmq:4.2-management,
 *      nats:2.12, apache/kafka:4.1.1);
 *   4. Kafka only: `scripts/kafka start` (Kafka 4.1.1 from Maven Central jars, see docs/kafka-local.md);
 *   5. otherwise an Error that says how to start the broker. Tests never skip: no broker = failure.
 * Each answer (or failure) is cached for the life of the process.
 */
import { execFile } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

type Testcontainers = typeof import('testcontainers');

const LOCAL = '127.0.0.1';
const KAFKA_SCRIPT = fileURLToPath(new URL('../../scripts/kafka', import.meta.url));

interface Endpoint {
  host: string;
  port: number;
}

interface BrokerSpec {
  name: string;
  envVar: string;
  port: number;
  /** The address in the form the client takes, for a broker at host:port. */
  address(endpoint: Endpoint): string;
  /** Start a throwaway container; the testcontainers reaper removes it when the process ends. */
  container(tc: Testcontainers, dockerHost: string): Promise<Endpoint>;
  /** Last resort without Docker. */
  startLocally?(): Promise<void>;
  howToStart: string;
}

const RABBITMQ: BrokerSpec = {
  name: 'RabbitMQ',
  envVar: 'AMQP_URL',
  port: 5672,
  address: ({ host, port }) => `amqp://guest:guest@${host}:${port}`,
  async container(tc) {
    // 4.2, not 4.3: 4.3 refuses transient (durable: false) non-exclusive queues by default, and
    // the smoke test in brokers.test.ts declares one.
    const c = await new tc.GenericContainer('rabbitmq:4.2-management')
      .withExposedPorts(5672)
      .withWaitStrategy(tc.Wait.forLogMessage(/Server startup complete/))
      .withStartupTimeout(180_000)
      .start();
    return { host: c.getHost(), port: c.getMappedPort(5672) };
  },
  howToStart: '`rabbitmq-server -detached` (Debian package), or `docker compose up -d rabbitmq`',
};

const NATS: BrokerSpec = {
  name: 'NATS',
  envVar: 'NATS_URL',
  port: 4222,
  address: ({ host, port }) => `nats://${host}:${port}`,
  async container(tc) {
    const c = await new tc.GenericContainer('nats:2.12')
      .withCommand(['-js', '-sd', '/data'])
      .withExposedPorts(4222)
      .withWaitStrategy(tc.Wait.forLogMessage(/Server is ready/))
      .withStartupTimeout(120_000)
      .start();
    return { host: c.getHost(), port: c.getMappedPort(4222) };
  },
  howToStart:
    '`start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- ' +
    '-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log`, ' +
    'or `docker compose up -d nats`',
};

const KAFKA: BrokerSpec = {
  name: 'Kafka',
  envVar: 'KAFKA_BROKERS',
  port: Number(process.env.KAFKA_PORT) || 9092,
  address: ({ host, port }) => `${host}:${port}`,
  async container(tc, dockerHost) {
    // Kafka hands clients the advertised address, so it must be the one reachable from here:
    // bind a known free host port and advertise it (same settings as docker-compose.yml).
    const hostPort = await freePort();
    await new tc.GenericContainer('apache/kafka:4.1.1')
      .withExposedPorts({ container: 9092, host: hostPort })
      .withEnvironment({
        CLUSTER_ID: 'hycEcYRdfxR01O8AFP65iQ', // any base64url UUID (22 chars)
        KAFKA_NODE_ID: '1',
        KAFKA_PROCESS_ROLES: 'broker,controller',
        KAFKA_LISTENERS: 'PLAINTEXT_HOST://0.0.0.0:9092,PLAINTEXT://0.0.0.0:19092,CONTROLLER://0.0.0.0:9093',
        KAFKA_ADVERTISED_LISTENERS: `PLAINTEXT_HOST://${dockerHost}:${hostPort},PLAINTEXT://localhost:19092`,
        KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT',
        KAFKA_INTER_BROKER_LISTENER_NAME: 'PLAINTEXT',
        KAFKA_CONTROLLER_LISTENER_NAMES: 'CONTROLLER',
        KAFKA_CONTROLLER_QUORUM_VOTERS: '1@localhost:9093',
        KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: '1',
        KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: '1',
        KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: '1',
        KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR: '1',
        KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR: '1',
        KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: '0',
        KAFKA_NUM_PARTITIONS: '1',
        KAFKA_AUTO_CREATE_TOPICS_ENABLE: 'true',
        KAFKA_HEAP_OPTS: '-Xmx512m -Xms256m',
      })
      .withWaitStrategy(tc.Wait.forLogMessage(/Kafka Server started/))
      .withStartupTimeout(180_000)
      .start();
    return { host: dockerHost, port: hostPort };
  },
  async startLocally() {
    // Several test files may get here at once; the script serializes starts with a lock file.
    await new Promise<void>((resolve, reject) => {
      execFile(
        'bash',
        [KAFKA_SCRIPT, 'start'],
        { timeout: 300_000, maxBuffer: 4 * 1024 * 1024 },
        (error, stdout, stderr) => {
          if (error) {
            const output = `${stdout}${stderr}`.trim().split('\n').slice(-30).join('\n');
            reject(new Error(`scripts/kafka start failed (${error.message.split('\n')[0]}):\n${output}`));
          } else resolve();
        },
      );
    });
  },
  howToStart: '`npm run kafka start` (Java 17 + Maven, see docs/kafka-local.md), or `docker compose up -d kafka`',
};

/** Resolves true when something accepts a TCP connection at host:port within timeoutMs. */
function canConnect(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

let dockerProbe: Promise<{ tc: Testcontainers; host: string } | { reason: string }> | undefined;

/** testcontainers plus the engine's host, when a container runtime answers; probed once. */
function docker(): Promise<{ tc: Testcontainers; host: string } | { reason: string }> {
  dockerProbe ??= (async () => {
    try {
      const tc = await import('testcontainers');
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error('no answer within 15 s')), 15_000);
        timer.unref();
      });
      const client = await Promise.race([tc.getContainerRuntimeClient(), timeout]).finally(() =>
        clearTimeout(timer),
      );
      return { tc, host: client.info.containerRuntime.host };
    } catch (error) {
      return { reason: error instanceof Error ? error.message : String(error) };
    }
  })();
  return dockerProbe;
}

async function locate(spec: BrokerSpec): Promise<string> {
  const fromEnv = process.env[spec.envVar]?.trim();
  if (fromEnv) return fromEnv;

  const local = { host: LOCAL, port: spec.port };
  if (await canConnect(local.host, local.port)) return spec.address(local);

  const tried = [`${spec.envVar} is not set`, `nothing listens on ${LOCAL}:${spec.port}`];
  const engine = await docker();
  if ('tc' in engine) {
    try {
      return spec.address(await spec.container(engine.tc, engine.host));
    } catch (error) {
      tried.push(`testcontainers could not start ${spec.name}: ${error instanceof Error ? error.message : error}`);
    }
  } else {
    tried.push(`no Docker engine for testcontainers (${engine.reason})`);
  }

  if (spec.startLocally) {
    try {
      await spec.startLocally();
      if (await canConnect(local.host, local.port, 5000)) return spec.address(local);
      tried.push(`local start reported success but ${LOCAL}:${spec.port} does not answer`);
    } catch (error) {
      tried.push(error instanceof Error ? error.message : String(error));
    }
  }

  throw new Error(
    `No ${spec.name} broker for the integration tests. Start one with ${spec.howToStart}, ` +
      `or set ${spec.envVar}.\nTried: ${tried.join('; ')}.`,
  );
}

const cache = new Map<BrokerSpec, Promise<string>>();

function find(spec: BrokerSpec): Promise<string> {
  let found = cache.get(spec);
  if (!found) {
    found = locate(spec);
    cache.set(spec, found);
  }
  return found;
}

/** amqplib URL, e.g. amqp://guest:guest@127.0.0.1:5672 */
export function rabbitUrl(): Promise<string> {
  return find(RABBITMQ);
}

/** nats server URL, e.g. nats://127.0.0.1:4222 */
export function natsUrl(): Promise<string> {
  return find(NATS);
}

/** kafkajs brokers list, e.g. ['127.0.0.1:9092'] */
export async function kafkaBrokers(): Promise<string[]> {
  const list = await find(KAFKA);
  return list
    .split(',')
    .map((b) => b.trim())
    .filter((b) => b.length > 0);
}
