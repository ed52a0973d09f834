/**
 * Per-partition commit position for out-of-order completion (Confluent Parallel Consumer's idea):
 * offsets are taken in increasing order, finish in any order, and the offset to commit is the
 * first one still open, or the next one to take when none is open. Pure: no client, no timers.
 */
export class OffsetTracker {
  /** Taken offsets, increasing; `#head` is the first that is not known to be part of the done prefix. */
  #offsets: number[] = [];
  #done: boolean[] = [];
  #head = 0;
  #open = 0;
  #position: number | undefined;
  #committed: number | undefined;

  /** The next offset to take (fetch position); undefined until the first take or `advanceTo`. */
  get position(): number | undefined {
    return this.#position;
  }

  /** Taken and not yet done. */
  get open(): number {
    return this.#open;
  }

  /** The last offset confirmed committed by `markCommitted`. */
  get committed(): number | undefined {
    return this.#committed;
  }

  /** Records a message handed to the runtime (or held for it). Offsets must increase; gaps are fine (compaction, control records). */
  take(offset: number): void {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`offset must be a non-negative safe integer, got ${offset}`);
    if (this.#position !== undefined && offset < this.#position) {
      throw new RangeError(`offset ${offset} taken out of order: the next offset to take is ${this.#position}`);
    }
    this.#offsets.push(offset);
    this.#done.push(false);
    this.#open++;
    this.#position = offset + 1;
  }

  /** Undoes the last `take` (the message could not be handed over): the position goes back to it. */
  untake(offset: number): void {
    const last = this.#offsets.length - 1;
    if (last < this.#head || this.#offsets[last] !== offset || this.#done[last]) {
      throw new RangeError(`untake(${offset}): it is not the last open offset taken`);
    }
    this.#offsets.pop();
    this.#done.pop();
    this.#open--;
    this.#position = offset;
  }

  /** Moves the position forward without taking (offsets that carry no message, e.g. transaction markers). */
  advanceTo(offset: number): void {
    if (this.#position === undefined || offset > this.#position) this.#position = offset;
  }

  /** Marks an offset done; returns whether the done prefix (the commit offset) moved. Unknown offsets are ignored. */
  done(offset: number): boolean {
    const i = this.#find(offset);
    if (i < 0 || this.#done[i]) return false;
    this.#done[i] = true;
    this.#open--;
    if (i !== this.#head) return false;
    while (this.#head < this.#offsets.length && this.#done[this.#head]) this.#head++;
    if (this.#head > 1024 && this.#head * 2 > this.#offsets.length) {
      this.#offsets = this.#offsets.slice(this.#head);
      this.#done = this.#done.slice(this.#head);
      this.#head = 0;
    }
    return true;
  }

  /** What Kafka should store: the first open offset, or the position when nothing is open. */
  commitOffset(): number | undefined {
    return this.#head < this.#offsets.length ? this.#offsets[this.#head] : this.#position;
  }

  /** The commit offset when it is ahead of what was last committed; else undefined. */
  pendingCommit(): number | undefined {
    const offset = this.commitOffset();
    if (offset === undefined) return undefined;
    return this.#committed === undefined || offset > this.#committed ? offset : undefined;
  }

  markCommitted(offset: number): void {
    if (this.#committed === undefined || offset > this.#committed) this.#committed = offset;
  }

  /** Binary search among the entries not yet in the done prefix. */
  #find(offset: number): number {
    let lo = this.#head;
    let hi = this.#offsets.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const value = this.#offsets[mid]!;
      if (value === offset) return mid;
      if (value < offset) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }
}
