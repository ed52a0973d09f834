/**
 * Hostile input on the shared Kafka (9092): bodies (and null values), keys of every kind (binary,
 * empty, none), headers with any UTF-8 name and binary or repeated values, sluice's
 * `x-sluice-attempt` with hostile values (Kafka counts attempts in the adapter: the header is only
 * a header), bodies near the topic's max.message.bytes. A fresh topic, dead-letter topic and group
 * per run, deleted afterwards.
 */
import { ConfigResourceTypes, type IHeaders, type Producer } from 'kafkajs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bigCases, CASE_HEADER, DEAD_LETTER_HEADROOM, hostileBatch, type HostileCase, type HostileValue } from '../helpers/hostile.js';
import { checkHostile, HOSTILE_SEED, runBatch, startWithRefusedDeadLetter, type DeadRecord, type HostileBroker } from '../helpers/hostile-run.js';
import { createTopic, kafkaFixture, type KafkaFixture } from '../helpers/kafka.js';
import { unique } from '../helpers/names.js';
import { seededRandom } from '../helpers/random.js';
import { until } from '../helpers/wait.js';

let kafka: KafkaFixture;
let producer: Producer;
beforeAll(async () => {
  kafka = await kafkaFixture({ deleteOnClose: true });
  producer = kafka.client.producer({ allowAutoTopicCreation: false });
  await producer.connect();
});
afterAll(async () => {
  await producer?.disconnect();
  await kafka?.close();
});

/** A Kafka header value: text or bytes; an array is a repeated header. */
function value(v: HostileValue): string | Buffer | (string | Buffer)[] {
  switch (v.kind) {
    case 'array':
      return v.value;
    case 'bytes':
      return Buffer.from(v.value);
    case 'null':
      return '';
    case 'object':
      return JSON.stringify(v.value);
    default:
      return String(v.value);
  }
}

/** Every record of a topic from the beginning, bytes as they are, once it holds `n`. */
async function readAll(topic: string, n: number): Promise<{ key: Buffer | null; value: Buffer | null; headers: IHeaders }[]> {
  const reader = kafka.client.consumer({ groupId: kafka.group('sluice-hostile-reader'), sessionTimeout: 10_000, heartbeatInterval: 1000, maxWaitTimeInMs: 100 });
  const got: { key: Buffer | null; value: Buffer | null; headers: IHeaders }[] = [];
  await reader.connect();
  try {
    await reader.subscribe({ topic, fromBeginning: true });
    await reader.run({ eachMessage: async ({ message }) => void got.push({ key: message.key, value: message.value, headers: message.headers ?? {} }) });
    await until(() => got.length >= n, `${n} record(s) in ${topic}`, 30_000);
  } finally {
    await reader.disconnect();
  }
  return got;
}

/** A case's headers: its id as `message-id`, its own headers, the attempt header. */
function headersOf(c: HostileCase): IHeaders {
  const headers: IHeaders = Object.assign(Object.create(null), { 'message-id': c.messageId ?? c.id }); // a header may be named __proto__
  if (c.messageId !== undefined) headers[CASE_HEADER] = c.id;
  for (const [name, v] of c.headers) if (name !== 'message-id') headers[name] = value(v) as IHeaders[string];
  if (c.attempt !== undefined) headers['x-sluice-attempt'] = value(c.attempt) as IHeaders[string];
  return headers;
}

const text = (v: IHeaders[string]) => (v === undefined ? undefined : (Array.isArray(v) ? v[0] : v)?.toString());

/** Kafka with a fresh topic, `<topic>.dlq` (its max.message.bytes when given) and group per run. */
const kafkaBroker = (dlqMaxMessageBytes?: number): HostileBroker => ({
  name: 'Kafka',
  maxAttempts: 3,
  start: () => 1, // Kafka's attempts are counted in the adapter, not read from a header
  async target() {
    const topic = await kafka.topic(2, 'sluice-hostile');
    if (dlqMaxMessageBytes === undefined) await createTopic(kafka.admin, `${topic}.dlq`, 1);
    else {
      const configEntries = [{ name: 'max.message.bytes', value: String(dlqMaxMessageBytes) }];
      await kafka.admin.createTopics({ topics: [{ topic: `${topic}.dlq`, numPartitions: 1, configEntries }], waitForLeaders: true });
    }
    const groupId = kafka.group('sluice-hostile');
    return {
      stream: topic,
      durable: groupId,
      async publish(cases) {
        const messages = cases.map((c, i) => ({
          key: c.key === null ? null : Buffer.from(c.key),
          // An empty body goes as a null value (a tombstone) every other time.
          value: c.body.length === 0 && i % 2 === 0 ? null : Buffer.from(c.body),
          headers: headersOf(c),
        }));
        // A request holds at most max.message.bytes: big bodies go one per request.
        const small = messages.filter((m) => (m.value?.length ?? 0) < 65_536);
        if (small.length > 0) await producer.send({ topic, acks: -1, messages: small });
        for (const m of messages.filter((x) => (x.value?.length ?? 0) >= 65_536)) await producer.send({ topic, acks: -1, messages: [m] });
      },
      consumer: (spec) => kafka.consumer({ groupId, topics: [topic], pool: { maxConcurrency: 4, maxQueueSize: 16 }, ...spec }),
      async deadLetters(n): Promise<DeadRecord[]> {
        return (await readAll(`${topic}.dlq`, n)).map((r) => ({
          id: text(r.headers[CASE_HEADER] ?? r.headers['x-sluice-message-id']),
          reason: text(r.headers['x-sluice-reason']),
          error: text(r.headers['x-sluice-error']),
          errorName: text(r.headers['x-sluice-error-name']),
          attempts: text(r.headers['x-sluice-attempts']),
          body: r.value ?? new Uint8Array(0),
        }));
      },
      async settled() {
        let lag = -1;
        await until(() => lag === 0, `group ${groupId} committed to the end of ${topic}`, 30_000, async () => {
          const { committed, end } = await kafka.offsets(groupId, topic);
          lag = end.reduce((sum, e, p) => sum + e - Math.max(0, committed[p] ?? 0), 0);
        });
      },
      remove: async () => {
        await kafka.admin.deleteTopics({ topics: [`${topic}.dlq`] }).catch(() => {});
      },
    };
  },
});

/** The topic's max.message.bytes as the broker has it (the default topic config unless set). */
async function maxMessageBytes(): Promise<number> {
  const topic = await kafka.topic(1, 'sluice-hostile-size');
  const described = await kafka.admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['max.message.bytes'] }], includeSynonyms: false });
  return Number(described.resources[0]!.configEntries.find((e) => e.configName === 'max.message.bytes')!.configValue);
}

describe('hostile input on Kafka', () => {
  it('handlers that decode, and handlers that do not', async () => {
    await checkHostile(kafkaBroker(), hostileBatch('kafka', 50, 150), { withSchema: false, runs: 5 });
  });

  it('a consumer with a schema', async () => {
    await checkHostile(kafkaBroker(), hostileBatch('kafka-schema', 50, 150), { withSchema: true, runs: 3 });
  });

  it("bodies near the topic's max.message.bytes: handled; dead-lettered with room for the dead letter's headers", async () => {
    const max = await maxMessageBytes();
    // A record batch of one record adds about 100 bytes (batch header, record framing, the id header).
    const size = max - 200;
    await runBatch(kafkaBroker(), bigCases(unique('kafka-big'), size, seededRandom(HOSTILE_SEED), 'handled'), false);
    await runBatch(kafkaBroker(), bigCases(unique('kafka-dead'), size - DEAD_LETTER_HEADROOM, seededRandom(HOSTILE_SEED)), false);
    // What docs/operations.md advises: a dead-letter topic that takes DEAD_LETTER_HEADROOM more.
    await runBatch(kafkaBroker(max + DEAD_LETTER_HEADROOM), bigCases(unique('kafka-roomy'), size, seededRandom(HOSTILE_SEED)), false);
  });

  it('a dead letter larger than the dead-letter topic takes is written without its value, says where the record is, is reported, and the partition commits past it', async () => {
    const target = await kafkaBroker().target();
    try {
      const [big] = bigCases(unique('kafka-huge'), (await maxMessageBytes()) - 200, seededRandom(HOSTILE_SEED));
      const small = Array.from({ length: 20 }, (_, i) => bigCases(`kafka-small-${i}`, 100, seededRandom(i), 'handled')[0]!);
      await target.publish([big!, ...small]);
      const { consumer, handled, errors } = await startWithRefusedDeadLetter(target, big!.id);
      try {
        await until(() => handled.size === small.length && consumer.status().deadLettered === 1, 'the small ones handled and the big one dead-lettered', 30_000);
        await target.settled(); // committed to the end of every partition: nothing holds the commit
      } finally {
        await consumer.stop({ timeoutMs: 5_000 });
      }
      expect(errors, errors.join('\n')).toHaveLength(1);
      expect(errors[0]).toMatch(/^dead-letter: dead letter of message .* without its value and headers \(.*larger than the max message size.*\); the record is at /i);
      expect(consumer.status().settlementFailures).toBe(0);
      expect(consumer.health().details.settlementFailing).toBe(false);
      const [stub, ...more] = await readAll(`${target.stream}.dlq`, 1);
      expect(more).toEqual([]);
      expect(stub!.value?.length ?? 0).toBe(0);
      const header = (name: string) => text(stub!.headers[name]);
      expect(header(CASE_HEADER) ?? header('x-sluice-message-id')).toBe(big!.messageId ?? big!.id);
      expect(header('x-sluice-reason')).toBe('max-attempts');
      expect(header('x-sluice-original-topic')).toBe(target.stream);
      expect(header('x-sluice-body-omitted')).toMatch(new RegExp(`^${big!.body.length} bytes of value and \\d+ header\\(s\\); the record is at ${target.stream}/\\d+ at offset \\d+$`));
      // The record itself is still where the stub says.
      const partition = Number(header('x-sluice-original-partition'));
      const offset = header('x-sluice-original-offset')!;
      const original = (await readAll(target.stream!, small.length + 1)).find((r) => text(r.headers['message-id']) === (big!.messageId ?? big!.id));
      expect(original?.value?.length).toBe(big!.body.length);
      expect(Number.isInteger(partition) && /^\d+$/.test(offset)).toBe(true);
    } finally {
      await target.remove();
    }
  });
});
