/**
 * A private nats-server process started from a config file, for the fault suite: its own
 * directory (config, store, log, pid file) under the OS temp dir, killed by its pid, restarted on
 * the same ports and store, and cleaned up even when a test fails — afterAll calls dispose(), a
 * process 'exit' handler kills what is left, and the next run kills servers whose test process
 * died without either (SIGKILLed workers).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { connect } from 'node:net';
import { join } from 'node:path';
import { listening } from './nats-server.js';

const BINARY = process.env.NATS_SERVER_BIN ?? 'nats-server';
const DIR_PREFIX = 'sluice-nats-proc-';

export interface NatsProcess {
  readonly name: string;
  readonly port: number;
  /** Its directory: `store/` (JetStream), `server.log`, `nats.pid`, `owner.pid`, and any files the config names. */
  readonly dir: string;
  readonly pid: number | undefined;
  readonly running: boolean;
  /** SIGKILL: no goodbye to clients or to the cluster; the store keeps what was on disk. */
  kill(): Promise<void>;
  /** Starts it (again) on the same ports and store; resolves when its client port listens. */
  start(): Promise<void>;
  /** Rewrites its config file (takes effect at the next start()): e.g. another password. */
  editConfig(edit: (text: string) => string): void;
  /** The last lines of its log, for a failure message. */
  logTail(lines?: number): string;
  /** Kills it and removes its directory. */
  dispose(): Promise<void>;
}

const live = new Set<{ child: ChildProcess | undefined; dir: string }>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const entry of live) {
      if (entry.child?.pid !== undefined && entry.child.exitCode === null) {
        try {
          process.kill(entry.child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      rmSync(entry.dir, { recursive: true, force: true });
    }
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Servers left by an earlier test process that died without cleaning up: killed by the pid in
 * their pid file (only when that pid is a nats-server running from that very directory), their
 * directories removed. A directory whose owner process is alive belongs to a running test.
 */
function removeLeftovers(): void {
  for (const entry of readdirSync(tmpdir())) {
    if (!entry.startsWith(DIR_PREFIX)) continue;
    const dir = join(tmpdir(), entry);
    const read = (file: string) => (existsSync(join(dir, file)) ? Number(readFileSync(join(dir, file), 'utf8').trim()) : NaN);
    const owner = read('owner.pid');
    if (Number.isInteger(owner) ? alive(owner) : Date.now() - statSync(dir).mtimeMs < 60_000) continue; // a live test's, or being made
    const pid = read('nats.pid');
    if (Number.isInteger(pid) && alive(pid)) {
      const cmdline = existsSync(`/proc/${pid}/cmdline`) ? readFileSync(`/proc/${pid}/cmdline`, 'utf8') : '';
      if (cmdline.includes(dir)) process.kill(pid, 'SIGKILL');
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => (socket.destroy(), resolve(true)));
    socket.on('error', () => resolve(false));
  });
}

/** The binary, or a failure that says how to get it (under CI nothing may skip). */
export function requireNatsServerBinary(): void {
  const found = process.env.NATS_SERVER_BIN ? existsSync(BINARY) : (process.env.PATH ?? '').split(':').some((p) => existsSync(join(p, BINARY)));
  if (!found) throw new Error(`${BINARY} not found: install nats-server 2.9+ (Debian: apt-get install nats-server) or set NATS_SERVER_BIN`);
}

/**
 * Starts a nats-server on `port` with `config` (nats-server config syntax, without `listen`,
 * `pid_file`, `log_file` and the JetStream `store_dir`, which this adds). `files` are written
 * into its directory first (certificates); `config` can refer to them as `$DIR/<name>`.
 */
export async function startNatsProcess(options: { name: string; port: number; config: string; files?: Record<string, string>; jetstream?: boolean }): Promise<NatsProcess> {
  requireNatsServerBinary();
  removeLeftovers();
  installExitHook();
  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX));
  writeFileSync(join(dir, 'owner.pid'), String(process.pid));
  for (const [file, text] of Object.entries(options.files ?? {})) writeFileSync(join(dir, file), text);
  const configFile = join(dir, 'server.conf');
  writeFileSync(
    configFile,
    [
      `server_name: ${options.name}`,
      `listen: "127.0.0.1:${options.port}"`,
      `pid_file: "${join(dir, 'nats.pid')}"`,
      `log_file: "${join(dir, 'server.log')}"`,
      options.jetstream === false ? '' : `jetstream { store_dir: "${join(dir, 'store')}" }`,
      options.config.replaceAll('$DIR', dir),
    ].join('\n'),
  );
  const entry: { child: ChildProcess | undefined; dir: string } = { child: undefined, dir };
  live.add(entry);
  const logTail = (lines = 20) => {
    const file = join(dir, 'server.log');
    return existsSync(file) ? readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n') : '(no log)';
  };
  const kill = async () => {
    const child = entry.child;
    entry.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await once(child, 'exit');
  };
  const start = async () => {
    if (entry.child) return;
    // Something else on the port would pass the listening check below as if it were this server.
    if (await portAnswers(options.port)) throw new Error(`127.0.0.1:${options.port} is taken (a leftover nats-server?): cannot start ${options.name}`);
    const child = spawn(BINARY, ['-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => void (stderr = (stderr + chunk.toString()).slice(-2000)));
    child.on('error', () => {});
    entry.child = child;
    let started = false;
    const exitedAtStart = new Promise<never>((_, reject) =>
      child.once('exit', () => {
        if (!started) reject(new Error(`nats-server ${options.name} exited at start: ${stderr.trim() || logTail(5)}`));
      }),
    );
    exitedAtStart.catch(() => {});
    try {
      await Promise.race([listening(options.port, 20_000), exitedAtStart]);
      started = true;
    } catch (error) {
      await kill();
      throw error;
    }
  };
  await start();
  return {
    name: options.name,
    port: options.port,
    dir,
    get pid() {
      return entry.child?.pid;
    },
    get running() {
      return entry.child !== undefined;
    },
    kill,
    start,
    editConfig: (edit) => writeFileSync(configFile, edit(readFileSync(configFile, 'utf8'))),
    logTail,
    async dispose() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
      live.delete(entry);
    },
  };
}
