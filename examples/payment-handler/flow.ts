/**
 * The demo's flow-control modes:
 *
 *   --downstream-outage [--outage-ms 2000]   the card gateway fails every call for a while once a
 *                                            third of the payments went through; a CircuitBreaker
 *                                            on the consumer opens (consumption paused at the
 *                                            broker), probes, and closes when the gateway is back
 *   --rate 200                               a RateLimiter (perSecond 200) on the consumer: the
 *                                            live line shows admitted per second holding the limit
 */
import { CircuitBreaker, RateLimiter, type Consumer, type FlowGate } from '../../src/index.js';
import { GatewayError, type GatewayHealth } from './payments.js';
import { log } from './progress.js';

export interface FlowModeOptions {
  /** Gateway down for this long (ms) once `outageAfter` payments were handled; undefined: no outage, no breaker. */
  outageMs?: number | undefined;
  outageAfter: number;
  /** Admissions per second; undefined: no rate limit. */
  rate?: number | undefined;
}

export interface FlowMode {
  readonly gates: FlowGate[];
  /** Given to chargeCard: says when the gateway is down. */
  readonly health: GatewayHealth | undefined;
  /** Called with the handled count after each payment: starts the outage when its time comes. */
  handled(count: number): void;
  watch(consumer: Consumer): void;
  /** Fields of the live line. */
  progress(): string[];
  /** Rows of the summary table. */
  rows(): [string, string | number][];
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

export function flowMode(options: FlowModeOptions): FlowMode {
  const t0 = performance.now();
  const at = () => `${seconds(performance.now() - t0).padStart(6)}`;
  const gates: FlowGate[] = [];

  // --- the outage and the breaker ---
  let breaker: CircuitBreaker | undefined;
  let health: GatewayHealth | undefined;
  let downUntil = 0;
  let failedWhileDown = 0;
  let closed = 0;
  const givenBack = { excused: 0, gated: 0 };
  let pausedMs = 0;
  if (options.outageMs !== undefined) {
    // One breaker for the one downstream; only the gateway's own failures count (a declined card is an answer).
    breaker = new CircuitBreaker({
      name: 'card-gateway',
      failureRate: 0.5,
      minCalls: 10,
      windowMs: 5_000,
      consecutiveFailures: 5,
      openMs: 500,
      halfOpenProbes: 3,
      isFailure: (error) => error instanceof GatewayError,
    });
    gates.push(breaker);
    health = {
      isDown: () => performance.now() < downUntil,
      failedWhileDown: () => void failedWhileDown++,
    };
    breaker.on('open', ({ reason, status }) =>
      log(
        `${at()}  breaker OPEN (${reason === 'probe-failed' ? 'a probe failed' : reason === 'consecutive-failures' ? `${breaker!.consecutiveFailures} gateway failures in a row` : `${status.failures} of ${status.calls} calls failed`}): consumption paused for ${breaker!.openMs} ms`,
      ),
    );
    breaker.on('halfOpen', () => log(`${at()}  breaker half-open: ${breaker!.halfOpenProbes} probe payments may go through`));
    breaker.on('close', () => {
      closed++;
      log(`${at()}  breaker CLOSED: every probe succeeded, consumption resumes`);
    });
  }

  // --- the rate limit, and a gate after it that records what it admitted ---
  let limiter: RateLimiter | undefined;
  const admits: number[] = [];
  /** When a token came back: a message it admitted never ran (the pool was full). */
  const returns: number[] = [];
  let refusedByLimiter = 0;
  if (options.rate !== undefined) {
    limiter = new RateLimiter({ perSecond: options.rate });
    // Asked only when every gate before it admitted: it sees each message the limiter let through.
    const admissions: FlowGate = {
      name: 'admission-log',
      admit: () => {
        admits.push(performance.now());
        return { admit: true };
      },
      done: (_message, outcome) => {
        if (outcome.result === 'skipped') returns.push(performance.now()); // never ran (the pool was full): the limiter took its token back
      },
    };
    gates.push(limiter, admissions);
  }
  const since = (times: number[], t: number) => {
    let n = 0;
    for (let i = times.length - 1; i >= 0 && times[i]! > t; i--) n++;
    return n;
  };
  /** Admitted in the last second, net of the tokens that came back. */
  const lastSecond = () => since(admits, performance.now() - 1000) - since(returns, performance.now() - 1000);

  return {
    gates,
    health,
    handled(count) {
      if (options.outageMs === undefined || downUntil !== 0 || count < options.outageAfter) return;
      downUntil = performance.now() + options.outageMs;
      log(`${at()}  the card gateway goes DOWN for ${seconds(options.outageMs)} (every call fails with a 503)`);
      setTimeout(() => log(`${at()}  the card gateway is back up`), options.outageMs);
    },
    watch(consumer) {
      if (limiter) consumer.on('gated', ({ gate }) => gate === limiter!.name && void refusedByLimiter++);
      if (!breaker) return;
      consumer.on('paused', ({ reason }) => reason === breaker!.name && log(`${at()}    ${consumer.name}: paused at the broker (${reason})`));
      consumer.on('resumed', ({ reason, pausedMs: ms }) => {
        if (reason !== breaker!.name) return;
        pausedMs += ms;
        log(`${at()}    ${consumer.name}: resumed after ${Math.round(ms)} ms`);
      });
      consumer.on('givenBack', ({ reason }) => {
        if (reason === 'excused') givenBack.excused++;
        else if (reason === 'gated') givenBack.gated++;
      });
    },
    progress() {
      const fields: string[] = [];
      if (breaker) fields.push(`breaker ${breaker.state === 'closed' ? 'closed   ' : breaker.state === 'open' ? 'OPEN     ' : 'half-open'}`);
      if (limiter) fields.push(`admitted/s ${String(lastSecond()).padStart(4)} (limit ${limiter.perSecond})`);
      return fields;
    },
    rows() {
      const rows: [string, string | number][] = [];
      if (breaker && options.outageMs !== undefined) {
        const s = breaker.status();
        rows.push(
          ['gateway outage', downUntil === 0 ? 'did not happen' : `${seconds(options.outageMs)}, after ${options.outageAfter} payments`],
          ['gateway calls failed while down', failedWhileDown],
          ['breaker opened / closed', `${s.opened} / ${closed} times (now ${s.state})`],
          ['paused by the breaker', `${seconds(pausedMs)} in all`],
          ['given back, attempt not counted', `${givenBack.excused} failed while open + ${givenBack.gated} refused by the breaker`],
        );
      }
      if (limiter) {
        const t = admits.length > 1 ? admits[admits.length - 1]! - admits[0]! : 0;
        const admitted = admits.length - returns.length;
        const perSecond: number[] = [];
        const bucket = (time: number, n: number) => {
          const i = Math.max(0, Math.floor((time - admits[0]!) / 1000));
          perSecond[i] = (perSecond[i] ?? 0) + n;
        };
        for (const a of admits) bucket(a, 1);
        for (const r of returns) bucket(r, -1);
        rows.push(
          ['rate limit', `${limiter.perSecond}/s, burst ${limiter.burst}`],
          ['refused by the limiter', `${refusedByLimiter} (given back to the broker while it paused; no pool slot taken)`],
          // Rounded up to the ms, so that admitted ≤ limit × t + burst can be checked from these printed numbers.
          ['admitted by the limiter', `${admitted} in ${(Math.ceil(t) / 1000).toFixed(3)} s (first to last, net of ${returns.length} tokens given back)`],
          ['admitted per second', `${(t > 0 ? (admitted * 1000) / t : 0).toFixed(1)} on average; each second from the first: ${Array.from(perSecond, (n) => n ?? 0).join(', ')}`],
        );
      }
      return rows;
    },
  };
}
