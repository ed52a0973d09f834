/** Reason-counted pause: what the source hears, and in which order. */
import { describe, expect, it } from 'vitest';
import { PauseReasons } from '../../src/pause.js';

function recorder(mayResume = () => true) {
  const calls: string[] = [];
  const reasons = new PauseReasons({
    pauseSource: async () => void calls.push('pause'),
    resumeSource: async () => void calls.push('resume'),
    mayResume,
    paused: (r) => calls.push(`paused:${r}`),
    resumed: (r) => calls.push(`resumed:${r}`),
  });
  return { calls, reasons };
}

describe('PauseReasons', () => {
  it('pauses the source on the first reason and resumes it after the last, once each', async () => {
    const { calls, reasons } = recorder();
    await reasons.pause('overload');
    await reasons.pause('user');
    await reasons.resume('overload');
    expect(reasons.reasons()).toEqual(['user']);
    await reasons.resume('user');
    expect(calls).toEqual(['paused:overload', 'pause', 'paused:user', 'resumed:overload', 'resumed:user', 'resume']);
  });

  it('a reason added and lifted before the source call ran still pauses and then resumes the source', async () => {
    const { calls, reasons } = recorder();
    // Both before any source call has had its turn: an adapter holding a refused delivery must hear the resume.
    const paused = reasons.pause('gate');
    const resumed = reasons.resume('gate');
    await Promise.all([paused, resumed]);
    expect(calls.filter((c) => c === 'pause' || c === 'resume')).toEqual(['pause', 'resume']);
    expect(reasons.paused).toBe(false);
  });

  it('never resumes a source that may not resume (the consumer is stopping)', async () => {
    let may = true;
    const { calls, reasons } = recorder(() => may);
    await reasons.pause('user');
    may = false;
    await reasons.resume('user');
    expect(calls.filter((c) => c === 'pause' || c === 'resume')).toEqual(['pause']);
  });
});
