/**
 * examples/batch-insert against the real PostgreSQL and a real RabbitMQ queue: the example's own
 * consumer (orderConsumer) writes every valid order once, in far fewer INSERTs than events,
 * dead-letters the invalid ones, and retries a whole batch the database refused.
 * PostgreSQL: POSTGRES_URL, else the example's default (127.0.0.1:5432, trust). Never skipped: no
 * PostgreSQL is a failure that says how to start it. The test's table is its own and dropped afterwards.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { orderConsumer, orderEvents, publishOrderEvents } from '../../examples/batch-insert/orders.js';
import { DEFAULT_POSTGRES_URL, OrderStore, type Order } from '../../examples/batch-insert/store.js';
import { DEAD_LETTER_HEADERS, type Consumer } from '../../src/index.js';
import { unique } from '../helpers/names.js';
import { rabbitFixture, type RabbitFixture } from '../helpers/rabbit.js';
import { until } from '../helpers/wait.js';

const POSTGRES_URL = process.env.POSTGRES_URL ?? DEFAULT_POSTGRES_URL;
const HOW_TO_START = '`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` (Debian package)';
const TABLE = unique('orders_test').replace('-', '_');

let rabbit: RabbitFixture;
let store: OrderStore;
const consumers: Consumer[] = [];

beforeAll(async () => {
  try {
    store = await OrderStore.open({ url: POSTGRES_URL, table: TABLE });
  } catch (error) {
    throw new Error(
      `No PostgreSQL for the integration tests. Start one with ${HOW_TO_START}, or set POSTGRES_URL.\n` +
        `Tried: ${POSTGRES_URL}: ${error instanceof Error ? error.message || String(error) : error}.`,
    );
  }
  rabbit = await rabbitFixture();
});

afterAll(async () => {
  for (const consumer of consumers) await consumer.stop({ timeoutMs: 5_000 });
  await store?.dropTable();
  await store?.close();
  await rabbit?.close();
});

const count = (map: Map<string, number>, id: string) => map.set(id, (map.get(id) ?? 0) + 1);

/** The store as the example's consumer uses it, counting how many times each order id was sent in an INSERT. */
function counting(target: OrderStore) {
  const offered = new Map<string, number>();
  return {
    offered,
    insert(rows: readonly Order[]) {
      for (const row of rows) count(offered, row.id);
      return target.insert(rows);
    },
  };
}

/** A fresh queue filled with `n` of the example's events (every 50th invalid, the last not JSON), and the example's consumer on it. */
async function run(n: number, target: OrderStore) {
  const queue = rabbit.queue('sluice-batch-insert');
  const runId = unique('ord');
  const { events, valid, invalid } = orderEvents(n, runId);
  await rabbit.withChannel((ch) => ch.assertQueue(queue, { durable: true }));
  await publishOrderEvents(rabbit.publisher, queue, events);
  const sink = counting(target);
  const consumer = orderConsumer({ broker: 'rabbitmq', url: rabbit.url, queue }, sink);
  consumers.push(consumer);
  const batchSizes: number[] = [];
  consumer.on('batch', ({ size }) => batchSizes.push(size));
  const failures: string[] = [];
  consumer.on('failed', ({ error }) => failures.push(String(error)));
  let rowsFound = 0;
  const allRows = () => until(() => rowsFound === valid.length, `all ${valid.length} valid orders in ${TABLE}`, 120_000, async () => (rowsFound = await target.countPrefix(`${runId}-`)));
  const allDeadLettered = () => until(() => consumer.status().deadLettered === invalid.length, `the ${invalid.length} invalid events dead-lettered`, 60_000);
  return { queue, valid, invalid, consumer, offered: sink.offered, batchSizes, failures, allRows, allDeadLettered };
}

/** The dead-letter queue holds exactly the invalid events, each dead-lettered at once for a permanent error. */
async function expectDeadLetters(queue: string, invalid: string[]) {
  const dead = await rabbit.drain(`${queue}.dlq`);
  expect(dead.map((m) => String(m.properties.messageId)).sort()).toEqual([...invalid].sort());
  for (const m of dead) {
    const headers = m.properties.headers ?? {};
    expect(headers[DEAD_LETTER_HEADERS.reason]).toBe('permanent-error');
    expect(String(headers[DEAD_LETTER_HEADERS.attempts])).toBe('1');
    expect(String(headers[DEAD_LETTER_HEADERS.error])).toMatch(new RegExp(`^order event ${m.properties.messageId}: (not a JSON object|no id|tenant |amountCents |currency |.*not JSON)`));
  }
}

describe('examples/batch-insert on the real PostgreSQL, from a real RabbitMQ queue', () => {
  it('writes each of 1000 events\' valid orders exactly once in ≪ 1000 INSERTs, and dead-letters the 20 invalid ones', async () => {
    const r = await run(1000, store);
    expect(r.invalid).toHaveLength(20);
    const statementsBefore = store.statements;
    const writtenBefore = store.rowsWritten;
    await r.consumer.start();
    await r.allRows();
    await r.allDeadLettered();
    const { drained } = await r.consumer.stop({ timeoutMs: 10_000 });
    expect(drained).toBe(true);

    const inTable = await store.countIds([...r.valid, ...r.invalid]);
    for (const id of r.valid) expect(inTable.get(id), `rows of ${id}`).toBe(1);
    for (const id of r.invalid) expect(inTable.get(id), `rows of invalid ${id}`).toBe(0);
    // Each valid order went into exactly one INSERT; no invalid one into any.
    for (const id of r.valid) expect(r.offered.get(id), `INSERTs carrying ${id}`).toBe(1);
    expect([...r.offered.keys()].filter((id) => r.invalid.includes(id))).toEqual([]);
    expect(store.rowsWritten - writtenBefore).toBe(r.valid.length);

    const statements = store.statements - statementsBefore;
    const status = r.consumer.status();
    expect(statements).toBeGreaterThanOrEqual(Math.ceil(r.valid.length / 100));
    expect(statements).toBeLessThanOrEqual(status.batches); // one per batch call at most
    expect(statements * 10).toBeLessThanOrEqual(1000); // ≪ N: 1000 events in at most 100 statements
    expect(Math.max(...r.batchSizes)).toBeLessThanOrEqual(100);
    expect(r.batchSizes.reduce((a, b) => a + b, 0)).toBe(1000);
    expect(status.handled).toBe(r.valid.length);
    expect(status.retried).toBe(0);
    await expectDeadLetters(r.queue, r.invalid);
  }, 180_000);

  it('a database error fails the whole batch: it is retried, and each order still ends up in the table once', async () => {
    // A store whose statements give up after 500 ms, and a transaction that locks the table: every INSERT fails until it commits.
    const impatient = await OrderStore.open({ url: POSTGRES_URL, table: TABLE, statementTimeoutMs: 500 });
    const locker = new pg.Client({ connectionString: POSTGRES_URL });
    await locker.connect();
    try {
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE ${TABLE} IN ACCESS EXCLUSIVE MODE`);
      const r = await run(300, impatient);
      await r.consumer.start();
      await until(() => r.consumer.status().retried > 0, 'a batch retried after the database refused its INSERT', 60_000);
      await locker.query('COMMIT');
      await r.allRows();
      await r.allDeadLettered();
      await r.consumer.stop({ timeoutMs: 10_000 });

      expect(r.failures.some((e) => /canceling statement due to statement timeout/.test(e))).toBe(true);
      const inTable = await impatient.countIds(r.valid);
      for (const id of r.valid) expect(inTable.get(id), `rows of ${id}`).toBe(1);
      // Some orders went into more than one INSERT (the refused one and its retry); each was written once.
      expect([...r.offered.values()].some((n) => n > 1)).toBe(true);
      expect(impatient.rowsWritten).toBe(r.valid.length);
      expect(r.consumer.status().handled).toBe(r.valid.length);
      // The invalid events of a refused batch kept their own PermanentError: dead-lettered at once, not retried.
      await expectDeadLetters(r.queue, r.invalid);
    } finally {
      await locker.query('ROLLBACK').catch(() => {});
      await locker.end();
      await impatient.close();
    }
  }, 180_000);
});
