/**
 * Hostile input on the shared RabbitMQ (5672): bodies and headers of every type an AMQP table
 * holds (strings, numbers incl. NaN / Infinity / 1e308 as doubles, arrays, byte arrays, booleans,
 * void, nested tables), sluice's own `x-sluice-attempt` with hostile values, the reserved `CC`
 * header, a producer's TTL (expiration), bodies of a few MB. A fresh queue (and .dlq) per run, deleted afterwards.
 */
import type { ConfirmChannel } from 'amqplib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rabbitConsumer } from '../../adapters/rabbitmq/index.js';
import { bigCases, CASE_HEADER, headerValue, hostileBatch, startAttempt, type HostileValue } from '../helpers/hostile.js';
import { checkHostile, HOSTILE_SEED, runBatch, type HostileBroker } from '../helpers/hostile-run.js';
import { rabbitFixture, type RabbitFixture } from '../helpers/rabbit.js';
import { seededRandom } from '../helpers/random.js';
import { until } from '../helpers/wait.js';

let rabbit: RabbitFixture;
let publishing: ConfirmChannel;
beforeAll(async () => {
  rabbit = await rabbitFixture();
  publishing = await rabbit.admin.createConfirmChannel();
  publishing.on('error', () => {});
});
afterAll(async () => {
  await publishing?.close().catch(() => {});
  await rabbit?.close();
});

/**
 * An AMQP table value. Numbers that are not safe integers go as doubles (amqplib would try an
 * int64); NaN and ±Infinity as text: RabbitMQ (Erlang) cannot hold them and closes the publishing
 * connection with INTERNAL_ERROR, so no consumer ever sees one.
 */
function value(v: HostileValue): unknown {
  switch (v.kind) {
    case 'number':
      if (!Number.isFinite(v.value)) return String(v.value);
      return Number.isSafeInteger(v.value) ? v.value : { '!': 'double', value: v.value };
    case 'bytes':
      return Buffer.from(v.value);
    case 'null':
      return null;
    default:
      return v.value;
  }
}

/** A message id is a short string: at most 255 bytes. */
function shortstr(id: string): string {
  let s = id;
  while (Buffer.byteLength(s) > 255) s = s.slice(0, -1);
  return s;
}

/** Header names RabbitMQ itself reads: `CC` routes a copy (an array of routing keys; nothing is bound to these). */
const reserved = fc.oneof(
  fc.array(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 2 }).map((keys): [string, HostileValue] => ['CC', { kind: 'array', value: keys.map((k) => `nowhere-${k}`) }]),
  fc.tuple(fc.constantFrom('x-sluice-routing-key', 'x-death', 'x-first-death-reason', 'x-sluice-publish-id'), headerValue),
  // sluice's own header for the routing key a retry copy first came with: a dead letter to an exchange is routed by it.
  fc.constantFrom('', 'a.b.#', 'k'.repeat(300), 'ü'.repeat(200)).map((key): [string, HostileValue] => ['x-sluice-routing-key', { kind: 'string', value: key }]),
);

/** RabbitMQ with a fresh queue per run; dead letters to `<queue>.dlq`, or through a topic exchange bound to it with '#'. */
const rabbitBroker = (through: 'queue' | 'exchange'): HostileBroker => ({
  name: through === 'queue' ? 'RabbitMQ' : 'RabbitMQ (dead letters through an exchange)',
  maxAttempts: 3,
  start: (c) => startAttempt(c.attempt), // the attempt header is RabbitMQ's attempt count
  async target() {
    const queue = rabbit.queue('sluice-hostile');
    const exchange = `${queue}.dlx`;
    await rabbit.withChannel(async (ch) => {
      await ch.assertQueue(queue, { durable: true });
      await ch.assertQueue(`${queue}.dlq`, { durable: true });
      if (through === 'exchange') {
        await ch.assertExchange(exchange, 'topic', { durable: true });
        await ch.bindQueue(`${queue}.dlq`, exchange, '#');
      }
    });
    return {
      async publish(cases) {
        for (const c of cases) {
          const headers: Record<string, unknown> = Object.create(null); // a header may be named __proto__
          for (const [name, v] of c.headers) headers[name] = value(v);
          if (c.attempt !== undefined) headers['x-sluice-attempt'] = value(c.attempt);
          if (c.messageId !== undefined) headers[CASE_HEADER] = c.id;
          // Every third one with a TTL (long enough not to expire here): its dead letter must not inherit it.
          const expiration = Number(c.id.slice(c.id.lastIndexOf('-') + 1)) % 3 === 0 ? '600000' : undefined;
          publishing.publish('', queue, Buffer.from(c.body), { messageId: shortstr(c.messageId ?? c.id), headers, persistent: true, expiration });
        }
        await publishing.waitForConfirms();
      },
      consumer: (spec) =>
        rabbitConsumer({ url: rabbit.url, queue, pool: { maxConcurrency: 4, maxQueueSize: 16 }, deadLetter: through === 'queue' ? { queue: `${queue}.dlq` } : { exchange }, ...spec }),
      async deadLetters(n) {
        let depth = 0;
        await until(() => depth >= n, `${n} dead letters in ${queue}.dlq`, 30_000, async () => (depth = (await rabbit.depth(`${queue}.dlq`)).messageCount));
        const text = (v: unknown) => (v === undefined ? undefined : String(v));
        const letters = await rabbit.drain(`${queue}.dlq`);
        const expiring = letters.filter((m) => m.properties.expiration !== undefined).map((m) => String(m.properties.messageId));
        expect(expiring, 'dead letters that would expire from the dead-letter queue').toEqual([]);
        return letters.map((m) => {
          const h = m.properties.headers ?? {};
          return {
            id: text(h[CASE_HEADER] ?? h['x-sluice-message-id']),
            reason: text(h['x-sluice-reason']),
            error: text(h['x-sluice-error']),
            errorName: text(h['x-sluice-error-name']),
            attempts: text(h['x-sluice-attempts']),
            body: m.content,
          };
        });
      },
      async settled() {
        let left = -1;
        await until(() => left === 0, `${queue} empty`, 30_000, async () => (left = (await rabbit.depth(queue)).messageCount));
      },
      async remove() {
        await rabbit.withChannel(async (ch) => {
          await ch.deleteQueue(queue);
          await ch.deleteQueue(`${queue}.dlq`);
          if (through === 'exchange') await ch.deleteExchange(exchange);
        });
      },
    };
  },
});
const rabbitmq = rabbitBroker('queue');

describe('hostile input on RabbitMQ', () => {
  it('handlers that decode, and handlers that do not', async () => {
    await checkHostile(rabbitmq, hostileBatch('rmq', 50, 150, reserved), { withSchema: false, runs: 6 });
  });

  it('a consumer with a schema', async () => {
    await checkHostile(rabbitmq, hostileBatch('rmq-schema', 50, 150, reserved), { withSchema: true, runs: 3 });
  });

  it('dead letters through an exchange, routed by the routing key the message came with', async () => {
    await checkHostile(rabbitBroker('exchange'), hostileBatch('rmq-dlx', 50, 150, reserved), { withSchema: false, runs: 3 });
  });

  it('bodies of 4 MiB', async () => {
    await runBatch(rabbitmq, bigCases('rmq-big', 4 * 1024 * 1024, seededRandom(HOSTILE_SEED)), false);
  });
});
