/** What every chaos run must show, whatever the broker (the bound per kill is the broker's). */
import { expect } from 'vitest';
import type { ChaosRun, Kill } from './driver.js';
import type { Handled } from './records.js';
import { describeRun, judge, type Verdict } from './verdict.js';

export interface ChaosExpectations<KillState> {
  name: string;
  /** Fewer kills than this and the run proves too little. */
  minKills: number;
  /** The most ids a kill may cause to be handled again: what the victim could hold unacked / uncommitted. */
  bound(kill: Kill<KillState>): number;
  /** Whether this handling of the victim's could be lost with it (Kafka: not yet committed); default: any. */
  lostAtKill?(kill: Kill<KillState>, h: Handled): boolean;
  /** Kafka: the most ids a surviving worker may finish during a rebalance and see handled again (what it held in flight when told). */
  rebalanceBound?: number;
  /** The broker marks redeliveries (RabbitMQ, JetStream): then some kills must have handed messages back, or no kill hit work in flight. */
  marksRedeliveries: boolean;
  /** More to say per kill in the output. */
  describe?(kill: Kill<KillState>): string;
}

export function expectChaosHeld<KillState>(run: ChaosRun<KillState>, e: ChaosExpectations<KillState>): Verdict<KillState> {
  const verdict = judge(run, e.lostAtKill);
  console.log(describeRun(e.name, run, verdict, e.bound, e.describe));

  // Not vacuous: enough kills, each of a worker mid-stream, and the stream went on after each.
  expect(run.kills.length, 'kills').toBeGreaterThanOrEqual(e.minKills);
  for (const cost of verdict.perKill) {
    expect(cost.kill.recordsBefore, `worker ${cost.kill.worker} had handled something when killed`).toBeGreaterThan(0);
    expect(cost.recordsAfter, `ids handled by others after worker ${cost.kill.worker} was killed`).toBeGreaterThan(0);
  }
  if (e.marksRedeliveries) expect(verdict.perKill.filter((c) => c.givenBack > 0).length, 'kills after which the broker redelivered').toBeGreaterThan(0);

  expect(verdict.missing, 'ids never handled').toEqual([]);
  expect(verdict.unexplained.slice(0, 10), 'duplicates no kill explains').toEqual([]);
  for (const cost of verdict.perKill) {
    expect(cost.duplicated, `ids handled again after worker ${cost.kill.worker} was killed`).toBeLessThanOrEqual(e.bound(cost.kill));
  }
  for (const r of verdict.perRebalance) {
    expect(r.duplicated, `ids worker ${r.worker} finished during a rebalance, handled again`).toBeLessThanOrEqual(e.rebalanceBound ?? 0);
  }
  const total = run.kills.reduce((sum, k) => sum + e.bound(k), 0) + run.groupEvents.filter((g) => g.kind === 'rebalancing').length * (e.rebalanceBound ?? 0);
  expect(verdict.duplicates, 'duplicates in all').toBeLessThanOrEqual(total);

  // Every consumer that was not killed took part, and stopped cleanly on SIGTERM.
  expect(verdict.idleSurvivors, 'surviving workers that handled nothing').toEqual([]);
  for (const w of run.workers.filter((w) => !w.killed)) expect(w.exit, `worker ${w.worker} exit`).toEqual({ code: 0, signal: null });

  expect(run.remainingAlive, 'left at the broker, workers alive').toMatchObject({ left: 0 });
  expect(run.remainingStopped, 'left at the broker, workers stopped').toMatchObject({ left: 0 });
  return verdict;
}
