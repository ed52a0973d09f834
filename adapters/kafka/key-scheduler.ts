import { LinkedQueue } from '../../src/pool/linked-queue.js';

/**
 * A message key's lane number: FNV-1a over its bytes, kept within V8's small integers. A Map
 * keyed by these is several times cheaper per message than one keyed by freshly decoded
 * strings (each lookup then compares contents). Two keys that share a number share a lane:
 * more order than asked for, never less.
 */
export function laneOf(key: Uint8Array): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) hash = Math.imul(hash ^ key[i]!, 0x01000193);
  return hash & 0x3fffffff;
}

/**
 * Per-key FIFO lanes: only the head of a lane is handed to the pool; followers of the same key
 * wait here, in order, until the head is finished for good (acked or dead-lettered). A lane is
 * "busy" from `begin` until `next` finds it empty. Pure: no client, no timers.
 */
export class KeyScheduler<T, K = string> {
  /** A busy lane's followers; null until the first follower (most lanes never get one). */
  #lanes = new Map<K, LinkedQueue<T> | null>();
  #queued = 0;

  /** Followers waiting behind a busy head, over all lanes. */
  get queued(): number {
    return this.#queued;
  }

  /** Lanes whose head is out (running, retrying or waiting for room). */
  get busyLanes(): number {
    return this.#lanes.size;
  }

  busy(key: K): boolean {
    return this.#lanes.has(key);
  }

  /** The caller hands an item of a free lane to the pool: the lane becomes busy. */
  begin(key: K): void {
    if (this.#lanes.has(key)) throw new Error(`lane ${JSON.stringify(key)} is already busy`);
    this.#lanes.set(key, null);
  }

  /** Undoes `begin` when the item could not be handed over (it has no followers yet). */
  cancel(key: K): void {
    const lane = this.#lanes.get(key);
    if (lane === undefined || (lane !== null && lane.size > 0)) {
      throw new Error(`lane ${JSON.stringify(key)} cannot be cancelled: ${lane ? 'it has followers' : 'it is not busy'}`);
    }
    this.#lanes.delete(key);
  }

  /** Queues an item behind the busy head of its lane. */
  enqueue(key: K, item: T): void {
    let lane = this.#lanes.get(key);
    if (lane === undefined) throw new Error(`lane ${JSON.stringify(key)} is not busy: hand the item over with begin()`);
    if (lane === null) this.#lanes.set(key, (lane = new LinkedQueue<T>()));
    lane.push(item);
    this.#queued++;
  }

  /** The head of `key` is finished: returns its next item (the new head; the lane stays busy), or undefined and frees the lane. */
  next(key: K): T | undefined {
    const lane = this.#lanes.get(key);
    if (lane === undefined) return undefined;
    const item = lane === null ? undefined : lane.shift();
    if (item === undefined) {
      this.#lanes.delete(key);
      return undefined;
    }
    this.#queued--;
    return item;
  }

  /** Forgets everything (a revoked partition); returns how many followers were dropped. */
  clear(): number {
    const dropped = this.#queued;
    this.#lanes.clear();
    this.#queued = 0;
    return dropped;
  }
}
