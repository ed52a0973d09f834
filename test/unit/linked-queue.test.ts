import { describe, expect, it } from 'vitest';
import { IntrusiveQueue, LinkedQueue, type QueueLinks, type QueueNode } from '../../src/pool/linked-queue.js';

/** Reads the queue front to back without changing it (walks the node links). */
function contents<T>(first: QueueNode<T> | undefined): T[] {
  const out: T[] = [];
  for (let node = first; node; node = node.next) out.push(node.value);
  return out;
}

describe('LinkedQueue', () => {
  it('starts empty: size 0, shift and drain give nothing', () => {
    const q = new LinkedQueue<number>();
    expect(q.size).toBe(0);
    expect(q.shift()).toBeUndefined();
    expect(q.drain()).toEqual([]);
    expect(q.size).toBe(0);
  });

  it('shifts in push order (FIFO) and counts', () => {
    const q = new LinkedQueue<string>();
    q.push('a');
    q.push('b');
    q.push('c');
    expect(q.size).toBe(3);
    expect(q.shift()).toBe('a');
    expect(q.size).toBe(2);
    q.push('d');
    expect([q.shift(), q.shift(), q.shift()]).toEqual(['b', 'c', 'd']);
    expect(q.size).toBe(0);
    expect(q.shift()).toBeUndefined();
  });

  it('keeps falsy values (0, empty string, undefined) as real entries', () => {
    const q = new LinkedQueue<unknown>();
    q.push(0);
    q.push('');
    q.push(undefined);
    expect(q.size).toBe(3);
    expect(q.drain()).toEqual([0, '', undefined]);
  });

  it('push returns a linked node that carries the value', () => {
    const q = new LinkedQueue<number>();
    const a = q.push(1);
    const b = q.push(2);
    expect(a.value).toBe(1);
    expect(a.linked).toBe(true);
    expect(a.prev).toBeUndefined();
    expect(a.next).toBe(b);
    expect(b.prev).toBe(a);
    expect(b.next).toBeUndefined();
  });

  it.each([
    ['head', 0, ['b', 'c', 'd']],
    ['middle', 1, ['a', 'c', 'd']],
    ['another middle', 2, ['a', 'b', 'd']],
    ['tail', 3, ['a', 'b', 'c']],
  ])('removes the %s node in O(1) and keeps the order of the rest', (_where, index, rest) => {
    const q = new LinkedQueue<string>();
    const nodes = ['a', 'b', 'c', 'd'].map((v) => q.push(v));
    const node = nodes[index]!;
    expect(q.remove(node)).toBe(true);
    expect(q.size).toBe(3);
    expect(node.linked).toBe(false);
    expect(node.prev).toBeUndefined();
    expect(node.next).toBeUndefined();
    // Links of the remaining nodes are consistent in both directions.
    const remaining = nodes.filter((n) => n !== node);
    expect(contents(remaining[0])).toEqual(rest);
    expect(remaining[0]!.prev).toBeUndefined();
    expect(remaining[2]!.next).toBeUndefined();
    expect(remaining[1]!.prev).toBe(remaining[0]);
    expect(remaining[2]!.prev).toBe(remaining[1]);
    // And shift still walks them in order.
    expect(q.drain()).toEqual(rest);
  });

  it('a second removal of the same node is a no-op that returns false', () => {
    const q = new LinkedQueue<number>();
    const a = q.push(1);
    q.push(2);
    expect(q.remove(a)).toBe(true);
    expect(q.remove(a)).toBe(false);
    expect(q.size).toBe(1);
    expect(q.drain()).toEqual([2]);
  });

  it('removing a node that was already shifted or drained does nothing', () => {
    const q = new LinkedQueue<number>();
    const a = q.push(1);
    const b = q.push(2);
    const c = q.push(3);
    expect(q.shift()).toBe(1);
    expect(a.linked).toBe(false);
    expect(q.remove(a)).toBe(false);
    expect(q.size).toBe(2);
    expect(q.drain()).toEqual([2, 3]);
    expect(b.linked).toBe(false);
    expect(c.linked).toBe(false);
    expect(q.remove(b)).toBe(false);
    expect(q.remove(c)).toBe(false);
    expect(q.size).toBe(0);
  });

  it('removing the only node empties the queue and it is usable again', () => {
    const q = new LinkedQueue<number>();
    const only = q.push(7);
    expect(q.remove(only)).toBe(true);
    expect(q.size).toBe(0);
    expect(q.shift()).toBeUndefined();
    const n = q.push(8);
    q.push(9);
    expect(n.prev).toBeUndefined();
    expect(q.drain()).toEqual([8, 9]);
  });

  it('drain returns everything oldest first, empties the queue, and the queue works afterwards', () => {
    const q = new LinkedQueue<number>();
    for (let i = 0; i < 5; i++) q.push(i);
    expect(q.drain()).toEqual([0, 1, 2, 3, 4]);
    expect(q.size).toBe(0);
    q.push(10);
    q.push(11);
    expect(q.shift()).toBe(10);
    expect(q.size).toBe(1);
  });

  it('matches an array model under a random mix of push, shift and remove', () => {
    // Deterministic LCG so that a failure reproduces.
    let seed = 12345;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const q = new LinkedQueue<number>();
    let model: { value: number; node: QueueNode<number> }[] = [];
    let next = 0;
    for (let step = 0; step < 5000; step++) {
      const r = rand();
      if (r < 0.45) {
        const value = next++;
        model.push({ value, node: q.push(value) });
      } else if (r < 0.7) {
        const expected = model.shift();
        expect(q.shift()).toBe(expected?.value);
      } else if (model.length > 0) {
        const i = Math.floor(rand() * model.length);
        const [entry] = model.splice(i, 1);
        expect(q.remove(entry!.node)).toBe(true);
        expect(q.remove(entry!.node)).toBe(false);
      }
      expect(q.size).toBe(model.length);
    }
    expect(q.drain()).toEqual(model.map((e) => e.value));
    model = [];
    expect(q.size).toBe(0);
  });
});

describe('IntrusiveQueue (members carry their own links)', () => {
  class Item implements QueueLinks<Item> {
    queuePrev: Item | undefined = undefined;
    queueNext: Item | undefined = undefined;
    constructor(readonly id: number) {}
  }
  const ids = (q: IntrusiveQueue<Item>) => {
    const out: number[] = [];
    for (let item = q.head; item; item = item.queueNext) out.push(item.id);
    return out;
  };

  it('links the members themselves, FIFO, and clears both links when one leaves', () => {
    const q = new IntrusiveQueue<Item>();
    const [a, b, c] = [new Item(1), new Item(2), new Item(3)];
    q.push(a);
    q.push(b);
    q.push(c);
    expect(ids(q)).toEqual([1, 2, 3]);
    expect(b.queuePrev).toBe(a);
    expect(b.queueNext).toBe(c);
    expect(q.remove(b)).toBe(true);
    expect([b.queuePrev, b.queueNext]).toEqual([undefined, undefined]);
    expect(ids(q)).toEqual([1, 3]);
    expect(q.shift()).toBe(a);
    expect([a.queuePrev, a.queueNext]).toEqual([undefined, undefined]);
    expect(q.size).toBe(1);
  });

  it('removing a member twice, or an object that was never in it, is a no-op answered false', () => {
    const q = new IntrusiveQueue<Item>();
    const [a, b] = [new Item(1), new Item(2)];
    const stranger = new Item(9);
    q.push(a);
    q.push(b);
    expect(q.remove(stranger)).toBe(false);
    expect(q.remove(a)).toBe(true);
    expect(q.remove(a)).toBe(false);
    expect(ids(q)).toEqual([2]);
    expect(q.size).toBe(1);
    expect(q.remove(b)).toBe(true);
    expect(q.remove(b)).toBe(false);
    expect(q.size).toBe(0);
    expect(q.head).toBeUndefined();
  });

  it('a member that left can join again, at the tail', () => {
    const q = new IntrusiveQueue<Item>();
    const [a, b] = [new Item(1), new Item(2)];
    q.push(a);
    q.push(b);
    q.push(q.shift()!);
    expect(ids(q)).toEqual([2, 1]);
    expect(q.drain().map((item) => item.id)).toEqual([2, 1]);
    expect(q.size).toBe(0);
  });
});
