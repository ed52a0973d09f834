import type { Consumer } from '../consumer.js';
import type { Message } from '../message.js';
import { errorType, messageTelemetry, metricAttributes, type AttributeValue } from './messaging-attributes.js';
import { loadOtel } from './tracing.js';

type Attributes = Record<string, AttributeValue>;

/** The part of an OpenTelemetry `Meter` (@opentelemetry/api) this recorder uses. */
export interface MeterLike {
  createHistogram(
    name: string,
    options?: { description?: string; unit?: string; advice?: { explicitBucketBoundaries?: number[] } },
  ): { record(value: number, attributes?: Attributes): void };
  createCounter(name: string, options?: { description?: string; unit?: string }): { add(value: number, attributes?: Attributes): void };
}

export interface OtelMetricsOptions {
  /** Default: the global meter provider's meter `meterName`. */
  meter?: MeterLike;
  /** Default 'sluice'. */
  meterName?: string;
  /** `messaging.system`. Default: each consumer's source kind (`rabbitmq`, `kafka`, `nats`, `memory`). */
  system?: string;
  /** `messaging.consumer.group.name` (Kafka: the `groupId`). Default: what the message tells (JetStream durable, NATS queue group). */
  consumerGroup?: string;
  /** `messaging.destination.template`, used on the metrics instead of the destination name. */
  destinationTemplate?: string;
  consumers?: Consumer[];
}

export interface TrackOptions {
  system?: string;
  consumerGroup?: string;
  destinationTemplate?: string;
}

export interface OtelMessagingMetrics {
  /** Records a consumer's handler calls; returns the function that stops it. Options override the recorder's. */
  track(consumer: Consumer, options?: TrackOptions): () => void;
}

/** The conventions' advice for `messaging.process.duration`, in seconds. */
export const PROCESS_DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10];

/**
 * The OpenTelemetry messaging consumer metrics, beside the Prometheus ones: from a consumer's
 * `handled` and `failed` events (single and batch handlers alike), for every handler attempt,
 * - `messaging.process.duration` (histogram, s): the handler's run time, with `error.type` when it failed;
 * - `messaging.client.consumed.messages` (counter, {message}): messages handed to the application.
 * Attributes: `messaging.system`, `messaging.operation.name` 'process', `messaging.destination.name`
 * (or `.template`), `messaging.consumer.group.name`, `messaging.destination.partition.id` (Kafka).
 */
export async function otelMessagingMetrics(options: OtelMetricsOptions = {}): Promise<OtelMessagingMetrics> {
  const meter: MeterLike = options.meter ?? (await loadOtel('metrics')).metrics.getMeter(options.meterName ?? 'sluice');
  const duration = meter.createHistogram('messaging.process.duration', {
    description: 'Duration of processing operation.',
    unit: 's',
    advice: { explicitBucketBoundaries: PROCESS_DURATION_BUCKETS },
  });
  const consumed = meter.createCounter('messaging.client.consumed.messages', {
    description: 'Number of messages that were delivered to the application.',
    unit: '{message}',
  });

  const track = (consumer: Consumer, overrides: TrackOptions = {}) => {
    const system = overrides.system ?? options.system ?? (consumer.source.name.split(':')[0] || 'unknown');
    const target = {
      system,
      consumerGroup: overrides.consumerGroup ?? options.consumerGroup,
      destinationTemplate: overrides.destinationTemplate ?? options.destinationTemplate,
    };
    const record = (message: Message, durationMs: number, failed: boolean, error?: unknown) => {
      const attributes = metricAttributes(messageTelemetry(message, target));
      consumed.add(1, attributes);
      duration.record(durationMs / 1000, failed ? { ...attributes, 'error.type': errorType(error) } : attributes);
    };
    const offs = [
      consumer.on('handled', ({ message, durationMs }) => record(message, durationMs, false)),
      consumer.on('failed', ({ message, durationMs, error }) => record(message, durationMs, true, error)),
    ];
    return () => offs.forEach((off) => off());
  };

  for (const consumer of options.consumers ?? []) track(consumer);
  return { track };
}
