import type { ChannelModel, ConfirmChannel, Options } from 'amqplib';
import { injectTraceContext } from '../../src/ops/tracing.js';
import { redactError } from '../../src/redact.js';
import { publishConfirmed } from './confirm.js';
import { Endpoints, type RabbitAddress } from './endpoints.js';
import { resolveAddresses } from './options.js';

export interface RabbitPublisherOptions {
  /** One address, or the nodes of a cluster: the first that answers is used (no reconnect). */
  url?: RabbitAddress | readonly RabbitAddress[];
  socketOptions?: Record<string, unknown>;
  /** A connection you own (not closed by `close()`). One of `url` / `connection`. */
  connection?: ChannelModel;
}

export interface RabbitPublishOptions extends Omit<Options.Publish, 'headers' | 'mandatory' | 'messageId'> {
  /** The message id (AMQP `message-id` property); sluice uses it as `msg.id`. The same name on every broker's publisher. */
  id?: string;
  headers?: Record<string, string | number | boolean>;
}

/** Publisher-confirmed publishing for examples, tests and producers that feed a sluice consumer. */
export interface RabbitPublisher {
  /** Resolves once the broker confirmed the message and routed it to a queue; rejects otherwise. */
  publish(exchange: string, routingKey: string, body: Uint8Array | string, options?: RabbitPublishOptions): Promise<void>;
  /** Through the default exchange straight to `queue`. */
  sendToQueue(queue: string, body: Uint8Array | string, options?: RabbitPublishOptions): Promise<void>;
  /** `body` as JSON with content-type application/json. */
  publishJson(queue: string, body: unknown, options?: RabbitPublishOptions): Promise<void>;
  readonly channel: ConfirmChannel;
  close(): Promise<void>;
}

/**
 * Opens a confirm channel. Messages are persistent by default and carry the active
 * OpenTelemetry trace context (`traceparent`) when @opentelemetry/api is installed.
 */
export async function rabbitPublisher(options: RabbitPublisherOptions): Promise<RabbitPublisher> {
  if ((options?.url === undefined) === (options?.connection === undefined)) {
    throw new TypeError('rabbitPublisher: give exactly one of option "url" or option "connection"');
  }
  const owned = options.connection === undefined;
  const endpoints = owned ? new Endpoints(resolveAddresses('rabbitPublisher', options.url, options.socketOptions)) : undefined;
  const connection =
    options.connection ??
    (await endpoints!.connect(options.socketOptions).catch((error: unknown) => {
      throw new Error(`rabbitPublisher: cannot connect to ${endpoints!.all}: ${redactError(error)}`, { cause: error });
    }));
  if (owned) connection.on('error', () => {}); // its 'close' reaches every pending publish as an error
  const channel = await connection.createConfirmChannel();
  channel.on('error', () => {});
  const publish = async (exchange: string, routingKey: string, body: Uint8Array | string, o: RabbitPublishOptions = {}) => {
    const { id, headers: given, ...properties } = o;
    const headers = await injectTraceContext(Object.fromEntries(Object.entries(given ?? {}).map(([k, v]) => [k, String(v)])));
    const content = typeof body === 'string' ? Buffer.from(body) : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
    const message: Options.Publish = { persistent: true, ...properties, headers };
    if (id !== undefined) message.messageId = id;
    await publishConfirmed(channel, exchange, routingKey, content, message);
  };
  return {
    channel,
    publish,
    sendToQueue: (queue, body, o) => publish('', queue, body, o),
    publishJson: (queue, body, o) => publish('', queue, JSON.stringify(body), { contentType: 'application/json', ...o }),
    async close() {
      await channel.close().catch(() => {});
      if (owned) await connection.close().catch(() => {});
    },
  };
}
