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
  /** Ends the wait for the confirm (the broker blocked the connection); the publish itself may still land later. */
  signal?: AbortSignal,
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
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const done = (error?: Error) => {
      signal?.removeEventListener('abort', onAbort);
      if (error) reject(error);
      else resolve();
    };
    try {
      channel.publish(exchange, routingKey, content, { ...options, headers, mandatory: true }, (error: unknown) =>
        done(error ? (error instanceof Error ? error : new Error(`publish to ${exchange || '(default)'}/${routingKey} was nacked by the broker`)) : undefined),
      );
    } catch (error) {
      done(error instanceof Error ? error : new Error(String(error)));
    }
  });
  // The broker sends basic.return before the confirm of the same publish.
  if (seen.delete(id)) {
    throw new UnroutableError(`publish to exchange "${exchange}" with routing key "${routingKey}" reached no queue`);
  }
}
