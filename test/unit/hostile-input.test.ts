/**
 * Fixes found by the hostile-input property tests (test/faults/hostile-*.test.ts), each pinned
 * here without a broker: what a producer can put in a message must not break settling it.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { ConsumeMessage } from 'amqplib';
import { describe, expect, it } from 'vitest';
import { RabbitDelivery, toMessage } from '../../adapters/rabbitmq/delivery.js';
import { republishable } from '../../adapters/rabbitmq/header-table.js';
import { deadLetterInfo } from '../../src/dead-letter.js';

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
  function recorded(headers: Record<string, unknown>) {
    const published: { queue: string; headers: Record<string, unknown> }[] = [];
    const confirm = {
      on() {},
      publish(_exchange: string, queue: string, _content: Buffer, options: { headers: Record<string, unknown> }, done: (error: unknown) => void) {
        published.push({ queue, headers: options.headers });
        done(null);
        return true;
      },
    };
    const session = { alive: true, confirm, acks: { ack() {}, release() {} }, publishable: () => new AbortController().signal };
    const delivery = new RabbitDelivery(consumed(headers), session as never, { queue: 'q', deadLetter: { queue: 'q.dlq' } });
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
});
