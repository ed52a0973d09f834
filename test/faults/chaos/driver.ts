/**
 * The chaos driver: a producer publishes a numbered stream, paced, while `workers` consumer
 * processes (worker.ts) share one queue / durable / group; every few seconds (seeded random) one
 * of them that is handling messages right then is SIGKILLed and a new one started. Then it waits
 * for every id to be handled and for the broker to have nothing left, stops the workers with
 * SIGTERM and returns what the workers recorded, the kills and the broker's state; the verdict is
 * the test's.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { seededRandom } from '../../helpers/random.js';
import { tick, until } from '../../helpers/wait.js';
import { readRecords, type GroupEvent, type Handled } from './records.js';
import { WORKER_CONFIG_ENV, type ChaosTarget, type WorkerConfig } from './worker-config.js';

const WORKER_SCRIPT = fileURLToPath(new URL('./worker.ts', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** One broker's part of a chaos run. `KillState`: what it reads at the broker right after a kill. */
export interface ChaosBroker<KillState = undefined> {
  /** What the workers consume (the same for all), with the consumer options the bound comes from. */
  readonly target: ChaosTarget;
  /** Publishes these ids as `{ id }` messages, confirmed by the broker. */
  publish(ids: number[]): Promise<void>;
  /** Messages published and not yet delivered to any consumer (the producer keeps it under `plan.maxBacklog`). */
  backlog(): Promise<number>;
  /**
   * What the broker still holds for the consumers (ready + unacked, pending + ack pending, lag);
   * `consumers`, where the broker counts them: attached consumers (after the stop, read only once 0).
   */
  remaining(): Promise<Remaining>;
  /** Read right after a victim has exited, before its replacement starts. */
  afterKill(): Promise<KillState>;
}

export interface Remaining {
  left: number;
  detail: string;
  consumers?: number;
}

export interface ChaosPlan {
  /** Ids 0 … ids−1 are published. */
  ids: number;
  /** The producer spreads them evenly over this long at most, in rounds of `roundMs` (bursts, when long)… */
  publishMs: number;
  roundMs: number;
  /**
   * …and publishes a round only while the backlog is below this: the consumers are kept busy
   * (every worker holds its full credit, so each kill hits messages in flight) without a backlog
   * that would take long to drain. Infinity: never asked.
   */
  maxBacklog: number;
  /** Consumer processes alive at once. */
  workers: number;
  /** A kill every [min, max] ms (uniform, seeded). */
  killEveryMs: [number, number];
  /** No kill once this fraction of the ids is published, so the last replacements still get work. */
  killsUntil: number;
  /** A victim must have handled this many in the last `withinMs` when it is killed: it has work in hand, it is not idle. */
  busy: { records: number; withinMs: number };
  seed: number;
  /** Handler work per message. */
  workMs: number;
  /** Hang guard for the end of the run (every id handled, broker settled, workers stopped). */
  settleLimitMs: number;
}

export interface Kill<KillState> {
  worker: number;
  at: number;
  /** What the victim had recorded when it was killed. */
  recordsBefore: number;
  state: KillState;
}

export interface WorkerRun {
  worker: number;
  startedAt: number;
  killed: boolean;
  /** Exit code / signal; a worker that exits by itself (not killed, not stopped) is a crash. */
  exit?: { code: number | null; signal: NodeJS.Signals | null };
}

export interface ChaosRun<KillState> {
  plan: ChaosPlan;
  startedAt: number;
  publishedAt: number;
  /** When the records first held every id. */
  allHandledAt: number;
  records: Handled[];
  /** Kafka: when each worker was told of a rebalance and given an assignment. */
  groupEvents: GroupEvent[];
  kills: Kill<KillState>[];
  workers: WorkerRun[];
  /** The broker once every id was handled (workers alive) and again after every worker stopped. */
  remainingAlive: Remaining;
  remainingStopped: Remaining;
}

interface Live {
  run: WorkerRun;
  child: ChildProcess;
  record: string;
  log: string;
  exited: Promise<void>;
  stopping: boolean;
}

/** Runs the chaos plan; always kills what it started and removes its temp dir, pass or fail. */
export async function runChaos<KillState>(broker: ChaosBroker<KillState>, plan: ChaosPlan): Promise<ChaosRun<KillState>> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-chaos-'));
  const all: Live[] = [];
  const killAll = () => {
    for (const w of all) if (w.run.exit === undefined) w.child.kill('SIGKILL');
  };
  process.on('exit', killAll);
  try {
    return await drive(broker, plan, dir, all);
  } catch (error) {
    throw new Error(`${error instanceof Error ? error.message : String(error)}\n${logTails(all)}`, { cause: error });
  } finally {
    killAll();
    await Promise.all(all.map((w) => w.exited));
    process.off('exit', killAll);
    // CHAOS_KEEP=1 keeps the records and worker logs for a look afterwards.
    if (process.env.CHAOS_KEEP === '1') console.log(`chaos run kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

async function drive<KillState>(broker: ChaosBroker<KillState>, plan: ChaosPlan, dir: string, all: Live[]): Promise<ChaosRun<KillState>> {
  const random = seededRandom(plan.seed);
  const kills: Kill<KillState>[] = [];
  const crashed = () => all.find((w) => w.run.exit !== undefined && !w.run.killed && !w.stopping);
  const assertNoCrash = () => {
    const c = crashed();
    if (c) throw new Error(`worker ${c.run.worker} exited by itself (${JSON.stringify(c.run.exit)})`);
  };

  const start = (): Live => {
    const worker = all.length + 1;
    const record = join(dir, `worker-${worker}.records`);
    const log = join(dir, `worker-${worker}.log`);
    const config: WorkerConfig = { ...broker.target, worker, record, workMs: plan.workMs };
    const out = openSync(log, 'a');
    const child = spawn(process.execPath, ['--import', 'tsx', WORKER_SCRIPT], {
      cwd: REPO_ROOT,
      env: { ...process.env, [WORKER_CONFIG_ENV]: JSON.stringify(config) },
      stdio: ['ignore', out, out],
    });
    closeSync(out);
    const run: WorkerRun = { worker, startedAt: Date.now(), killed: false };
    const exited = new Promise<void>((resolve) =>
      child.once('exit', (code, signal) => {
        run.exit = { code, signal };
        resolve();
      }),
    );
    const live: Live = { run, child, record, log, exited, stopping: false };
    all.push(live);
    return live;
  };
  const alive = () => all.filter((w) => w.run.exit === undefined && !w.run.killed);

  for (let i = 0; i < plan.workers; i++) start();
  const startedAt = Date.now();

  let published = 0;
  const producer = (async () => {
    const endAt = startedAt + plan.publishMs;
    while (published < plan.ids) {
      const roundAt = Date.now();
      // What is left, spread over the rounds left (all of it once the time is up), within the backlog.
      const want = Math.ceil((plan.ids - published) / Math.max(1, Math.ceil((endAt - roundAt) / plan.roundMs)));
      const room = Number.isFinite(plan.maxBacklog) ? plan.maxBacklog - (await broker.backlog()) : want;
      const ids = Array.from({ length: Math.max(0, Math.min(want, room)) }, (_, i) => published + i);
      if (ids.length > 0) await broker.publish(ids);
      published += ids.length;
      await tick(Math.max(0, roundAt + plan.roundMs - Date.now()));
    }
  })();
  let producing = true;
  void producer.finally(() => (producing = false)).catch(() => {});

  const killing = () => producing && published < plan.ids * plan.killsUntil;
  const busy = (w: Live) => {
    const handled = readRecords(w.record, w.run.worker).handled;
    const since = Date.now() - plan.busy.withinMs;
    return handled.length >= plan.busy.records && handled[handled.length - plan.busy.records]!.at >= since;
  };
  const killer = (async () => {
    const [min, max] = plan.killEveryMs;
    while (killing()) {
      await tick(min + random() * (max - min));
      let candidates: Live[] = [];
      while (killing() && (assertNoCrash(), (candidates = alive().filter(busy))).length === 0) await tick(20);
      if (candidates.length === 0) break;
      const victim = candidates[Math.floor(random() * candidates.length)]!;
      const at = Date.now();
      victim.run.killed = true;
      victim.child.kill('SIGKILL');
      await victim.exited;
      const recordsBefore = readRecords(victim.record, victim.run.worker).handled.length;
      kills.push({ worker: victim.run.worker, at, recordsBefore, state: await broker.afterKill() });
      start();
    }
  })();
  await Promise.all([producer, killer]);
  const publishedAt = Date.now();

  const records = () => all.flatMap((w) => readRecords(w.record, w.run.worker).handled);
  let handled = new Set<number>();
  await until(
    () => (assertNoCrash(), handled.size === plan.ids),
    `every one of the ${plan.ids} ids handled`,
    plan.settleLimitMs,
    async () => (handled = new Set(records().map((r) => r.id))),
  ).catch((error: unknown) => {
    const missing = Array.from({ length: plan.ids }, (_, id) => id).filter((id) => !handled.has(id));
    throw new Error(`${(error as Error).message}: ${missing.length} never handled (${missing.slice(0, 20).join(', ')}${missing.length > 20 ? ', …' : ''})`);
  });
  const allHandledAt = Date.now();

  let remainingAlive: Remaining = { left: -1, detail: 'not read' };
  await until(
    () => (assertNoCrash(), remainingAlive.left === 0),
    'nothing left at the broker with the workers alive',
    plan.settleLimitMs,
    async () => (remainingAlive = await broker.remaining()),
  ).catch((error: unknown) => {
    throw new Error(`${(error as Error).message}: ${remainingAlive.detail}`);
  });

  const last = alive();
  for (const w of last) {
    w.stopping = true;
    w.child.kill('SIGTERM');
  }
  await until(() => last.every((w) => w.run.exit !== undefined), 'the last workers to stop on SIGTERM', plan.settleLimitMs);
  // Until the broker has seen every consumer go (RabbitMQ requeues what was unacked then).
  let remainingStopped: Remaining = { left: -1, detail: 'not read' };
  await until(
    () => (remainingStopped.consumers ?? 0) === 0,
    'the broker to see no consumer left',
    plan.settleLimitMs,
    async () => (remainingStopped = await broker.remaining()),
  );

  return {
    plan,
    startedAt,
    publishedAt,
    allHandledAt,
    records: records(),
    groupEvents: all.flatMap((w) => readRecords(w.record, w.run.worker).events),
    kills,
    workers: all.map((w) => w.run),
    remainingAlive,
    remainingStopped,
  };
}

function logTails(all: Live[]): string {
  return all
    .map((w) => {
      let text = '';
      try {
        text = readFileSync(w.log, 'utf8');
      } catch {
        text = '(no log)';
      }
      return `--- worker ${w.run.worker} (${JSON.stringify(w.run.exit ?? 'alive')}${w.run.killed ? ', killed' : ''}):\n${text.split('\n').slice(-15).join('\n')}`;
    })
    .join('\n');
}
