/**
 * What the chaos driver tells each worker process (JSON in SLUICE_CHAOS_WORKER): where to consume,
 * the consumer options (serializable ones only: the test file shows them, the bound is derived
 * from them), how long the handler works and where to record what it handled.
 */
import type { KafkaConsumerOptions } from '../../../adapters/kafka/index.js';
import type { NatsConsumerOptions } from '../../../adapters/nats/index.js';
import type { RabbitConsumerOptions } from '../../../adapters/rabbitmq/index.js';

type Serializable<T> = Omit<T, 'handler' | 'batchHandler' | 'schema' | 'failurePolicy' | 'middleware' | 'flow' | 'connection' | 'kafka'>;

export type ChaosTarget =
  | { broker: 'rabbitmq'; options: Serializable<RabbitConsumerOptions> }
  | { broker: 'nats'; options: Serializable<NatsConsumerOptions> }
  | { broker: 'kafka'; brokers: string[]; options: Serializable<KafkaConsumerOptions> };

export type WorkerConfig = ChaosTarget & {
  /** The worker's number in this run (1, 2, …): its record file and log are named by it. */
  worker: number;
  /** Its append-only record file. */
  record: string;
  /** Milliseconds of simulated work per message. */
  workMs: number;
};

export const WORKER_CONFIG_ENV = 'SLUICE_CHAOS_WORKER';
