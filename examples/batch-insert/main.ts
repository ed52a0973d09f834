/**
 * The batch-insert example: order events from a broker into PostgreSQL, 100 rows per INSERT.
 *
 *   npm run example:batch                      # from RabbitMQ (AMQP_URL, default the local guest account)
 *   npm run example:batch -- --broker memory   # from the in-process broker; PostgreSQL all the same
 *   npm run example:batch -- --count 5000
 *
 * PostgreSQL: POSTGRES_URL, default postgres://postgres@127.0.0.1:5432/sluice_examples (the
 * database and its table `orders` are created when missing). Each run publishes its own ids, so
 * reruns add rows and never collide. Exits 0 only if every valid order is in the table once and
 * every invalid event was dead-lettered.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { MemoryBroker } from '../../adapters/memory/index.js';
import { rabbitPublisher } from '../../adapters/rabbitmq/index.js';
import { eventBody, orderConsumer, orderEvents, publishOrderEvents, TENANT_HEADER, type OrderEvent, type OrderSource } from './orders.js';
import { OrderStore } from './store.js';

/** Where the events are published and dead letters counted, beside the consumer's source. */
interface Feed {
  name: string;
  source: OrderSource;
  publish(events: OrderEvent[]): Promise<void>;
  deadLettered(): Promise<number>;
  close(): Promise<void>;
}

async function rabbitFeed(): Promise<Feed> {
  const url = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
  // A queue of its own per run, deleted (with its .dlq) at the end, so that reruns never mix.
  const queue = `orders-batch-${randomUUID().slice(0, 8)}`;
  const publisher = await rabbitPublisher({ url });
  await publisher.channel.assertQueue(queue, { durable: true });
  return {
    name: `rabbitmq (queue ${queue})`,
    source: { broker: 'rabbitmq', url, queue },
    publish: (events) => publishOrderEvents(publisher, queue, events),
    deadLettered: async () => (await publisher.channel.checkQueue(`${queue}.dlq`)).messageCount,
    async close() {
      await publisher.channel.deleteQueue(queue);
      await publisher.channel.deleteQueue(`${queue}.dlq`);
      await publisher.close();
    },
  };
}

function memoryFeed(): Feed {
  const memory = new MemoryBroker();
  const queue = 'orders';
  return {
    name: 'memory',
    source: { broker: 'memory', memory, queue },
    async publish(events) {
      for (const e of events) memory.publish(queue, eventBody(e), { id: e.id, headers: { [TENANT_HEADER]: e.tenant } });
    },
    deadLettered: async () => memory.depth(`${queue}.dlq`).ready,
    async close() {
      memory.close();
    },
  };
}

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { broker: { type: 'string', default: 'rabbitmq' }, count: { type: 'string', default: '1000' } } });
  if (values.broker !== 'rabbitmq' && values.broker !== 'memory') {
    console.error(`unknown --broker ${JSON.stringify(values.broker)}: use rabbitmq or memory`);
    return 2;
  }
  const count = Number(values.count);
  if (!Number.isSafeInteger(count) || count < 1) throw new RangeError(`--count must be an integer ≥ 1, got ${JSON.stringify(values.count)}`);

  const store = await OrderStore.open();
  const feed = values.broker === 'memory' ? memoryFeed() : await rabbitFeed();
  const runId = `ord-${randomUUID().slice(0, 8)}`;
  const { events, valid, invalid } = orderEvents(count, runId);
  console.log(`sluice batch-insert: ${events.length} order events (${valid.length} valid, ${invalid.length} not) from ${feed.name} into PostgreSQL table ${store.table}\n`);

  const consumer = orderConsumer(feed.source, store);
  const sizes: number[] = [];
  consumer.on('batch', ({ key, size, durationMs, failed }) => {
    sizes.push(size);
    console.log(`  ${(performance.now() - started).toFixed(0).padStart(5)} ms  batch ${String(sizes.length).padStart(3)}  tenant ${String(key).padEnd(8)}  ${String(size).padStart(3)} messages  ${String(failed).padStart(2)} failed  ${durationMs.toFixed(1).padStart(6)} ms`);
  });
  const reasons: string[] = [];
  consumer.on('deadLettered', ({ info }) => reasons.push(info.error.message));
  consumer.on('error', ({ error, during }) => console.error(`[${during}] ${String(error)}`));

  await feed.publish(events);
  const started = performance.now();
  await consumer.start();
  while (consumer.status().handled + consumer.status().deadLettered < events.length) await new Promise((r) => setTimeout(r, 50));
  const elapsedMs = performance.now() - started;
  const { drained } = await consumer.stop({ timeoutMs: 10_000 });

  const inTable = await store.countPrefix(`${runId}-`);
  const deadLettered = await feed.deadLettered();
  const status = consumer.status();
  await feed.close();
  await store.close();

  const rows: [string, string | number][] = [
    ['rows in the table', `${inTable} of this run's ${valid.length} valid orders`],
    ['INSERT statements', `${store.statements} (${(store.rowsWritten / Math.max(1, store.statements)).toFixed(1)} rows each on average, ${store.rowsWritten} rows written)`],
    ['batch calls', `${status.batches} (largest ${Math.max(0, ...sizes)} messages)`],
    ['dead-lettered', `${status.deadLettered} (${deadLettered} in the dead-letter queue)`],
    ['retried', status.retried],
    ['elapsed', `${(elapsedMs / 1000).toFixed(2)} s`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  console.log(`\n${rows.map(([k, v]) => `  ${k.padEnd(width)}  ${v}`).join('\n')}\n`);
  for (const reason of reasons.slice(0, 5)) console.log(`  dead-lettered: ${reason}`);
  if (reasons.length > 5) console.log(`  … and ${reasons.length - 5} more`);

  const ok = drained && inTable === valid.length && store.rowsWritten === valid.length && status.deadLettered === invalid.length && deadLettered === invalid.length;
  console.log(ok ? '\nevery valid order is in the table once; every invalid event is in the dead-letter queue.' : '\nMISMATCH: see the counts above.');
  return ok ? 0 : 1;
}

try {
  process.exit(await main());
} catch (error) {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
}
