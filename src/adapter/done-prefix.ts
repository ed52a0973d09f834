/**
 * The contiguous done prefix of a sequence of positions that are taken in increasing order and
 * finish in any order (Confluent Parallel Consumer's commit rule): Kafka positions, whose commit
 * position is `end()`; RabbitMQ delivery tags, whose settled head one `multiple` ack covers. Pure:
 * no client, no timers. Positions are non-negative safe integers; gaps are fine.
 */
export class DonePrefix {
  /** Taken positions, increasing; `#head` is the first that is not known to be part of the done prefix. */
  #positions: number[] = [];
  #done: boolean[] = [];
  #head = 0;
  #open = 0;
  #next: number | undefined;
  #confirmed: number | undefined;

  /** The next position to take (Kafka: the fetch position); undefined until the first take or `advanceTo`. */
  get next(): number | undefined {
    return this.#next;
  }

  /** Taken and not yet done. */
  get open(): number {
    return this.#open;
  }

  /** The last end the broker confirmed (`markConfirmed`): Kafka's committed offset. */
  get confirmed(): number | undefined {
    return this.#confirmed;
  }

  /** Records a message handed to the runtime (or held for it). Positions must increase; gaps are fine (compaction, control records). */
  take(position: number): void {
    if (!Number.isSafeInteger(position) || position < 0) throw new RangeError(`position must be a non-negative safe integer, got ${position}`);
    if (this.#next !== undefined && position < this.#next) {
      throw new RangeError(`position ${position} taken out of order: the next position to take is ${this.#next}`);
    }
    this.#positions.push(position);
    this.#done.push(false);
    this.#open++;
    this.#next = position + 1;
  }

  /** Undoes the last `take` (the message could not be handed over): `next` goes back to it. */
  untake(position: number): void {
    const last = this.#positions.length - 1;
    if (last < this.#head || this.#positions[last] !== position || this.#done[last]) {
      throw new RangeError(`untake(${position}): it is not the last open position taken`);
    }
    this.#positions.pop();
    this.#done.pop();
    this.#open--;
    this.#next = position;
  }

  /** Moves `next` forward without taking (positions that carry no message, e.g. transaction markers). */
  advanceTo(position: number): void {
    if (this.#next === undefined || position > this.#next) this.#next = position;
  }

  /** Marks a position done; returns whether the done prefix moved. Unknown positions are ignored. */
  done(position: number): boolean {
    const i = this.#find(position);
    if (i < 0 || this.#done[i]) return false;
    this.#done[i] = true;
    this.#open--;
    if (i !== this.#head) return false;
    while (this.#head < this.#positions.length && this.#done[this.#head]) this.#head++;
    if (this.#head > 1024 && this.#head * 2 > this.#positions.length) {
      this.#positions = this.#positions.slice(this.#head);
      this.#done = this.#done.slice(this.#head);
      this.#head = 0;
    }
    return true;
  }

  /** Where the done prefix ends: the first open position, or the next one to take when none is open (Kafka's commit offset). */
  end(): number | undefined {
    return this.#head < this.#positions.length ? this.#positions[this.#head] : this.#next;
  }

  /** `end()` when it is ahead of what was last confirmed; else undefined. */
  pendingConfirm(): number | undefined {
    const position = this.end();
    if (position === undefined) return undefined;
    return this.#confirmed === undefined || position > this.#confirmed ? position : undefined;
  }

  markConfirmed(position: number): void {
    if (this.#confirmed === undefined || position > this.#confirmed) this.#confirmed = position;
  }

  /** Binary search among the entries not yet in the done prefix. */
  #find(position: number): number {
    let lo = this.#head;
    let hi = this.#positions.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const value = this.#positions[mid]!;
      if (value === position) return mid;
      if (value < position) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }
}
