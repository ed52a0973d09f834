/**
 * The example's consumer: order events in, one multi-row INSERT per batch out. Exported so that
 * test/integration/example-batch-insert.test.ts runs exactly this against the real PostgreSQL and RabbitMQ.
 */
import { MemoryBroker, memoryConsumer } from '../../adapters/memory/index.js';
import { rabbitConsumer, type RabbitPublisher } from '../../adapters/rabbitmq/index.js';
import { PermanentError, type BatchHandler, type Consumer, type ConsumerOptions, type Message } from '../../src/index.js';
import type { Order, OrderStore } from './store.js';

/** Where the events come from: a RabbitMQ queue (dead letters in `<queue>.dlq`) or the in-process broker. */
export type OrderSource = { broker: 'rabbitmq'; url: string; queue: string } | { broker: 'memory'; memory: MemoryBroker; queue: string };

/** The header that says whose order it is: the batch key, read without parsing the body. */
export const TENANT_HEADER = 'tenant';

/** Why an event can never become a row, or undefined for a valid order. */
export function invalidReason(value: unknown, tenant: string | undefined): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not a JSON object';
  const order = value as Partial<Order>;
  if (typeof order.id !== 'string' || order.id === '') return 'no id';
  if (order.tenant !== tenant) return `tenant ${JSON.stringify(order.tenant)} does not match the ${TENANT_HEADER} header ${JSON.stringify(tenant)}`;
  if (!Number.isSafeInteger(order.amountCents) || order.amountCents! <= 0) return `amountCents ${JSON.stringify(order.amountCents)} is not a positive integer`;
  if (typeof order.currency !== 'string' || !/^[A-Z]{3}$/.test(order.currency)) return `currency ${JSON.stringify(order.currency)} is not an ISO 4217 code`;
  if (typeof order.placedAt !== 'string' || Number.isNaN(Date.parse(order.placedAt))) return `placedAt ${JSON.stringify(order.placedAt)} is not a date`;
  return undefined;
}

/**
 * One call per batch of up to 100 events of one tenant. An event that cannot become a row is
 * marked failed with a PermanentError (dead-lettered at once, never retried: retrying cannot fix
 * it) and the others are written. A database error is thrown: every message of the batch fails
 * and is retried with backoff, which is safe because the INSERT is idempotent.
 */
export function insertOrders(store: Pick<OrderStore, 'insert'>): BatchHandler {
  return async (messages, ctx) => {
    const rows: Order[] = [];
    for (const message of messages) {
      let order: unknown;
      try {
        order = message.json();
      } catch (error) {
        ctx.fail(message, new PermanentError(`order event ${message.id}: ${(error as Error).message}`, { cause: error }));
        continue;
      }
      const reason = invalidReason(order, message.header(TENANT_HEADER));
      if (reason === undefined) rows.push(order as Order);
      else ctx.fail(message, new PermanentError(`order event ${message.id}: ${reason}`));
    }
    await store.insert(rows);
  };
}

/** The consumer options every broker shares: pool, batching, retry. */
export function orderConsumerOptions(store: Pick<OrderStore, 'insert'>): Omit<ConsumerOptions, 'name'> {
  return {
    // Up to 4 INSERTs at once (the store's connections); 400 more places for messages gathering
    // into batches, so that 4 tenants can fill a batch of 100 each while 4 batches run.
    pool: { maxConcurrency: 4, maxQueueSize: 400 },
    batch: {
      size: 100,
      timeoutMs: 500, // a quiet tenant's partial batch is written within half a second
      // One statement per tenant: a tenant whose rows fail (its partition locked, its constraint)
      // retries only its own batch, and each tenant's rows go in together.
      key: (m: Message) => m.header(TENANT_HEADER) ?? 'unknown',
    },
    batchHandler: insertOrders(store),
    // Above the store's statement_timeout: the database gives up first and says why.
    handlerTimeoutMs: 10_000,
    retry: { maxAttempts: 5, backoff: { initialMs: 200, maxMs: 5_000 } },
  };
}

/** The example's consumer on `source`, writing to `store`. */
export function orderConsumer(source: OrderSource, store: Pick<OrderStore, 'insert'>): Consumer {
  const options = orderConsumerOptions(store);
  if (source.broker === 'memory') return memoryConsumer({ ...options, broker: source.memory, queue: source.queue });
  // The default prefetch is the pool's capacity (404): room for every batch key's 100 and more.
  return rabbitConsumer({ ...options, url: source.url, queue: source.queue });
}

/** An event as the example publishes it: the body (an order, or something that is not one) and its tenant header. */
export interface OrderEvent {
  id: string;
  tenant: string;
  body: unknown;
}

const TENANTS = ['acme', 'globex', 'initech'];
const BROKEN: ((order: Order) => unknown)[] = [
  (o) => ({ ...o, amountCents: -o.amountCents }),
  (o) => ({ ...o, currency: 'euro' }),
  (o) => ({ ...o, id: '' }),
  (o) => ({ ...o, tenant: 'someone-else' }),
];

/**
 * `count` events over three tenants, ids `<runId>-<n>`: every 50th cannot become a row (a negative
 * amount, a bad currency, no id, the wrong tenant, in turn), and the last is not JSON at all.
 */
export function orderEvents(count: number, runId: string): { events: OrderEvent[]; valid: string[]; invalid: string[] } {
  const events: OrderEvent[] = [];
  const valid: string[] = [];
  const invalid: string[] = [];
  for (let i = 0; i < count; i++) {
    const id = `${runId}-${String(i).padStart(5, '0')}`;
    const tenant = TENANTS[i % TENANTS.length]!;
    const order: Order = { id, tenant, amountCents: 100 + ((i * 7919) % 100_000), currency: i % 3 === 0 ? 'EUR' : 'USD', placedAt: new Date(Date.UTC(2026, 0, 1) + i * 1000).toISOString() };
    const broken = i === count - 1 ? 'not json' : i % 50 === 49 ? BROKEN[Math.floor(i / 50) % BROKEN.length]!(order) : undefined;
    events.push({ id, tenant, body: broken ?? order });
    (broken === undefined ? valid : invalid).push(id);
  }
  return { events, valid, invalid };
}

/** The bytes to publish: an order as JSON, and the one broken body as it is. */
export const eventBody = (event: OrderEvent): string => (typeof event.body === 'string' ? event.body : JSON.stringify(event.body));

/** Publishes `events` to `queue`, confirmed, 500 at a time (many in flight, not one promise per event of a big run at once). */
export async function publishOrderEvents(publisher: RabbitPublisher, queue: string, events: readonly OrderEvent[]): Promise<void> {
  for (let i = 0; i < events.length; i += 500) {
    await Promise.all(events.slice(i, i + 500).map((e) => publisher.sendToQueue(queue, eventBody(e), { id: e.id, headers: { [TENANT_HEADER]: e.tenant } })));
  }
}
