import type { Message } from '../message.js';

/**
 * OpenTelemetry messaging attributes of a consumed message (semantic conventions for messaging,
 * "process" operation), shared by the tracing middleware and the metrics recorder.
 *
 * Only structural reads of `message.raw`, never a broker client: an amqplib ConsumeMessage
 * (`fields`, `properties`), a Kafka record (`topic`, `partition`, `message.offset/key/value`), a
 * NATS JetStream message (`subject`, `info.consumer`) or a core NATS message (`subject`).
 */

export type AttributeValue = string | number | boolean;
export type MessagingAttributes = Record<string, AttributeValue>;

export interface MessagingTarget {
  /** `messaging.system`: 'rabbitmq', 'kafka', 'nats', 'memory' (or any other name). */
  system: string;
  /**
   * `messaging.consumer.group.name`. Default: what the message itself tells — a JetStream message
   * names its durable consumer, a core NATS subscription its queue group — and none otherwise
   * (a Kafka record does not carry its group: pass the consumer's `groupId` here).
   */
  consumerGroup?: string | undefined;
  /**
   * `messaging.destination.template`: a low-cardinality form of the destination (a NATS
   * subscription with wildcards, `orders.*`). When set, the span name and the metrics use it
   * instead of the destination name. Default: a core NATS subscription's subject when it has
   * wildcards, else none.
   */
  destinationTemplate?: string | undefined;
}

export interface MessageTelemetry {
  /** The `{destination}` of the span name (template, else name; empty for an anonymous destination). */
  spanDestination: string;
  /** Low-cardinality attributes: on the span and on the metrics. */
  common: MessagingAttributes;
  /** Per-message attributes (ids, offsets, keys, sizes): on the span only. */
  perMessage: MessagingAttributes;
}

type Loose = Record<string, unknown> | undefined;

const UTF8 = new TextDecoder('utf-8', { fatal: true });

function obj(value: unknown): Loose {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
}

function str(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** A Kafka key in its canonical string form: a string, or bytes that are valid UTF-8; else none. */
function keyText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) {
    try {
      return UTF8.decode(value);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

function integer(value: unknown): number | undefined {
  const n = typeof value === 'bigint' ? Number(value) : typeof value === 'string' && value !== '' ? Number(value) : value;
  return typeof n === 'number' && Number.isSafeInteger(n) ? n : undefined;
}

/** `error.type`: the error's class name (`PermanentError`, `TaskTimeoutError`, `TypeError`), `_OTHER` for a non-Error. */
export function errorType(error: unknown): string {
  if (!(error instanceof Error)) return '_OTHER';
  const ctor = (error.constructor as { name?: unknown } | undefined)?.name;
  // A subclass that does not set `name` still says 'Error': its constructor's name says more.
  if (error.name === 'Error' && typeof ctor === 'string' && ctor !== '' && ctor !== 'Error') return ctor;
  return str(error.name) ?? (typeof ctor === 'string' && ctor !== '' ? ctor : '_OTHER');
}

export function messageTelemetry(message: Message, target: MessagingTarget): MessageTelemetry {
  const raw = obj(message.raw);
  let destination = message.source;
  let template = target.destinationTemplate;
  let group = target.consumerGroup;
  let anonymous = false;
  const common: MessagingAttributes = { 'messaging.system': target.system, 'messaging.operation.name': 'process', 'messaging.operation.type': 'process' };
  const perMessage: MessagingAttributes = { 'messaging.message.id': message.id, 'messaging.message.body.size': message.body.byteLength };

  switch (target.system) {
    case 'rabbitmq': {
      // The queue consumed from. The RabbitMQ page of the conventions would compose
      // `{exchange}:{routing key}:{queue}`; sluice's retries republish through the default exchange
      // (the exchange is lost) and routing keys can carry ids, so the queue is the stable,
      // low-cardinality name; the routing key has its own attribute.
      anonymous = destination.startsWith('amq.gen-');
      const fields = obj(raw?.fields);
      const properties = obj(raw?.properties);
      // message.key keeps the first routing key across sluice's retries (raw.fields has the queue's then).
      const routingKey = str(message.key) ?? str(fields?.routingKey);
      if (routingKey !== undefined) perMessage['messaging.rabbitmq.destination.routing_key'] = routingKey;
      const tag = integer(fields?.deliveryTag);
      if (tag !== undefined) perMessage['messaging.rabbitmq.message.delivery_tag'] = tag;
      const correlation = str(properties?.correlationId);
      if (correlation !== undefined) perMessage['messaging.message.conversation_id'] = correlation;
      break;
    }
    case 'kafka': {
      destination = str(raw?.topic) ?? destination;
      const partition = integer(raw?.partition);
      if (partition !== undefined) common['messaging.destination.partition.id'] = String(partition);
      const record = obj(raw?.message);
      const offset = integer(record?.offset) ?? integer(raw?.offset);
      if (offset !== undefined) perMessage['messaging.kafka.offset'] = offset;
      const key = record && 'key' in record ? keyText(record.key) : message.key;
      if (key !== undefined) perMessage['messaging.kafka.message.key'] = key;
      if (record && record.value === null) perMessage['messaging.kafka.message.tombstone'] = true;
      break;
    }
    case 'nats': {
      // The subject the message was published to, not the stream (JetStream) or the subscription.
      destination = str(raw?.subject) ?? str(message.key) ?? destination;
      const info = obj(raw?.info);
      if (info !== undefined) {
        group ??= str(info.consumer);
      } else {
        // natsSubscriber's source is `<subject>` or `<subject> (<queue group>)`; subjects have no spaces.
        const match = /^(\S+)(?: \((.+)\))?$/.exec(message.source);
        if (match) {
          group ??= match[2];
          if (/(^|\.)(\*|>)(\.|$)/.test(match[1]!)) template ??= match[1];
        }
      }
      break;
    }
    default:
      break;
  }

  common['messaging.destination.name'] = destination;
  if (template !== undefined) common['messaging.destination.template'] = template;
  if (anonymous) common['messaging.destination.anonymous'] = true;
  if (group !== undefined) common['messaging.consumer.group.name'] = group;
  return { spanDestination: template ?? (anonymous ? '' : destination), common, perMessage };
}

/**
 * The attributes the metrics carry: the common ones, less the destination name when a template
 * stands for it (the conventions keep a high-cardinality name off metrics).
 */
export function metricAttributes(telemetry: MessageTelemetry): MessagingAttributes {
  const { common } = telemetry;
  if (common['messaging.destination.template'] === undefined && common['messaging.destination.anonymous'] !== true) return common;
  const { 'messaging.destination.name': _name, ...rest } = common;
  return rest;
}
