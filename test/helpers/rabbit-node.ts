/**
 * Private RabbitMQ nodes and clusters for fault tests, through `scripts/rabbitmq-node`: beside the
 * machine's shared node, on the caller's ports, stopped (and their data removed) by `dispose()` or,
 * if the test process dies first, by an exit handler.
 *
 *   const node = await startRabbitNode({ name: 'faults1', port: 5701 });
 *   await node.ctl('set_vm_memory_high_watermark', '0.0001');   // an alarm, on this node only
 *   await node.kill(); await node.start();                       // hard kill, then start again
 *   const cluster = await startRabbitCluster({ names: ['c1', 'c2', 'c3'], ports: [5702, 5703, 5704] });
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const SCRIPT = fileURLToPath(new URL('../../scripts/rabbitmq-node', import.meta.url));
const run = promisify(execFile);

export interface RabbitNode {
  readonly name: string;
  readonly port: number;
  /** amqp://guest:guest@127.0.0.1:<port> (guest may connect remotely: loopback_users = none). */
  readonly url: string;
  /** Starts it again (same data: durable queues and messages survive), or the first time. */
  start(): Promise<void>;
  /** Graceful stop (rabbitmqctl stop). */
  stop(): Promise<void>;
  /** SIGKILL of the Erlang VM. */
  kill(): Promise<void>;
  /** rabbitmqctl against this node; resolves with its stdout. */
  ctl(...args: string[]): Promise<string>;
}

interface NodeOptions {
  name: string;
  port: number;
  /** rabbitmq.conf lines added to the node's config (TLS listeners, limits, …). */
  conf?: string[];
}

function nodeIn(work: string, { name, port, conf }: NodeOptions): RabbitNode {
  const env = { ...process.env, RABBIT_WORK: work };
  const extra = join(work, `${name}.extra.conf`);
  const script = (...args: string[]) => run('bash', [SCRIPT, ...args], { env, maxBuffer: 16 << 20 });
  return {
    name,
    port,
    url: `amqp://guest:guest@127.0.0.1:${port}`,
    async start() {
      writeFileSync(extra, (conf ?? []).join('\n') + '\n');
      await script('start', name, String(port), extra);
    },
    async stop() {
      await script('stop', name);
    },
    async kill() {
      await script('kill', name);
    },
    async ctl(...args) {
      return (await script('ctl', name, ...args)).stdout;
    },
  };
}

export interface RabbitNodes {
  readonly nodes: RabbitNode[];
  /** Stops every node and removes their data. */
  dispose(): Promise<void>;
}

function workDir(): { work: string; cleanup: () => void; dispose: () => Promise<void> } {
  const work = mkdtempSync(join(tmpdir(), 'sluice-rabbit-'));
  const env = { ...process.env, RABBIT_WORK: work };
  // If the test process ends without dispose() (a crash, a failed hook), the nodes still go.
  const cleanup = () => {
    try {
      execFileSync('bash', [SCRIPT, 'clean'], { env, stdio: 'ignore' });
    } catch {
      rmSync(work, { recursive: true, force: true });
    }
  };
  process.once('exit', cleanup);
  return {
    work,
    cleanup,
    async dispose() {
      process.removeListener('exit', cleanup);
      await run('bash', [SCRIPT, 'clean'], { env }).catch(() => rmSync(work, { recursive: true, force: true }));
    },
  };
}

/** One private node, started. */
export async function startRabbitNode(options: NodeOptions): Promise<RabbitNode & { dispose(): Promise<void> }> {
  const dir = workDir();
  const node = nodeIn(dir.work, options);
  try {
    await node.start();
  } catch (error) {
    await dir.dispose();
    throw error;
  }
  return Object.assign(node, { dispose: dir.dispose });
}

/** Nodes joined into one cluster (the first is the seed), all running. */
export async function startRabbitCluster(options: { names: string[]; ports: number[]; conf?: string[] }): Promise<RabbitNodes> {
  if (options.names.length !== options.ports.length) throw new TypeError('startRabbitCluster: one port per name');
  const dir = workDir();
  const nodes = options.names.map((name, i) => nodeIn(dir.work, { name, port: options.ports[i]!, conf: options.conf }));
  try {
    // One at a time: two Erlang VMs booting at once on two cores double the wait for both.
    for (const node of nodes) await node.start();
    const [seed, ...rest] = nodes;
    for (const node of rest) await run('bash', [SCRIPT, 'join', node.name, seed!.name], { env: { ...process.env, RABBIT_WORK: dir.work } });
  } catch (error) {
    await dir.dispose();
    throw error;
  }
  return { nodes, dispose: dir.dispose };
}
