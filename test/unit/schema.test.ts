/**
 * The `schema` option with two real Standard Schema libraries (zod 4, valibot 1) on the in-memory
 * broker: valid bodies reach the handler as typed `message.data`, invalid ones are dead-lettered
 * at once with their issues in a header, never retried.
 */
import { describe, expect, it } from 'vitest';
import * as v from 'valibot';
import { z } from 'zod';
import { MemoryBroker, memoryConsumer } from '../../adapters/memory/index.js';
import { DEAD_LETTER_HEADERS, type StandardSchemaV1 } from '../../src/index.js';
import { until } from '../helpers/wait.js';

const zodOrder = z.object({ id: z.string(), amountCents: z.number().int().positive(), currency: z.enum(['EUR', 'USD']) });
const valibotOrder = v.object({ id: v.string(), amountCents: v.pipe(v.number(), v.integer(), v.minValue(1)), currency: v.picklist(['EUR', 'USD']) });

function fill(broker: MemoryBroker) {
  broker.publishJson('orders', { id: 'a', amountCents: 100, currency: 'EUR' }, { id: 'ok-1' });
  broker.publishJson('orders', { id: 'b', amountCents: -5, currency: 'GBP' }, { id: 'bad-1' });
  broker.publish('orders', 'not json {', { id: 'bad-2' });
  broker.publishJson('orders', { id: 'c', amountCents: 250, currency: 'USD' }, { id: 'ok-2' });
}

describe.each([
  ['zod', zodOrder],
  ['valibot', valibotOrder],
] as const)('schema option with %s', (_library, schema) => {
  it('hands valid bodies over as typed message.data and dead-letters the invalid ones at once, with their issues', async () => {
    const broker = new MemoryBroker();
    fill(broker);
    const seen: { id: string; cents: number }[] = [];
    const runs = new Map<string, number>();
    const consumer = memoryConsumer({
      broker,
      queue: 'orders',
      pool: { maxConcurrency: 2, maxQueueSize: 4 },
      retry: { maxAttempts: 5, backoff: { initialMs: 1, maxMs: 1 } },
      schema,
      handler: (m) => {
        runs.set(m.id, (runs.get(m.id) ?? 0) + 1);
        // Typed from the schema: this line does not compile if `data` were unknown.
        const cents: number = m.data.amountCents;
        // @ts-expect-error: not a field of the schema's output
        void m.data.notInTheSchema;
        seen.push({ id: m.data.id, cents });
      },
    });
    await consumer.start();
    await until(() => consumer.status().handled === 2 && consumer.status().deadLettered === 2, 'two handled, two dead-lettered');
    await consumer.stop();

    expect(seen.sort((a, b) => a.id.localeCompare(b.id))).toEqual([
      { id: 'a', cents: 100 },
      { id: 'c', cents: 250 },
    ]);
    // The handler never ran for the invalid ones, and nothing was retried.
    expect([...runs.keys()].sort()).toEqual(['ok-1', 'ok-2']);
    expect(consumer.status().retried).toBe(0);
    const dead = broker.drain('orders.dlq');
    expect(dead.map((d) => d.id).sort()).toEqual(['bad-1', 'bad-2']);
    for (const d of dead) {
      expect(d.headers[DEAD_LETTER_HEADERS.reason]).toBe('invalid');
      expect(d.headers[DEAD_LETTER_HEADERS.errorName]).toBe('ValidationError');
      expect(d.headers[DEAD_LETTER_HEADERS.attempts]).toBe('1');
    }
    const bad1 = dead.find((d) => d.id === 'bad-1')!;
    const issues = JSON.parse(String(bad1.headers[DEAD_LETTER_HEADERS.issues])) as { path: string; message: string }[];
    expect(issues.map((i) => i.path).sort()).toEqual(['amountCents', 'currency']);
    expect(issues.every((i) => i.message.length > 0)).toBe(true);
    const bad2 = dead.find((d) => d.id === 'bad-2')!;
    expect(String(bad2.headers[DEAD_LETTER_HEADERS.issues])).toMatch(/JSON/);
  });

  it('validates batch handlers too: the batch holds only valid messages, each with its data', async () => {
    const broker = new MemoryBroker();
    fill(broker);
    const batches: string[][] = [];
    const consumer = memoryConsumer({
      broker,
      queue: 'orders',
      pool: { maxConcurrency: 1, maxQueueSize: 9 },
      batch: { size: 4, timeoutMs: 20 },
      schema,
      batchHandler: (messages) => {
        batches.push(messages.map((m) => `${m.id}:${m.data.currency}`));
      },
    });
    await consumer.start();
    await until(() => consumer.status().handled === 2 && consumer.status().deadLettered === 2, 'two handled, two dead-lettered');
    await consumer.stop();
    expect(batches.flat().sort()).toEqual(['ok-1:EUR', 'ok-2:USD']);
    expect(broker.drain('orders.dlq').map((d) => d.headers[DEAD_LETTER_HEADERS.reason])).toEqual(['invalid', 'invalid']);
  });
});

describe('schema option, the edges', () => {
  it('waits for a schema that validates asynchronously', async () => {
    const broker = new MemoryBroker();
    fill(broker);
    const known = new Set(['a', 'c']);
    const asyncSchema = z.object({ id: z.string() }).refine(async (o) => {
      await new Promise((r) => setImmediate(r));
      return known.has(o.id);
    }, 'unknown id');
    const ids: string[] = [];
    const consumer = memoryConsumer({ broker, queue: 'orders', pool: { maxConcurrency: 2, maxQueueSize: 4 }, schema: asyncSchema, handler: (m) => void ids.push(m.data.id) });
    await consumer.start();
    await until(() => consumer.status().handled === 2 && consumer.status().deadLettered === 2, 'two handled, two dead-lettered');
    await consumer.stop();
    expect(ids.sort()).toEqual(['a', 'c']);
  });

  it('a schema that throws is an ordinary failure of the attempt: retried, then dead-lettered after maxAttempts', async () => {
    const broker = new MemoryBroker();
    broker.publishJson('orders', { id: 'x' }, { id: 'm-1' });
    let calls = 0;
    const throwing: StandardSchemaV1<unknown, { id: string }> = {
      '~standard': {
        version: 1,
        vendor: 'test',
        validate: () => {
          calls++;
          throw new Error('schema bug');
        },
      },
    };
    const consumer = memoryConsumer({
      broker,
      queue: 'orders',
      pool: { maxConcurrency: 1, maxQueueSize: 1 },
      retry: { maxAttempts: 3, backoff: { initialMs: 1, maxMs: 1 } },
      schema: throwing,
      handler: () => {},
    });
    await consumer.start();
    await until(() => consumer.status().deadLettered === 1, 'dead-lettered after its attempts');
    await consumer.stop();
    expect(calls).toBe(3);
    expect(consumer.status().retried).toBe(2);
    expect(broker.drain('orders.dlq')[0]!.headers[DEAD_LETTER_HEADERS.reason]).toBe('max-attempts');
  });

  it('refuses at construction what is not a Standard Schema', () => {
    const broker = new MemoryBroker();
    expect(() =>
      memoryConsumer({ broker, queue: 'q', pool: { maxConcurrency: 1, maxQueueSize: 0 }, schema: { parse() {} } as never, handler: () => {} }),
    ).toThrow(/option "schema" must be a Standard Schema v1/);
  });
});
