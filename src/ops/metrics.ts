import type { Consumer } from '../consumer.js';
import type { CircuitBreaker } from '../flow/circuit-breaker.js';
import type { WorkerPool } from '../pool/worker-pool.js';

/** The part of prom-client sluice uses; prom-client is an optional peer dependency, loaded on demand. */
type PromClient = typeof import('prom-client');
type Registry = import('prom-client').Registry;

export interface PrometheusMetrics {
  registry: Registry;
  /** Adds a consumer's events to the metrics; returns the function that stops it. */
  track(consumer: Consumer): () => void;
  /** Adds a pool's gauges (read at scrape time). */
  trackPool(pool: WorkerPool, name?: string): void;
  /** Adds a circuit breaker's gauges (read at scrape time), labelled by its name. */
  trackBreaker(breaker: CircuitBreaker): void;
  /** What /metrics serves. */
  metrics(): Promise<{ contentType: string; body: string }>;
}

async function loadPromClient(): Promise<PromClient> {
  try {
    return await import('prom-client');
  } catch (cause) {
    throw new Error('sluice metrics need the optional peer dependency "prom-client": npm install prom-client', { cause });
  }
}

/**
 * Prometheus metrics as listeners on consumer events and pool status. Labels are bounded:
 * consumer and source (queue/topic/subject) names, never message ids.
 */
export async function prometheusMetrics(
  options: { consumers?: Consumer[]; pools?: WorkerPool[]; breakers?: CircuitBreaker[]; registry?: Registry } = {},
): Promise<PrometheusMetrics> {
  const client = await loadPromClient();
  const registry = options.registry ?? new client.Registry();
  const pools = new Map<string, WorkerPool>();
  const consumers = new Set<Consumer>();
  const registers = [registry];
  const rejectedSeen = new Map<string, number>();
  const breakers = new Map<string, CircuitBreaker>();
  const openedSeen = new Map<string, number>();

  const poolGauge = (name: string, help: string, read: (p: WorkerPool) => number) =>
    new client.Gauge({
      name,
      help,
      labelNames: ['pool'],
      registers,
      collect() {
        for (const [label, pool] of pools) this.set({ pool: label }, read(pool));
      },
    });
  poolGauge('sluice_pool_active', 'Tasks running in the pool.', (p) => p.active);
  poolGauge('sluice_pool_pending', 'Tasks waiting for a slot.', (p) => p.pending);
  poolGauge('sluice_pool_held', 'Places held for messages gathering into batches.', (p) => p.status().held);
  poolGauge('sluice_pool_capacity', 'maxConcurrency + maxQueueSize.', (p) => p.status().maxConcurrency + p.status().maxQueueSize);
  poolGauge('sluice_pool_max_concurrency', 'maxConcurrency.', (p) => p.status().maxConcurrency);
  poolGauge('sluice_pool_limit', 'How many may run now: maxConcurrency, or an adaptive pool\'s current limit.', (p) => p.limit);
  new client.Counter({
    name: 'sluice_pool_rejected_total',
    help: 'Submissions answered overloaded.',
    labelNames: ['pool'],
    registers,
    collect() {
      for (const [label, pool] of pools) {
        const now = pool.status().rejected;
        this.inc({ pool: label }, now - (rejectedSeen.get(label) ?? 0));
        rejectedSeen.set(label, now);
      }
    },
  });

  // One series per state, 1 for the current one (the Prometheus convention for an enum).
  new client.Gauge({
    name: 'sluice_circuit_breaker_state',
    help: 'Circuit breaker state: 1 for the current one of closed, open, half-open.',
    labelNames: ['breaker', 'state'],
    registers,
    collect() {
      for (const [label, breaker] of breakers) {
        for (const state of ['closed', 'open', 'half-open'] as const) this.set({ breaker: label, state }, breaker.state === state ? 1 : 0);
      }
    },
  });
  new client.Counter({
    name: 'sluice_circuit_breaker_opened_total',
    help: 'Times the circuit breaker opened.',
    labelNames: ['breaker'],
    registers,
    collect() {
      for (const [label, breaker] of breakers) {
        const now = breaker.status().opened;
        this.inc({ breaker: label }, now - (openedSeen.get(label) ?? 0));
        openedSeen.set(label, now);
      }
    },
  });

  const labels = ['consumer', 'source'] as const;
  const counter = (name: string, help: string, extra: string[] = []) =>
    new client.Counter({ name, help, labelNames: [...labels, ...extra], registers });
  const handled = counter('sluice_messages_handled_total', 'Messages handled and acknowledged.');
  const failed = counter('sluice_messages_failed_total', 'Handler failures (each attempt).', ['next']);
  const retried = counter('sluice_messages_retried_total', 'Messages scheduled for another attempt.');
  const deadLettered = counter('sluice_messages_dead_lettered_total', 'Messages sent to the dead-letter destination.', ['reason']);
  const givenBack = counter('sluice_messages_given_back_total', 'Messages handed back unprocessed.', ['reason']);
  const pausedSeconds = counter('sluice_consumer_paused_seconds_total', 'Time spent paused, by reason (overload, user, a gate).', ['reason']);
  const gated = counter('sluice_messages_gated_total', 'Messages a flow gate refused before they took a pool slot.', ['gate']);
  const deferred = counter('sluice_messages_deferred_total', 'Retries and dead letters set aside after their broker action kept failing.', ['settlement']);
  // Read from status() at scrape time: counts the runtime keeps without an event per occurrence.
  const seen = new Map<string, number>();
  for (const [name, help, field] of [
    ['sluice_messages_skipped_stale_total', 'Deliveries not started (or not settled) because their channel or partition was gone.', 'skippedStale'],
    ['sluice_settlement_failures_total', 'Broker actions (ack, retry, dead-letter, give-back, defer) that failed, each try.', 'settlementFailures'],
    ['sluice_settlements_abandoned_total', 'Settlements nothing could carry out, left to the broker to redeliver.', 'abandoned'],
  ] as const) {
    new client.Counter({
      name,
      help,
      labelNames: ['consumer'],
      registers,
      collect() {
        for (const c of consumers) {
          const key = `${name}\u0000${c.name}`;
          const now = c.status()[field];
          this.inc({ consumer: c.name }, now - (seen.get(key) ?? 0));
          seen.set(key, now);
        }
      },
    });
  }
  const duration = new client.Histogram({
    name: 'sluice_handler_duration_seconds',
    help: 'Handler run time per attempt.',
    labelNames: [...labels, 'outcome'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  const batchSize = new client.Histogram({
    name: 'sluice_batch_size',
    help: 'Messages per batch handler call.',
    labelNames: ['consumer'],
    buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500],
    registers,
  });
  const batchDuration = new client.Histogram({
    name: 'sluice_batch_duration_seconds',
    help: 'Batch handler run time per call.',
    labelNames: ['consumer', 'outcome'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  const batchMessages = counter('sluice_batch_messages_total', 'Messages of batch handler calls, by their outcome in the call (succeeded, failed).', ['outcome']);
  new client.Gauge({
    name: 'sluice_consumer_paused',
    help: '1 while the consumer is paused at the broker (for any reason).',
    labelNames: ['consumer'],
    registers,
    collect() {
      for (const c of consumers) this.set({ consumer: c.name }, c.status().paused ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'sluice_consumer_in_flight',
    help: 'Messages accepted by the pool and not yet settled.',
    labelNames: ['consumer'],
    registers,
    collect() {
      for (const c of consumers) this.set({ consumer: c.name }, c.status().inFlight);
    },
  });

  const trackPool = (pool: WorkerPool, name = pool.name ?? `pool${pools.size + 1}`) => {
    pools.set(name, pool);
  };

  const track = (consumer: Consumer) => {
    consumers.add(consumer);
    trackPool(consumer.pool, consumer.pool.name ?? `${consumer.name}`);
    const l = (source: string) => ({ consumer: consumer.name, source });
    const offs = [
      consumer.on('handled', ({ message, durationMs }) => {
        handled.inc(l(message.source));
        duration.observe({ ...l(message.source), outcome: 'ok' }, durationMs / 1000);
      }),
      consumer.on('failed', ({ message, durationMs, next }) => {
        failed.inc({ ...l(message.source), next });
        duration.observe({ ...l(message.source), outcome: 'error' }, durationMs / 1000);
      }),
      consumer.on('retried', ({ message }) => retried.inc(l(message.source))),
      consumer.on('deadLettered', ({ message, info }) => deadLettered.inc({ ...l(message.source), reason: info.reason })),
      consumer.on('givenBack', ({ message, reason }) => givenBack.inc({ ...l(message.source), reason })),
      consumer.on('resumed', ({ reason, pausedMs }) => pausedSeconds.inc({ consumer: consumer.name, source: consumer.source.name, reason }, pausedMs / 1000)),
      consumer.on('gated', ({ message, gate }) => gated.inc({ ...l(message.source), gate })),
      consumer.on('deferred', ({ message, settlement }) => deferred.inc({ ...l(message.source), settlement })),
      consumer.on('batch', ({ size, durationMs, succeeded, failed }) => {
        const c = { consumer: consumer.name };
        batchSize.observe(c, size);
        batchDuration.observe({ ...c, outcome: failed === 0 ? 'ok' : succeeded === 0 ? 'error' : 'partial' }, durationMs / 1000);
        const s = { ...l(consumer.source.name) };
        if (succeeded > 0) batchMessages.inc({ ...s, outcome: 'succeeded' }, succeeded);
        if (failed > 0) batchMessages.inc({ ...s, outcome: 'failed' }, failed);
      }),
    ];
    return () => {
      consumers.delete(consumer);
      offs.forEach((off) => off());
    };
  };

  const trackBreaker = (breaker: CircuitBreaker) => {
    breakers.set(breaker.name, breaker);
  };

  for (const pool of options.pools ?? []) trackPool(pool);
  for (const breaker of options.breakers ?? []) trackBreaker(breaker);
  for (const consumer of options.consumers ?? []) track(consumer);
  return {
    registry,
    track,
    trackPool,
    trackBreaker,
    metrics: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
  };
}
