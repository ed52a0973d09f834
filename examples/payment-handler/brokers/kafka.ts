import { randomUUID } from 'node:crypto';
import { Kafka, logLevel } from 'kafkajs';
import { kafkaConsumer, kafkaPublisher } from '../../../adapters/kafka/index.js';
import type { DemoBroker, Payment } from '../demo-broker.js';

/**
 * The demo on a real Kafka (`KAFKA_BROKERS`, default 127.0.0.1:9092; `npm run kafka start`
 * runs one without Docker). A fresh topic of 3 partitions per run, so reruns never mix; payments
 * are keyed by card, so each card's payments are handled in order and different cards in parallel.
 */
export async function createDemoBroker(): Promise<DemoBroker> {
  const brokers = (process.env.KAFKA_BROKERS ?? '127.0.0.1:9092').split(',').map((b) => b.trim());
  const kafka = new Kafka({ clientId: 'sluice-demo', brokers, logLevel: logLevel.NOTHING, retry: { retries: 3 } });
  const topic = `payments-${randomUUID().slice(0, 8)}`;
  const deadLetterTopic = `${topic}.dlq`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 3 }, { topic: deadLetterTopic, numPartitions: 1 }], waitForLeaders: true });
  const publisher = await kafkaPublisher({ kafka });
  return {
    name: `kafka (${brokers.join(',')}, topic ${topic})`,
    async publish(payments: Payment[]) {
      const messages = payments.map((p) => ({ key: p.card, value: JSON.stringify(p), headers: { 'message-id': p.id, 'content-type': 'application/json' } }));
      for (let i = 0; i < messages.length; i += 1000) await publisher.publish(topic, messages.slice(i, i + 1000));
      // One message no JSON handler can read: it must go to the dead-letter topic, not crash anything.
      await publisher.publish(topic, [{ key: 'malformed', value: 'this is not json', headers: { 'message-id': 'malformed-1' } }]);
    },
    async consumer(options) {
      // The pool is the credit on Kafka: partitions pause when it is full, so overload shows as pauses.
      return kafkaConsumer({
        ...options,
        kafka,
        groupId: `${topic}-handler`,
        topics: [topic],
        fromBeginning: true,
        ordering: 'key',
        deadLetter: { topic: deadLetterTopic },
        sessionTimeout: 10_000,
        heartbeatInterval: 1000,
      });
    },
    async deadLettered() {
      const offsets = await admin.fetchTopicOffsets(deadLetterTopic);
      return offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
    },
    async close() {
      await publisher.close();
      await admin.deleteTopics({ topics: [topic, deadLetterTopic] }).catch(() => {});
      await admin.disconnect();
    },
  };
}
