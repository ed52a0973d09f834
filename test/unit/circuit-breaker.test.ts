/**
 * CircuitBreaker: the state machine with fake timers (rate and consecutive modes, the predicate,
 * half-open probes, reopening), then as a flow gate on the memory broker during an outage.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MemoryBroker, memoryConsumer } from '../../adapters/memory/index.js';
import {
  CircuitBreaker,
  DecodeError,
  Message,
  PermanentError,
  ShutdownError,
  TaskTimeoutError,
  WorkerPool,
  prometheusMetrics,
  type CircuitBreakerState,
  type Consumer,
  type GateDecision,
  type GatedConsumer,
} from '../../src/index.js';
import { until } from '../helpers/wait.js';

let seq = 0;
const message = () => new Message({ body: new Uint8Array(), id: `m-${++seq}`, source: 'q', raw: undefined });
const consumerA: GatedConsumer = { name: 'a', inFlight: 0 };
const consumerB: GatedConsumer = { name: 'b', inFlight: 0 };

/** Admits one message and reports its outcome: what a consumer does for each message. */
function call(breaker: CircuitBreaker, result: 'ok' | Error, consumer = consumerA): GateDecision {
  const m = message();
  const decision = breaker.admit(m, consumer);
  if (!decision.admit) return decision;
  breaker.done(m, result === 'ok' ? { result: 'succeeded', durationMs: 1 } : { result: 'failed', error: result, durationMs: 1 }, consumer);
  return decision;
}

/** Admits a message and returns the function that reports how it ended. */
function start(breaker: CircuitBreaker, consumer = consumerA) {
  const m = message();
  const decision = breaker.admit(m, consumer);
  return {
    decision,
    end: (result: 'ok' | 'skipped' | Error) =>
      breaker.done(
        m,
        result === 'ok' ? { result: 'succeeded', durationMs: 1 } : result === 'skipped' ? { result: 'skipped', durationMs: 0 } : { result: 'failed', error: result, durationMs: 1 },
        consumer,
      ),
  };
}

/** Whether a promise has settled, after letting microtasks run. */
async function settled(promise: Promise<unknown> | undefined): Promise<boolean> {
  let done = false;
  void promise?.then(() => (done = true));
  await vi.advanceTimersByTimeAsync(0);
  return done;
}

const down = () => new Error('503 from the downstream');

describe('CircuitBreaker state machine (fake timers)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('has a default for every option and rejects bad ones at construction, naming them', () => {
    const b = new CircuitBreaker();
    expect([b.name, b.failureRate, b.minCalls, b.windowMs, b.openMs, b.halfOpenProbes, b.consecutiveFailures]).toEqual(['circuit-breaker', 0.5, 20, 60_000, 30_000, 3, undefined]);
    expect(() => new CircuitBreaker({ failureRate: 0 })).toThrow(/option "failureRate" must be > 0 and <= 1, got 0/);
    expect(() => new CircuitBreaker({ failureRate: 1.5 })).toThrow(/option "failureRate" must be between 0 and 1, got 1.5/);
    expect(() => new CircuitBreaker({ minCalls: 0 })).toThrow(/option "minCalls"/);
    expect(() => new CircuitBreaker({ minCalls: 2.5 })).toThrow(/option "minCalls" must be an integer/);
    expect(() => new CircuitBreaker({ windowMs: 0 })).toThrow(/option "windowMs"/);
    expect(() => new CircuitBreaker({ openMs: -1 })).toThrow(/option "openMs"/);
    expect(() => new CircuitBreaker({ halfOpenProbes: 0 })).toThrow(/option "halfOpenProbes"/);
    expect(() => new CircuitBreaker({ consecutiveFailures: 0 })).toThrow(/option "consecutiveFailures"/);
    expect(() => new CircuitBreaker({ isFailure: 'timeouts' as never })).toThrow(/option "isFailure" must be a function/);
    expect(() => new CircuitBreaker({ name: '' })).toThrow(/option "name"/);
    expect(() => new CircuitBreaker(null as never)).toThrow(/option "options" must be an object/);
  });

  it('opens when the failure rate reaches failureRate over at least minCalls, not before', () => {
    const b = new CircuitBreaker({ failureRate: 0.5, minCalls: 4, windowMs: 10_000 });
    const events: string[] = [];
    b.on('state', (e) => events.push(`${e.from}->${e.to}`));
    b.on('open', (e) => events.push(`open:${e.reason}:${(e.error as Error).message}`));
    call(b, down());
    call(b, down());
    call(b, down()); // 3 of 3 failed, but fewer than minCalls
    expect(b.state).toBe('closed');
    expect(b.status()).toMatchObject({ state: 'closed', calls: 3, failures: 3, failureRate: 1, openedAt: undefined });
    call(b, 'ok'); // 3 of 4: 75 % over minCalls
    expect(b.state).toBe('open');
    expect(events).toEqual(['closed->open', 'open:failure-rate:503 from the downstream']);
    expect(b.status()).toMatchObject({ state: 'open', calls: 4, failures: 3, failureRate: 0.75, opened: 1, openedAt: Date.now() });
  });

  it('stays closed below the rate, and forgets outcomes older than windowMs', () => {
    const b = new CircuitBreaker({ failureRate: 0.5, minCalls: 4, windowMs: 10_000 });
    for (let i = 0; i < 6; i++) call(b, 'ok');
    for (let i = 0; i < 5; i++) call(b, down()); // 5 of 11 < 50 %
    expect(b.status()).toMatchObject({ state: 'closed', calls: 11, failures: 5 });
    vi.advanceTimersByTime(8_900); // still inside the window (it slides in tenths)
    expect(b.status().calls).toBe(11);
    vi.advanceTimersByTime(1_100); // windowMs after: all gone
    expect(b.status()).toMatchObject({ calls: 0, failures: 0, failureRate: 0 });
    for (let i = 0; i < 3; i++) call(b, down());
    expect(b.state).toBe('closed'); // the old successes no longer dilute, but 3 calls < minCalls
    call(b, down());
    expect(b.state).toBe('open');
  });

  it('a rate such as 0.3 opens at exactly 3 failures in 10', () => {
    const b = new CircuitBreaker({ failureRate: 0.3, minCalls: 10 });
    for (let i = 0; i < 7; i++) call(b, 'ok');
    call(b, down());
    call(b, down());
    expect(b.state).toBe('closed');
    call(b, down());
    expect(b.state).toBe('open');
  });

  it('with consecutiveFailures, opens after that many failures in a row; a success resets the run', () => {
    const b = new CircuitBreaker({ minCalls: 1_000, consecutiveFailures: 3 });
    const reasons: string[] = [];
    b.on('open', (e) => reasons.push(e.reason));
    call(b, down());
    call(b, down());
    call(b, 'ok');
    call(b, down());
    call(b, down());
    expect(b.status()).toMatchObject({ state: 'closed', consecutiveFailures: 2 });
    call(b, down());
    expect(b.state).toBe('open');
    expect(reasons).toEqual(['consecutive-failures']);
  });

  it('counts by the isFailure predicate: an error it declines is a success (the downstream answered)', () => {
    const timeoutsOnly = new CircuitBreaker({ minCalls: 4, failureRate: 0.5, isFailure: (e) => e instanceof TaskTimeoutError });
    call(timeoutsOnly, down());
    call(timeoutsOnly, down());
    expect(timeoutsOnly.status()).toMatchObject({ state: 'closed', calls: 2, failures: 0 });
    call(timeoutsOnly, new TaskTimeoutError(100));
    expect(timeoutsOnly.excuses(down())).toBe(false);
    call(timeoutsOnly, new TaskTimeoutError(100));
    expect(timeoutsOnly.status()).toMatchObject({ state: 'open', calls: 4, failures: 2 });
    expect(timeoutsOnly.excuses(new TaskTimeoutError(100))).toBe(true);
    expect(timeoutsOnly.excuses(down())).toBe(false); // not counted, so not excused either
  });

  it('default predicate: PermanentError and DecodeError count as successes, ShutdownError not at all, a throwing predicate as a failure', () => {
    const b = new CircuitBreaker({ minCalls: 100 });
    call(b, new PermanentError('card declined'));
    call(b, new DecodeError('not JSON'));
    call(b, new ShutdownError());
    call(b, new TaskTimeoutError(50));
    call(b, down());
    expect(b.status()).toMatchObject({ calls: 4, failures: 2, consecutiveFailures: 2 });
    const throwing = new CircuitBreaker({ minCalls: 100, isFailure: () => { throw new Error('bug in predicate'); } });
    call(throwing, down());
    expect(throwing.status()).toMatchObject({ calls: 1, failures: 1 });
  });

  it('open: refuses with a resumeWhen that settles when it half-opens, capacity 0, excuses the failures it counts', async () => {
    const b = new CircuitBreaker({ minCalls: 2, failureRate: 0.5, openMs: 1_000, halfOpenProbes: 2 });
    const inFlight = start(b); // admitted while closed, still running when it opens
    call(b, down());
    call(b, down());
    expect(b.state).toBe('open');
    const refused = b.admit(message(), consumerA);
    expect(refused.admit).toBe(false);
    const resumeWhen = (refused as { resumeWhen?: Promise<unknown> }).resumeWhen;
    expect(resumeWhen).toBeInstanceOf(Promise);
    // Every consumer waits for the same moment.
    expect((b.admit(message(), consumerB) as { resumeWhen?: Promise<unknown> }).resumeWhen).toBe(resumeWhen);
    expect(b.capacity(consumerA)).toBe(0);
    expect(b.excuses(down())).toBe(true);
    expect(b.excuses(new TaskTimeoutError(10))).toBe(true);
    expect(b.excuses(new PermanentError('card declined'))).toBe(false); // the message's fault: still dead-lettered
    // The one in flight fails now: excused, and it decides nothing (admitted before it opened).
    inFlight.end(down());
    expect(b.status().opened).toBe(1);

    vi.advanceTimersByTime(999);
    expect(await settled(resumeWhen)).toBe(false);
    expect(b.state).toBe('open');
    vi.advanceTimersByTime(1);
    expect(await settled(resumeWhen)).toBe(true);
    expect(b.state).toBe('half-open');
    expect(b.capacity(consumerA)).toBe(2);
    expect(b.status().probes).toEqual({ left: 2, inFlight: 0, succeeded: 0 });
  });

  it('half-open: admits exactly halfOpenProbes across consumers, pauses the rest until they end; all succeed → closed, window fresh', async () => {
    const b = new CircuitBreaker({ minCalls: 2, failureRate: 0.5, openMs: 500, halfOpenProbes: 2 });
    const events: CircuitBreakerState[] = [];
    b.on('state', (e) => events.push(e.to));
    let closes = 0;
    b.on('close', () => closes++);
    call(b, down());
    call(b, down());
    vi.advanceTimersByTime(500);
    const p1 = start(b, consumerA);
    const p2 = start(b, consumerB);
    expect(p1.decision.admit && p2.decision.admit).toBe(true);
    expect(b.capacity(consumerA)).toBe(0);
    const rest = b.admit(message(), consumerA) as { admit: false; resumeWhen?: Promise<unknown> };
    expect(rest.admit).toBe(false);
    expect(rest.resumeWhen).toBeInstanceOf(Promise);
    expect(b.status().probes).toEqual({ left: 0, inFlight: 2, succeeded: 0 });
    p1.end('ok');
    expect(b.state).toBe('half-open');
    expect(await settled(rest.resumeWhen)).toBe(false);
    expect(b.excuses(down())).toBe(true);
    p2.end('ok');
    expect(b.state).toBe('closed');
    expect(await settled(rest.resumeWhen)).toBe(true);
    expect(events).toEqual(['open', 'half-open', 'closed']);
    expect(closes).toBe(1);
    expect(b.status()).toMatchObject({ state: 'closed', calls: 0, failures: 0, openedAt: undefined, opened: 1 });
    expect(b.capacity(consumerA)).toBe(Number.POSITIVE_INFINITY);
    expect(b.excuses(down())).toBe(false);
    expect(call(b, 'ok').admit).toBe(true);
  });

  it('a probe that fails opens it again for openMs; the paused consumers stay paused until the next half-open', async () => {
    const b = new CircuitBreaker({ minCalls: 1, failureRate: 1, openMs: 1_000, halfOpenProbes: 2 });
    const reasons: string[] = [];
    b.on('open', (e) => reasons.push(e.reason));
    call(b, down());
    const firstOpenedAt = b.status().openedAt!;
    vi.advanceTimersByTime(1_000);
    const p1 = start(b);
    const p2 = start(b);
    const waiting = (b.admit(message(), consumerB) as { resumeWhen?: Promise<unknown> }).resumeWhen;
    p1.end(down());
    expect(b.state).toBe('open');
    expect(b.status().openedAt).toBe(firstOpenedAt + 1_000);
    expect(reasons).toEqual(['failure-rate', 'probe-failed']);
    expect(b.excuses(down())).toBe(true);
    // The other probe ends afterwards: it was admitted in the last state and decides nothing.
    p2.end('ok');
    expect(b.state).toBe('open');
    // Refusals while open again share the pending wait: no consumer resumes just to be refused.
    expect((b.admit(message(), consumerA) as { resumeWhen?: Promise<unknown> }).resumeWhen).toBe(waiting);
    expect(await settled(waiting)).toBe(false);
    vi.advanceTimersByTime(999);
    expect(await settled(waiting)).toBe(false);
    vi.advanceTimersByTime(1);
    expect(await settled(waiting)).toBe(true);
    expect(b.state).toBe('half-open');
    expect(b.status().opened).toBe(2);
  });

  it('a probe that never ran (skipped) gives its place back and wakes the paused consumers to bring another', async () => {
    const b = new CircuitBreaker({ minCalls: 1, failureRate: 1, openMs: 10, halfOpenProbes: 1 });
    call(b, down());
    vi.advanceTimersByTime(10);
    const probe = start(b);
    const waiting = (b.admit(message(), consumerB) as { resumeWhen?: Promise<unknown> }).resumeWhen;
    probe.end('skipped');
    expect(b.state).toBe('half-open');
    expect(b.capacity(consumerB)).toBe(1);
    expect(await settled(waiting)).toBe(true);
    // A ShutdownError (its consumer stopping) is no verdict either.
    const again = start(b, consumerB);
    again.end(new ShutdownError());
    expect(b.status().probes).toEqual({ left: 1, inFlight: 0, succeeded: 0 });
    call(b, 'ok');
    expect(b.state).toBe('closed');
  });

  it('outcomes of messages admitted before the last transition count for nothing: not as probes, not in the next window', () => {
    const b = new CircuitBreaker({ minCalls: 2, failureRate: 0.5, openMs: 100, halfOpenProbes: 1 });
    const old = [start(b), start(b), start(b)];
    call(b, down());
    call(b, down());
    vi.advanceTimersByTime(100);
    old[0]!.end('ok'); // during half-open: not a probe
    expect(b.state).toBe('half-open');
    expect(b.status().probes).toEqual({ left: 1, inFlight: 0, succeeded: 0 });
    call(b, 'ok');
    expect(b.state).toBe('closed');
    old[1]!.end(down());
    old[2]!.end(down()); // would reopen at 2 of 2 if they counted
    expect(b.status()).toMatchObject({ state: 'closed', calls: 0 });
  });

  it('open() and halfOpen() move it by hand; listeners that throw do not break it', () => {
    const b = new CircuitBreaker({ openMs: 60_000, halfOpenProbes: 1 });
    b.on('open', () => {
      throw new Error('a bad listener');
    });
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
    expect(b.halfOpen()).toBe(false);
    expect(b.open()).toBe(true);
    expect(b.open()).toBe(false);
    expect(b.state).toBe('open');
    expect(b.halfOpen()).toBe(true);
    expect(b.state).toBe('half-open');
    call(b, 'ok');
    expect(b.state).toBe('closed');
    warn.mockRestore();
  });

  it('its state is a Prometheus gauge (one series per state) and its openings a counter', async () => {
    const b = new CircuitBreaker({ name: 'card-gateway', minCalls: 1, failureRate: 1, openMs: 100 });
    const metrics = await prometheusMetrics({ breakers: [b] });
    const read = async () => (await metrics.metrics()).body;
    expect(await read()).toContain('sluice_circuit_breaker_state{breaker="card-gateway",state="closed"} 1');
    call(b, down());
    const body = await read();
    expect(body).toContain('sluice_circuit_breaker_state{breaker="card-gateway",state="open"} 1');
    expect(body).toContain('sluice_circuit_breaker_state{breaker="card-gateway",state="closed"} 0');
    expect(body).toContain('sluice_circuit_breaker_opened_total{breaker="card-gateway"} 1');
    vi.advanceTimersByTime(100);
    expect(await read()).toContain('sluice_circuit_breaker_state{breaker="card-gateway",state="half-open"} 1');
  });
});

describe('CircuitBreaker on the memory broker: a downstream that fails everything for a while', () => {
  it('two consumers share one breaker: nothing dead-lettered, only probes run while it is not closed, paused under its name, resumed after a good probe', async () => {
    const broker = new MemoryBroker();
    const perQueue = 150;
    for (const q of ['a', 'b']) for (let i = 0; i < perQueue; i++) broker.publishJson(q, { i }, { id: `${q}-${i}` });
    const pool = new WorkerPool({ maxConcurrency: 4, maxQueueSize: 4 });
    const breaker = new CircuitBreaker({ failureRate: 0.5, minCalls: 5, windowMs: 60_000, openMs: 20, halfOpenProbes: 2, consecutiveFailures: 5 });

    let downstreamUp = true;
    let handledBeforeOutage = 0;
    const handled = new Set<string>();
    let runsWhileNotClosed = 0;
    let inFlightAtOpenings = 0;
    const maxAttemptSeen = { value: 0 };
    const consumers: Consumer[] = [];
    const log: string[] = [];
    for (const q of ['a', 'b']) {
      consumers.push(
        memoryConsumer({
          broker,
          queue: q,
          pool,
          retry: { maxAttempts: 3, backoff: { initialMs: 1, maxMs: 5 } },
          flow: { gates: [breaker] },
          handler: async (m) => {
            if (breaker.state !== 'closed') runsWhileNotClosed++;
            maxAttemptSeen.value = Math.max(maxAttemptSeen.value, m.deliveryAttempt);
            await new Promise((r) => setTimeout(r, 1));
            if (!downstreamUp) throw new Error('503 from the downstream');
            if (handled.size === 40 && handledBeforeOutage === 0) {
              // The outage starts here and lasts until a probe has failed at least once.
              handledBeforeOutage = handled.size;
              downstreamUp = false;
            }
            handled.add(m.id);
          },
        }),
      );
    }
    const pausedWhileNotClosed: boolean[] = [];
    let resumedAfterClose = 0;
    for (const c of consumers) {
      c.on('paused', (e) => {
        if (e.reason === 'circuit-breaker') pausedWhileNotClosed.push(breaker.state !== 'closed');
      });
      c.on('resumed', (e) => {
        if (e.reason === 'circuit-breaker' && breaker.state === 'closed') resumedAfterClose++;
      });
    }
    breaker.on('state', (e) => log.push(e.to));
    breaker.on('open', () => {
      // Everything admitted before it opened may still run (the one that tripped it included).
      inFlightAtOpenings += consumers.reduce((n, c) => n + c.status().inFlight, 0);
      if (breaker.status().opened >= 2) downstreamUp = true; // a probe failed: let the next ones succeed
    });

    await Promise.all(consumers.map((c) => c.start()));
    await until(() => handled.size === 2 * perQueue, 'every message handled in the end', 20_000);
    await Promise.all(consumers.map((c) => c.stop()));

    const halfOpens = log.filter((s) => s === 'half-open').length;
    expect(log.slice(0, 4)).toEqual(['open', 'half-open', 'open', 'half-open']);
    expect(log.at(-1)).toBe('closed');
    expect(breaker.status().opened).toBe(2);
    // Attempts spent while it was not closed: the probes, plus what was in flight when it opened.
    expect(runsWhileNotClosed).toBeLessThanOrEqual(halfOpens * breaker.halfOpenProbes + inFlightAtOpenings);
    expect(runsWhileNotClosed).toBeGreaterThanOrEqual(halfOpens); // at least one probe per half-open
    // Paused at the broker under the breaker's name, only while it was not closed; resumed once it closed.
    expect(pausedWhileNotClosed.length).toBeGreaterThan(0);
    expect(pausedWhileNotClosed.every(Boolean)).toBe(true);
    expect(resumedAfterClose).toBeGreaterThan(0);
    for (const c of consumers) expect(c.status().pausedBy).toEqual([]);
    // No healthy message walked into the dead-letter queue; excused failures never counted an attempt.
    expect(consumers.map((c) => c.status().deadLettered)).toEqual([0, 0]);
    expect(broker.depth('a.dlq').ready + broker.depth('b.dlq').ready).toBe(0);
    // Only the failures before the one that opened it were ordinary (retried, attempt counted).
    expect(consumers.reduce((n, c) => n + c.status().retried, 0)).toBeLessThanOrEqual(breaker.consecutiveFailures! - 1);
    expect(maxAttemptSeen.value).toBeLessThanOrEqual(2);
    expect(consumers.reduce((n, c) => n + c.status().gated, 0)).toBeGreaterThan(0);
    for (const q of ['a', 'b']) expect(broker.depth(q)).toEqual({ ready: 0, unacked: 0, delayed: 0 });
    await pool.close();
    broker.close();
  });

  it('a poison message failing while it is open is not excused: it still goes to the dead-letter queue, at once', async () => {
    const broker = new MemoryBroker();
    const breaker = new CircuitBreaker({ openMs: 10, halfOpenProbes: 1 });
    broker.publish('q', 'not json', { id: 'poison' });
    broker.publishJson('q', { ok: true }, { id: 'good' });
    const consumer = memoryConsumer({
      broker,
      queue: 'q',
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      flow: { gates: [breaker] },
      handler: async (m) => {
        if (m.id === 'poison') breaker.open(); // the downstream goes down while it runs
        m.json();
      },
    });
    const reasons: string[] = [];
    consumer.on('givenBack', (e) => reasons.push(e.reason));
    await consumer.start();
    await until(() => consumer.status().handled === 1 && consumer.status().deadLettered === 1, 'poison dead-lettered, good handled');
    await consumer.stop();
    expect(broker.drain('q.dlq').map((m) => m.id)).toEqual(['poison']);
    expect(reasons).not.toContain('excused');
    expect(breaker.state).toBe('closed');
  });
});
