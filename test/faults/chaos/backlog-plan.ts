import type { ChaosPlan } from './driver.js';

/**
 * The plan of the RabbitMQ and JetStream runs: handlers of 40 ms, 2 at a time, are 50 ids/s per
 * worker, so the producer (up to 109/s) keeps a backlog and every worker holds its full credit:
 * each kill hits messages in flight. (Kafka's differs: a kill stalls its whole group.)
 */
export function backlogPlan(seed: number): ChaosPlan {
  return {
    ids: 6000,
    publishMs: 55_000,
    roundMs: 100,
    workMs: 40,
    maxBacklog: 60,
    workers: 3,
    killEveryMs: [2500, 5000],
    killsUntil: 0.85,
    // With the backlog every worker is busy: the victim only has to be mid-stream.
    busy: { records: 1, withinMs: 100 },
    seed,
    settleLimitMs: 30_000,
  };
}
