import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Consumer } from '../consumer.js';
import type { ConsumerState, ConsumerStatus } from '../consumer-events.js';
import type { CircuitBreaker, CircuitBreakerStatus } from '../flow/circuit-breaker.js';
import type { AdaptiveLimitStatus, PoolStatus } from '../pool/types.js';
import type { WorkerPool } from '../pool/worker-pool.js';
import { redactText } from '../redact.js';
import { integerOption, numberOption } from '../validate.js';
import { DASHBOARD_HTML } from './dashboard-page.js';

export interface DashboardOptions {
  /** Circuit breakers to show (as `prometheusMetrics({ breakers })` takes them); more with `trackBreaker`. */
  breakers?: CircuitBreaker[];
  /** How much history the charts keep, in seconds of samples. Default 300 (5 minutes). */
  historySeconds?: number;
  /** How often a sample is taken and sent to the pages, in ms. Default 1000. */
  intervalMs?: number;
  /** The sliding window of handler run times the percentiles are taken over, in ms. Default 30000. */
  latencyWindowMs?: number;
  /** Last errors kept per consumer. Default 10. */
  errors?: number;
}

/** A pool as the page shows it: its status' bounds and counts, under the name it is tracked by. */
export type DashboardPool = Pick<
  PoolStatus,
  'limit' | 'active' | 'pending' | 'held' | 'maxConcurrency' | 'maxQueueSize' | 'saturated' | 'closed' | 'completed' | 'failed' | 'rejected'
> & { name: string; adaptive: AdaptiveLimitStatus | null };

export interface DashboardError {
  /** `Date.now()` when it happened. */
  at: number;
  /** `handler` (an attempt failed; `next` says what became of the message) or the runtime's `during` (ack, pause, …). */
  kind: string;
  name: string;
  /** The error's message with the passwords of any URL in it removed (`redactText`), at most 500 characters. */
  message: string;
  messageId: string | null;
  attempt: number | null;
  next: string | null;
}

/** The consumer's counters the page turns into totals and rates (from `status()`). */
export type DashboardCounters = Pick<ConsumerStatus, 'handled' | 'failed' | 'retried' | 'deadLettered' | 'givenBack' | 'overloaded' | 'gated' | 'deferred' | 'batches'>;

export type DashboardRates = Record<'handled' | 'failed' | 'retried' | 'deadLettered' | 'givenBack' | 'overloaded' | 'gated' | 'batches', number>;

export interface DashboardConsumer {
  name: string;
  source: string;
  pool: string;
  state: ConsumerState;
  health: 'ok' | 'degraded' | 'down';
  healthReasons: string[];
  connection: 'unknown' | 'connected' | 'disconnected';
  paused: boolean;
  pausedBy: string[];
  stalled: boolean;
  inFlight: number;
  batching: number;
  delayedRetries: number;
  counters: DashboardCounters;
  /** Per second over the last interval; null in the first sample after nobody watched. */
  rates: DashboardRates | null;
  /** Handler run time percentiles (ms) over the sliding window, of the attempts seen while a page was open; null when none. */
  latency: { p50: number; p95: number; p99: number; samples: number } | null;
  /** Batch handler calls seen while a page was open; null when the consumer made none. */
  batch: { calls: number; meanSize: number; lastSize: number; lastDurationMs: number } | null;
  /** Registered breakers this consumer has been gated or paused by. */
  breakers: string[];
  errors: DashboardError[];
}

export interface DashboardBreaker {
  name: string;
  state: CircuitBreakerStatus['state'];
  failureRate: number;
  calls: number;
  failures: number;
  consecutiveFailures: number;
  opened: number;
  openedAt: number | null;
  probes: CircuitBreakerStatus['probes'];
}

export interface DashboardSample {
  /** `Date.now()` of the sample. */
  t: number;
  pools: DashboardPool[];
  consumers: DashboardConsumer[];
  breakers: DashboardBreaker[];
}

export interface DashboardSnapshot {
  intervalMs: number;
  historySeconds: number;
  latencyWindowMs: number;
  /** Pages connected now. */
  watchers: number;
  current: DashboardSample;
  /** Earlier samples, oldest first, without their errors (what the charts draw). */
  history: DashboardSample[];
}

export interface Dashboard {
  /** The current sample and the history. */
  snapshot(): DashboardSnapshot;
  /**
   * Serves `GET <prefix>` (the page), `<prefix>/snapshot` (JSON) and `<prefix>/events`
   * (server-sent events: `hello` with the snapshot, then `sample` every interval). Returns false
   * for any other path, so it can sit in front of another handler.
   */
  handle(req: IncomingMessage, res: ServerResponse, prefix?: string): boolean;
  trackConsumer(consumer: Consumer): void;
  trackPool(pool: WorkerPool, name?: string): void;
  trackBreaker(breaker: CircuitBreaker): void;
  /** Pages connected now. */
  readonly watchers: number;
  /** Ends every event stream, stops sampling and every listener. */
  close(): void;
}

/** A ring of the last handler run times (ms) with their time, for percentiles over a sliding window. */
class LatencyWindow {
  static readonly CAPACITY = 4096;
  readonly #ms = new Float64Array(LatencyWindow.CAPACITY);
  readonly #at = new Float64Array(LatencyWindow.CAPACITY);
  #next = 0;
  #size = 0;

  add(at: number, ms: number): void {
    this.#ms[this.#next] = ms;
    this.#at[this.#next] = at;
    this.#next = (this.#next + 1) % LatencyWindow.CAPACITY;
    if (this.#size < LatencyWindow.CAPACITY) this.#size++;
  }

  percentiles(now: number, windowMs: number): DashboardConsumer['latency'] {
    const from = now - windowMs;
    const values: number[] = [];
    for (let i = 0; i < this.#size; i++) if (this.#at[i]! >= from) values.push(this.#ms[i]!);
    if (values.length === 0) return null;
    values.sort((a, b) => a - b);
    // Nearest rank: the smallest value with at least p of the samples at or below it.
    const at = (p: number) => values[Math.min(values.length - 1, Math.max(0, Math.ceil(p * values.length) - 1))]!;
    return { p50: at(0.5), p95: at(0.95), p99: at(0.99), samples: values.length };
  }
}

interface Tracked {
  consumer: Consumer;
  latency: LatencyWindow;
  errors: DashboardError[];
  batch: { calls: number; sizes: number; lastSize: number; lastDurationMs: number };
  breakers: Set<string>;
  /** Counters at the previous sample, for the rates; undefined after nobody watched. */
  previous: { t: number; counters: DashboardCounters } | undefined;
  off: (() => void)[];
}

const RATE_FIELDS = ['handled', 'failed', 'retried', 'deadLettered', 'givenBack', 'overloaded', 'gated', 'batches'] as const;

function errorRecord(error: unknown, kind: string, messageId: string | undefined, attempt: number | undefined, next: string | undefined): DashboardError {
  const name = error instanceof Error ? error.name : typeof error;
  const text = redactText(error instanceof Error ? error.message : String(error));
  return {
    at: Date.now(),
    kind,
    name,
    message: text.length > 500 ? `${text.slice(0, 499)}…` : text,
    messageId: messageId ?? null,
    attempt: attempt ?? null,
    next: next ?? null,
  };
}

/**
 * The data behind `/dashboard`: pools, consumers and breakers sampled once a second and pushed
 * to the open pages as server-sent events; the page (`dashboard-page.ts`) draws it.
 *
 * Cost: nothing at all while no page is connected — no timer runs and no listener is on any
 * consumer (a `handled` or `failed` listener alone would make the runtime time every message).
 * The first page to connect starts the sampler and subscribes to `handled`, `failed`, `error`,
 * `batch`, `paused` and `gated` (each costing an O(1) ring-buffer write or counter bump per
 * event); the last one to leave removes them. Counts and rates come from `status()`, the O(1)
 * counters every consumer keeps anyway; latency percentiles, last errors and batch sizes are
 * only of what happened while someone watched.
 */
export function createDashboard(options: { consumers?: Consumer[]; pools?: WorkerPool[] } & DashboardOptions = {}): Dashboard {
  const owner = 'dashboard';
  const intervalMs = numberOption(owner, 'intervalMs', options.intervalMs, { min: 10, fallback: 1000 });
  const historySeconds = numberOption(owner, 'historySeconds', options.historySeconds, { min: 1, fallback: 300 });
  const latencyWindowMs = numberOption(owner, 'latencyWindowMs', options.latencyWindowMs, { min: 1, fallback: 30_000 });
  const keepErrors = integerOption(owner, 'errors', options.errors, { min: 0, fallback: 10 });
  const maxHistory = Math.max(1, Math.ceil((historySeconds * 1000) / intervalMs));

  const consumers = new Map<Consumer, Tracked>();
  const pools = new Map<WorkerPool, string>();
  const breakers = new Map<string, CircuitBreaker>();
  const clients = new Set<ServerResponse>();
  const history: DashboardSample[] = [];
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const poolName = (pool: WorkerPool, fallback: string) => {
    const known = pools.get(pool);
    if (known !== undefined) return known;
    const name = pool.name ?? fallback;
    pools.set(pool, name);
    return name;
  };

  const listen = (t: Tracked) => {
    const c = t.consumer;
    const pushError = (e: DashboardError) => {
      if (keepErrors === 0) return;
      t.errors.push(e);
      if (t.errors.length > keepErrors) t.errors.shift();
    };
    const breakerReason = (name: string) => {
      if (breakers.has(name)) t.breakers.add(name);
    };
    t.off = [
      c.on('handled', ({ durationMs }) => t.latency.add(performance.now(), durationMs)),
      c.on('failed', ({ message, error, attempt, durationMs, next }) => {
        t.latency.add(performance.now(), durationMs);
        pushError(errorRecord(error, 'handler', message.id, attempt, next));
      }),
      c.on('error', ({ error, during, message }) => pushError(errorRecord(error, during, message?.id, undefined, undefined))),
      c.on('batch', ({ size, durationMs }) => {
        t.batch.calls++;
        t.batch.sizes += size;
        t.batch.lastSize = size;
        t.batch.lastDurationMs = durationMs;
      }),
      c.on('paused', ({ reason }) => breakerReason(reason)),
      c.on('gated', ({ gate }) => breakerReason(gate)),
    ];
  };
  const unlisten = (t: Tracked) => {
    t.off.forEach((off) => off());
    t.off = [];
    t.previous = undefined;
  };

  const trackConsumer = (consumer: Consumer) => {
    if (consumers.has(consumer)) return;
    const t: Tracked = {
      consumer,
      latency: new LatencyWindow(),
      errors: [],
      batch: { calls: 0, sizes: 0, lastSize: 0, lastDurationMs: 0 },
      breakers: new Set(),
      previous: undefined,
      off: [],
    };
    consumers.set(consumer, t);
    poolName(consumer.pool, consumer.name);
    if (clients.size > 0) listen(t);
  };
  const trackPool = (pool: WorkerPool, name?: string) => {
    if (name !== undefined) pools.set(pool, name);
    else poolName(pool, `pool${pools.size + 1}`);
  };
  const trackBreaker = (breaker: CircuitBreaker) => {
    breakers.set(breaker.name, breaker);
  };

  const samplePool = (pool: WorkerPool, name: string): DashboardPool => {
    const s = pool.status();
    return {
      name,
      limit: s.limit,
      active: s.active,
      pending: s.pending,
      held: s.held,
      maxConcurrency: s.maxConcurrency,
      maxQueueSize: s.maxQueueSize,
      saturated: s.saturated,
      closed: s.closed,
      completed: s.completed,
      failed: s.failed,
      rejected: s.rejected,
      adaptive: s.adaptive ?? null,
    };
  };

  /** One sample; with `advance`, the rates are measured against the previous one and it becomes the previous. */
  const sample = (advance: boolean): DashboardSample => {
    const t = Date.now();
    const now = performance.now();
    const out: DashboardSample = { t, pools: [], consumers: [], breakers: [] };
    for (const [pool, name] of pools) out.pools.push(samplePool(pool, name));
    for (const tracked of consumers.values()) {
      const c = tracked.consumer;
      const s = c.status();
      const h = c.health();
      const counters: DashboardCounters = {
        handled: s.handled,
        failed: s.failed,
        retried: s.retried,
        deadLettered: s.deadLettered,
        givenBack: s.givenBack,
        overloaded: s.overloaded,
        gated: s.gated,
        deferred: s.deferred,
        batches: s.batches,
      };
      let rates: DashboardRates | null = null;
      const prev = tracked.previous;
      if (prev && t > prev.t) {
        const dt = (t - prev.t) / 1000;
        rates = {} as DashboardRates;
        for (const f of RATE_FIELDS) rates[f] = Math.max(0, (counters[f] - prev.counters[f]) / dt);
      }
      if (advance) tracked.previous = { t, counters };
      for (const reason of s.pausedBy) if (breakers.has(reason)) tracked.breakers.add(reason);
      const b = tracked.batch;
      out.consumers.push({
        name: c.name,
        source: c.source.name,
        pool: pools.get(c.pool) ?? c.name,
        state: s.state,
        health: h.status,
        healthReasons: h.details.reasons,
        connection: h.details.connection,
        paused: s.paused,
        pausedBy: s.pausedBy,
        stalled: s.stalled,
        inFlight: s.inFlight,
        batching: s.batching,
        delayedRetries: s.delayedRetries,
        counters,
        rates,
        latency: tracked.latency.percentiles(now, latencyWindowMs),
        batch: b.calls === 0 && s.batches === 0 ? null : { calls: b.calls, meanSize: b.calls === 0 ? 0 : b.sizes / b.calls, lastSize: b.lastSize, lastDurationMs: b.lastDurationMs },
        breakers: [...tracked.breakers],
        errors: [...tracked.errors],
      });
    }
    for (const breaker of breakers.values()) {
      const s = breaker.status();
      out.breakers.push({
        name: s.name,
        state: s.state,
        failureRate: s.failureRate,
        calls: s.calls,
        failures: s.failures,
        consecutiveFailures: s.consecutiveFailures,
        opened: s.opened,
        openedAt: s.openedAt ?? null,
        probes: s.probes,
      });
    }
    return out;
  };

  const remember = (s: DashboardSample) => {
    history.push({ ...s, consumers: s.consumers.map((c) => ({ ...c, errors: [] })) });
    if (history.length > maxHistory) history.splice(0, history.length - maxHistory);
  };

  const send = (res: ServerResponse, event: string, data: unknown) => {
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };

  const tick = () => {
    const s = sample(true);
    remember(s);
    const text = `event: sample\ndata: ${JSON.stringify(s)}\n\n`;
    for (const res of clients) res.write(text);
  };

  const snapshot = (): DashboardSnapshot => ({
    intervalMs,
    historySeconds,
    latencyWindowMs,
    watchers: clients.size,
    current: sample(false),
    history: [...history],
  });

  const startWatching = () => {
    for (const t of consumers.values()) {
      listen(t);
      // The baseline for the first rates, one interval from now.
      t.previous = undefined;
    }
    sample(true);
    timer = setInterval(tick, intervalMs);
    timer.unref();
  };
  const stopWatching = () => {
    if (timer) clearInterval(timer);
    timer = undefined;
    for (const t of consumers.values()) unlisten(t);
  };

  const events = (req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(`retry: ${Math.max(1000, 2 * intervalMs)}\n\n`);
    if (clients.size === 0) startWatching();
    clients.add(res);
    send(res, 'hello', snapshot());
    const leave = () => {
      if (!clients.delete(res)) return;
      if (clients.size === 0) stopWatching();
    };
    req.on('close', leave);
    res.on('close', leave);
  };

  const handle = (req: IncomingMessage, res: ServerResponse, prefix = '/dashboard'): boolean => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (path !== prefix && !path.startsWith(`${prefix}/`)) return false;
    const rest = path.slice(prefix.length);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'application/json', allow: 'GET, HEAD' });
      res.end(JSON.stringify({ error: 'GET only' }));
      return true;
    }
    if (closed) {
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: 'dashboard closed' }));
      return true;
    }
    if (rest === '' || rest === '/') {
      res.writeHead(200, {
        'content-type': 'text/html; charset=utf-8',
        'cache-control': 'no-cache',
        // Everything is inline; nothing is fetched from anywhere but this server.
        'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
        'x-content-type-options': 'nosniff',
      });
      res.end(req.method === 'HEAD' ? undefined : DASHBOARD_HTML);
      return true;
    }
    if (rest === '/snapshot') {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-cache' });
      res.end(req.method === 'HEAD' ? undefined : JSON.stringify(snapshot()));
      return true;
    }
    if (rest === '/events' && req.method === 'GET') {
      events(req, res);
      return true;
    }
    return false;
  };

  for (const pool of options.pools ?? []) trackPool(pool);
  for (const consumer of options.consumers ?? []) trackConsumer(consumer);
  for (const breaker of options.breakers ?? []) trackBreaker(breaker);

  return {
    snapshot,
    handle,
    trackConsumer,
    trackPool,
    trackBreaker,
    get watchers() {
      return clients.size;
    },
    close() {
      closed = true;
      for (const res of clients) res.end();
      clients.clear();
      stopWatching();
    },
  };
}
