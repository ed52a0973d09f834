import type { AddressInfo } from 'node:net';
import type { Consumer } from '../consumer.js';
import type { ConsumerHealth, HealthStatus } from '../consumer-events.js';
import type { WorkerPool } from '../pool/worker-pool.js';
import { numberOption, oneOfOption } from '../validate.js';
import { createDashboard, type Dashboard, type DashboardOptions } from './dashboard.js';
import { serveHealth, type HealthServer } from './http.js';
import { errorFields, logConsumer, redactingLogger, silentLogger, type Logger } from './logger.js';

export interface ServiceOptions {
  consumers: Consumer[];
  /** Shared pools to close after the consumers stop (pools a consumer owns close with it). */
  pools?: WorkerPool[];
  /** How long the drain may take after the first signal. Default 30 s; match Kubernetes' terminationGracePeriodSeconds minus a margin. */
  shutdownTimeoutMs?: number;
  /** Default SIGTERM and SIGINT. The first drains; a second exits at once with code 130. */
  signals?: NodeJS.Signals[];
  /** `'fail-fast'` (default): one consumer failing to start stops the others and rejects. `'keep-running'`: it is reported (health: down) and the others run. */
  onStartFailure?: 'fail-fast' | 'keep-running';
  /** Serve /healthz, /readyz (and /metrics when given) over node:http. Off by default; loopback by default. */
  http?: {
    port: number;
    /** The bind address, for every route (/dashboard too). Default `127.0.0.1`. */
    host?: string;
    metrics?: () => Promise<{ contentType: string; body: string }>;
    /**
     * Serve the live dashboard at /dashboard (its data at /dashboard/snapshot and /dashboard/events)
     * for the service's consumers and pools. Default `false` (off). `true`, or options: the
     * `breakers` to show (as `prometheusMetrics` takes them), history and sampling intervals.
     * It costs nothing while no page is open.
     */
    dashboard?: boolean | DashboardOptions;
  };
  logger?: Logger;
  /** Call process.exit with the exit code when the drain after a signal ends. Default true. */
  exitOnSignal?: boolean;
}

export interface ServiceHealth {
  status: HealthStatus;
  live: boolean;
  ready: boolean;
  draining: boolean;
  consumers: Record<string, ConsumerHealth | { status: 'down'; ready: false; details: { reasons: string[] } }>;
}

export interface ServiceResult {
  /** Every consumer drained before the deadline and nothing was given back. */
  clean: boolean;
  /** 0 clean, 1 not clean, 130 after a second signal. */
  exitCode: number;
  givenBack: number;
}

export interface Service {
  health(): ServiceHealth;
  /** Drains and stops everything, as the first signal does. Idempotent. */
  stop(reason?: string): Promise<ServiceResult>;
  /** Settles when the service has stopped. */
  readonly done: Promise<ServiceResult>;
  /** The HTTP address when `http` was given (port 0 picks a free one). */
  readonly httpAddress: AddressInfo | undefined;
  /** The dashboard when `http.dashboard` is on (`trackBreaker` adds a breaker later). */
  readonly dashboard: Dashboard | undefined;
}

/**
 * Runs consumers as a service: starts them, drains on the first signal within the deadline,
 * gives back what did not finish, closes pools, and reports whether the drain was clean.
 */
export async function runService(options: ServiceOptions): Promise<Service> {
  const owner = 'runService';
  if (!Array.isArray(options?.consumers) || options.consumers.length === 0) {
    throw new TypeError(`${owner}: option "consumers" must be a non-empty array of consumers`);
  }
  const shutdownTimeoutMs = numberOption(owner, 'shutdownTimeoutMs', options.shutdownTimeoutMs, { min: 0, fallback: 30_000 });
  const onStartFailure = oneOfOption(owner, 'onStartFailure', options.onStartFailure, ['fail-fast', 'keep-running'] as const, 'fail-fast');
  const logger = redactingLogger(options.logger ?? silentLogger);
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  const exitOnSignal = options.exitOnSignal ?? true;
  const dashboardOption: unknown = options.http?.dashboard;
  if (dashboardOption !== undefined && typeof dashboardOption !== 'boolean' && (typeof dashboardOption !== 'object' || dashboardOption === null)) {
    throw new TypeError(`${owner}: option "http.dashboard" must be a boolean or an object of dashboard options, got ${String(dashboardOption)}`);
  }
  // Made before anything starts, so that bad dashboard options throw before a consumer connects.
  // It does nothing (no timer, no listener) until a page connects.
  const dashboard: Dashboard | undefined =
    options.http?.dashboard ? createDashboard({ ...(options.http.dashboard === true ? {} : options.http.dashboard), consumers: options.consumers, pools: options.pools ?? [] }) : undefined;
  const consumers = options.consumers;
  const failed = new Map<Consumer, unknown>();
  const unlog = consumers.map((c) => logConsumer(c, logger));
  let draining = false;

  // Listening before anything starts: a SIGTERM that arrives while consumers connect must drain
  // them, not kill the process with messages in flight.
  let signalled = 0;
  let earlySignal: NodeJS.Signals | undefined;
  let stopOnSignal: ((signal: NodeJS.Signals) => void) | undefined;
  function onSignal(signal: NodeJS.Signals) {
    signalled++;
    if (signalled > 1) {
      logger.warn({ signal }, 'second signal: exiting at once');
      process.exit(130);
    }
    if (stopOnSignal) stopOnSignal(signal);
    else earlySignal = signal;
  }
  for (const s of signals) process.on(s, onSignal);

  const results = await Promise.allSettled(consumers.map((c) => c.start()));
  results.forEach((r, i) => {
    if (r.status === 'rejected') {
      failed.set(consumers[i]!, r.reason);
      logger.error({ consumer: consumers[i]!.name, ...errorFields(r.reason) }, 'consumer failed to start');
    }
  });
  if (failed.size > 0 && (onStartFailure === 'fail-fast' || failed.size === consumers.length)) {
    await Promise.all(consumers.filter((c) => !failed.has(c)).map((c) => c.stop({ timeoutMs: shutdownTimeoutMs })));
    await Promise.all((options.pools ?? []).map((p) => p.close({ drain: false })));
    unlog.forEach((off) => off());
    dashboard?.close();
    for (const s of signals) process.off(s, onSignal);
    const [first] = failed.values();
    throw new AggregateError([...failed.values()], `${owner}: ${failed.size} of ${consumers.length} consumers failed to start: ${errorFields(first).error.message}`);
  }

  const health = (): ServiceHealth => {
    const perConsumer: ServiceHealth['consumers'] = {};
    let status: HealthStatus = 'ok';
    for (const c of consumers) {
      const h = failed.has(c)
        ? { status: 'down' as const, ready: false as const, details: { reasons: [`failed to start: ${errorFields(failed.get(c)).error.message}`] } }
        : c.health();
      perConsumer[c.name] = h;
      if (h.status === 'down') status = 'down';
      else if (h.status === 'degraded' && status === 'ok') status = 'degraded';
    }
    const running = consumers.filter((c) => !failed.has(c));
    return {
      status,
      // Liveness fails only for what a restart can fix: a stalled consumer.
      live: !running.some((c) => c.health().details.stalled),
      ready: !draining && running.every((c) => c.health().ready),
      draining,
      consumers: perConsumer,
    };
  };

  let server: HealthServer | undefined;
  if (options.http) {
    const { dashboard: _dashboard, ...http } = options.http;
    try {
      server = await serveHealth({ ...http, health, ...(dashboard ? { dashboard } : {}) });
    } catch (error) {
      dashboard?.close();
      throw error;
    }
  }

  let stopping: Promise<ServiceResult> | undefined;
  let resolveDone!: (r: ServiceResult) => void;
  const done = new Promise<ServiceResult>((r) => (resolveDone = r));
  const stop = (reason = 'stop() called') => {
    stopping ??= (async () => {
      draining = true;
      logger.info({ reason, shutdownTimeoutMs }, 'draining');
      const stops = await Promise.all(consumers.filter((c) => !failed.has(c)).map((c) => c.stop({ timeoutMs: shutdownTimeoutMs })));
      await Promise.all((options.pools ?? []).map((p) => p.close({ drain: true, timeoutMs: 1000 })));
      dashboard?.close();
      await server?.close();
      for (const s of signals) process.off(s, onSignal);
      unlog.forEach((off) => off());
      const givenBack = stops.reduce((n, s) => n + s.givenBack, 0);
      const clean = failed.size === 0 && stops.every((s) => s.drained);
      const result = { clean, exitCode: clean ? 0 : 1, givenBack };
      logger.info({ ...result }, clean ? 'drained cleanly' : 'drained with messages given back');
      resolveDone(result);
      return result;
    })();
    return stopping;
  };

  stopOnSignal = (signal) =>
    void stop(`received ${signal}`).then((r) => {
      if (exitOnSignal) process.exit(r.exitCode);
    });
  if (earlySignal) stopOnSignal(earlySignal);
  logger.info({ consumers: consumers.map((c) => c.name), http: server?.address, dashboard: dashboard !== undefined }, 'service running');

  return { health, stop, done, httpAddress: server?.address, dashboard };
}
