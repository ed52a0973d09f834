/**
 * The links an object carries to sit in an `IntrusiveQueue` itself, with no node object of its
 * own (the pool's jobs: one object less per waiting task). An object sits in one such queue at a
 * time; outside any queue both links are undefined.
 */
export interface QueueLinks<T> {
  queuePrev?: T | undefined;
  queueNext?: T | undefined;
}

/**
 * FIFO with O(1) push, shift and removal of any member. Removal matters: a queued task whose
 * caller timed out or aborted leaves the queue at once instead of waiting to be skipped.
 */
export class IntrusiveQueue<T extends QueueLinks<T>> {
  #head: T | undefined;
  #tail: T | undefined;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  /** The oldest member (the next to shift); walk on through `queueNext`. */
  get head(): T | undefined {
    return this.#head;
  }

  /** The newest member. */
  get tail(): T | undefined {
    return this.#tail;
  }

  push(item: T): void {
    item.queuePrev = this.#tail;
    item.queueNext = undefined;
    if (this.#tail) this.#tail.queueNext = item;
    else this.#head = item;
    this.#tail = item;
    this.#size++;
  }

  shift(): T | undefined {
    const item = this.#head;
    if (item) this.#unlink(item);
    return item;
  }

  /** False (and nothing changes) when `item` is not in this queue: a second removal is a no-op. */
  remove(item: T): boolean {
    if (item.queuePrev === undefined && this.#head !== item) return false;
    this.#unlink(item);
    return true;
  }

  /** Removes and returns everything, oldest first. */
  drain(): T[] {
    const out: T[] = [];
    while (this.#head) out.push(this.shift()!);
    return out;
  }

  #unlink(item: T): void {
    const { queuePrev: prev, queueNext: next } = item;
    if (prev) prev.queueNext = next;
    else this.#head = next;
    if (next) next.queuePrev = prev;
    else this.#tail = prev;
    item.queuePrev = item.queueNext = undefined;
    this.#size--;
  }
}

/** A value's place in a `LinkedQueue`. */
export class QueueNode<T> implements QueueLinks<QueueNode<T>> {
  queuePrev: QueueNode<T> | undefined = undefined;
  queueNext: QueueNode<T> | undefined = undefined;
  /** false once shifted or removed, so a second removal is a no-op. */
  linked = true;

  constructor(readonly value: T) {}

  get prev(): QueueNode<T> | undefined {
    return this.queuePrev;
  }

  get next(): QueueNode<T> | undefined {
    return this.queueNext;
  }
}

/** An `IntrusiveQueue` of any values: each is wrapped in a node, which `push` returns for `remove`. */
export class LinkedQueue<T> {
  readonly #nodes = new IntrusiveQueue<QueueNode<T>>();

  get size(): number {
    return this.#nodes.size;
  }

  push(value: T): QueueNode<T> {
    const node = new QueueNode(value);
    this.#nodes.push(node);
    return node;
  }

  shift(): T | undefined {
    const node = this.#nodes.shift();
    if (!node) return undefined;
    node.linked = false;
    return node.value;
  }

  remove(node: QueueNode<T>): boolean {
    if (!node.linked) return false;
    node.linked = false;
    return this.#nodes.remove(node);
  }

  /** Removes and returns everything, oldest first. */
  drain(): T[] {
    const out: T[] = [];
    while (this.#nodes.size > 0) out.push(this.shift() as T);
    return out;
  }
}
