/**
 * A numbered stream produced and consumed through a fault, for the Kafka fault tests: what the
 * handler saw per id and per offset, what was handled but not yet committed (the duplicates a
 * fault may cost), the longest pause in handling, and the consumer's health over time.
 *
 *   const stream = produceStream(publisher, topic, 3000, 300);   // ids s-0 … s-2999, 300 a second
 *   const run = watchStream(consumer);                          // before consumer.start()
 *   ... handler: run.handled(msg) ... the fault ...
 *   run.redelivered(); run.maxUncommitted(since); run.longestGap(since); run.health(from, to); run.stop();
 */
import type { KafkaConsumer, KafkaPublisher, KafkaRecord } from '../../adapters/kafka/index.js';
import type { Message } from '../../src/index.js';

export interface HealthSample {
  at: number;
  status: 'ok' | 'degraded' | 'down';
  reasons: string[];
}

export interface ProducedStream {
  /** Ids in publishing order; an id is listed once its batch was acknowledged by every in-sync replica. */
  readonly ids: string[];
  /** Resolves once all `n` are acknowledged. */
  readonly done: Promise<void>;
  /** Sends that failed and were sent again (a leader moving). */
  readonly resends: number;
}

/**
 * Publishes ids `<prefix>-0 … <prefix>-(n-1)` (keys k0…k23) at about `perSecond`, in batches of 10.
 * A batch the cluster refuses (no leader for a moment) is sent again until acknowledged: the topic
 * may then hold an id twice, at two offsets (duplicates of the producer's, not the consumer's).
 */
export function produceStream(publisher: KafkaPublisher, topic: string, n: number, perSecond: number, prefix = 's'): ProducedStream {
  const ids: string[] = [];
  let resends = 0;
  const batch = 10;
  const done = (async () => {
    const t0 = performance.now();
    for (let i = 0; i < n; i += batch) {
      const messages = [];
      for (let j = i; j < Math.min(n, i + batch); j++) {
        messages.push({ key: `k${j % 24}`, value: JSON.stringify({ id: `${prefix}-${j}` }), headers: { 'message-id': `${prefix}-${j}` } });
      }
      for (let tries = 1; ; tries++) {
        try {
          await publisher.publish(topic, messages);
          break;
        } catch (error) {
          if (tries >= 200) throw new Error(`produceStream: batch at ${i} refused ${tries} times`, { cause: error });
          resends++;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      for (const m of messages) ids.push(m.headers['message-id']);
      const due = t0 + ((i + batch) * 1000) / perSecond;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  })();
  done.catch(() => {});
  return {
    ids,
    done,
    get resends() {
      return resends;
    },
  };
}

export interface StreamRun {
  /** Call from the handler, once per call. */
  handled(msg: Message<KafkaRecord>): void;
  /** Ids handled at least once. */
  readonly distinct: number;
  /** Handler calls for an offset already handled: the consumer's duplicates (an id the producer sent twice is two offsets). */
  redelivered(): number;
  /** Of `ids`, those never handled. */
  missing(ids: string[]): string[];
  /**
   * The most offsets that were handled (or started) but not yet committed, at any sample since
   * `since` (`performance.now()` ms): what a rewind to the last commit could run again.
   */
  maxUncommitted(since: number): number;
  /** The longest stretch without a handler call after `since`, ending at a call: [from, to) and its length. */
  longestGap(since: number): { from: number; to: number; ms: number };
  /** Health samples in [from, to). */
  health(from: number, to?: number): HealthSample[];
  stop(): void;
}

/** Watches a consumer: samples its health and its committed offsets every `everyMs`. */
export function watchStream(consumer: KafkaConsumer, everyMs = 25): StreamRun {
  const ids = new Set<string>();
  // Per partition, the offsets handled (each once), and the times of all handler calls.
  const offsets = new Map<number, Set<number>>();
  const callTimes: number[] = [];
  const samples: HealthSample[] = [];
  const uncommitted: { at: number; n: number }[] = [];
  let again = 0;
  const sample = () => {
    const at = performance.now();
    const h = consumer.health();
    samples.push({ at, status: h.status, reasons: h.details.reasons });
    const parts = consumer.source.status().partitions;
    let n = 0;
    for (const [partition, set] of offsets) {
      const state = Object.entries(parts).find(([id]) => id.endsWith(`/${partition}`))?.[1];
      // Not assigned now, or nothing committed yet: all of it may come again.
      const committed = state?.committed ?? -1;
      for (const o of set) if (o >= committed) n++;
    }
    uncommitted.push({ at, n });
  };
  const timer = setInterval(sample, everyMs);
  return {
    handled(msg) {
      ids.add(msg.id);
      callTimes.push(performance.now());
      const { partition, message } = msg.raw;
      let set = offsets.get(partition);
      if (!set) offsets.set(partition, (set = new Set()));
      const offset = Number(message.offset);
      if (set.has(offset)) again++;
      else set.add(offset);
    },
    get distinct() {
      return ids.size;
    },
    redelivered: () => again,
    missing: (all) => all.filter((id) => !ids.has(id)),
    maxUncommitted: (since) => uncommitted.filter((u) => u.at >= since).reduce((m, u) => Math.max(m, u.n), 0),
    longestGap(since) {
      let best = { from: since, to: since, ms: 0 };
      let prev = since;
      for (const t of callTimes) {
        if (t < since) continue;
        if (t - prev > best.ms) best = { from: prev, to: t, ms: t - prev };
        prev = t;
      }
      return best;
    },
    health: (from, to = Infinity) => samples.filter((s) => s.at >= from && s.at < to),
    stop: () => clearInterval(timer),
  };
}
