/**
 * One contender's run: a consumer drains the N messages its BatchBroker prepared, every message
 * going to the simulated bulk downstream, with a single-message handler (one call per message)
 * or a batch handler (one call per batch). Both parse each message's JSON (a row) first. A third
 * kind, 'no-op', parses and calls nothing: the same consumer and pool with no downstream, i.e.
 * the most this broker, its client and the runtime deliver here, which bounds what batching
 * can reach.
 *
 * The clock starts at the first handler call (connecting and joining are not what is compared)
 * and stops at the N-th `handled` event (the message acknowledged). Meanwhile the pool's bound is
 * checked: active + pending + held ≤ maxConcurrency + maxQueueSize, sampled at every handler
 * call's start and end and every 5 ms.
 */
import { WorkerPool, type Message } from '../../src/index.js';
import { gc } from '../harness.js';
import type { BatchBroker, ContenderOptions } from './brokers.js';
import { BulkDownstream, type BulkDownstreamStats } from './downstream.js';

export type ContenderKind = 'single' | 'batch' | 'no-op';

export interface DrainConfig {
  readonly n: number;
  readonly maxConcurrency: number;
  readonly maxQueueSize: number;
  readonly batchSize: number;
  readonly batchTimeoutMs: number;
  readonly callMs: number;
  readonly rowMs: number;
  /** A run with no message handled for this long fails (a hang guard, not a measure). */
  readonly stallLimitMs: number;
}

export interface PoolBoundCheck {
  readonly capacity: number;
  readonly samples: number;
  /** The highest active + pending + held seen. */
  readonly maxUsed: number;
  readonly maxActive: number;
  readonly maxHeld: number;
  /** Samples with active + pending + held above capacity (or active above maxConcurrency). */
  readonly violations: number;
  /** The first violating status, as JSON. */
  readonly firstViolation: string | undefined;
}

export interface DrainResult {
  readonly kind: ContenderKind;
  readonly messagesPerSecond: number;
  readonly seconds: number;
  /** Process CPU time (user + system) per message over the run, µs: moves less than wall time on a shared machine. */
  readonly cpuMicrosPerMessage: number;
  readonly downstream: BulkDownstreamStats;
  readonly pool: PoolBoundCheck;
  /** Handler calls (single) or batch calls (batch), and messages per call. */
  readonly calls: number;
  readonly meanCallSize: number;
  readonly maxCallSize: number;
  /** Messages seen by a handler more than once (should be 0: nothing fails or is given back here). */
  readonly duplicates: number;
  readonly failed: number;
  readonly deadLettered: number;
  readonly givenBack: number;
}

export async function drain(broker: BatchBroker, kind: ContenderKind, config: DrainConfig): Promise<DrainResult> {
  const { n, maxConcurrency, maxQueueSize } = config;
  const pool = new WorkerPool({ name: `batch-bench-${kind}`, maxConcurrency, maxQueueSize });
  const downstream = new BulkDownstream({ capacity: maxConcurrency, callMs: config.callMs, rowMs: config.rowMs });
  const bound = poolBound(pool);
  const seen = new Set<string>();
  let duplicates = 0;
  let calls = 0;
  let maxCallSize = 0;
  let startedAt = 0;
  const handle = (messages: readonly Message[]) => {
    if (startedAt === 0) startedAt = performance.now();
    bound.sample();
    calls++;
    if (messages.length > maxCallSize) maxCallSize = messages.length;
    for (const m of messages) {
      if (seen.has(m.id)) duplicates++;
      else seen.add(m.id);
    }
    return messages.map((m) => m.json());
  };
  const contenders: Record<ContenderKind, ContenderOptions> = {
    single: {
      pool,
      handler: async (message) => {
        await downstream.call(handle([message]).length);
        bound.sample();
      },
    },
    batch: {
      pool,
      batch: { size: config.batchSize, timeoutMs: config.batchTimeoutMs },
      batchHandler: async (messages) => {
        await downstream.call(handle(messages).length);
        bound.sample();
      },
    },
    'no-op': { pool, handler: (message) => void handle([message]) },
  };
  const options = contenders[kind];

  const consumer = await broker.prepare(options);
  let handled = 0;
  let failed = 0;
  let deadLettered = 0;
  let givenBack = 0;
  let endedAt = 0;
  let lastProgress = performance.now();
  let done!: () => void;
  let fail!: (error: Error) => void;
  const all = new Promise<void>((resolve, reject) => ((done = resolve), (fail = reject)));
  consumer.on('handled', () => {
    lastProgress = performance.now();
    if (++handled === n) {
      endedAt = lastProgress;
      done();
    }
  });
  consumer.on('failed', () => void failed++);
  consumer.on('deadLettered', () => void deadLettered++);
  consumer.on('givenBack', () => void givenBack++);
  const sampler = setInterval(() => {
    bound.sample();
    if (performance.now() - lastProgress > config.stallLimitMs) {
      fail(new Error(`${broker.name} ${kind}: no message handled for ${config.stallLimitMs} ms (${handled} of ${n}); status ${JSON.stringify(consumer.status())}`));
    }
  }, 5);
  gc();
  const cpuBefore = process.cpuUsage();
  let cpu: NodeJS.CpuUsage | undefined;
  try {
    await consumer.start();
    lastProgress = performance.now();
    await all;
    cpu = process.cpuUsage(cpuBefore);
  } finally {
    clearInterval(sampler);
    await consumer.stop({ timeoutMs: 10_000 });
    await pool.close();
  }
  const seconds = (endedAt - startedAt) / 1000;
  return {
    kind,
    messagesPerSecond: n / seconds,
    seconds,
    cpuMicrosPerMessage: (cpu!.user + cpu!.system) / n,
    downstream: downstream.stats(),
    pool: bound.result(),
    calls,
    meanCallSize: seen.size / calls,
    maxCallSize,
    duplicates,
    failed,
    deadLettered,
    givenBack,
  };
}

/** Samples the pool's books and remembers the worst. */
function poolBound(pool: WorkerPool) {
  const status0 = pool.status();
  const capacity = status0.maxConcurrency + status0.maxQueueSize;
  let samples = 0;
  let maxUsed = 0;
  let maxActive = 0;
  let maxHeld = 0;
  let violations = 0;
  let firstViolation: string | undefined;
  return {
    sample(): void {
      const s = pool.status();
      const used = s.active + s.pending + s.held;
      samples++;
      if (used > maxUsed) maxUsed = used;
      if (s.active > maxActive) maxActive = s.active;
      if (s.held > maxHeld) maxHeld = s.held;
      if (used > capacity || s.active > s.maxConcurrency) {
        violations++;
        firstViolation ??= JSON.stringify(s);
      }
    },
    result(): PoolBoundCheck {
      return { capacity, samples, maxUsed, maxActive, maxHeld, violations, firstViolation };
    },
  };
}
