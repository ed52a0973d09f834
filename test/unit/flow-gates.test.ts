/** Flow gates: checked before a message takes a pool slot; on the memory broker. */
import { describe, expect, it } from 'vitest';
import { MemoryBroker, memoryConsumer } from '../../adapters/memory/index.js';
import { InFlightLimit, WorkerPool, type FlowGate, type GateOutcome } from '../../src/index.js';
import { tick, until } from '../helpers/wait.js';

describe('InFlightLimit (the example gate)', () => {
  it('holds one consumer of a shared pool to its limit, pausing at the broker meanwhile, and loses nothing', async () => {
    const broker = new MemoryBroker();
    for (let i = 0; i < 60; i++) broker.publishJson('q', { i }, { id: `m-${i}` });
    const pool = new WorkerPool({ maxConcurrency: 8, maxQueueSize: 8 });
    let running = 0;
    let maxRunning = 0;
    const gate = new InFlightLimit({ max: 3 });
    const consumer = memoryConsumer({
      broker,
      queue: 'q',
      pool,
      flow: { gates: [gate] },
      handler: async () => {
        maxRunning = Math.max(maxRunning, ++running);
        await tick(2);
        running--;
      },
    });
    const reasons = new Set<string>();
    consumer.on('paused', (e) => reasons.add(e.reason));
    await consumer.start();
    await until(() => consumer.status().handled === 60, 'all handled');
    await consumer.stop();
    expect(maxRunning).toBeLessThanOrEqual(3);
    expect(consumer.status().gated).toBeGreaterThan(0);
    expect(reasons.has('in-flight-limit')).toBe(true);
    expect(broker.depth('q')).toEqual({ ready: 0, unacked: 0, delayed: 0 });
  });

  it('rejects a bad limit at construction, naming it', () => {
    expect(() => new InFlightLimit({ max: 0 })).toThrow(/max.*0/);
    expect(() => memoryConsumer({ broker: new MemoryBroker(), queue: 'q', pool: { maxConcurrency: 1, maxQueueSize: 0 }, handler: async () => {}, flow: { gates: [{}] as never } })).toThrow(/flow\.gates\[0\]/);
  });
});

describe('a gate', () => {
  it('that refuses without a pause gives the message back without taking a pool slot; one with resumeAfterMs pauses under its name', async () => {
    const broker = new MemoryBroker();
    for (let i = 0; i < 5; i++) broker.publishJson('q', { i }, { id: `m-${i}` });
    const pool = new WorkerPool({ maxConcurrency: 2, maxQueueSize: 0 });
    let closed = true;
    let refusals = 0;
    let activeWhileRefusing = 0;
    const gate: FlowGate = {
      name: 'window',
      admit: () => {
        if (!closed) return { admit: true };
        activeWhileRefusing = Math.max(activeWhileRefusing, pool.status().active + pool.status().pending);
        // The third refusal pauses for a while; the others just refuse.
        return ++refusals === 3 ? { admit: false, resumeAfterMs: 20 } : { admit: false };
      },
    };
    const consumer = memoryConsumer({ broker, queue: 'q', pool, flow: { gates: [gate] }, handler: async () => {} });
    const events: string[] = [];
    consumer.on('paused', (e) => events.push(`paused:${e.reason}`));
    consumer.on('resumed', (e) => events.push(`resumed:${e.reason}`));
    await consumer.start();
    await until(() => events.includes('paused:window'), 'paused by the gate');
    expect(consumer.status().pausedBy).toEqual(['window']);
    closed = false;
    await until(() => consumer.status().handled === 5, 'all handled once the gate admits');
    await consumer.stop();
    expect(activeWhileRefusing).toBe(0);
    expect(events).toContain('resumed:window');
    expect(consumer.status().gated).toBe(refusals);
    expect(broker.depth('q')).toEqual({ ready: 0, unacked: 0, delayed: 0 });
  });

  it('hears how each admitted message ended; gates after a refusing one are not asked, those before hear it was skipped', async () => {
    const broker = new MemoryBroker();
    broker.publishJson('q', { ok: true }, { id: 'good' });
    broker.publishJson('q', { ok: false }, { id: 'bad' });
    broker.publishJson('q', { ok: true }, { id: 'refused-once' });
    const outcomes: string[] = [];
    const first: FlowGate = {
      name: 'first',
      admit: () => ({ admit: true }),
      done: (m, o: GateOutcome) => void outcomes.push(`${m.id}:${o.result}${o.error ? `:${(o.error as Error).message}` : ''}`),
    };
    let refuseOnce = true;
    const asked: string[] = [];
    const second: FlowGate = {
      name: 'second',
      admit: (m) => {
        asked.push(m.id);
        if (m.id === 'refused-once' && refuseOnce) {
          refuseOnce = false;
          return { admit: false };
        }
        return { admit: true };
      },
    };
    const consumer = memoryConsumer({
      broker,
      queue: 'q',
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      retry: { maxAttempts: 1 },
      flow: { gates: [first, second] },
      handler: async (m) => {
        if (!m.json<{ ok: boolean }>().ok) throw new Error('no');
      },
    });
    await consumer.start();
    await until(() => consumer.status().handled === 2 && consumer.status().deadLettered === 1, 'settled');
    await consumer.stop();
    expect(outcomes.sort()).toEqual(['bad:failed:no', 'good:succeeded', 'refused-once:skipped', 'refused-once:succeeded']);
    expect(asked.filter((id) => id === 'refused-once')).toHaveLength(2);
  });
});

describe('a gate that excuses a failure', () => {
  it('has the message given back without counting the attempt, so it never reaches the dead-letter queue', async () => {
    const broker = new MemoryBroker();
    broker.publishJson('q', {}, { id: 'm' });
    let downstreamDown = true;
    const runs: number[] = [];
    const gate: FlowGate = {
      name: 'outage',
      admit: () => ({ admit: true }),
      excuses: () => downstreamDown,
    };
    const consumer = memoryConsumer({
      broker,
      queue: 'q',
      pool: { maxConcurrency: 1, maxQueueSize: 0 },
      retry: { maxAttempts: 1 },
      flow: { gates: [gate] },
      handler: async (m) => {
        runs.push(m.deliveryAttempt);
        if (runs.length === 3) downstreamDown = false;
        if (downstreamDown) throw new Error('503 from the downstream');
      },
    });
    const reasons: string[] = [];
    consumer.on('givenBack', (e) => reasons.push(e.reason));
    await consumer.start();
    await until(() => consumer.status().handled === 1, 'handled once the downstream is back');
    await consumer.stop();
    expect(runs).toEqual([1, 1, 1]);
    expect(reasons).toEqual(['excused', 'excused']);
    expect(consumer.status().deadLettered).toBe(0);
    expect(broker.depth('q.dlq').ready).toBe(0);
  });
});

describe('gates at the stop deadline', () => {
  it('hear once that a message given back by stop() was skipped, even if its handler ends later', async () => {
    const broker = new MemoryBroker();
    broker.publishJson('q', {}, { id: 'stuck' });
    const outcomes: string[] = [];
    const gate: FlowGate = { name: 'g', admit: () => ({ admit: true }), done: (m, o) => void outcomes.push(`${m.id}:${o.result}`) };
    let finish!: () => void;
    const ignoresSignal = new Promise<void>((r) => (finish = r));
    const consumer = memoryConsumer({ broker, queue: 'q', pool: { maxConcurrency: 1, maxQueueSize: 0 }, flow: { gates: [gate] }, handler: () => ignoresSignal });
    await consumer.start();
    await until(() => consumer.status().inFlight === 1, 'running');
    const stopping = consumer.stop({ timeoutMs: 10 });
    await until(() => outcomes.length === 1, 'gate told at the deadline');
    finish();
    await stopping;
    await tick(5);
    expect(outcomes).toEqual(['stuck:skipped']);
  });
});

describe('InFlightLimit while a settlement takes long', () => {
  it('does not leave the consumer paused for good when its only admitted message is still settling', async () => {
    // The dead-letter queue refuses: the poison's settlement is tried and deferred while others are refused by the gate.
    const broker = new MemoryBroker();
    broker.refusePublishes('q.dlq');
    broker.publishJson('q', { poison: true }, { id: 'poison' });
    for (let i = 0; i < 10; i++) broker.publishJson('q', { poison: false }, { id: `m-${i}` });
    const consumer = memoryConsumer({
      broker,
      queue: 'q',
      pool: { maxConcurrency: 4, maxQueueSize: 4 },
      settlement: { tries: 2, backoff: { initialMs: 1 }, deferMs: 1 },
      flow: { gates: [new InFlightLimit({ max: 1 })] },
      handler: async (m) => {
        if (m.json<{ poison: boolean }>().poison) throw new Error('bad');
      },
      retry: { maxAttempts: 1 },
    });
    await consumer.start();
    await until(() => consumer.status().handled === 10, 'every healthy message handled');
    broker.refusePublishes('q.dlq', false);
    await until(() => consumer.status().deadLettered === 1, 'the poison dead-lettered');
    await consumer.stop();
    expect(broker.depth('q')).toEqual({ ready: 0, unacked: 0, delayed: 0 });
  });
});

describe('a gate that throws (a bug in user code)', () => {
  it('that answers admit() with something else than a decision: reported and taken as a refusal; nothing lost', async () => {
    const broker = new MemoryBroker();
    for (let i = 0; i < 3; i++) broker.publishJson('q', { i }, { id: `m-${i}` });
    let calls = 0;
    const gate: FlowGate = { name: 'sloppy', admit: () => (++calls <= 2 ? (undefined as never) : { admit: true }) };
    const handled: string[] = [];
    const consumer = memoryConsumer({ broker, queue: 'q', pool: { maxConcurrency: 2, maxQueueSize: 2 }, flow: { gates: [gate] }, handler: async (m) => void handled.push(m.id) });
    const errors: string[] = [];
    consumer.on('error', ({ error, during }) => void errors.push(`${during}: ${(error as Error).message}`));
    await consumer.start();
    await until(() => handled.length === 3, 'all handled');
    await consumer.stop();
    expect(handled.sort()).toEqual(['m-0', 'm-1', 'm-2']);
    expect(errors).toEqual(Array(2).fill(`gate: consumer "${consumer.name}": flow gate "sloppy" threw in admit(): it returned undefined, not { admit: true | false }`));
    expect(consumer.status().gated).toBe(2);
  });

  it('in excuses(): reported, and counts for nothing; the failure takes the default rule', async () => {
    const broker = new MemoryBroker();
    broker.publishJson('q', { i: 0 }, { id: 'flaky' });
    const gate: FlowGate = {
      name: 'buggy',
      admit: () => ({ admit: true }),
      excuses: () => {
        throw new Error('excuses bug');
      },
    };
    let runs = 0;
    const consumer = memoryConsumer({
      broker,
      queue: 'q',
      pool: { maxConcurrency: 2, maxQueueSize: 2 },
      retry: { maxAttempts: 3, backoff: { initialMs: 1, maxMs: 1 } },
      flow: { gates: [gate] },
      handler: async () => {
        if (++runs === 1) throw new Error('downstream hiccup');
      },
    });
    const errors: string[] = [];
    consumer.on('error', ({ error, during }) => void errors.push(`${during}: ${(error as Error).message}`));
    await consumer.start();
    await until(() => consumer.status().handled === 1, 'handled on its second attempt');
    await consumer.stop();
    expect(runs).toBe(2);
    expect(consumer.status().retried).toBe(1); // not excused: the attempt counted
    expect(errors).toEqual([`gate: consumer "${consumer.name}": flow gate "buggy" threw in excuses(): excuses bug`]);
    expect(broker.depth('q')).toEqual({ ready: 0, unacked: 0, delayed: 0 });
  });
});
