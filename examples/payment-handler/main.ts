/**
 * The payment-handler example: a burst of payments into a small pool with a slow downstream.
 * Overload gives messages back to the broker; failures are retried with backoff; payments that
 * can never succeed, and a message that is not JSON, end in the dead-letter queue.
 *
 *   npm start                         # in-memory broker, nothing to install
 *   npm start -- --broker rabbitmq    # or kafka, nats (needs the broker running)
 *   npm start -- --downstream-outage  # the gateway goes down for a while: a circuit breaker opens, probes, closes
 *   npm start -- --rate 200           # a rate limit of 200 payments/s on the consumer
 *   npm start -- --dashboard-port 0   # the live dashboard on any free port (default 9464; off: none)
 */
import { parseArgs } from 'node:util';
import { CircuitBreaker, runService, WorkerPool } from '../../src/index.js';
import { dashboardMode, dashboardUrl, freePort, linger, waitForViewer } from './dashboard.js';
import type { DemoBroker, Payment } from './demo-broker.js';
import { flowMode } from './flow.js';
import { chargeCard, makePayments } from './payments.js';
import { startProgress, summary, type Tally } from './progress.js';

const BROKERS = ['memory', 'rabbitmq', 'kafka', 'nats'] as const;
type BrokerName = (typeof BROKERS)[number];

async function loadBroker(name: BrokerName): Promise<DemoBroker> {
  // Each adapter is imported only when asked for, so the demo runs with no broker client installed.
  const module = (await import(`./brokers/${name}.js`)) as { createDemoBroker(): Promise<DemoBroker> };
  return module.createDemoBroker();
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      broker: { type: 'string', default: 'memory' },
      count: { type: 'string', default: '400' },
      concurrency: { type: 'string', default: '8' },
      queue: { type: 'string', default: '16' },
      'downstream-outage': { type: 'boolean', default: false },
      'outage-ms': { type: 'string', default: '2000' },
      rate: { type: 'string' },
      'dashboard-port': { type: 'string', default: '9464' },
      'dashboard-wait': { type: 'string', default: '15' },
    },
  });
  const brokerName = values.broker as BrokerName;
  if (!BROKERS.includes(brokerName)) {
    console.error(`unknown --broker ${JSON.stringify(values.broker)}: use one of ${BROKERS.join(', ')}`);
    return 2;
  }
  const count = Number(values.count);
  const dashboard = dashboardMode(values['dashboard-port'], values['dashboard-wait'], process.stdout.isTTY === true);
  // The pool validates its own options and says which one is wrong.
  const pool = new WorkerPool({ name: 'payments', maxConcurrency: Number(values.concurrency), maxQueueSize: Number(values.queue) });

  const broker = await loadBroker(brokerName);
  const payments = makePayments(count, `pay-${Date.now().toString(36)}`);
  const tally: Tally = { published: payments.length + 1, processedIds: new Set(), duplicates: 0 };
  // --downstream-outage / --rate: flow gates on the consumer (none without the flags).
  const outageMs = Number(values['outage-ms']);
  if (values['downstream-outage'] && !(outageMs > 0)) throw new RangeError(`--outage-ms must be a number of ms > 0, got ${JSON.stringify(values['outage-ms'])}`);
  const flow = flowMode({
    outageMs: values['downstream-outage'] ? outageMs : undefined,
    outageAfter: Math.floor(count / 3),
    rate: values.rate === undefined ? undefined : Number(values.rate),
  });

  const consumer = await broker.consumer({
    pool,
    onOverload: 'pause',
    handlerTimeoutMs: 5_000,
    retry: { maxAttempts: 3, backoff: { initialMs: 50, maxMs: 500 } },
    ...(flow.gates.length > 0 ? { flow: { gates: flow.gates } } : {}),
    handler: async (message, { signal }) => {
      const payment = message.json<Payment>();
      await chargeCard(payment, signal, flow.health);
      if (tally.processedIds.has(message.id)) tally.duplicates++;
      tally.processedIds.add(message.id);
      flow.handled(tally.processedIds.size);
    },
  });
  flow.watch(consumer);
  consumer.on('error', ({ error, during }) => console.error(`\n[${during}] ${String(error)}`));

  console.log(`sluice payment-handler on ${broker.name}: ${tally.published} messages, pool ${pool.status().maxConcurrency} running + ${pool.status().maxQueueSize} waiting\n`);
  // runService starts the consumer and serves the dashboard (loopback only); the demo drains it itself at the end.
  const service = await runService({
    consumers: [consumer],
    pools: [pool],
    signals: [],
    exitOnSignal: false,
    shutdownTimeoutMs: 10_000,
    ...(dashboard.port === undefined
      ? {}
      : { http: { port: await freePort(dashboard.port), dashboard: { breakers: flow.gates.filter((g) => g instanceof CircuitBreaker) } } }),
  });
  const url = dashboardUrl(service);
  if (url) console.log(`dashboard: ${url}\n`);
  await waitForViewer(service, dashboard);
  const started = performance.now();
  const stopProgress = startProgress(() => consumer.status(), tally, process.stdout, flow.gates.length > 0 ? flow.progress : undefined);
  await broker.publish(payments);

  // Done when every message is either processed or dead-lettered.
  const expected = tally.published;
  while (consumer.status().handled + consumer.status().deadLettered < expected) {
    await new Promise((r) => setTimeout(r, 50));
  }
  stopProgress();
  const elapsed = performance.now() - started;
  await linger(service, dashboard);
  const result = await service.stop('the demo is done');
  const deadLettered = await broker.deadLettered();
  await broker.close();

  const status = consumer.status();
  console.log(`\n${summary(status, tally, deadLettered, elapsed, flow.rows())}\n`);
  const ok = result.clean && status.handled + status.deadLettered === expected && status.pool.active === 0;
  console.log(ok ? 'every payment was processed or dead-lettered; none lost.' : 'MISMATCH: some messages are unaccounted for.');
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
