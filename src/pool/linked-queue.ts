/**
 * FIFO with O(1) push, shift and removal of any node. Removal matters: a queued task whose
 * caller timed out or aborted leaves the queue at once instead of waiting to be skipped.
 */
export interface QueueNode<T> {
  value: T;
  prev: QueueNode<T> | undefined;
  next: QueueNode<T> | undefined;
  /** false once shifted or removed, so a second removal is a no-op. */
  linked: boolean;
}

export class LinkedQueue<T> {
  #head: QueueNode<T> | undefined;
  #tail: QueueNode<T> | undefined;
  #size = 0;

  get size(): number {
    return this.#size;
  }

  push(value: T): QueueNode<T> {
    const node: QueueNode<T> = { value, prev: this.#tail, next: undefined, linked: true };
    if (this.#tail) this.#tail.next = node;
    else this.#head = node;
    this.#tail = node;
    this.#size++;
    return node;
  }

  shift(): T | undefined {
    const node = this.#head;
    if (!node) return undefined;
    this.remove(node);
    return node.value;
  }

  remove(node: QueueNode<T>): boolean {
    if (!node.linked) return false;
    node.linked = false;
    if (node.prev) node.prev.next = node.next;
    else this.#head = node.next;
    if (node.next) node.next.prev = node.prev;
    else this.#tail = node.prev;
    node.prev = node.next = undefined;
    this.#size--;
    return true;
  }

  /** Removes and returns everything, oldest first. */
  drain(): T[] {
    const out: T[] = [];
    while (this.#head) out.push(this.shift() as T);
    return out;
  }
}
