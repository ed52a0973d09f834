/**
 * Reads a chaos run: which ids were handled how often, and to which fault each extra handling
 * belongs. An id handled again is explained by the kill of the worker that handled it before,
 * between the two handlings (its ack or commit died with it), or, on Kafka, by a rebalance of that
 * worker: the handler was running during the rebalance (it ended after the worker was told, when
 * the adapter commits its done prefix, and started before the new assignment came). Anything else
 * is unexplained.
 */
import type { ChaosRun, Kill } from './driver.js';
import type { Handled } from './records.js';

export interface KillCost<KillState> {
  kill: Kill<KillState>;
  /** Ids the victim had handled that were handled again after the kill. */
  duplicated: number;
  /** Records by other workers after the kill: the stream went on. */
  recordsAfter: number;
  /** Messages the broker marked redelivered, handled after this kill and before the next (RabbitMQ, JetStream: what the victim held). */
  givenBack: number;
  /** From the kill to the first of those (ms): how long until the others took the victim's messages over. */
  takeoverMs: number | undefined;
}

export interface Verdict<KillState> {
  missing: number[];
  /** Handlings beyond the first, in all. */
  duplicates: number;
  perKill: KillCost<KillState>[];
  /** Kafka: per worker and rebalance (when it was told), the ids it was handling during the rebalance that were handled again. */
  perRebalance: { worker: number; at: number; duplicated: number }[];
  /** Extra handlings no kill or rebalance explains. */
  unexplained: { previous: Handled; again: Handled }[];
  /** Workers alive at the end that handled nothing (a consumer that never took part). */
  idleSurvivors: number[];
}

/**
 * `lostAtKill`: whether a kill can explain that the victim's handling was repeated (Kafka: its
 * offset was at or past the committed one right after the kill); by default every handling of
 * the victim's can (the per-kill count is bounded instead).
 */
export function judge<KillState>(run: ChaosRun<KillState>, lostAtKill: (kill: Kill<KillState>, h: Handled) => boolean = () => true): Verdict<KillState> {
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
    run.kills.map((kill, i) => {
      const until = run.kills[i + 1]?.at ?? Infinity;
      const after = run.records.filter((r) => r.worker !== kill.worker && r.at >= kill.at);
      const givenBack = after.filter((r) => r.redelivered && r.at < until);
      const first = Math.min(...givenBack.map((r) => r.at));
      return [kill, { kill, duplicated: 0, recordsAfter: after.length, givenBack: givenBack.length, takeoverMs: givenBack.length > 0 ? first - kill.at : undefined }];
    }),
  );
  const rebalanceOf = rebalanceWindows(run);
  const perRebalance = new Map<string, { worker: number; at: number; duplicated: number }>();
  const unexplained: Verdict<KillState>['unexplained'] = [];
  let duplicates = 0;
  for (const list of byId.values()) {
    list.sort((a, b) => a.at - b.at);
    for (let i = 1; i < list.length; i++) {
      duplicates++;
      const previous = list[i - 1]!;
      const again = list[i]!;
      const kill = killOf.get(previous.worker);
      if (kill && kill.at >= previous.at && kill.at <= again.at && again.worker !== previous.worker && lostAtKill(kill, previous)) {
        perKill.get(kill)!.duplicated++;
        continue;
      }
      const rebalance = rebalanceOf(previous);
      if (rebalance !== undefined && rebalance <= again.at) {
        const key = `${previous.worker}@${rebalance}`;
        const cost = perRebalance.get(key) ?? { worker: previous.worker, at: rebalance, duplicated: 0 };
        cost.duplicated++;
        perRebalance.set(key, cost);
        continue;
      }
      unexplained.push({ previous, again });
    }
  }
  const handledBy = new Set(run.records.map((r) => r.worker));
  const idleSurvivors = run.workers.filter((w) => !w.killed && !handledBy.has(w.worker)).map((w) => w.worker);
  return { missing, duplicates, perKill: [...perKill.values()], perRebalance: [...perRebalance.values()], unexplained, idleSurvivors };
}

/** When the handling's worker was told of the rebalance that handling was running in (ended after the notice, started before the next assignment), if any. */
function rebalanceWindows<KillState>(run: ChaosRun<KillState>): (h: Handled) => number | undefined {
  const windows = new Map<number, { from: number; to: number }[]>();
  const events = [...run.groupEvents].sort((a, b) => a.at - b.at);
  for (const e of events) {
    if (e.kind !== 'rebalancing') continue;
    const next = events.find((a) => a.worker === e.worker && a.kind === 'assigned' && a.at >= e.at);
    let list = windows.get(e.worker);
    if (!list) windows.set(e.worker, (list = []));
    list.push({ from: e.at, to: next?.at ?? Infinity });
  }
  return (h) => windows.get(h.worker)?.find((w) => w.from <= h.at && h.started <= w.to)?.from;
}

/** One line per kill and a total, for the test's output (and the ops notes). */
export function describeRun<KillState>(
  name: string,
  run: ChaosRun<KillState>,
  verdict: Verdict<KillState>,
  bound: (kill: Kill<KillState>) => number,
  extra: (kill: Kill<KillState>) => string = () => '',
): string {
  const t = (at: number) => ((at - run.startedAt) / 1000).toFixed(1);
  const lines = verdict.perKill.map(
    (c) =>
      `  kill worker ${c.kill.worker} at ${t(c.kill.at)} s (${c.kill.recordsBefore} handled): ${c.duplicated} handled again (bound ${bound(c.kill)}), ` +
      `${c.givenBack} redelivered${c.takeoverMs === undefined ? '' : ` (first ${c.takeoverMs} ms after the kill)`}${extra(c.kill)}`,
  );
  const rebalances = verdict.perRebalance.map((r) => `  rebalance told to worker ${r.worker} at ${t(r.at)} s: ${r.duplicated} it was handling then handled again`);
  return [
    `${name}: ${run.plan.ids} ids, ${run.records.length} handlings, ${verdict.duplicates} duplicates, ${run.kills.length} kills, ${run.workers.length} workers;` +
      ` published by ${t(run.publishedAt)} s, all handled by ${t(run.allHandledAt)} s (seed ${run.plan.seed})`,
    ...lines,
    ...rebalances,
  ].join('\n');
}
