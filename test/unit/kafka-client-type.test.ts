/**
 * `consumer.source.client` is typed as the consumer of the client the `kafka` option chose. Checked
 * by the type checker (`npm test` runs tsc first); the consumers are never built here.
 */
import type { Consumer as PlatformaticConsumer } from '@platformatic/kafka';
import { Kafka, type Consumer as KafkajsConsumer } from 'kafkajs';
import { describe, expectTypeOf, it } from 'vitest';
import { kafkaConsumer, KafkajsDriver, PlatformaticDriver, type KafkaConsumer, type KafkaDriver } from '../../adapters/kafka/index.js';

const common = { groupId: 'g', topics: ['t'], pool: { maxConcurrency: 1, maxQueueSize: 1 }, handler: async () => {} };
type ClientOf<F extends () => KafkaConsumer<unknown>> = ReturnType<F>['source']['client'];

describe('consumer.source.client', () => {
  it('is kafkajs’s Consumer for a kafkajs config, a Kafka instance or a KafkajsDriver, and by default', () => {
    const config = () => kafkaConsumer({ ...common, kafka: { brokers: ['b:9092'] } });
    const instance = () => kafkaConsumer({ ...common, kafka: new Kafka({ brokers: ['b:9092'] }) });
    const named = () => kafkaConsumer({ ...common, kafka: { client: 'kafkajs', brokers: ['b:9092'] } });
    const driver = () => kafkaConsumer({ ...common, kafka: new KafkajsDriver(new Kafka({ brokers: ['b:9092'] })) });
    const explicitData = () => kafkaConsumer<{ id: number }>({ ...common, kafka: { brokers: ['b:9092'] } });
    expectTypeOf<ClientOf<typeof config>>().toEqualTypeOf<KafkajsConsumer | undefined>();
    expectTypeOf<ClientOf<typeof instance>>().toEqualTypeOf<KafkajsConsumer | undefined>();
    expectTypeOf<ClientOf<typeof named>>().toEqualTypeOf<KafkajsConsumer | undefined>();
    expectTypeOf<ClientOf<typeof driver>>().toEqualTypeOf<KafkajsConsumer | undefined>();
    expectTypeOf<ClientOf<typeof explicitData>>().toEqualTypeOf<KafkajsConsumer | undefined>();
    expectTypeOf<KafkaConsumer['source']['client']>().toEqualTypeOf<KafkajsConsumer | undefined>();
  });

  it('is @platformatic/kafka’s Consumer for { client: "platformatic" } or a PlatformaticDriver', () => {
    const config = () => kafkaConsumer({ ...common, kafka: { client: 'platformatic', brokers: ['b:9092'], groupProtocol: 'consumer' } });
    const driver = () => kafkaConsumer({ ...common, kafka: new PlatformaticDriver({ client: 'platformatic', brokers: ['b:9092'] }) });
    expectTypeOf<ClientOf<typeof config>>().toEqualTypeOf<PlatformaticConsumer | undefined>();
    expectTypeOf<ClientOf<typeof driver>>().toEqualTypeOf<PlatformaticConsumer | undefined>();
  });

  it('is unknown for a driver of your own', () => {
    const own = (d: KafkaDriver) => () => kafkaConsumer({ ...common, kafka: d });
    expectTypeOf<ClientOf<ReturnType<typeof own>>>().toEqualTypeOf<unknown>();
  });
});
