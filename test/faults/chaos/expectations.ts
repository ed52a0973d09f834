/** What every chaos run must show, whatever the broker (the bound per kill is the broker's). */
import { expect } from 'vitest';
import type { ChaosRun, Kill } from './driver.js';
import { describeRun, judge, type Verdict } from './verdict.js';

export interface ChaosExpectations<KillState> {
  name: string;
  /** Fewer kills than this and the run proves too little. */
  minKills: number;
  /** The most ids a kill may cause to be handled again: what the victim could hold unacked / uncommitted. */
  bound(kill: Kill<KillState>): number;
}

export function expectChaosHeld<KillState>(run: ChaosRun<KillState>, e: ChaosExpectations<KillState>): Verdict<KillState> {
  const verdict = judge(run);
  console.log(describeRun(e.name, run, verdict, e.bound));

  // Not vacuous: enough kills, each of a worker mid-stream, and the stream went on after each.
  expect(run.kills.length, 'kills').toBeGreaterThanOrEqual(e.minKills);
  for (const cost of verdict.perKill) {
    expect(cost.kill.recordsBefore, `worker ${cost.kill.worker} had handled something when killed`).toBeGreaterThan(0);
    expect(cost.recordsAfter, `ids handled by others after worker ${cost.kill.worker} was killed`).toBeGreaterThan(0);
  }

  expect(verdict.missing, 'ids never handled').toEqual([]);
  expect(verdict.unexplained.slice(0, 10), 'duplicates no kill explains').toEqual([]);
  for (const cost of verdict.perKill) {
    expect(cost.redelivered, `ids handled again after worker ${cost.kill.worker} was killed`).toBeLessThanOrEqual(e.bound(cost.kill));
  }
  const total = run.kills.reduce((sum, k) => sum + e.bound(k), 0);
  expect(verdict.duplicates, 'duplicates in all').toBeLessThanOrEqual(total);

  // Every consumer that was not killed took part, and stopped cleanly on SIGTERM.
  expect(verdict.idleSurvivors, 'surviving workers that handled nothing').toEqual([]);
  for (const w of run.workers.filter((w) => !w.killed)) expect(w.exit, `worker ${w.worker} exit`).toEqual({ code: 0, signal: null });

  expect(run.remainingAlive, 'left at the broker, workers alive').toMatchObject({ left: 0 });
  expect(run.remainingStopped, 'left at the broker, workers stopped').toMatchObject({ left: 0 });
  return verdict;
}
