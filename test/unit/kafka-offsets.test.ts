/** The Kafka adapter's pure logic: the per-partition commit position and the per-key lanes. */
import { describe, expect, it } from 'vitest';
import { KeyScheduler, laneOf } from '../../adapters/kafka/key-scheduler.js';
import { DonePrefix } from '../../src/adapter/index.js';

describe('DonePrefix (Kafka offsets)', () => {
  it('commits offset + 1 of the contiguous done prefix, whatever order things finish in', () => {
    const t = new DonePrefix();
    expect(t.end()).toBeUndefined();
    for (const o of [10, 11, 12, 13, 14]) t.take(o);
    expect(t.end()).toBe(10);
    expect(t.done(12)).toBe(false);
    expect(t.done(13)).toBe(false);
    expect(t.end()).toBe(10);
    expect(t.done(10)).toBe(true);
    expect(t.end()).toBe(11);
    expect(t.done(11)).toBe(true);
    expect(t.end()).toBe(14);
    expect(t.open).toBe(1);
    t.done(14);
    expect(t.end()).toBe(15);
    expect(t.open).toBe(0);
  });

  it('handles gaps (compacted offsets) and transaction markers via advanceTo', () => {
    const t = new DonePrefix();
    t.take(3);
    t.take(7);
    t.done(7);
    expect(t.end()).toBe(3);
    t.done(3);
    expect(t.end()).toBe(8);
    t.advanceTo(10);
    expect(t.end()).toBe(10);
    expect(t.next).toBe(10);
    t.advanceTo(9); // never backwards
    expect(t.next).toBe(10);
  });

  it('pendingConfirm only reports progress beyond the last confirmed commit', () => {
    const t = new DonePrefix();
    t.take(0);
    t.take(1);
    expect(t.pendingConfirm()).toBe(0);
    t.markConfirmed(0);
    expect(t.pendingConfirm()).toBeUndefined();
    t.done(0);
    expect(t.pendingConfirm()).toBe(1);
    t.markConfirmed(1);
    t.markConfirmed(0); // a late, older confirmation does not move it back
    expect(t.confirmed).toBe(1);
    expect(t.pendingConfirm()).toBeUndefined();
  });

  it('untake gives the last taken offset back (the pool refused it); order is enforced', () => {
    const t = new DonePrefix();
    t.take(5);
    t.take(6);
    t.untake(6);
    expect(t.next).toBe(6);
    expect(t.open).toBe(1);
    expect(() => t.untake(5)).not.toThrow();
    expect(t.next).toBe(5);
    t.take(5);
    expect(() => t.take(4)).toThrow(RangeError);
    expect(() => t.untake(9)).toThrow(RangeError);
    expect(() => t.take(-1)).toThrow(RangeError);
    expect(t.done(99)).toBe(false); // unknown offsets are ignored
    expect(t.done(5)).toBe(true);
    expect(t.done(5)).toBe(false); // twice is a no-op
  });

  it('stays correct over many offsets finished in random order (compaction of its arrays)', () => {
    const t = new DonePrefix();
    const n = 5000;
    for (let i = 0; i < n; i++) t.take(i);
    const order = Array.from({ length: n }, (_, i) => i);
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    const done = new Set<number>();
    for (const o of order) {
      t.done(o);
      done.add(o);
      let expected = 0;
      while (done.has(expected)) expected++;
      expect(t.end()).toBe(expected);
    }
    expect(t.end()).toBe(n);
  });
});

describe('KeyScheduler', () => {
  it('hands out only the head of each key; followers come back in order, one at a time', () => {
    const s = new KeyScheduler<string>();
    expect(s.busy('a')).toBe(false);
    s.begin('a');
    s.enqueue('a', 'a2');
    s.enqueue('a', 'a3');
    s.begin('b');
    expect(s.queued).toBe(2);
    expect(s.busyLanes).toBe(2);
    expect(() => s.begin('a')).toThrow();
    expect(s.next('b')).toBeUndefined();
    expect(s.busy('b')).toBe(false);
    expect(s.next('a')).toBe('a2');
    expect(s.busy('a')).toBe(true); // a2 is the head now
    expect(s.next('a')).toBe('a3');
    expect(s.queued).toBe(0);
    expect(s.next('a')).toBeUndefined();
    expect(s.busy('a')).toBe(false);
    expect(s.busyLanes).toBe(0);
  });

  it('cancel undoes begin only for a lane without followers; enqueue needs a busy lane; clear drops all', () => {
    const s = new KeyScheduler<number>();
    expect(() => s.enqueue('k', 1)).toThrow();
    s.begin('k');
    s.cancel('k');
    expect(s.busy('k')).toBe(false);
    s.begin('k');
    s.enqueue('k', 2);
    expect(() => s.cancel('k')).toThrow();
    expect(s.clear()).toBe(1);
    expect(s.queued).toBe(0);
    expect(s.busy('k')).toBe(false);
  });
});

describe('laneOf', () => {
  it('gives equal key bytes the same lane, small integers only, and spreads distinct keys', () => {
    const bytes = (text: string) => Buffer.from(text, 'utf8');
    expect(laneOf(bytes('order-42'))).toBe(laneOf(bytes('order-42')));
    // The same bytes at another offset of a larger buffer (kafkajs hands out slices).
    const big = Buffer.from('xxorder-42yy');
    expect(laneOf(big.subarray(2, 10))).toBe(laneOf(bytes('order-42')));
    const lanes = new Set<number>();
    for (let i = 0; i < 10_000; i++) {
      const lane = laneOf(bytes(`k${i}`));
      expect(Number.isInteger(lane) && lane >= 0 && lane < 2 ** 30).toBe(true);
      lanes.add(lane);
    }
    // A shared lane only costs parallelism; among 10,000 keys almost none may share one.
    expect(lanes.size).toBeGreaterThan(9_990);
    expect(laneOf(new Uint8Array(0))).toBe(laneOf(Buffer.alloc(0)));
  });
});
