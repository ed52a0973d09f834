/** The stall watchdog: it reports a stall, and an idle consumer has no timer of it running. */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { StallWatchdog } from '../../src/watchdog.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('StallWatchdog', () => {
  it('runs its timer only while messages are in flight, and reports a stall and its end', () => {
    vi.useFakeTimers();
    let inFlight = 0;
    const events: string[] = [];
    const dog = new StallWatchdog(1000, () => inFlight, {
      stalled: ({ inFlight: n }) => events.push(`stalled ${n}`),
      unstalled: () => events.push('unstalled'),
    });
    dog.start();
    expect(vi.getTimerCount()).toBe(0);

    inFlight = 2;
    dog.busy();
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(1600);
    expect(events).toEqual(['stalled 2']);
    expect(dog.stalled).toBe(true);

    dog.progress();
    inFlight = 0;
    expect(events).toEqual(['stalled 2', 'unstalled']);
    vi.advanceTimersByTime(600);
    // Nothing in flight: the next check stops the timer.
    expect(vi.getTimerCount()).toBe(0);

    inFlight = 1;
    dog.busy();
    expect(vi.getTimerCount()).toBe(1);
    dog.stop();
    expect(vi.getTimerCount()).toBe(0);
    dog.busy();
    expect(vi.getTimerCount()).toBe(0);
  });
});
