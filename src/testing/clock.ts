import type { MemoryBrokerTimers } from '../../adapters/memory/broker.js';

interface FakeTimer {
  at: number;
  seq: number;
  callback: () => void;
}

/**
 * A clock that moves only when told to: `new MemoryBroker({ timers: clock })` has the broker hold
 * delayed redeliveries (retries, messages set aside) until `advance` reaches them, so a test runs a
 * 60 s backoff without waiting for it. `now` is the fake time passed so far (ms, from 0).
 */
export class FakeClock implements MemoryBrokerTimers {
  #now = 0;
  #seq = 0;
  readonly #timers = new Map<number, FakeTimer>();

  /** Fake milliseconds advanced so far. */
  get now(): number {
    return this.#now;
  }

  /** Timers waiting for the clock. */
  get pending(): number {
    return this.#timers.size;
  }

  /** When the next timer is due (fake ms), undefined when none waits. */
  get nextAt(): number | undefined {
    return this.#earliest()?.at;
  }

  setTimeout(callback: () => void, delayMs: number): number {
    if (typeof callback !== 'function') throw new TypeError('FakeClock.setTimeout: callback must be a function');
    const seq = ++this.#seq;
    const delay = Number.isFinite(delayMs) && delayMs > 0 ? delayMs : 0;
    this.#timers.set(seq, { at: this.#now + delay, seq, callback });
    return seq;
  }

  clearTimeout(handle: unknown): void {
    this.#timers.delete(handle as number);
  }

  /** Moves the clock `ms` forward, running every timer due by then in due order (same time: the order they were set). */
  advance(ms: number): void {
    if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`FakeClock.advance: ms must be a finite number >= 0, got ${String(ms)}`);
    this.advanceTo(this.#now + ms);
  }

  /**
   * Moves the clock to `time` (never backwards) and runs every timer due at or before it, including
   * timers those callbacks set when they too are due by then.
   */
  advanceTo(time: number): void {
    if (Number.isNaN(time)) throw new RangeError('FakeClock.advanceTo: time must be a number');
    for (;;) {
      const next = this.#earliest();
      if (next === undefined || next.at > time) break;
      this.#timers.delete(next.seq);
      if (next.at > this.#now) this.#now = next.at;
      next.callback();
    }
    if (time > this.#now) this.#now = time;
  }

  #earliest(): FakeTimer | undefined {
    let earliest: FakeTimer | undefined;
    for (const timer of this.#timers.values()) {
      if (earliest === undefined || timer.at < earliest.at || (timer.at === earliest.at && timer.seq < earliest.seq)) earliest = timer;
    }
    return earliest;
  }
}
