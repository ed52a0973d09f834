/** FetchWatch: "cannot consume" when fetches are due and none is answered; only time when they are due counts. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FetchWatch } from '../../adapters/kafka/fetch-watch.js';
import type { SourceEvent } from '../../src/adapter/index.js';

describe('FetchWatch', () => {
  let events: SourceEvent[];
  let due: boolean;
  let watch: FetchWatch;

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'performance'] });
    events = [];
    due = true;
    watch = new FetchWatch(() => due, 2000, 'kafka:t', (e) => events.push(e));
    watch.start();
  });

  afterEach(() => {
    watch.stop();
    vi.useRealTimers();
  });

  it('reports disconnected once after afterMs without an answer, recovered at the next answer', () => {
    watch.answered();
    vi.advanceTimersByTime(1500);
    watch.answered();
    vi.advanceTimersByTime(1900);
    expect(events).toEqual([]);
    vi.advanceTimersByTime(1000);
    expect(events.map((e) => e.type)).toEqual(['disconnected']);
    expect(events[0]).toMatchObject({ detail: expect.stringContaining('no fetch answered for 2000 ms') });
    vi.advanceTimersByTime(10_000);
    expect(events).toHaveLength(1);
    watch.answered();
    expect(events.map((e) => e.type)).toEqual(['disconnected', 'recovered']);
  });

  it('does not count time when no fetch is due (all paused, a batch with the adapter, not in the group)', () => {
    watch.answered();
    due = false;
    vi.advanceTimersByTime(60_000);
    due = true;
    vi.advanceTimersByTime(1500);
    expect(events).toEqual([]);
    vi.advanceTimersByTime(1000);
    expect(events.map((e) => e.type)).toEqual(['disconnected']);
  });

  it('judges nothing until the driver reported a first answer (a driver that never reports is never judged)', () => {
    vi.advanceTimersByTime(60_000);
    expect(events).toEqual([]);
  });
});
