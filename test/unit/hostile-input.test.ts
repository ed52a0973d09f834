/**
 * Fixes found by the hostile-input property tests (test/faults/hostile-*.test.ts), each pinned
 * here without a broker: what a producer can put in a message must not break settling it.
 * The NATS messages are the clients' own message classes, parsed from wire bytes.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { ConsumeMessage } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { toMessage as kafkaMessage } from '../../adapters/kafka/delivery.js';
import { RabbitDelivery, toMessage } from '../../adapters/rabbitmq/delivery.js';
import { republishable } from '../../adapters/rabbitmq/header-table.js';
import type { NatsClient } from '../../adapters/nats/client.js';
import { deadLetterNatsHeaders, receivedHeaders, toNatsHeaders, writableNatsHeaders } from '../../adapters/nats/message.js';
import type { Msg, MsgHdrs } from '../../adapters/nats/client.js';
import { natsSubscriber } from '../../adapters/nats/index.js';
import { headers as natsHeaders } from 'nats';
import { deadLetterInfo } from '../../src/dead-letter.js';
import { PermanentError } from '../../src/index.js';

// amqplib's own table encoder (not exported by its package.json): what a publish runs.
const require = createRequire(import.meta.url);
const codec = require(join(dirname(require.resolve('amqplib')), 'lib', 'codec.js')) as { encodeTable(buffer: Buffer, table: unknown, offset: number): number };

function consumed(headers: Record<string, unknown>): ConsumeMessage {
  return {
    content: Buffer.from('x'),
    fields: { deliveryTag: 1, redelivered: false, exchange: '', routingKey: 'q', consumerTag: 'c' },
    properties: { headers, messageId: 'm-1' },
  } as unknown as ConsumeMessage;
}

describe('RabbitMQ: the x-sluice-attempt header a producer sets', () => {
  const attempt = (value: unknown) => toMessage(consumed({ 'x-sluice-attempt': value }), 'q').deliveryAttempt;

  it('counts only whole numbers a retry can raise: 1e308, 2^60, 17 nines are not attempt counts', () => {
    expect(attempt(1e308)).toBe(1);
    expect(attempt('1e308')).toBe(1);
    expect(attempt(2 ** 60)).toBe(1);
    expect(attempt('9'.repeat(17))).toBe(1);
    expect(attempt('9'.repeat(400))).toBe(1);
  });

  it('reads nonsense as the first attempt and a repeated header by its first value', () => {
    for (const v of ['abc', -1, '-1', 0, '', 2.5, 'NaN', null, true, { attempt: 2 }, []]) expect(attempt(v), JSON.stringify(v)).toBe(1);
    expect(attempt(['2', 'abc'])).toBe(2);
    expect(attempt(['abc', '2'])).toBe(1);
    expect(attempt(Buffer.from('3'))).toBe(3);
    expect(attempt(2)).toBe(2);
    expect(attempt('3')).toBe(3);
  });
});

describe('RabbitMQ: headers of a copy sluice publishes', () => {
  it('an integral double beyond ±2^63 (as another client sends it) can be encoded again', () => {
    const headers = { big: -1.7976931348623157e308, nested: { deep: [1e300, -4e19] }, ok: 5, text: 'x', bytes: Buffer.from([1]) };
    expect(() => codec.encodeTable(Buffer.alloc(4096), headers, 0)).toThrow(RangeError); // what amqplib does with them as decoded
    expect(() => codec.encodeTable(Buffer.alloc(4096), republishable(headers), 0)).not.toThrow();
    expect(republishable(headers)).toEqual({ big: { '!': 'double', value: -1.7976931348623157e308 }, nested: { deep: [{ '!': 'double', value: 1e300 }, { '!': 'double', value: -4e19 }] }, ok: 5, text: 'x', bytes: Buffer.from([1]) });
  });

  /** A RabbitDelivery on a session whose confirm channel records what is published (and confirms it). */
  function recorded(headers: Record<string, unknown>, properties: Record<string, unknown> = {}) {
    const published: { queue: string; headers: Record<string, unknown>; expiration?: string }[] = [];
    const confirm = {
      on() {},
      publish(_exchange: string, queue: string, _content: Buffer, options: { headers: Record<string, unknown>; expiration?: string }, done: (error: unknown) => void) {
        published.push({ queue, headers: options.headers, expiration: options.expiration });
        done(null);
        return true;
      },
    };
    const session = { alive: true, confirm, acks: { ack() {}, release() {} }, publishable: () => new AbortController().signal };
    const message = consumed(headers);
    Object.assign(message.properties, properties);
    const delivery = new RabbitDelivery(message, session as never, { queue: 'q', deadLetter: { queue: 'q.dlq' } });
    return { delivery, published };
  }

  it('a CC (or BCC) header is not copied: it would route retries and dead letters to other queues, and RabbitMQ refuses it as text', async () => {
    const { delivery, published } = recorded({ CC: ['audit'], BCC: ['other'], keep: 'me' });
    await delivery.retry(0, 2);
    await delivery.deadLetter(deadLetterInfo(new Error('no'), 2, 'q', 'max-attempts'));
    expect(published.map((p) => p.queue)).toEqual(['q', 'q.dlq']);
    for (const p of published) {
      expect(p.headers).not.toHaveProperty('CC');
      expect(p.headers).not.toHaveProperty('BCC');
      expect(p.headers.keep).toBe('me');
    }
  });

  it("a dead letter does not inherit the producer's TTL (it would expire from the dead-letter queue); a retry copy keeps it", async () => {
    const { delivery, published } = recorded({}, { expiration: '60000' });
    await delivery.retry(0, 2);
    await delivery.deadLetter(deadLetterInfo(new Error('no'), 2, 'q', 'max-attempts'));
    expect(published.map((p) => [p.queue, p.expiration])).toEqual([['q', '60000'], ['q.dlq', undefined]]);
  });
});

describe('NATS: headers other clients can send', () => {
  const encode = (s: string) => new TextEncoder().encode(s);
  /** A message as each nats.js generation parses it off the wire: header block, then body. */
  async function received(generation: 'v2' | 'v3', block: string) {
    const { MsgImpl } = (generation === 'v2' ? require('nats/lib/nats-base-client/msg.js') : await import('@nats-io/nats-core/internal')) as {
      MsgImpl: new (msg: object, data: Uint8Array, publisher: object) => { headers?: MsgHdrs };
    };
    const data = encode(`${block}body`);
    return new MsgImpl({ subject: encode('s'), reply: encode(''), sid: 1, hdr: encode(block).length, size: data.length }, data, {});
  }

  for (const generation of ['v2', 'v3'] as const) {
    it(`${generation}: a header name nats.js refuses is read, not thrown (a throw there stops the connection's reader)`, async () => {
      const msg = await received(generation, 'NATS/1.0\r\nwith space: 1\r\nNats-Msg-Id: m-1\r\nünï: ✓\r\nok: a\r\nok: b\r\n\r\n');
      expect(() => msg.headers).toThrow(/header/i); // what the client does with it
      expect(receivedHeaders(msg)).toEqual({ headers: { 'with space': '1', 'Nats-Msg-Id': 'm-1', 'ünï': '✓', ok: 'a' }, msgId: 'm-1' });
    });
  }

  it('decodable headers are read as the client reads them', async () => {
    const msg = await received('v2', 'NATS/1.0\r\nNats-Msg-Id: m-2\r\nok: a\r\nok: b\r\n\r\n');
    expect(receivedHeaders(msg)).toEqual({ headers: { 'Nats-Msg-Id': 'm-2', ok: 'a' }, msgId: 'm-2' });
    expect(receivedHeaders({ headers: undefined })).toEqual({ headers: {}, msgId: undefined });
  });

  const client = { headers: () => natsHeaders() } as unknown as NatsClient;

  it('what sluice writes back (a dead letter, an error reply) never makes the client throw: names percent-encoded, CR/LF in values as spaces', () => {
    const record = { 'with space': '1', 'a:b': '2', 'ünï': '3', error: 'line one\r\nline two\nthree' };
    expect(() => toNatsHeaders(client, record)).toThrow(); // the strict one the publisher keeps
    const h = writableNatsHeaders(client, record);
    expect(Object.fromEntries(h.keys().map((k) => [k, h.get(k)]))).toEqual({ 'with%20space': '1', 'a%3Ab': '2', '%C3%BCn%C3%AF': '3', error: 'line one  line two three' });
  });

  it("a dead letter drops the original's Nats-* headers: directions to the server that would make the dead-letter stream refuse it or roll it up", () => {
    const h = deadLetterNatsHeaders(client, { 'Nats-Expected-Stream': 'ORDERS', 'Nats-Rollup': 'sub', 'nats-msg-id': 'x', 'x-sluice-reason': 'max-attempts', keep: 'me' });
    expect(h.keys().sort()).toEqual(['keep', 'x-sluice-reason']);
  });
});

describe('core NATS: dead letters of messages that share a Nats-Msg-Id', () => {
  it('each gets a dead-letter id of its own (the stream dropped the second as a duplicate: lost, though reported dead-lettered)', async () => {
    const { MsgImpl } = require('nats/lib/nats-base-client/msg.js') as { MsgImpl: new (msg: object, data: Uint8Array, publisher: object) => Msg };
    const encode = (s: string) => new TextEncoder().encode(s);
    const message = (body: string) => {
      const block = 'NATS/1.0\r\nNats-Msg-Id: same\r\n\r\n';
      const data = encode(`${block}${body}`);
      return new MsgImpl({ subject: encode('orders'), reply: encode(''), sid: 1, hdr: encode(block).length, size: data.length }, data, {});
    };
    // A connection (nats 2.x shape) whose dead-letter subject a stream captures: its PubAcks are recorded.
    const stored: { subject: string; msgID: string | undefined }[] = [];
    let deliver: (error: Error | null, msg: Msg) => void = () => {};
    const nc = {
      publish() {},
      subscribe: (_subject: string, options: { callback: typeof deliver }) => ((deliver = options.callback), { unsubscribe() {} }),
      status: () => ({ async *[Symbol.asyncIterator]() {} }),
      flush: async () => {},
      isClosed: () => false,
      jetstreamManager: async () => ({ streams: { find: async () => 'DLQ' } }),
      jetstream: () => ({ publish: async (subject: string, _data: Uint8Array, options: { msgID?: string }) => void stored.push({ subject, msgID: options.msgID }) }),
    };
    const consumer = natsSubscriber({
      connection: nc as never,
      subject: 'orders',
      deadLetter: { subject: 'orders.dlq' },
      pool: { maxConcurrency: 1, maxQueueSize: 4 },
      handler: async () => {
        throw new PermanentError('no');
      },
    });
    let dead = 0;
    consumer.on('deadLettered', () => dead++);
    await consumer.start();
    deliver(null, message('first'));
    deliver(null, message('second'));
    for (let i = 0; i < 100 && dead < 2; i++) await new Promise((r) => setTimeout(r, 5));
    await consumer.stop({ timeoutMs: 1000 });
    expect(stored.map((s) => s.subject)).toEqual(['orders.dlq', 'orders.dlq']);
    expect(new Set(stored.map((s) => s.msgID)).size).toBe(2);
  });
});

describe('an empty message id is no id', () => {
  it('RabbitMQ: an empty message-id property gives the delivery its own id (and its retry copies keep that one)', () => {
    const raw = consumed({});
    raw.properties.messageId = '';
    expect(toMessage(raw, 'q').id).toBe('q:c:1');
  });

  it("Kafka: an empty message-id header gives the message its position's id", () => {
    const work = { topic: 't', partition: 0, offset: 5, key: undefined, lane: undefined, attempt: 1, message: { offset: '5', key: null, value: Buffer.from('x'), headers: { 'message-id': Buffer.from('') } } };
    expect(kafkaMessage(work as never, 't/0/').id).toBe('t/0/5');
    expect(kafkaMessage({ ...work, message: { ...work.message, headers: { 'message-id': Buffer.from('m-1') } } } as never, 't/0/').id).toBe('m-1');
  });
});

describe('RabbitMQ: the x-sluice-routing-key header a producer sets', () => {
  it('is the message key only when it can be a routing key (at most 255 bytes): a dead letter to an exchange is published with it', () => {
    const key = (value: unknown) => toMessage(consumed({ 'x-sluice-routing-key': value }), 'q').key;
    expect(key('orders.eu')).toBe('orders.eu');
    expect(key('')).toBe('');
    expect(key('k'.repeat(255))).toBe('k'.repeat(255));
    expect(key('k'.repeat(256))).toBe('q'); // the routing key it was delivered with
    expect(key('ü'.repeat(200))).toBe('q'); // 400 bytes
    expect(key(5)).toBe('q');
  });
});
