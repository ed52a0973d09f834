/**
 * A private three-node Kafka cluster for fault tests, run by `scripts/kafka-cluster` in a temp work
 * dir: nodes on 127.0.0.1:11092/12092/13092, RF 3, min.insync.replicas 2. Nodes are killed
 * (SIGKILL), stopped (controlled shutdown) and started again one at a time; `close()` stops them
 * all by pid and removes the work dir, and a process 'exit' handler SIGKILLs whatever is left if
 * the test process ends first.
 *
 *   const cluster = await startKafkaCluster({ proxied: 3 });  // node 3 reachable only through a TCP proxy
 *   const topic = await cluster.topic(6, { leader: 1 });      // node 1 the preferred leader of every partition
 *   await cluster.kill(await cluster.leaderOf(topic, 0)); ... await cluster.start(1);
 *   cluster.proxy!.cutAll();
 *   await cluster.close();
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Kafka, logLevel, type Admin } from 'kafkajs';
import { unique } from './names.js';
import { startTcpProxy, type TcpProxy } from './tcp-proxy.js';
import { until } from './wait.js';

const run = promisify(execFile);
const SCRIPT = fileURLToPath(new URL('../../scripts/kafka-cluster', import.meta.url));
/** Client ports of nodes 1, 2, 3 (controller P+1, inter-broker P+2): the Kafka helper's range. */
export const CLUSTER_PORTS = [11092, 12092, 13092] as const;
export type NodeId = 1 | 2 | 3;

export interface KafkaClusterOptions {
  /** A node whose advertised client listener is a TCP proxy in front of it (`cluster.proxy`), so clients cannot bypass the proxy. */
  proxied?: NodeId;
}

export interface KafkaCluster {
  /** Bootstrap addresses as clients use them (the proxied node by its proxy's address). */
  readonly brokers: string[];
  /** The proxy in front of the proxied node, if one was asked for. */
  readonly proxy: TcpProxy | undefined;
  /** A kafkajs admin on the cluster (test infrastructure). */
  readonly admin: Admin;
  /** A fresh RF 3 topic; `leader`: that node is every partition's preferred leader. Resolves once every partition has a leader and 3 in-sync replicas. */
  topic(partitions: number, options?: { prefix?: string; leader?: NodeId }): Promise<string>;
  /** The node leading a partition now (from the metadata of a live node). */
  leaderOf(topic: string, partition: number): Promise<number>;
  /** Resolves once every partition of the topic has a leader and all 3 replicas in sync. */
  inSync(topic: string): Promise<void>;
  /** The node coordinating a consumer group now: the leader of its `__consumer_offsets` partition. */
  coordinatorOf(groupId: string): Promise<number>;
  /** SIGKILL a node (its data stays). */
  kill(node: NodeId): Promise<void>;
  /** Controlled shutdown of a node (SIGTERM: it hands its leaderships over first). */
  stop(node: NodeId): Promise<void>;
  /** Starts a killed or stopped node on its data; resolves once it answers. */
  start(node: NodeId): Promise<void>;
  /** Stops every node by pid, closes the admin and the proxy, removes the work dir. */
  close(): Promise<void>;
}

const script = async (work: string, env: Record<string, string>, ...args: string[]) => {
  try {
    await run('bash', [SCRIPT, ...args], { env: { ...process.env, KAFKA_CLUSTER_WORK: work, ...env }, timeout: 240_000 });
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; message: string };
    throw new Error(`scripts/kafka-cluster ${args.join(' ')} failed: ${e.message}\n${e.stdout ?? ''}${e.stderr ?? ''}`, { cause: error });
  }
};

/** SIGKILLs the nodes whose pid files are in `work` (and are still its JVMs), synchronously: for an exit handler. */
function killNodesNow(work: string): void {
  let names: string[] = [];
  try {
    names = readdirSync(work).filter((f) => /^node-\d\.pid$/.test(f));
  } catch {
    return;
  }
  for (const name of names) {
    try {
      const pid = Number(readFileSync(join(work, name), 'utf8').trim());
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(work)) process.kill(pid, 'SIGKILL');
    } catch {
      // gone already
    }
  }
}

/** The `__consumer_offsets` partition of a group, as the broker picks it: abs(Java's String.hashCode) modulo the partitions. */
export function groupPartition(groupId: string, partitions: number): number {
  let hash = 0;
  for (let i = 0; i < groupId.length; i++) hash = (Math.imul(hash, 31) + groupId.charCodeAt(i)) | 0;
  return (hash === -2147483648 ? 0 : Math.abs(hash)) % partitions;
}

export async function startKafkaCluster(options: KafkaClusterOptions = {}): Promise<KafkaCluster> {
  const work = mkdtempSync(join(tmpdir(), 'sluice-kafka-cluster-'));
  const onExit = () => {
    killNodesNow(work);
    rmSync(work, { recursive: true, force: true });
  };
  process.on('exit', onExit);
  const proxied = options.proxied;
  let proxy: TcpProxy | undefined;
  let admin: Admin | undefined;
  try {
    const env: Record<string, string> = {};
    if (proxied !== undefined) {
      proxy = await startTcpProxy({ targetHost: '127.0.0.1', targetPort: CLUSTER_PORTS[proxied - 1]! });
      env.KAFKA_CLUSTER_ADVERTISE = `${proxied}=127.0.0.1:${proxy.port}`;
    }
    const brokers = CLUSTER_PORTS.map((port, i) => (i + 1 === proxied ? `127.0.0.1:${proxy!.port}` : `127.0.0.1:${port}`));
    await script(work, env, 'start');
    const client = new Kafka({ clientId: 'sluice-cluster-admin', brokers, logLevel: logLevel.NOTHING, retry: { retries: 8, initialRetryTime: 200 } });
    const a = client.admin();
    admin = a;
    await a.connect();

    const partitionsOf = async (topic: string) => {
      const { topics } = await a.fetchTopicMetadata({ topics: [topic] });
      return topics[0]?.partitions ?? [];
    };
    const inSync = async (topic: string) => {
      let synced = false;
      const check = async () => {
        try {
          const partitions = await partitionsOf(topic);
          synced = partitions.length > 0 && partitions.every((p) => p.leader >= 0 && p.isr.length === 3);
        } catch {
          synced = false;
        }
      };
      await until(() => synced, `every partition of ${topic} led, with 3 in-sync replicas`, 120_000, check);
    };
    const nodes = {
      kill: (node: NodeId) => script(work, env, 'kill', String(node)),
      stop: (node: NodeId) => script(work, env, 'stop', String(node)),
      start: (node: NodeId) => script(work, env, 'start', String(node)),
    };
    return {
      brokers,
      proxy,
      admin: a,
      async topic(partitions, { prefix = 'sluice-kc', leader } = {}) {
        const topic = unique(prefix);
        const replicas = (first: NodeId) => [first, ...([1, 2, 3] as NodeId[]).filter((n) => n !== first)];
        // Leaders awaited by inSync(): kafkajs's waitForLeaders gives up on a first UNKNOWN_TOPIC_OR_PARTITION under load.
        await a.createTopics({
          waitForLeaders: false,
          topics: [
            leader === undefined
              ? { topic, numPartitions: partitions, replicationFactor: 3 }
              : { topic, replicaAssignment: Array.from({ length: partitions }, (_, partition) => ({ partition, replicas: replicas(leader) })) },
          ],
        });
        await inSync(topic);
        return topic;
      },
      async leaderOf(topic, partition) {
        const p = (await partitionsOf(topic)).find((x) => x.partitionId === partition);
        if (!p) throw new Error(`leaderOf: ${topic} has no partition ${partition}`);
        return p.leader;
      },
      inSync,
      async coordinatorOf(groupId) {
        let leader = -1;
        const ask = async () => {
          try {
            // __consumer_offsets is created by the first FindCoordinator; describeGroups sends one.
            await a.describeGroups([groupId]);
            const partitions = await partitionsOf('__consumer_offsets');
            leader = partitions.find((x) => x.partitionId === groupPartition(groupId, partitions.length))?.leader ?? -1;
          } catch {
            leader = -1; // a coordinator still loading, metadata not there yet: ask again
          }
        };
        await until(() => leader >= 0, `the coordinator of group ${groupId}`, 60_000, ask);
        return leader;
      },
      ...nodes,
      async close() {
        await a.disconnect().catch(() => {});
        try {
          await script(work, env, 'stop');
        } finally {
          killNodesNow(work);
          await proxy?.close();
          rmSync(work, { recursive: true, force: true });
          process.off('exit', onExit);
        }
      },
    };
  } catch (error) {
    await admin?.disconnect().catch(() => {});
    await script(work, {}, 'stop').catch(() => {});
    onExit();
    process.off('exit', onExit);
    await proxy?.close();
    throw error;
  }
}

const SINGLE_SCRIPT = fileURLToPath(new URL('../../scripts/kafka', import.meta.url));
const LIBS = fileURLToPath(new URL('../../.kafka/libs', import.meta.url));

export interface KafkaNodeOptions {
  /** Client port on 127.0.0.1 (controller port + 1, inter-broker port + 2). */
  port: number;
  /** The client listener's protocol. */
  security: 'PLAINTEXT' | 'SASL_PLAINTEXT' | 'SSL' | 'SASL_SSL';
  /** SCRAM-SHA-256/512 users, `{ name: password }` (letters, digits, `.`, `_`, `-`). */
  scramUsers?: Record<string, string>;
  /** The server's certificate (chain) and key, PEM files, for SSL and SASL_SSL. */
  tls?: { certPath: string; keyPath: string };
}

export interface KafkaNode {
  readonly broker: string;
  /** Stops the node by pid and removes its work dir. */
  close(): Promise<void>;
}

/** A private single Kafka node (`scripts/kafka` in a temp work dir, sharing the jar cache), e.g. with a SASL_SSL client listener. */
export async function startKafkaNode(options: KafkaNodeOptions): Promise<KafkaNode> {
  const work = mkdtempSync(join(tmpdir(), 'sluice-kafka-node-'));
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    KAFKA_WORK: work,
    KAFKA_LIBS: LIBS,
    KAFKA_PORT: String(options.port),
    KAFKA_CONTROLLER_PORT: String(options.port + 1),
    KAFKA_SECURITY: options.security,
    KAFKA_SCRAM_USERS: Object.entries(options.scramUsers ?? {})
      .map(([name, password]) => `${name}:${password}`)
      .join(','),
    KAFKA_TLS_CERT: options.tls?.certPath ?? '',
    KAFKA_TLS_KEY: options.tls?.keyPath ?? '',
  };
  const onExit = () => {
    try {
      const pid = Number(readFileSync(join(work, 'kafka.pid'), 'utf8').trim());
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(work)) process.kill(pid, 'SIGKILL');
    } catch {
      // not running
    }
    rmSync(work, { recursive: true, force: true });
  };
  process.on('exit', onExit);
  const stop = async () => {
    try {
      await run('bash', [SINGLE_SCRIPT, 'stop'], { env, timeout: 60_000 });
    } finally {
      onExit();
      process.off('exit', onExit);
    }
  };
  try {
    await run('bash', [SINGLE_SCRIPT, 'start'], { env, timeout: 240_000 });
  } catch (error) {
    await stop().catch(() => {});
    const e = error as { stderr?: string; message: string };
    throw new Error(`scripts/kafka start (private ${options.security} node on ${options.port}) failed: ${e.message}\n${e.stderr ?? ''}`, { cause: error });
  }
  return { broker: `127.0.0.1:${options.port}`, close: stop };
}
