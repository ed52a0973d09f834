/**
 * Core NATS through the pool (at most once): request-reply, overload answered with a 503 service
 * error, plain messages dropped and counted on overload, queue-group fan-out.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsSubscriber, type CoreSource } from '../../adapters/nats/index.js';
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
const decode = (b: Uint8Array) => new TextDecoder().decode(b);

describe('natsSubscriber (core NATS) on a real NATS server', () => {
  it('answers requests through the pool with the handler reply', async () => {
    const subject = unique('sluice.rpc');
    const consumer = natsSubscriber({
      servers: nats.url,
      subject,
      pool: { maxConcurrency: 4, maxQueueSize: 8 },
      handler: async (m) => {
        await sleep(2);
        m.raw.respond(JSON.stringify({ echo: m.json<{ n: number }>().n * 2 }));
      },
    });
    await consumer.start();
    const replies = await Promise.all(Array.from({ length: 12 }, (_, n) => nats.publisher.request(subject, JSON.stringify({ n }))));
    await consumer.stop();
    expect(replies.map((r) => JSON.parse(decode(r.data)).echo)).toEqual(Array.from({ length: 12 }, (_, n) => n * 2));
    expect(consumer.status().handled).toBe(12);
  });

  it('answers requests it has no room for with a 503 service error the requester can act on', async () => {
    const subject = unique('sluice.rpc-busy');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const consumer = natsSubscriber({
      servers: nats.url,
      subject,
      pool: { maxConcurrency: 1, maxQueueSize: 1 },
      handler: async (m) => {
        await gate;
        m.raw.respond('done');
      },
    });
    await consumer.start();
    const pending = Array.from({ length: 6 }, (_, n) => nats.publisher.request(subject, String(n), { timeoutMs: 10_000 }));
    await until(() => consumer.status().overloaded === 4, 'four requests overloaded');
    release();
    const replies = await Promise.all(pending);
    await consumer.stop();
    const codes = replies.map((r) => r.headers?.get('Nats-Service-Error-Code') ?? '200');
    expect(codes.filter((c) => c === '503')).toHaveLength(4);
    expect(replies.filter((r) => decode(r.data) === 'done')).toHaveLength(2);
    expect(replies.find((r) => r.headers?.get('Nats-Service-Error-Code') === '503')!.headers!.get('Nats-Service-Error')).toBe('overloaded');
  });

  it('a failing request handler answers with a 500 service error carrying the message', async () => {
    const subject = unique('sluice.rpc-fail');
    const consumer = natsSubscriber({
      servers: nats.url,
      subject,
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      handler: async () => {
        throw new Error('inventory service down');
      },
    });
    await consumer.start();
    const reply = await nats.publisher.request(subject, 'x');
    await consumer.stop();
    expect(reply.headers?.get('Nats-Service-Error-Code')).toBe('500');
    expect(reply.headers?.get('Nats-Service-Error')).toBe('inventory service down');
    expect(() => natsSubscriber({ servers: nats.url, subject, pool: { maxConcurrency: 1, maxQueueSize: 0 }, handler: async () => {}, retry: { maxAttempts: 3 } })).toThrow(
      /"retry.maxAttempts" must be 1 on core NATS/,
    );
  });

  it('drops and counts plain messages it has no room for: at most once, never silently', async () => {
    const subject = unique('sluice.events');
    const handled: number[] = [];
    const consumer = natsSubscriber({
      servers: nats.url,
      subject,
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      handler: async (m) => {
        handled.push(Number(m.text()));
        await sleep(300);
      },
    });
    await consumer.start();
    for (let n = 0; n < 10; n++) nats.nc.publish(subject, String(n));
    await nats.nc.flush();
    const source = consumer.source as CoreSource;
    await until(() => handled.length + source.dropped === 10, 'every message handled or counted as dropped');
    await consumer.stop();
    expect(handled).toEqual([0]);
    expect(source.dropped).toBe(9);
    expect(consumer.status().givenBack).toBe(9);
  });

  it('spreads a queue group over two consumers: every message handled once', async () => {
    const subject = unique('sluice.work');
    const seen = new Map<string, string>();
    const make = (name: string) =>
      natsSubscriber({
        name,
        servers: nats.url,
        subject,
        queueGroup: 'workers',
        pool: { maxConcurrency: 4, maxQueueSize: 64 },
        handler: async (m) => {
          expect(seen.has(m.text())).toBe(false);
          seen.set(m.text(), name);
        },
      });
    const [a, b] = [make('a'), make('b')];
    await a.start();
    await b.start();
    for (let n = 0; n < 200; n++) {
      nats.nc.publish(subject, String(n));
      if (n % 20 === 19) await nats.nc.flush();
    }
    await until(() => seen.size === 200, '200 handled');
    await Promise.all([a.stop(), b.stop()]);
    expect(a.status().handled + b.status().handled).toBe(200);
    expect(a.status().handled).toBeGreaterThan(0);
    expect(b.status().handled).toBeGreaterThan(0);
    expect(a.status().failed + b.status().failed).toBe(0);
  });
});
