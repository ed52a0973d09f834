/**
 * Kafka's part of a chaos run: a fresh topic and group on the shared broker, deleted by close().
 * After each kill it reads the group's committed offsets: the victim's partitions go on from
 * there, so what the victim handled at or past them is what the kill may duplicate.
 */
import type { KafkaConsumerOptions } from '../../../adapters/kafka/index.js';
import { kafkaFixture } from '../../helpers/kafka.js';
import type { ChaosBroker, ChaosRun, Kill } from './driver.js';
import type { Handled } from './records.js';

export type KafkaChaosOptions = Omit<KafkaConsumerOptions, 'handler' | 'kafka' | 'groupId' | 'topics'>;

/** The group's committed offset per partition right after a kill (−1: nothing committed yet). */
export interface KafkaKillState {
  committed: number[];
}

export async function kafkaChaos(
  options: KafkaChaosOptions,
  partitions: number,
): Promise<ChaosBroker<KafkaKillState> & { topic: string; groupId: string; close(): Promise<void> }> {
  const kafka = await kafkaFixture({ deleteOnClose: true });
  const topic = await kafka.topic(partitions, 'sluice-chaos');
  const groupId = kafka.group('sluice-chaos');
  const lag = async () => {
    const { committed, end } = await kafka.offsets(groupId, topic);
    const left = end.map((e, p) => e - Math.max(0, committed[p] ?? 0));
    return { committed, left };
  };
  return {
    topic,
    groupId,
    target: { broker: 'kafka', brokers: kafka.brokers, options: { ...options, groupId, topics: [topic] } },
    async publish(ids) {
      await kafka.publisher.publish(
        topic,
        ids.map((id) => ({ key: String(id), value: JSON.stringify({ id }), headers: { 'message-id': String(id) } })),
      );
    },
    backlog: async () => (await lag()).left.reduce((a, b) => a + b, 0),
    async remaining() {
      const { committed, left } = await lag();
      return { left: left.reduce((a, b) => a + b, 0), detail: `lag per partition ${JSON.stringify(left)}, committed ${JSON.stringify(committed)}` };
    },
    afterKill: async () => ({ committed: (await kafka.offsets(groupId, topic)).committed }),
    close: () => kafka.close(),
  };
}

/** Whether the victim's handling was at or past its partition's committed offset right after the kill: what the next owner reads again. */
export function uncommitted(kill: Kill<KafkaKillState>, h: Handled): boolean {
  return h.offset! >= (kill.state.committed[h.partition!] ?? -1);
}

/** What the victim had handled and not committed when it died: the most a kill can duplicate. */
export function uncommittedAtKill(run: ChaosRun<KafkaKillState>, kill: Kill<KafkaKillState>): number {
  return run.records.filter((r) => r.worker === kill.worker && uncommitted(kill, r)).length;
}

/**
 * How long the victim's partitions stood still: from the kill to the first record on one of them
 * by another worker (the partitions it handled in its last second stand for its assignment).
 */
export function takeoverMs(run: ChaosRun<KafkaKillState>, kill: Kill<KafkaKillState>): number | undefined {
  const held = new Set(run.records.filter((r) => r.worker === kill.worker && r.at > kill.at - 1000).map((r) => r.partition));
  const next = run.records.filter((r) => r.worker !== kill.worker && r.at >= kill.at && held.has(r.partition)).map((r) => r.at);
  return next.length > 0 ? Math.min(...next) - kill.at : undefined;
}
