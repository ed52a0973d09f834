import { randomUUID } from 'node:crypto';
import type { ConfirmChannel, Message as AmqpMessage, Options } from 'amqplib';

/** Header that lets a returned (unroutable) publish be matched to the publish that sent it. */
const PUBLISH_ID = 'x-sluice-publish-id';

/** The broker accepted the publish but no queue was bound to take it: the message would be lost. */
export class UnroutableError extends Error {
  override readonly name = 'UnroutableError';
}

const returned = new WeakMap<ConfirmChannel, Set<string>>();

/**
 * Publishes on a confirm channel and resolves only when the broker has confirmed it and routed
 * it to at least one queue (`mandatory`): the dead-letter and retry paths ack the original only
 * after this resolves, so an unroutable or unconfirmed copy never costs the original.
 */
export async function publishConfirmed(
  channel: ConfirmChannel,
  exchange: string,
  routingKey: string,
  content: Buffer,
  options: Options.Publish = {},
): Promise<void> {
  let seen = returned.get(channel);
  if (!seen) {
    const set = new Set<string>();
    seen = set;
    returned.set(channel, set);
    channel.on('return', (message: AmqpMessage) => {
      const id = message.properties.headers?.[PUBLISH_ID];
      if (typeof id === 'string') set.add(id);
    });
  }
  const id = randomUUID();
  const headers = { ...options.headers, [PUBLISH_ID]: id };
  await new Promise<void>((resolve, reject) => {
    try {
      channel.publish(exchange, routingKey, content, { ...options, headers, mandatory: true }, (error: unknown) =>
        error ? reject(error instanceof Error ? error : new Error(`publish to ${exchange || '(default)'}/${routingKey} was nacked by the broker`)) : resolve(),
      );
    } catch (error) {
      reject(error);
    }
  });
  // The broker sends basic.return before the confirm of the same publish.
  if (seen.delete(id)) {
    throw new UnroutableError(`publish to exchange "${exchange}" with routing key "${routingKey}" reached no queue`);
  }
}
