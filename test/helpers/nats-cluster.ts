/**
 * A private three-server JetStream cluster on loopback for the fault suite (the recipe checked in
 * shared/notes/clusters-local.md): servers n1..n3 on client ports 14222-14224, routes 14248-14250,
 * monitoring 14822-14824, each with its own store, started and SIGKILLed by pid (nats-process.ts),
 * next to — never instead of — the machine's shared nats-server on 4222.
 */
import { startNatsProcess, type NatsProcess } from './nats-process.js';

const CLIENT_BASE = 14222;
const ROUTE_BASE = 14248;
const MONITOR_BASE = 14822;

export interface NatsClusterNode extends NatsProcess {
  readonly url: string;
  readonly monitorPort: number;
  /** GET /<path> on its monitoring port, as JSON (`healthz`, `jsz`, `connz?...`). */
  monitor<T = unknown>(path: string): Promise<T>;
}

export interface NatsCluster {
  readonly nodes: NatsClusterNode[];
  /** Every client URL, n1 first. */
  readonly urls: string[];
  node(name: string): NatsClusterNode;
  /**
   * Resolves when every running server answers /healthz ok (JetStream in contact with a meta
   * leader and its streams current), within `limitMs` (a hang guard).
   */
  ready(limitMs?: number): Promise<void>;
  /** The server a client connection named `connectionName` is on, if any. */
  connectedTo(connectionName: string): Promise<string | undefined>;
  dispose(): Promise<void>;
}

export async function startNatsCluster(): Promise<NatsCluster> {
  const names = ['n1', 'n2', 'n3'];
  const routes = names.map((_, i) => `nats://127.0.0.1:${ROUTE_BASE + i}`).join(', ');
  const nodes: NatsClusterNode[] = [];
  const dispose = async () => {
    await Promise.all(nodes.map((n) => n.dispose()));
  };
  try {
    // Started together: each waits for the others' routes, a server alone has no meta leader.
    const started = await Promise.all(
      names.map((name, i) =>
        startNatsProcess({
          name,
          port: CLIENT_BASE + i,
          config: [`http: "127.0.0.1:${MONITOR_BASE + i}"`, `cluster { name: sluice-test, listen: "127.0.0.1:${ROUTE_BASE + i}", routes: [${routes}] }`].join('\n'),
        }).then((p) => {
          const node = withMonitor(p, MONITOR_BASE + i);
          nodes.push(node);
          return node;
        }),
      ),
    );
    nodes.sort((a, b) => a.name.localeCompare(b.name));
    const cluster: NatsCluster = {
      nodes: started,
      urls: nodes.map((n) => n.url),
      node(name) {
        const found = nodes.find((n) => n.name === name);
        if (!found) throw new Error(`no server ${name} in the cluster (${names.join(', ')})`);
        return found;
      },
      async ready(limitMs = 60_000) {
        const deadline = Date.now() + limitMs;
        for (;;) {
          const answers = await Promise.all(nodes.filter((n) => n.running).map((n) => n.monitor<{ status?: string; error?: string }>('healthz').catch((e: Error) => ({ status: 'unreachable', error: e.message }))));
          if (answers.every((a) => a.status === 'ok')) return;
          if (Date.now() > deadline) {
            throw new Error(`the NATS cluster is not healthy after ${limitMs} ms: ${JSON.stringify(answers)}\n${nodes.map((n) => `--- ${n.name}\n${n.logTail(8)}`).join('\n')}`);
          }
          await new Promise((r) => setTimeout(r, 200));
        }
      },
      async connectedTo(connectionName) {
        for (const n of nodes.filter((x) => x.running)) {
          const connz = await n.monitor<{ connections?: { name?: string }[] }>('connz?limit=1024').catch(() => ({ connections: [] }));
          if (connz.connections?.some((c) => c.name === connectionName)) return n.name;
        }
        return undefined;
      },
      dispose,
    };
    await cluster.ready();
    return cluster;
  } catch (error) {
    await dispose();
    throw error;
  }
}

function withMonitor(p: NatsProcess, monitorPort: number): NatsClusterNode {
  return Object.assign(Object.create(p) as NatsProcess, {
    url: `nats://127.0.0.1:${p.port}`,
    monitorPort,
    async monitor<T>(path: string): Promise<T> {
      const response = await fetch(`http://127.0.0.1:${monitorPort}/${path}`, { signal: AbortSignal.timeout(2_000) });
      return (await response.json()) as T;
    },
  }) as NatsClusterNode;
}

/** What the leader lookups need of a JetStream manager and a connection (either client generation). */
interface Jsm {
  streams: { info(stream: string): Promise<{ cluster?: { leader?: string } }> };
  consumers: { info(stream: string, durable: string): Promise<{ cluster?: { leader?: string } }> };
}
interface Requester {
  request(subject: string, payload?: Uint8Array | string, options?: { timeout: number }): Promise<unknown>;
}

/**
 * The servers leading a stream and its durable, once both have one (after a kill, an election
 * takes the Raft timeout: seconds). `without`: until neither is that server; `consumerNot`: until
 * the durable's is not that one.
 */
export async function leaders(
  jsm: Jsm,
  stream: string,
  durable: string,
  options: { limitMs?: number; without?: string; consumerNot?: string } = {},
): Promise<{ stream: string; consumer: string }> {
  const deadline = Date.now() + (options.limitMs ?? 60_000);
  for (;;) {
    const [s, c] = await Promise.all([jsm.streams.info(stream).catch(() => undefined), jsm.consumers.info(stream, durable).catch(() => undefined)]);
    const found = { stream: s?.cluster?.leader ?? '', consumer: c?.cluster?.leader ?? '' };
    const moved = found.stream !== options.without && found.consumer !== options.without && found.consumer !== options.consumerNot;
    if (found.stream && found.consumer && moved) return found;
    if (Date.now() > deadline) throw new Error(`no leaders for ${stream}/${durable} as wanted (${JSON.stringify(options)}): ${JSON.stringify(found)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * Moves the durable's leadership (step-downs: the followers elect one of them) until it is not on
 * the stream's leader, so that killing one of the two is a fault of that one alone.
 */
export async function separateLeaders(nc: Requester, jsm: Jsm, stream: string, durable: string): Promise<{ stream: string; consumer: string }> {
  for (let tries = 0; ; tries++) {
    const now = await leaders(jsm, stream, durable);
    if (now.stream !== now.consumer) return now;
    if (tries === 10) throw new Error(`the durable ${stream}/${durable} stays led by the stream's leader ${now.stream}`);
    await nc.request(`$JS.API.CONSUMER.LEADER.STEPDOWN.${stream}.${durable}`, '', { timeout: 10_000 }).catch(() => {});
    await leaders(jsm, stream, durable, { consumerNot: now.consumer, limitMs: 20_000 }).catch(() => {});
  }
}
