/** JetStream's part of a chaos run: a fresh stream (and its dead-letter stream) on the shared server, deleted by close(). */
import type { NatsConsumerOptions } from '../../../adapters/nats/index.js';
import { natsFixture } from '../../helpers/nats.js';
import type { ChaosBroker } from './driver.js';

export type NatsChaosOptions = Omit<NatsConsumerOptions, 'handler' | 'servers' | 'connection' | 'stream' | 'durable' | 'deadLetter'>;

export async function natsChaos(options: NatsChaosOptions): Promise<ChaosBroker & { stream: string; durable: string; close(): Promise<void> }> {
  const nats = await natsFixture();
  const { stream, subject, dlq } = await nats.stream('SLUICE_CHAOS');
  const durable = 'chaos';
  return {
    stream,
    durable,
    target: { broker: 'nats', options: { ...options, servers: nats.url, stream, durable, deadLetter: { subject: dlq } } },
    async publish(ids) {
      await Promise.all(ids.map((id) => nats.publisher.publishJson(`${subject}.in`, { id }, { id: String(id) })));
    },
    backlog: async () => (await nats.jsm.consumers.info(stream, durable).catch(() => undefined))?.num_pending ?? 0,
    async remaining() {
      // Before the first worker created the durable there is no consumer info: everything is left.
      const info = await nats.jsm.consumers.info(stream, durable).catch(() => undefined);
      if (!info) return { left: Number.MAX_SAFE_INTEGER, detail: 'no durable yet' };
      return { left: info.num_pending + info.num_ack_pending, detail: `num_pending ${info.num_pending}, num_ack_pending ${info.num_ack_pending}` };
    },
    afterKill: async () => undefined,
    close: () => nats.close(),
  };
}
