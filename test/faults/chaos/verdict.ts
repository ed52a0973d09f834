/**
 * Reads a chaos run: which ids were handled how often, and to which kill each extra handling
 * belongs. An id handled again is explained only by the kill of the worker that handled it
 * before, between the two handlings (its ack or commit died with it); anything else is an
 * unexplained duplicate.
 */
import type { ChaosRun, Kill } from './driver.js';
import type { Handled } from './records.js';

export interface KillCost<KillState> {
  kill: Kill<KillState>;
  /** Ids the victim had handled that were handled again after the kill. */
  redelivered: number;
  /** From the kill to the first of them handled again (ms); undefined when none. */
  takeoverMs: number | undefined;
  /** Records by other workers after the kill: the stream went on. */
  recordsAfter: number;
}

export interface Verdict<KillState> {
  missing: number[];
  /** Handlings beyond the first, in all. */
  duplicates: number;
  perKill: KillCost<KillState>[];
  /** Extra handlings no kill explains. */
  unexplained: { previous: Handled; again: Handled }[];
  /** Workers alive at the end that handled nothing (a consumer that never took part). */
  idleSurvivors: number[];
}

export function judge<KillState>(run: ChaosRun<KillState>): Verdict<KillState> {
  const byId = new Map<number, Handled[]>();
  for (const r of run.records) {
    let list = byId.get(r.id);
    if (!list) byId.set(r.id, (list = []));
    list.push(r);
  }
  const missing: number[] = [];
  for (let id = 0; id < run.plan.ids; id++) if (!byId.has(id)) missing.push(id);

  const killOf = new Map(run.kills.map((k) => [k.worker, k]));
  const perKill = new Map<Kill<KillState>, KillCost<KillState>>(
    run.kills.map((kill) => [
      kill,
      { kill, redelivered: 0, takeoverMs: undefined, recordsAfter: run.records.filter((r) => r.worker !== kill.worker && r.at >= kill.at).length },
    ]),
  );
  const unexplained: Verdict<KillState>['unexplained'] = [];
  let duplicates = 0;
  for (const list of byId.values()) {
    list.sort((a, b) => a.at - b.at);
    for (let i = 1; i < list.length; i++) {
      duplicates++;
      const previous = list[i - 1]!;
      const again = list[i]!;
      const kill = killOf.get(previous.worker);
      if (!kill || kill.at < previous.at || kill.at > again.at || again.worker === previous.worker) {
        unexplained.push({ previous, again });
        continue;
      }
      const cost = perKill.get(kill)!;
      cost.redelivered++;
      const ms = again.at - kill.at;
      cost.takeoverMs = cost.takeoverMs === undefined ? ms : Math.min(cost.takeoverMs, ms);
    }
  }
  const handledBy = new Set(run.records.map((r) => r.worker));
  const idleSurvivors = run.workers.filter((w) => !w.killed && !handledBy.has(w.worker)).map((w) => w.worker);
  return { missing, duplicates, perKill: [...perKill.values()], unexplained, idleSurvivors };
}

/** One line per kill and a total, for the test's output (and the ops notes). */
export function describeRun<KillState>(name: string, run: ChaosRun<KillState>, verdict: Verdict<KillState>, bound: (kill: Kill<KillState>) => number): string {
  const t = (at: number) => ((at - run.startedAt) / 1000).toFixed(1);
  const lines = verdict.perKill.map(
    (c) =>
      `  kill worker ${c.kill.worker} at ${t(c.kill.at)} s (${c.kill.recordsBefore} handled): ${c.redelivered} handled again (bound ${bound(c.kill)})` +
      `${c.takeoverMs === undefined ? '' : `, first after ${c.takeoverMs} ms`}`,
  );
  return [
    `${name}: ${run.plan.ids} ids, ${run.records.length} handlings, ${verdict.duplicates} duplicates, ${run.kills.length} kills, ${run.workers.length} workers;` +
      ` published by ${t(run.publishedAt)} s, all handled by ${t(run.allHandledAt)} s (seed ${run.plan.seed})`,
    ...lines,
  ].join('\n');
}
