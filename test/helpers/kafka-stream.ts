/**
 * A numbered stream produced and consumed through a fault, for the Kafka fault tests: what the
 * handler saw per id and per offset, what was handled but not yet committed (the duplicates a
 * fault may cost), the longest pause in handling, and the consumer's health over time.
 *
 *   const stream = produceStream(publisher, topic, 300);         // ids s-0, s-1, … 300 a second until stop()
 *   const run = watchStream(consumer);                          // before consumer.start()
 *   ... handler: run.handled(msg) ... the fault ...
 *   run.redelivered(); run.maxUncommitted(since); run.longestPause(since, stream.acked); run.health(from, to); run.stop();
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
  /** When each id was acknowledged (`performance.now()`). */
  readonly acked: Map<string, number>;
  /** Batches the cluster refused (no leader for a moment) and that were sent again. */
  readonly resends: number;
  /** Stops after the batch being sent; resolves once it is acknowledged. */
  stop(): Promise<void>;
}

/**
 * Publishes ids `<prefix>-0, <prefix>-1, …` (keys k0…k23): the first `backlog` at once, then about
 * `perSecond`, in batches of 10, until `stop()`. A batch the cluster refuses is sent again until acknowledged: the topic may then
 * hold an id twice, at two offsets (duplicates of the producer's, not the consumer's).
 */
export function produceStream(publisher: KafkaPublisher, topic: string, perSecond: number, options: { backlog?: number; prefix?: string } = {}): ProducedStream {
  const { backlog = 0, prefix = 's' } = options;
  const ids: string[] = [];
  const acked = new Map<string, number>();
  let resends = 0;
  let stopping = false;
  const batch = 10;
  const done = (async () => {
    const t0 = performance.now();
    for (let i = 0; !stopping; i += batch) {
      const messages = [];
      for (let j = i; j < i + batch; j++) {
        messages.push({ key: `k${j % 24}`, value: JSON.stringify({ id: `${prefix}-${j}` }), headers: { 'message-id': `${prefix}-${j}` } });
      }
      for (let tries = 1; ; tries++) {
        try {
          await publisher.publish(topic, messages);
          break;
        } catch (error) {
          if (tries >= 300) throw new Error(`produceStream: batch at ${i} refused ${tries} times`, { cause: error });
          resends++;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      const at = performance.now();
      for (const m of messages) {
        ids.push(m.headers['message-id']);
        acked.set(m.headers['message-id'], at);
      }
      const wait = t0 + ((i + batch - backlog) * 1000) / perSecond - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
  })();
  done.catch(() => {});
  return {
    ids,
    acked,
    get resends() {
      return resends;
    },
    stop() {
      stopping = true;
      return done;
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
  /**
   * The longest stretch after `since` during which some acknowledged message waited and the
   * handler was not called: [from, to) and its length. A pause of the producer's (nothing to
   * consume) does not count; `acked`: when each id was acknowledged (ProducedStream.acked).
   */
  longestPause(since: number, acked: Map<string, number>): { from: number; to: number; ms: number };
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
  const firstHandled = new Map<string, number>();
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
      const now = performance.now();
      ids.add(msg.id);
      if (!firstHandled.has(msg.id)) firstHandled.set(msg.id, now);
      callTimes.push(now);
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
    longestPause(since, acked) {
      // Ids in the order they were first handled, and from each position on, the earliest
      // acknowledgement among them: what was already waiting when the handler went quiet.
      const firsts = [...firstHandled].sort((a, b) => a[1] - b[1]);
      const waitingSince = new Array<number>(firsts.length + 1).fill(Infinity);
      for (let i = firsts.length - 1; i >= 0; i--) waitingSince[i] = Math.min(waitingSince[i + 1]!, acked.get(firsts[i]![0]) ?? Infinity);
      let best = { from: since, to: since, ms: 0 };
      let prev = since;
      let k = 0; // the first of `firsts` handled at or after the call at t
      for (const t of callTimes) {
        if (t < since) continue;
        while (k < firsts.length && firsts[k]![1] < t) k++;
        const from = Math.max(prev, waitingSince[k]!);
        if (t - from > best.ms) best = { from, to: t, ms: t - from };
        prev = t;
      }
      return best;
    },
    health: (from, to = Infinity) => samples.filter((s) => s.at >= from && s.at < to),
    stop: () => clearInterval(timer),
  };
}
