/**
 * Smoke tests for the test brokers themselves: each gets its address from test/helpers/brokers.ts
 * and does a real round trip. A missing broker fails here with a message saying how to start it.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { connect as amqpConnect } from 'amqplib';
import { Kafka, logLevel } from 'kafkajs';
import { kafkaBrokers, natsUrl, rabbitUrl } from '../helpers/brokers.js';
import { natsClient, natsConnect, natsJetStream, natsJetStreamManager } from '../helpers/nats.js';

const unique = (prefix: string) => `${prefix}-${randomUUID().slice(0, 8)}`;

describe('integration brokers', () => {
  it('RabbitMQ: publish with confirm, then basic.get the same message', async () => {
    const url = await rabbitUrl();
    const connection = await amqpConnect(url);
    const queue = unique('sluice-smoke');
    try {
      const channel = await connection.createConfirmChannel();
      const declared = await channel.assertQueue(queue, { durable: false });
      expect(declared.queue).toBe(queue);
      expect(declared.messageCount).toBe(0);

      channel.publish('', queue, Buffer.from('hello rabbit'), { messageId: 'm1', contentType: 'text/plain' });
      await channel.waitForConfirms();

      const message = await channel.get(queue, { noAck: false });
      expect(message).not.toBe(false);
      if (message === false) return;
      expect(message.content.toString()).toBe('hello rabbit');
      expect(message.properties.messageId).toBe('m1');
      expect(message.fields.redelivered).toBe(false);
      channel.ack(message);

      expect(await channel.get(queue)).toBe(false);
      await channel.deleteQueue(queue);
      await channel.close();
    } finally {
      await connection.close();
    }
  }, 240_000);

  it(`NATS (${natsClient} client): request/reply round trip and JetStream enabled`, async () => {
    const url = await natsUrl();
    const nc = await natsConnect({ servers: url, timeout: 5000 });
    const sc = { encode: (s: string) => new TextEncoder().encode(s), decode: (b: Uint8Array) => new TextDecoder().decode(b) };
    try {
      const subject = unique('sluice.smoke');
      const sub = nc.subscribe(subject, {
        callback: (err, msg) => {
          if (!err) msg.respond(sc.encode(`echo:${sc.decode(msg.data)}`));
        },
      });
      await nc.flush();
      const reply = await nc.request(subject, sc.encode('ping'), { timeout: 5000 });
      expect(sc.decode(reply.data)).toBe('echo:ping');
      sub.unsubscribe();

      // JetStream: account info only answers when the server runs with -js.
      const jsm = await natsJetStreamManager(nc);
      const account = await jsm.getAccountInfo();
      expect(account.limits).toBeDefined();
      expect(typeof account.streams).toBe('number');

      // And a stream really stores what is published to it.
      const stream = unique('SLUICE_SMOKE').replace(/-/g, '_');
      await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], max_msgs: 10 });
      try {
        const ack = await (await natsJetStream(nc)).publish(`${stream}.a`, sc.encode('stored'));
        expect(ack.stream).toBe(stream);
        expect(ack.seq).toBe(1);
        const stored = await jsm.streams.getMessage(stream, { seq: 1 });
        expect(sc.decode(stored.data)).toBe('stored');
      } finally {
        await jsm.streams.delete(stream);
      }
    } finally {
      await nc.drain();
    }
  }, 240_000);

  it('Kafka: create a topic, produce one message, consume it', async () => {
    const brokers = await kafkaBrokers();
    expect(brokers.length).toBeGreaterThan(0);
    const kafka = new Kafka({ clientId: 'sluice-smoke', brokers, logLevel: logLevel.NOTHING });
    const admin = kafka.admin();
    const producer = kafka.producer({ allowAutoTopicCreation: false });
    const topic = unique('sluice-smoke');
    const consumer = kafka.consumer({ groupId: unique('sluice-smoke-group') });
    await admin.connect();
    try {
      expect(Array.isArray(await admin.listTopics())).toBe(true);
      expect(await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true })).toBe(true);
      expect(await admin.listTopics()).toContain(topic);
      const [metadata] = (await admin.fetchTopicMetadata({ topics: [topic] })).topics;
      expect(metadata?.partitions).toHaveLength(3);

      await producer.connect();
      const [sent] = await producer.send({ topic, messages: [{ key: 'k1', value: 'hello kafka', partition: 2 }] });
      expect(sent?.errorCode).toBe(0);
      expect(sent?.partition).toBe(2);

      await consumer.connect();
      await consumer.subscribe({ topic, fromBeginning: true });
      const received = await new Promise<{ partition: number; offset: string; key?: string; value?: string }>(
        (resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('no message consumed within 60 s')), 60_000);
          consumer
            .run({
              eachMessage: async ({ partition, message }) => {
                clearTimeout(timer);
                resolve({
                  partition,
                  offset: message.offset,
                  key: message.key?.toString(),
                  value: message.value?.toString(),
                });
              },
            })
            .catch(reject);
        },
      );
      expect(received).toEqual({ partition: 2, offset: '0', key: 'k1', value: 'hello kafka' });
    } finally {
      await consumer.disconnect();
      await producer.disconnect();
      await admin.deleteTopics({ topics: [topic] }).catch(() => {});
      await admin.disconnect();
    }
  }, 300_000);
});
