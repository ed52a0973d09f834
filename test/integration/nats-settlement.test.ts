/**
 * Dead-letter destinations that refuse, on the real NATS server. JetStream: a dead-letter subject
 * no stream captures (the publish gets no responders) and one whose stream is full (max_msgs,
 * discard new): healthy messages keep flowing, no failing message is lost, each refusal is an
 * `error` event during 'dead-letter', and once the destination accepts (stream created / purged)
 * every failing message reaches it exactly once with its x-sluice-* headers. Core NATS (at most
 * once): dead letters confirmed by a PubAck or a server round trip; a refused one is given up and
 * counted, and a requester is answered once.
 */
import { DiscardPolicy, type JetStreamManager } from 'nats';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsConsumer, natsSubscriber, type CoreSource } from '../../adapters/nats/index.js';
import { DEAD_LETTER_HEADERS, PermanentError, type Message } from '../../src/index.js';
import { natsFixture, unique, type NatsFixture } from '../helpers/nats.js';
import { tick, until } from '../helpers/wait.js';

let nats: NatsFixture;
const extraStreams: string[] = [];
beforeAll(async () => {
  nats = await natsFixture();
});
afterAll(async () => {
  for (const s of extraStreams) await nats?.jsm.streams.delete(s).catch(() => {});
  await nats?.close();
});

/** `until` for a condition that has to ask the server. */
async function untilAsync(condition: () => Promise<boolean>, what: string, limitMs: number): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await tick(20);
  }
}

const POISON = ['poison-0', 'poison-1', 'poison-2'];
const streamName = (prefix: string) => unique(prefix).toUpperCase().replace(/[^A-Z0-9_]/g, '_');

/** Every message in a stream, with its headers. */
async function storedMessages(jsm: JetStreamManager, stream: string) {
  const { state } = await jsm.streams.info(stream);
  const out: { data: string; headers: Record<string, string> }[] = [];
  for (let seq = state.first_seq; seq <= state.last_seq && state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq }).catch(() => undefined);
    if (!m) continue;
    const headers: Record<string, string> = {};
    for (const k of m.header?.keys() ?? []) headers[k] = m.header.get(k);
    out.push({ data: new TextDecoder().decode(m.data), headers });
  }
  return out;
}

/**
 * 20 healthy and 3 poison messages through a JetStream consumer whose dead-letter destination
 * refuses until `accept()`; then checks the dead-letter stream `dlqStream`.
 */
async function refusingDestination(setup: (dlqSubject: string) => Promise<{ accept(): Promise<void>; dlqStream: string }>) {
  const { stream, subject } = await nats.stream();
  const dlqSubject = unique('sluice-refusing-dlq');
  const { accept, dlqStream } = await setup(dlqSubject);
  await nats.fill(subject, 10, 'early');
  for (const id of POISON) await nats.publisher.publishJson(`${subject}.in`, { poison: true }, { id });
  await nats.fill(subject, 10, 'late');
  const runs = new Map<string, number>();
  const handled = new Set<string>();
  const refusals: string[] = [];
  const consumer = natsConsumer({
    servers: nats.url,
    stream,
    durable: 'refused',
    consumerConfig: {},
    deadLetter: { subject: dlqSubject },
    pool: { maxConcurrency: 2, maxQueueSize: 2 },
    retry: { maxAttempts: 1 },
    settlement: { tries: 2, backoff: { initialMs: 10, maxMs: 20 }, deferMs: 100 },
    handler: async (m: Message) => {
      runs.set(m.id, (runs.get(m.id) ?? 0) + 1);
      if (m.json<{ poison?: boolean }>().poison) throw new PermanentError('unprocessable payment');
      handled.add(m.id);
    },
  });
  consumer.on('error', ({ during, message }) => {
    if (during === 'dead-letter' && message) refusals.push(message.id);
  });
  await consumer.start();
  try {
    // The poison messages sit in the middle; the healthy ones after them still flow.
    await until(() => handled.size === 20, 'every healthy message handled while the destination refuses', 30_000);
    await until(() => POISON.every((id) => refusals.includes(id)), 'a refusal reported for each poison message', 30_000);
    await until(() => consumer.status().deferred >= POISON.length, 'each poison message set aside (deferred)', 30_000);
    expect(consumer.status().deadLettered).toBe(0);
    // Not lost: still unacked or pending at the server.
    const before = await nats.jsm.consumers.info(stream, 'refused');
    expect(before.ack_floor.stream_seq).toBeLessThan(11 + POISON.length);

    await accept();
    await until(() => consumer.status().deadLettered === POISON.length, 'every poison message dead-lettered once the destination accepts', 30_000);
    await untilAsync(async () => {
      const info = await nats.jsm.consumers.info(stream, 'refused');
      return info.num_ack_pending === 0 && info.num_pending === 0;
    }, 'nothing left unacked at the server', 30_000);
  } finally {
    await consumer.stop();
  }
  const dead = await storedMessages(nats.jsm, dlqStream);
  const ids = dead.map((d) => d.headers[DEAD_LETTER_HEADERS.messageId]).sort();
  expect(ids).toEqual([...POISON].sort()); // each exactly once
  for (const d of dead) {
    expect(d.data).toBe('{"poison":true}');
    expect(d.headers[DEAD_LETTER_HEADERS.error]).toBe('unprocessable payment');
    expect(d.headers[DEAD_LETTER_HEADERS.errorName]).toBe('PermanentError');
    expect(d.headers[DEAD_LETTER_HEADERS.attempts]).toBe('1');
    expect(d.headers['x-sluice-stream-sequence']).toMatch(/^1[1-3]$/);
  }
  // The remembered dead letters: a poison message's handler ran once, not once per redelivery.
  for (const id of POISON) expect(runs.get(id)).toBe(1);
  for (const id of handled) expect(runs.get(id)).toBe(1);
  return { consumer, refusals };
}

describe('natsConsumer (JetStream): a dead-letter destination that refuses', () => {
  it('no stream captures the dead-letter subject (no responders), then one is created', async () => {
    const dlqStream = streamName('SLUICE_LATE_DLQ');
    const { consumer } = await refusingDestination(async (dlqSubject) => ({
      dlqStream,
      accept: async () => {
        await nats.jsm.streams.add({ name: dlqStream, subjects: [dlqSubject] });
        extraStreams.push(dlqStream);
      },
    }));
    expect(consumer.status().settlementFailures).toBeGreaterThanOrEqual(POISON.length);
  }, 90_000);

  it('the dead-letter stream is full (max_msgs, discard new), then purged', async () => {
    const dlqStream = streamName('SLUICE_FULL_DLQ');
    await refusingDestination(async (dlqSubject) => {
      await nats.jsm.streams.add({ name: dlqStream, subjects: [dlqSubject], max_msgs: 2, discard: DiscardPolicy.New });
      extraStreams.push(dlqStream);
      await nats.publisher.publish(dlqSubject, 'filler-1');
      await nats.publisher.publish(dlqSubject, 'filler-2');
      const refused = await nats.publisher.publish(dlqSubject, 'one too many').then(() => undefined, (e: Error & { api_error?: { description?: string } }) => e);
      // nats 2.x: a NatsError with the server's api_error; 3.x: a JetStreamApiError whose message is its description.
      expect(`${refused?.api_error?.description ?? ''} ${refused?.message}`).toMatch(/maximum messages exceeded/);
      return {
        dlqStream,
        accept: async () => {
          // Room for more than the three, so that a duplicate would show.
          const { config } = await nats.jsm.streams.info(dlqStream);
          await nats.jsm.streams.update(dlqStream, { ...config, max_msgs: 100 });
          await nats.jsm.streams.purge(dlqStream);
        },
      };
    });
  }, 90_000);
});

describe('natsSubscriber (core NATS): dead letters, at most once', () => {
  it('a dead-letter subject a stream captures: stored with its PubAck; a requester gets one 500', async () => {
    const subject = unique('sluice.core-dl');
    const dlqSubject = `${subject}-dlq`;
    const dlqStream = streamName('SLUICE_CORE_DLQ');
    await nats.jsm.streams.add({ name: dlqStream, subjects: [dlqSubject] });
    extraStreams.push(dlqStream);
    const consumer = natsSubscriber({
      servers: nats.url,
      subject,
      deadLetter: { subject: dlqSubject },
      pool: { maxConcurrency: 2, maxQueueSize: 2 },
      handler: async (m) => {
        if (m.text().startsWith('bad')) throw new Error(`cannot quote ${m.text()}`);
        m.raw.respond('ok');
      },
    });
    await consumer.start();
    const reply = await nats.publisher.request(subject, 'bad-request', { id: 'req-1' });
    nats.nc.publish(subject, 'bad-event');
    await nats.nc.flush();
    await until(() => consumer.status().deadLettered === 2, 'both dead-lettered');
    await consumer.stop();
    expect(reply.headers?.get('Nats-Service-Error-Code')).toBe('500');
    expect(reply.headers?.get('Nats-Service-Error')).toBe('cannot quote bad-request');
    const dead = await storedMessages(nats.jsm, dlqStream);
    expect(dead.map((d) => d.data).sort()).toEqual(['bad-event', 'bad-request']);
    expect(dead.find((d) => d.data === 'bad-request')!.headers[DEAD_LETTER_HEADERS.messageId]).toBe('req-1');
    expect(dead.every((d) => d.headers[DEAD_LETTER_HEADERS.error]?.startsWith('cannot quote'))).toBe(true);
  });

  it('a plain dead-letter subject: published and confirmed by a server round trip', async () => {
    const subject = unique('sluice.core-plain');
    const dlqSubject = unique('sluice.core-plain-dlq');
    const received: { data: string; error: string | undefined }[] = [];
    const sub = nats.nc.subscribe(dlqSubject, { callback: (_e, m) => received.push({ data: new TextDecoder().decode(m.data), error: m.headers?.get(DEAD_LETTER_HEADERS.error) }) });
    await nats.nc.flush();
    const consumer = natsSubscriber({
      servers: nats.url,
      subject,
      deadLetter: { subject: dlqSubject },
      pool: { maxConcurrency: 1, maxQueueSize: 4 },
      handler: async (m) => {
        if (m.text() === 'bad') throw new Error('broken event');
      },
    });
    await consumer.start();
    for (const body of ['ok-1', 'bad', 'ok-2']) nats.nc.publish(subject, body);
    await nats.nc.flush();
    await until(() => received.length === 1 && consumer.status().handled === 2, 'the bad one dead-lettered, the others handled');
    await consumer.stop();
    sub.unsubscribe();
    expect(received).toEqual([{ data: 'bad', error: 'broken event' }]);
    expect((consumer.source as CoreSource).dropped).toBe(0);
  });

  it('a dead-letter stream that refuses (full): error events, the others flow, the failed ones are given up and counted, a requester is answered once', async () => {
    const subject = unique('sluice.core-full');
    const dlqSubject = `${subject}-dlq`;
    const dlqStream = streamName('SLUICE_CORE_FULL');
    await nats.jsm.streams.add({ name: dlqStream, subjects: [dlqSubject], max_msgs: 1, discard: DiscardPolicy.New });
    extraStreams.push(dlqStream);
    await nats.publisher.publish(dlqSubject, 'filler');
    const refusals: string[] = [];
    const handled: string[] = [];
    const consumer = natsSubscriber({
      servers: nats.url,
      subject,
      deadLetter: { subject: dlqSubject },
      pool: { maxConcurrency: 2, maxQueueSize: 8 },
      settlement: { tries: 2, backoff: { initialMs: 10, maxMs: 20 }, deferMs: 50 },
      handler: async (m) => {
        if (m.text().startsWith('bad')) throw new Error('broken');
        handled.push(m.text());
        if (m.raw.reply) m.raw.respond('ok');
      },
    });
    consumer.on('error', ({ during, message }) => {
      if (during === 'dead-letter' && message) refusals.push(message.id);
    });
    await consumer.start();
    const source = consumer.source as CoreSource;
    const replies: string[] = [];
    const inbox = unique('sluice.core-full-replies');
    const replySub = nats.nc.subscribe(inbox, { callback: (_e, m) => replies.push(m.headers?.get('Nats-Service-Error-Code') || new TextDecoder().decode(m.data)) });
    nats.nc.publish(subject, 'bad-request', { reply: inbox });
    for (let i = 0; i < 5; i++) nats.nc.publish(subject, `ok-${i}`);
    nats.nc.publish(subject, 'bad-event');
    await nats.nc.flush();
    await until(() => handled.length === 5 && source.dropped === 1 && consumer.status().givenBack >= 2, 'the others handled, the failed ones given up');
    // The requester's one answer arrived (the runtime's give-back does not answer it a second time).
    await until(() => replies.length >= 1, 'the 500 reply');
    await nats.nc.flush();
    await consumer.stop();
    replySub.unsubscribe();
    expect(replies).toEqual(['500']);
    expect(refusals.filter((id) => id.length > 0).length).toBeGreaterThanOrEqual(2);
    expect(consumer.status().deadLettered).toBe(0);
    expect((await nats.jsm.streams.info(dlqStream)).state.messages).toBe(1); // only the filler
  });
});
