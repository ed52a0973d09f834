/**
 * A circuit breaker shared by two consumers that call the same downstream (a card gateway), on
 * the in-memory broker: `npx tsx examples/circuit-breaker.ts`.
 *
 * The gateway fails everything for 300 ms after the 100th payment. The breaker opens, both
 * consumers pause at the broker, probes go through every `openMs` until one set succeeds, then
 * consumption resumes. It prints every transition and pause, and a summary: every payment handled,
 * none dead-lettered. Exits 1 if that is not so.
 */
import { CircuitBreaker, WorkerPool } from 'sluice';
import { MemoryBroker, memoryConsumer } from 'sluice/memory';

const broker = new MemoryBroker();
const queues = ['payments', 'refunds'];
const perQueue = 200;
for (const queue of queues) for (let i = 0; i < perQueue; i++) broker.publishJson(queue, { i }, { id: `${queue}-${i}` });

const pool = new WorkerPool({ name: 'gateway', maxConcurrency: 8, maxQueueSize: 8 });
// One breaker for the one downstream, whichever queue calls it.
const breaker = new CircuitBreaker({ name: 'card-gateway', failureRate: 0.5, minCalls: 10, windowMs: 10_000, openMs: 100, halfOpenProbes: 2, consecutiveFailures: 5 });

const t0 = performance.now();
const at = () => `${String(Math.round(performance.now() - t0)).padStart(5)} ms`;
let outageUntil = 0;
let handled = 0;
let callsDuringOutage = 0;

/** The downstream: 2–6 ms per call; down for 300 ms once 100 payments went through. */
async function chargeCard(signal: AbortSignal): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 2 + Math.random() * 4));
  signal.throwIfAborted();
  const now = performance.now();
  if (handled === 100 && outageUntil === 0) {
    outageUntil = now + 300;
    console.log(`${at()}  the card gateway goes down for 300 ms`);
  }
  if (now < outageUntil) {
    callsDuringOutage++;
    throw new Error('503 Service Unavailable');
  }
}

breaker.on('open', ({ reason, status }) =>
  console.log(`${at()}  breaker OPEN: ${reason === 'probe-failed' ? 'a probe failed' : `${reason}, ${status.failures} of ${status.calls} calls failed in the window`}`),
);
breaker.on('halfOpen', () => console.log(`${at()}  breaker half-open: ${breaker.halfOpenProbes} probes may go through`));
breaker.on('close', () => console.log(`${at()}  breaker CLOSED: consumption resumes`));

const consumers = queues.map((queue) =>
  memoryConsumer({
    broker,
    queue,
    pool,
    retry: { maxAttempts: 3, backoff: { initialMs: 20, maxMs: 200 } },
    flow: { gates: [breaker] },
    handler: async (_msg, { signal }) => {
      await chargeCard(signal);
      handled++;
    },
  }),
);
const givenBack = new Map<string, number>();
for (const consumer of consumers) {
  consumer.on('givenBack', ({ reason }) => givenBack.set(reason, (givenBack.get(reason) ?? 0) + 1));
  consumer.on('paused', ({ reason }) => reason === 'card-gateway' && console.log(`${at()}    ${consumer.name} paused at the broker (${reason})`));
  consumer.on('resumed', ({ reason }) => reason === 'card-gateway' && console.log(`${at()}    ${consumer.name} resumed`));
}

await Promise.all(consumers.map((c) => c.start()));
const total = queues.length * perQueue;
const settled = () => consumers.reduce((n, c) => n + c.status().handled + c.status().deadLettered, 0);
while (settled() < total) await new Promise((resolve) => setTimeout(resolve, 10));
await Promise.all(consumers.map((c) => c.stop()));
await pool.close();

const deadLettered = consumers.reduce((n, c) => n + c.status().deadLettered, 0);
console.log(
  `\n${handled} of ${total} handled, ${deadLettered} dead-lettered; the breaker opened ${breaker.status().opened} time(s); ` +
    `${callsDuringOutage} gateway calls failed during the outage (the ones before it opened, those in flight, and the probes); ` +
    `given back without spending an attempt: ${givenBack.get('excused') ?? 0} excused failures, ${givenBack.get('gated') ?? 0} refused by the breaker`,
);
process.exitCode = handled === total && deadLettered === 0 ? 0 : 1;
