import type { Msg } from './client.js';
import type { JsMsg } from './jsmsg.js';
import { Consumer } from '../../src/consumer.js';
import { CoreSource } from './core-source.js';
import { JetStreamSource } from './jetstream-source.js';
import { resolveCoreOptions, resolveJetStreamOptions, type NatsConsumerOptions, type NatsSubscriberOptions } from './options.js';

export type { NatsConsumerOptions, NatsSubscriberOptions, NatsRecoveryOptions } from './options.js';
export type { NatsConnectionOptions } from './connection.js';
export { natsPublisher, type NatsPublisher, type NatsPublishOptions } from './publisher.js';
export { JetStreamSource, type JetStreamSourceStatus } from './jetstream-source.js';
export { CoreSource } from './core-source.js';
export type { JsMsg, Msg };
export type { DeliveryInfo } from './jsmsg.js';
export type { ConsumerConfig, MsgHdrs, NatsClientGeneration, NatsConnectOptions, NatsConnection, PubAck } from './client.js';

/**
 * A JetStream durable pull consumer through a bounded pool: at least once, pulls sized by the
 * pool's free places, `working()` for slow handlers, dead letters published before `term()`.
 */
export function natsConsumer<Data = unknown>(options: NatsConsumerOptions<Data>): Consumer<JsMsg> {
  return new Consumer(new JetStreamSource(resolveJetStreamOptions(options)), options);
}

/**
 * A core NATS subscription (optionally in a queue group) through a bounded pool: at most once.
 * Overload answers a request with a 503 service error and drops a plain message (counted in
 * `consumer.source.dropped`). Handlers answer requests with `msg.raw.respond(…)`.
 */
export function natsSubscriber<Data = unknown>(options: NatsSubscriberOptions<Data>): Consumer<Msg> {
  const resolved = resolveCoreOptions(options);
  if (options.retry?.maxAttempts !== undefined && options.retry.maxAttempts !== 1) {
    throw new RangeError(
      `natsSubscriber(${JSON.stringify(options.subject)}): option "retry.maxAttempts" must be 1 on core NATS (it cannot redeliver), got ${options.retry.maxAttempts}`,
    );
  }
  return new Consumer(new CoreSource(resolved), { ...options, retry: { maxAttempts: 1 } });
}
