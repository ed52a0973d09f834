/**
 * Hostile input on the shared nats-server (4222): JetStream (a fresh stream and dead-letter stream
 * per run) and core NATS (a fresh subject, dead letters into a stream). Messages are published at
 * the protocol level (HPUB), so they carry what other clients can send and nats.js would refuse:
 * header names with spaces, control or non-ASCII bytes, values with invalid UTF-8, repeated
 * headers, empty values, server directives (`Nats-Expected-Stream`, `Nats-Rollup`, …) and a
 * status in the header line; bodies up to the server's max_payload less the headers.
 */
import fc from 'fast-check';
import { RetentionPolicy } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsConsumer, natsSubscriber } from '../../adapters/nats/index.js';
import { bigCases, CASE_HEADER, DEAD_LETTER_HEADROOM, headerValue, hostileBatch, type HostileCase, type HostileValue } from '../helpers/hostile.js';
import { headerBlock, lineBytes, RawNats, readStream, valueLines } from '../helpers/hostile-nats.js';
import { checkHostile, HOSTILE_SEED, runBatch, startWithRefusedDeadLetter, type HostileBroker, type HostileTarget } from '../helpers/hostile-run.js';
import { natsFixture, type NatsFixture } from '../helpers/nats.js';
import { unique } from '../helpers/names.js';
import { seededRandom } from '../helpers/random.js';
import { until } from '../helpers/wait.js';

let nats: NatsFixture;
let raw: RawNats;
beforeAll(async () => {
  nats = await natsFixture();
  raw = await RawNats.open(nats.url);
});
afterAll(async () => {
  raw?.close();
  await nats?.close();
});

/** `{{stream}}` in a value becomes the stream the message is published to (the original publish must be stored). */
const STREAM = '{{stream}}';

/** Server directives a producer may set; on JetStream only those the original stream accepts. */
const jetStreamDirectives = fc.constantFrom<[string, HostileValue]>(['Nats-Expected-Stream', { kind: 'string', value: STREAM }], ['Nats-Msg-Size', { kind: 'string', value: '12' }]);
const coreDirectives = fc.oneof(
  jetStreamDirectives,
  fc.constantFrom<[string, HostileValue]>(
    ['Nats-Rollup', { kind: 'string', value: 'sub' }],
    ['Nats-Expected-Last-Sequence', { kind: 'string', value: '999999' }],
    ['Nats-Expected-Last-Msg-Id', { kind: 'string', value: 'nope' }],
    ['Nats-Expected-Stream', { kind: 'string', value: 'ANOTHER' }],
  ),
);
/** Names only the protocol allows (nats.js refuses them): spaces, control and non-ASCII bytes. */
const oddName = fc.tuple(fc.constantFrom('with space', 'tab\there', 'ünïcode', 'x\u0001y', ' lead', 'trail '), headerValue);

/**
 * A case's header block: its id as Nats-Msg-Id (a hostile one made unique where JetStream would
 * drop a repeated id as a duplicate), its headers, the attempt header, sometimes a status line.
 */
function headersOf(c: HostileCase, stream: string, status: string, uniqueIds: boolean): Buffer {
  const id = c.messageId === undefined ? c.id : uniqueIds ? `${c.messageId}${c.id}` : c.messageId;
  const lines: [Uint8Array, Uint8Array][] = [[lineBytes('Nats-Msg-Id', true), lineBytes(id, false)]];
  if (c.messageId !== undefined) lines.push([lineBytes(CASE_HEADER, true), lineBytes(c.id, false)]);
  for (const [name, v] of c.headers) lines.push(...valueLines(name, v.kind === 'string' ? { kind: 'string', value: v.value.replace(STREAM, stream) } : v));
  if (c.attempt !== undefined) lines.push(...valueLines('x-sluice-attempt', c.attempt));
  return headerBlock(lines, status);
}

/** Some messages carry a status in the header line, as the server's own control messages do. */
const statusOf = (c: HostileCase) => (c.id.endsWith('7') ? ['408 Request Timeout', '404 No Messages', '503', '100 Idle Heartbeat', '409 Consumer Deleted'][Number(c.id.slice(-2, -1)) % 5 || 0]! : '');

const pool = { maxConcurrency: 4, maxQueueSize: 16 };

/** The header block of a message that carries only its id. */
const idBlock = (id: string) => headerBlock([[lineBytes('Nats-Msg-Id', true), lineBytes(id, false)]]);

/** A fresh stream (with `retention`, default limits) and its dead-letter stream. */
async function jetstreamStream(retention?: 'workqueue') {
  if (retention === undefined) return nats.stream('HOSTILE');
  const stream = unique('HOSTILE_WQ').toUpperCase().replace(/[^A-Z0-9_]/g, '_');
  const subject = stream.toLowerCase();
  await nats.jsm.streams.add({ name: stream, subjects: [`${subject}.>`], retention: RetentionPolicy.Workqueue });
  await nats.jsm.streams.add({ name: `${stream}_DLQ`, subjects: [`${subject}-dlq`] });
  return { stream, subject, dlq: `${subject}-dlq` };
}

const jetstream: HostileBroker & { targetOn(retention?: 'workqueue'): Promise<HostileTarget> } = {
  name: 'NATS JetStream',
  maxAttempts: 3,
  start: () => 1, // the server's delivery count is the attempt; the header is only a header
  target(): Promise<HostileTarget> {
    return this.targetOn();
  },
  async targetOn(retention): Promise<HostileTarget> {
    const { stream, subject, dlq } = await jetstreamStream(retention);
    const durable = unique('hostile');
    return {
      stream,
      durable,
      async publish(cases) {
        for (const c of cases) raw.publish(`${subject}.in`, headersOf(c, stream, statusOf(c), true), c.body);
        await raw.flush();
        let stored = 0;
        await until(() => stored >= cases.length, `${cases.length} messages stored in ${stream}`, 30_000, async () => (stored = (await nats.jsm.streams.info(stream)).state.messages));
      },
      consumer: (spec) => natsConsumer({ servers: nats.url, stream, durable, consumerConfig: { ack_wait: 5_000_000_000 }, deadLetter: { subject: dlq }, pool, ...spec }),
      deadLetters: (n) => deadLettersIn(`${stream}_DLQ`, n),
      async settled() {
        let open = -1;
        await until(() => open === 0, `durable ${durable} with nothing pending or unacked`, 30_000, async () => {
          const info = await nats.jsm.consumers.info(stream, durable);
          open = info.num_pending + info.num_ack_pending;
        });
      },
      remove: async () => {
        await nats.jsm.streams.delete(stream).catch(() => {});
        await nats.jsm.streams.delete(`${stream}_DLQ`).catch(() => {});
      },
    };
  },
};

const core: HostileBroker = {
  name: 'core NATS',
  maxAttempts: 1,
  start: () => 1,
  async target(): Promise<HostileTarget> {
    const { stream, dlq } = await nats.stream('HOSTILE_CORE'); // only its dead-letter stream is used
    const subject = unique('sluice-hostile-core');
    return {
      publishAfterStart: true,
      async publish(cases) {
        for (const c of cases) raw.publish(subject, headersOf(c, stream, statusOf(c), false), c.body);
        await raw.flush();
      },
      // At most once: a pool that takes the whole batch, so that nothing is dropped for overload here.
      consumer: (spec) => natsSubscriber({ servers: nats.url, subject, deadLetter: { subject: dlq }, pool: { maxConcurrency: 4, maxQueueSize: 1000 }, ...spec }),
      deadLetters: (n) => deadLettersIn(`${stream}_DLQ`, n),
      settled: async () => {},
      remove: async () => {
        await nats.jsm.streams.delete(stream).catch(() => {});
        await nats.jsm.streams.delete(`${stream}_DLQ`).catch(() => {});
      },
    };
  },
};

async function deadLettersIn(stream: string, n: number) {
  let stored = 0;
  await until(() => stored >= n, `${n} dead letters in ${stream}`, 30_000, async () => (stored = (await nats.jsm.streams.info(stream)).state.messages));
  return (await readStream(nats.nc, stream, stored)).map((m) => ({
    id: m.headers[CASE_HEADER] ?? m.headers['x-sluice-message-id'],
    reason: m.headers['x-sluice-reason'],
    error: m.headers['x-sluice-error'],
    errorName: m.headers['x-sluice-error-name'],
    attempts: m.headers['x-sluice-attempts'],
    body: m.data,
  }));
}

/** A message too large to dead-letter (max_payload less its id) and 20 small ones, published; a consumer that fails the big one, started. */
async function startWithTooLarge(target: HostileTarget, prefix: string) {
  const [big] = bigCases(`${prefix}-huge`, raw.maxPayload - idBlock(`${prefix}-huge-0`).length, seededRandom(HOSTILE_SEED));
  const small = bigCases(`${prefix}-small`, 100, seededRandom(HOSTILE_SEED), 'handled');
  await target.publish([big!, ...small]);
  return { big: big!, small, ...(await startWithRefusedDeadLetter(target, big!.id)) };
}

describe('hostile input on NATS JetStream', () => {
  it('handlers that decode, and handlers that do not', async () => {
    await checkHostile(jetstream, hostileBatch('js', 50, 150, fc.oneof(jetStreamDirectives, oddName)), { withSchema: false, runs: 6 });
  });

  it('a consumer with a schema', async () => {
    await checkHostile(jetstream, hostileBatch('js-schema', 50, 150, fc.oneof(jetStreamDirectives, oddName)), { withSchema: true, runs: 3 });
  });

  it("bodies of the server's max_payload less their headers: handled; dead-lettered with room for the dead letter's headers", async () => {
    const size = raw.maxPayload - idBlock('js-big-0').length;
    await runBatch(jetstream, bigCases('js-big', size, seededRandom(HOSTILE_SEED), 'handled'), false);
    await runBatch(jetstream, bigCases('js-dead', size - DEAD_LETTER_HEADROOM, seededRandom(HOSTILE_SEED)), false);
  });

  it('a dead letter larger than max_payload, on a stream that keeps settled messages: written without its body, saying where the message is, reported; the durable moves on', async () => {
    const target = await jetstream.target();
    try {
      const { big, small, consumer, handled, errors } = await startWithTooLarge(target, 'js');
      try {
        await until(() => handled.size === small.length && consumer.status().deadLettered === 1, 'the small ones handled and the big one dead-lettered', 30_000);
        await target.settled(); // nothing pending or unacked in the durable
      } finally {
        await consumer.stop({ timeoutMs: 5_000 });
      }
      expect(errors, errors.join('\n')).toHaveLength(1);
      expect(errors[0]).toMatch(/^dead-letter: dead letter of message .* without its body and headers \(.*max_payload.*\); the message is in stream \S+ at sequence \d+ until the stream's limits remove it$/i);
      expect(consumer.status().settlementFailures).toBe(0);
      const [stub, ...more] = await readStream(nats.nc, `${target.stream}_DLQ`, 1);
      expect(more).toEqual([]);
      expect(stub!.data.length).toBe(0);
      expect(stub!.headers['x-sluice-message-id']).toBe(big.messageId ?? big.id);
      expect(stub!.headers['x-sluice-reason']).toBe('max-attempts');
      const seq = Number(stub!.headers['x-sluice-stream-sequence']);
      expect(stub!.headers['x-sluice-body-omitted']).toMatch(new RegExp(`^${big.body.length} bytes of body and \\d+ header\\(s\\); the message is in stream ${target.stream} at sequence ${seq}$`));
      // The message itself is still in the stream, at that sequence.
      const [original] = await readStream(nats.nc, target.stream!, seq).then((all) => all.filter((m) => m.data.length === big.body.length));
      expect(original?.data).toEqual(Buffer.from(big.body));
    } finally {
      await target.remove();
    }
  });

  it('a dead letter larger than max_payload, on a work-queue stream (a term would delete it): kept in the durable and reported, not lost, and the rest flows', async () => {
    const target = await jetstream.targetOn('workqueue');
    try {
      const { small, consumer, handled, errors } = await startWithTooLarge(target, 'js-wq');
      try {
        await until(() => handled.size === small.length && errors.some((e) => /max_payload/i.test(e)), 'the small ones handled and the big dead letter refused', 30_000);
        // Degraded once the tries are spent and the message is set aside (nak with a delay).
        await until(() => consumer.health().status === 'degraded', 'health degraded', 30_000);
      } finally {
        await consumer.stop({ timeoutMs: 5_000 });
      }
      expect(errors.every((e) => e.startsWith('dead-letter')), errors.join('\n')).toBe(true);
      expect(consumer.status().deadLettered).toBe(0);
      const info = await nats.jsm.consumers.info(target.stream!, target.durable!);
      expect(info.num_pending + info.num_ack_pending, 'the big message is still in the durable').toBe(1);
    } finally {
      await target.remove();
    }
  });
});

describe('hostile input on core NATS', () => {
  it('handlers that decode, and handlers that do not', async () => {
    await checkHostile(core, hostileBatch('core', 50, 150, fc.oneof(coreDirectives, oddName)), { withSchema: false, runs: 6 });
  });

  it('a consumer with a schema', async () => {
    await checkHostile(core, hostileBatch('core-schema', 50, 150, fc.oneof(coreDirectives, oddName)), { withSchema: true, runs: 3 });
  });

  it("bodies of the server's max_payload less their headers: handled; dead-lettered with room for the dead letter's headers", async () => {
    const size = raw.maxPayload - idBlock('core-big-0').length;
    await runBatch(core, bigCases('core-big', size, seededRandom(HOSTILE_SEED), 'handled'), false);
    await runBatch(core, bigCases('core-dead', size - DEAD_LETTER_HEADROOM, seededRandom(HOSTILE_SEED)), false);
  });
});
