/**
 * The JetStream adapter against the real NATS server: throughput without loss, pulls bounded by
 * the pool, poison messages, working() for slow handlers, bad input. Exact outcomes by id.
 */
import { nanos } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsConsumer } from '../../adapters/nats/index.js';
import { DEAD_LETTER_HEADERS, WorkerPool, type Message } from '../../src/index.js';
import { natsFixture, unique, type NatsFixture } from '../helpers/nats.js';
import { until } from '../helpers/wait.js';

let nats: NatsFixture;
beforeAll(async () => {
  nats = await natsFixture();
});
afterAll(async () => {
  await nats?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function counter() {
  const calls = new Map<string, number>();
  return {
    calls,
    record: (m: Message) => calls.set(m.id, (calls.get(m.id) ?? 0) + 1),
    get duplicates() {
      return [...calls.values()].reduce((s, n) => s + n - 1, 0);
    },
  };
}

describe('natsConsumer (JetStream) on a real NATS server', () => {
  it('handles 10,000 messages through a pool of 8 + 16: every id once, bound kept', async () => {
    const { stream, subject, dlq } = await nats.stream();
    const ids = await nats.fill(subject, 10_000);
    const pool = new WorkerPool({ maxConcurrency: 8, maxQueueSize: 16 });
    const seen = counter();
    let maxPending = 0;
    const consumer = natsConsumer({
      servers: nats.url,
      stream,
      durable: 'bulk',
      consumerConfig: {},
      deadLetter: { subject: dlq },
      pool,
      handler: async (m) => {
        seen.record(m);
        maxPending = Math.max(maxPending, pool.status().pending);
        await sleep(m.body[m.body.length - 2]! % 4);
      },
    });
    await consumer.start();
    await until(() => consumer.status().handled === 10_000, '10,000 handled', 90_000);
    await consumer.stop();
    expect([...seen.calls.keys()].sort()).toEqual([...ids].sort());
    expect(seen.duplicates).toBe(0);
    expect(maxPending).toBeLessThanOrEqual(16);
    expect(consumer.status().overloaded).toBe(0);
    const info = await nats.jsm.consumers.info(stream, 'bulk');
    expect(info.num_pending).toBe(0);
    expect(info.num_ack_pending).toBe(0);
    await pool.close();
  }, 120_000);

  it('never has more unacked at the server than the pool can hold (slow handler, fast producer)', async () => {
    const { stream, subject, dlq } = await nats.stream();
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 3 });
    const consumer = natsConsumer({
      servers: nats.url,
      stream,
      durable: 'slow',
      consumerConfig: {},
      deadLetter: { subject: dlq },
      pool,
      handler: async () => {
        await sleep(10);
      },
    });
    await consumer.start();
    const publishing = nats.fill(subject, 300);
    let maxAckPending = 0;
    let maxPending = 0;
    let samples = 0;
    while (consumer.status().handled < 300) {
      const info = await nats.jsm.consumers.info(stream, 'slow');
      maxAckPending = Math.max(maxAckPending, info.num_ack_pending);
      maxPending = Math.max(maxPending, pool.status().pending);
      samples++;
      await sleep(5);
    }
    await publishing;
    await consumer.stop();
    expect(samples).toBeGreaterThan(10);
    expect(maxAckPending).toBeGreaterThan(0);
    expect(maxAckPending).toBeLessThanOrEqual(5);
    expect(maxPending).toBeLessThanOrEqual(3);
    expect(consumer.status().overloaded).toBe(0);
    await pool.close();
  }, 60_000);

  it('dead-letters a poison message after exactly maxAttempts deliveries, and it is not delivered again', async () => {
    const { stream, subject, dlq } = await nats.stream();
    await nats.fill(subject, 50);
    await nats.publisher.publishJson(`${subject}.in`, { poison: true }, { id: 'poison-1' });
    let poisonRuns = 0;
    const handled = new Set<string>();
    const consumer = natsConsumer({
      servers: nats.url,
      stream,
      durable: 'poison',
      consumerConfig: {},
      deadLetter: { subject: dlq },
      pool: { maxConcurrency: 4, maxQueueSize: 4 },
      retry: { maxAttempts: 3, backoff: { initialMs: 20, maxMs: 50 } },
      handler: async (m) => {
        if (m.json<{ poison?: boolean }>().poison) {
          poisonRuns++;
          throw new Error('no such card');
        }
        handled.add(m.id);
      },
    });
    await consumer.start();
    await until(() => consumer.status().deadLettered === 1 && handled.size === 50, 'poison dead-lettered, rest handled', 30_000);
    // Messages published after it still flow, and the poison does not come back meanwhile.
    await nats.fill(subject, 5, 'late');
    await until(() => handled.size === 55, 'late messages handled', 30_000);
    await consumer.stop();
    expect(poisonRuns).toBe(3);
    const dead = await nats.jsm.streams.getMessage(`${stream}_DLQ`, { seq: 1 });
    expect(new TextDecoder().decode(dead.data)).toBe('{"poison":true}');
    expect(dead.header.get(DEAD_LETTER_HEADERS.error)).toBe('no such card');
    expect(dead.header.get(DEAD_LETTER_HEADERS.attempts)).toBe('3');
    expect(dead.header.get(DEAD_LETTER_HEADERS.messageId)).toBe('poison-1');
    expect(dead.header.get('x-sluice-stream-sequence')).toBe('51');
    expect((await nats.jsm.streams.info(`${stream}_DLQ`)).state.messages).toBe(1);
    const info = await nats.jsm.consumers.info(stream, 'poison');
    expect(info.num_ack_pending).toBe(0);
    expect(info.num_pending).toBe(0);
  }, 60_000);

  // A dead-letter destination that refuses (no stream captures it, a full stream): nats-settlement.test.ts.

  it('a handler slower than ack_wait is delivered exactly once, thanks to working()', async () => {
    const { stream, subject, dlq } = await nats.stream();
    await nats.fill(subject, 2, 'slow');
    const deliveries: string[] = [];
    const consumer = natsConsumer({
      servers: nats.url,
      stream,
      durable: 'patient',
      consumerConfig: { ack_wait: nanos(1500) },
      deadLetter: { subject: dlq },
      pool: { maxConcurrency: 1, maxQueueSize: 1 },
      handler: async (m) => {
        deliveries.push(m.id);
        await sleep(4000);
      },
    });
    await consumer.start();
    await until(() => consumer.status().handled === 2, 'both handled', 30_000);
    await consumer.stop();
    // The second waited in the pool's queue for 4 s too: working() covers waiting messages as well.
    expect(deliveries).toEqual(['slow-0', 'slow-1']);
    const info = await nats.jsm.consumers.info(stream, 'patient');
    expect(info.num_redelivered).toBe(0);
  }, 30_000);

  it('a non-JSON body goes to the dead-letter subject at once; the rest flows', async () => {
    const { stream, subject, dlq } = await nats.stream();
    await nats.publisher.publish(`${subject}.in`, 'not { json', { id: 'garbage-1' });
    await nats.fill(subject, 3);
    const handled: string[] = [];
    const consumer = natsConsumer({
      servers: nats.url,
      stream,
      durable: 'decode',
      consumerConfig: {},
      deadLetter: { subject: dlq },
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      retry: { maxAttempts: 5 },
      handler: async (m) => {
        m.json();
        handled.push(m.id);
      },
    });
    await consumer.start();
    await until(() => handled.length === 3 && consumer.status().deadLettered === 1, 'garbage dead-lettered', 20_000);
    await consumer.stop();
    expect(consumer.status().retried).toBe(0);
    const dead = await nats.jsm.streams.getMessage(`${stream}_DLQ`, { seq: 1 });
    expect(dead.header.get(DEAD_LETTER_HEADERS.errorName)).toBe('DecodeError');
    expect(dead.header.get(DEAD_LETTER_HEADERS.messageId)).toBe('garbage-1');
  }, 30_000);

  it('a durable deleted mid-stream is recreated from consumerConfig and the pull loop goes on: every id handled', async () => {
    const { stream, subject, dlq } = await nats.stream();
    const ids = await nats.fill(subject, 600);
    const seen = counter();
    const events: string[] = [];
    const consumer = natsConsumer({
      servers: nats.url,
      stream,
      durable: 'doomed',
      consumerConfig: { ack_wait: nanos(2000) },
      // A durable deleted between two pulls is noticed by missed heartbeats (half the expiry): keep it short here.
      pullExpiresMs: 4000,
      deadLetter: { subject: dlq },
      pool: { maxConcurrency: 4, maxQueueSize: 4 },
      recovery: { backoff: { initialMs: 20, maxMs: 200 } },
      handler: async (m) => {
        await sleep(2);
        seen.record(m);
      },
    });
    consumer.on('connection', ({ state }) => events.push(state));
    await consumer.start();
    await until(() => seen.calls.size >= 150, '150 handled before the delete', 30_000);
    await nats.jsm.consumers.delete(stream, 'doomed');
    await until(() => seen.calls.size === 600, 'every id handled after the durable came back', 60_000);
    await consumer.stop();
    expect([...seen.calls.keys()].sort()).toEqual([...ids].sort());
    // Recreated with deliver_policy all: what was handled before comes again (at least once, never lost).
    const info = await nats.jsm.consumers.info(stream, 'doomed');
    expect(info.num_pending).toBe(0);
    expect(events).toContain('disconnected');
  }, 90_000);

  it('bad input: an unreachable server and a missing stream fail start() clearly; invalid options throw', async () => {
    const base = { pool: { maxConcurrency: 1, maxQueueSize: 0 }, handler: async () => {} };
    const unreachable = natsConsumer({
      ...base,
      servers: 'nats://svc:hunter2-pw@127.0.0.1:1',
      stream: 'S',
      durable: 'd',
      connectOptions: { timeout: 500 },
      recovery: { startAttempts: 2, backoff: { initialMs: 10, maxMs: 10 } },
    });
    const e1 = await unreachable.start().then(() => undefined, (e: unknown) => e as Error);
    expect(e1?.message).toMatch(/nats:S\/d: could not connect to nats:\/\/svc:\*\*\*@127\.0\.0\.1:1 after 2 attempt\(s\): NATS at nats:\/\/svc:\*\*\*@127\.0\.0\.1:1 unreachable/);
    expect(e1?.message).not.toContain('hunter2-pw');

    const missing = unique('NOPE').toUpperCase().replace(/-/g, '_');
    const noStream = natsConsumer({ ...base, servers: nats.url, stream: missing, durable: 'd', recovery: { startAttempts: 1 } });
    await expect(noStream.start()).rejects.toThrow(new RegExp(`stream "${missing}" not found`));

    const { stream } = await nats.stream();
    const noDurable = natsConsumer({ ...base, servers: nats.url, stream, durable: 'ghost', recovery: { startAttempts: 1 } });
    await expect(noDurable.start()).rejects.toThrow(/consumer "ghost" not found on stream .* give consumerConfig to have it created/);

    expect(() => natsConsumer({ ...base, servers: nats.url, stream: '', durable: 'd' })).toThrow(/option "stream" must be a non-empty string/);
    expect(() => natsConsumer({ ...base, stream: 'S', durable: 'd' })).toThrow(/exactly one of option "servers" or option "connection"/);
    expect(() => natsConsumer({ ...base, servers: nats.url, stream: 'S', durable: 'd', pullExpiresMs: 10 })).toThrow(/option "pullExpiresMs" must be between|>= 1000/);
    expect(() => natsConsumer({ ...base, servers: nats.url, stream: 'S', durable: 'd', deadLetter: { subject: '' } })).toThrow(/option "deadLetter.subject"/);
  }, 30_000);
});
