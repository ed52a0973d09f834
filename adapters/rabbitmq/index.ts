import type { ConsumeMessage } from 'amqplib';
import { Consumer } from '../../src/consumer.js';
import { resolveRabbitOptions, type RabbitConsumerOptions } from './options.js';
import { RabbitSource } from './source.js';

export type { RabbitConsumerOptions, QueueDeclaration, DeadLetterTarget, RecoveryOptions, RabbitAddress } from './options.js';
export { rabbitPublisher, type RabbitPublisher, type RabbitPublisherOptions, type RabbitPublishOptions } from './publisher.js';
export { RabbitSource, type RabbitSourceStatus } from './source.js';
export { ChannelLostError, PublishBlockedError } from './session.js';
export { UnroutableError } from './confirm.js';
export type { ConsumeMessage };

/**
 * A consumer of one RabbitMQ queue through a bounded pool. Several consumers may share one
 * WorkerPool: that is one concurrency limit over many queues.
 */
export function rabbitConsumer<Data = unknown>(options: RabbitConsumerOptions<Data>): Consumer<ConsumeMessage> {
  const source = new RabbitSource(resolveRabbitOptions(options));
  const consumer = new Consumer(source, options);
  // Default prefetch is the pool's capacity; on an adaptive pool it follows the limit.
  if (options.prefetch === undefined) source.followPool(consumer.pool, options.batchHandler === undefined ? 1 : (options.batch?.size ?? 100));
  return consumer;
}
