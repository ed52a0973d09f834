/**
 * `sluice/testing`: a handler unit-tested without a broker. Every outcome, retries on the fake
 * clock (a 60 s backoff that is never waited for: the clock's fake time is the sum of the delays),
 * dead-letter info, schema-invalid bodies, batch handlers with ctx.fail, and the guards.
 */
import { afterEach, describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { DEAD_LETTER_HEADERS, PermanentError, WorkerPool, type BatchHandler, type Handler } from '../../src/index.js';
import type { StoredMessage } from '../../adapters/memory/index.js';
import { FakeClock, testConsumer, type Outcome, type TestConsumer } from '../../src/testing/index.js';
import { until } from '../helpers/wait.js';

const open: Pick<TestConsumer, 'close'>[] = [];
/** Closed after each test, whatever it asserted. */
function track<T extends Pick<TestConsumer, 'close'>>(t: T): T {
  open.push(t);
  return t;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.close({ timeoutMs: 0 })));
});

class CardDeclined extends Error {
  override name = 'CardDeclined';
}

interface Payment {
  amountCents: number;
}

/** A handler as a user would write it: declined cards fail, amounts ≤ 0 are permanent errors. */
const charge: Handler<StoredMessage> = async (msg) => {
  const { amountCents } = msg.json<Payment>();
  if (amountCents <= 0) throw new PermanentError(`amount ${amountCents} is not payable`);
  if (msg.header('card') === 'declined') throw new CardDeclined('card declined');
};

const SLOW_BACKOFF = { initialMs: 60_000, maxMs: 600_000, multiplier: 2 };

describe('testConsumer: one message, one outcome', () => {
  it('acked: the handler succeeded; the outcome carries the message as the handler saw it', async () => {
    const t = track(testConsumer({ handler: charge }));
    const outcome = await t.push({ id: 'o-1', json: { amountCents: 100 }, headers: { card: 'ok' }, key: 'k' });
    expect(outcome.status).toBe('acked');
    expect(outcome).toMatchObject({ id: 'o-1', attempt: 1 });
    expect(outcome.message.json()).toEqual({ amountCents: 100 });
    expect(outcome.message.header('card')).toBe('ok');
    expect(outcome.message.key).toBe('k');
    expect(t.broker.depth(t.queue)).toEqual({ ready: 0, unacked: 0, delayed: 0 });
    expect(t.consumer.status().handled).toBe(1);
  });

  it('retried: the error, the next attempt and the delay; the message waits on the fake clock, not in real time', async () => {
    const t = track(testConsumer({ handler: charge, retry: { maxAttempts: 3, backoff: { ...SLOW_BACKOFF, jitter: 0 } } }));
    const outcome = await t.push({ id: 'o-2', json: { amountCents: 100 }, headers: { card: 'declined' } });
    expect(outcome.status).toBe('retried');
    if (outcome.status !== 'retried') return;
    expect(outcome.nextAttempt).toBe(2);
    expect(outcome.delayMs).toBe(60_000);
    expect(outcome.error).toBeInstanceOf(CardDeclined);
    // Held by the broker on the fake clock: nothing moves until the test asks.
    expect(t.broker.depth(t.queue).delayed).toBe(1);
    expect(t.clock.pending).toBe(1);
    expect(t.clock.now).toBe(0);
    // next() moves the clock to exactly when the retry is due.
    const second = await t.next('o-2');
    expect(second).toMatchObject({ status: 'retried', attempt: 2, nextAttempt: 3, delayMs: 120_000 });
    expect(t.clock.now).toBe(60_000);
  });

  it('dead-lettered: a PermanentError at once, with the info and the x-sluice headers in the dead-letter queue', async () => {
    const t = track(testConsumer({ handler: charge, retry: { maxAttempts: 3 } }));
    const outcome = await t.push({ id: 'o-3', json: { amountCents: 0 }, key: 'acct-7' });
    expect(outcome.status).toBe('dead-lettered');
    if (outcome.status !== 'dead-lettered') return;
    expect(outcome.error).toBeInstanceOf(PermanentError);
    expect(outcome.info).toMatchObject({
      reason: 'permanent-error',
      attempts: 1,
      source: 'test',
      error: { name: 'PermanentError', message: 'amount 0 is not payable' },
    });
    expect(t.clock.pending).toBe(0);
    const [dead, ...more] = t.broker.drain(t.deadLetterQueue);
    expect(more).toEqual([]);
    expect(dead?.id).toBe('o-3');
    expect(dead?.headers[DEAD_LETTER_HEADERS.reason]).toBe('permanent-error');
    expect(dead?.headers[DEAD_LETTER_HEADERS.error]).toBe('amount 0 is not payable');
    expect(dead?.headers[DEAD_LETTER_HEADERS.key]).toBe('acct-7');
  });

  it('dead-lettered: a body that is not JSON (a DecodeError from msg.json()) is not retried', async () => {
    const t = track(testConsumer({ handler: charge, retry: { maxAttempts: 5 } }));
    const outcome = await t.push({ id: 'o-4', body: '{ not json' });
    expect(outcome.status).toBe('dead-lettered');
    if (outcome.status === 'dead-lettered') expect(outcome.info).toMatchObject({ reason: 'permanent-error', attempts: 1, error: { name: 'DecodeError' } });
  });

  it('given-back: a failurePolicy that gives the message back; the attempt does not count and the broker delivers it again', async () => {
    let runs = 0;
    const t = track(
      testConsumer({
        handler: () => {
          if (++runs === 1) throw new Error('downstream is down');
        },
        failurePolicy: () => ({ action: 'give-back' }),
      }),
    );
    const first = await t.push({ id: 'o-5', json: {} });
    expect(first).toMatchObject({ status: 'given-back', reason: 'failure-policy', attempt: 1 });
    if (first.status === 'given-back') expect(first.error).toEqual(new Error('downstream is down'));
    // Still on its way: the same id cannot be pushed again, but it can be followed.
    await expect(t.push({ id: 'o-5', json: {} })).rejects.toThrow(/still on its way/);
    expect(await t.next('o-5')).toMatchObject({ status: 'acked', attempt: 1 });
    expect(runs).toBe(2);
  });

  it('given-back: refused for overload when a shared pool is full, then handled once it has room', async () => {
    const pool = new WorkerPool({ maxConcurrency: 1, maxQueueSize: 0 });
    let release!: () => void;
    const busy = pool.submit(() => new Promise<void>((r) => (release = r)));
    expect(busy.ok).toBe(true);
    const t = track(testConsumer({ pool, handler: charge }));
    const settled = t.pushUntilSettled({ id: 'o-6', json: { amountCents: 5 } });
    await until(() => t.consumer.status().overloaded > 0, 'the full pool refuses the message');
    release();
    const final = await settled;
    expect(final.status).toBe('acked');
    expect(final.history.map((o) => o.status)).toEqual([...final.history.slice(0, -1).map(() => 'given-back'), 'acked']);
    expect(final.history[0]).toMatchObject({ status: 'given-back', reason: 'overload' });
    await t.close();
    await pool.close();
  });

  it('given-back: a handler still running at close is given back at the stop deadline (reason shutdown), and push resolves with it', async () => {
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const t = track(
      testConsumer({
        handler: (_msg, { signal }) =>
          new Promise<void>((_resolve, reject) => {
            started();
            signal.addEventListener('abort', () => reject(signal.reason));
          }),
      }),
    );
    const outcome = t.push({ id: 'o-7', json: {} });
    await running;
    const stopped = await t.close({ timeoutMs: 0 });
    expect(await outcome).toMatchObject({ status: 'given-back', reason: 'shutdown' });
    expect(stopped).toEqual({ drained: false, givenBack: 1 });
  });
});

describe('testConsumer: retries to the end on the fake clock', () => {
  it('pushUntilSettled runs a 60 s backoff to its dead letter without waiting: the fake time passed is the sum of the delays', async () => {
    const t = track(testConsumer({ handler: charge, retry: { maxAttempts: 4, backoff: SLOW_BACKOFF } })); // default jitter 0.2
    const final = await t.pushUntilSettled({ id: 'o-8', json: { amountCents: 100 }, headers: { card: 'declined' } });
    expect(final.status).toBe('dead-lettered');
    if (final.status !== 'dead-lettered') return;
    expect(final.info).toMatchObject({ reason: 'max-attempts', attempts: 4, error: { name: 'CardDeclined', message: 'card declined' } });
    expect(final.error).toBeInstanceOf(CardDeclined);
    const retries = final.history.filter((o): o is Extract<Outcome, { status: 'retried' }> => o.status === 'retried');
    expect(retries.map((r) => r.nextAttempt)).toEqual([2, 3, 4]);
    expect(final.history.map((o) => o.attempt)).toEqual([1, 2, 3, 4]);
    // 60 s, 120 s, 240 s less up to 20 % jitter each: minutes of backoff...
    retries.forEach((r, i) => {
      expect(r.delayMs).toBeLessThanOrEqual(60_000 * 2 ** i);
      expect(r.delayMs).toBeGreaterThanOrEqual(0.8 * 60_000 * 2 ** i);
    });
    // ...spent on the fake clock only, exactly.
    expect(t.clock.now).toBe(retries.reduce((sum, r) => sum + r.delayMs, 0));
    expect(t.clock.pending).toBe(0);
    expect(t.broker.depth(t.deadLetterQueue).ready).toBe(1);
  });

  it('pushUntilSettled: a message that succeeds on its third attempt ends acked, with its history', async () => {
    const attempts: number[] = [];
    const t = track(
      testConsumer({
        retry: { maxAttempts: 5, backoff: { ...SLOW_BACKOFF, jitter: 0 } },
        handler: (_msg, { attempt }) => {
          attempts.push(attempt);
          if (attempt < 3) throw new Error(`flaky ${attempt}`);
        },
      }),
    );
    const final = await t.pushUntilSettled({ json: {} });
    expect(final.status).toBe('acked');
    expect(final.history.map((o) => o.status)).toEqual(['retried', 'retried', 'acked']);
    expect(attempts).toEqual([1, 2, 3]);
    expect(t.clock.now).toBe(60_000 + 120_000);
    expect(final.id).toMatch(/^test-\d+$/);
  });

  it("a failurePolicy's own delay (a Retry-After) is what the fake clock skips", async () => {
    const t = track(
      testConsumer({
        handler: (msg) => {
          if (msg.deliveryAttempt === 1) throw new Error('429');
        },
        failurePolicy: () => ({ action: 'retry', delayMs: 3_600_000 }),
      }),
    );
    const final = await t.pushUntilSettled({ json: {} });
    expect(final.history.map((o) => o.status)).toEqual(['retried', 'acked']);
    expect(t.clock.now).toBe(3_600_000);
  });

  it("retryDelays: 'real' waits with real timers: the fake clock is not used", async () => {
    const t = track(testConsumer({ retryDelays: 'real', handler: charge, retry: { maxAttempts: 2, backoff: { initialMs: 5, maxMs: 5, jitter: 0 } } }));
    const final = await t.pushUntilSettled({ json: { amountCents: 1 }, headers: { card: 'declined' } });
    expect(final.history.map((o) => o.status)).toEqual(['retried', 'dead-lettered']);
    expect(t.clock.now).toBe(0);
    expect(t.clock.pending).toBe(0);
  });

  it('maxOutcomes stops following a message that never settles', async () => {
    const t = track(testConsumer({ handler: () => Promise.reject(new Error('always')), failurePolicy: () => ({ action: 'give-back' }) }));
    await expect(t.pushUntilSettled({ id: 'loop', json: {} }, { maxOutcomes: 5 })).rejects.toThrow(
      'message "loop" is not settled after 5 outcomes (given-back, given-back, given-back, given-back, given-back)',
    );
  });
});

describe('testConsumer: schema', () => {
  const order = z.object({ amountCents: z.number().int().positive(), currency: z.enum(['EUR', 'USD']) });

  it('a valid body reaches the handler as typed message.data; an invalid one is dead-lettered at once with its issues', async () => {
    const seen: number[] = [];
    const t = track(
      testConsumer({
        schema: order,
        retry: { maxAttempts: 5 },
        handler: (msg) => {
          seen.push(msg.data.amountCents); // typed from the schema
        },
      }),
    );
    const ok = await t.push({ id: 'v-1', json: { amountCents: 250, currency: 'EUR' } });
    expect(ok.status).toBe('acked');
    expectTypeOf(ok.message.data).toEqualTypeOf<{ amountCents: number; currency: 'EUR' | 'USD' }>();
    expect(ok.message.data).toEqual({ amountCents: 250, currency: 'EUR' });

    const bad = await t.push({ id: 'v-2', json: { amountCents: -5, currency: 'GBP' } });
    expect(bad.status).toBe('dead-lettered');
    if (bad.status !== 'dead-lettered') return;
    expect(bad.info.reason).toBe('invalid');
    expect(bad.info.attempts).toBe(1);
    expect(bad.info.issues?.map((i) => i.path).sort()).toEqual(['amountCents', 'currency']);
    expect(seen).toEqual([250]); // the handler never saw the invalid body

    const notJson = await t.push({ id: 'v-3', body: 'nope' });
    expect(notJson).toMatchObject({ status: 'dead-lettered', info: { reason: 'invalid' } });
  });
});

describe('testConsumer: batch handlers', () => {
  /** Marks odd amounts failed; zero amounts failed for good. */
  const insert: BatchHandler<StoredMessage> = (messages, ctx) => {
    for (const msg of messages) {
      const { amountCents } = msg.json<Payment>();
      if (amountCents === 0) ctx.fail(msg, new PermanentError('zero'));
      else if (amountCents % 2 === 1) ctx.fail(msg, new Error('odd'));
    }
  };

  it('pushBatch: the messages go to one call (a 10-minute batch.timeoutMs is not waited for) and each gets its own outcome', async () => {
    const t = track(testConsumer({ batchHandler: insert, batch: { size: 10, timeoutMs: 600_000 }, retry: { maxAttempts: 3 } }));
    const outcomes = await t.pushBatch([
      { id: 'b-1', json: { amountCents: 2 } },
      { id: 'b-2', json: { amountCents: 3 } },
      { id: 'b-3', json: { amountCents: 0 } },
      { id: 'b-4', json: { amountCents: 4 } },
    ]);
    expect(t.batches).toEqual([{ key: undefined, ids: ['b-1', 'b-2', 'b-3', 'b-4'] }]);
    expect(outcomes.map((o) => [o.id, o.status])).toEqual([
      ['b-1', 'acked'],
      ['b-2', 'retried'],
      ['b-3', 'dead-lettered'],
      ['b-4', 'acked'],
    ]);
    expect(outcomes[1]?.status === 'retried' && outcomes[1].error).toEqual(new Error('odd'));
    expect(outcomes[2]?.status === 'dead-lettered' && outcomes[2].info).toMatchObject({ reason: 'permanent-error', error: { message: 'zero' } });
  });

  it('pushBatchUntilSettled: the failed ones come back on the fake clock, together, until they settle', async () => {
    const t = track(testConsumer({ batchHandler: insert, batch: { size: 10 }, retry: { maxAttempts: 3, backoff: { ...SLOW_BACKOFF, jitter: 0 } } }));
    const finals = await t.pushBatchUntilSettled([
      { id: 'c-1', json: { amountCents: 1 } },
      { id: 'c-2', json: { amountCents: 2 } },
      { id: 'c-3', json: { amountCents: 3 } },
    ]);
    expect(finals.map((f) => [f.id, f.status, f.history.length])).toEqual([
      ['c-1', 'dead-lettered', 3],
      ['c-2', 'acked', 1],
      ['c-3', 'dead-lettered', 3],
    ]);
    expect(t.batches.map((b) => b.ids)).toEqual([['c-1', 'c-2', 'c-3'], ['c-1', 'c-3'], ['c-1', 'c-3']]);
    expect(t.clock.now).toBe(60_000 + 120_000);
  });

  it('more messages than batch.size make several calls; batch.key groups them', async () => {
    const t = track(
      testConsumer({
        batchHandler: () => {},
        batch: { size: 2, timeoutMs: 600_000, key: (m) => m.header('tenant') ?? 'none' },
      }),
    );
    const outcomes = await t.pushBatch(['a', 'b', 'a', 'a', 'b'].map((tenant, i) => ({ id: `k-${i}`, json: {}, headers: { tenant } })));
    expect(outcomes.every((o) => o.status === 'acked')).toBe(true);
    const calls = t.batches.map((b) => `${b.key}:${b.ids.join(',')}`).sort();
    expect(calls).toEqual(['a:k-0,k-2', 'a:k-3', 'b:k-1,k-4']);
  });

  it('a batch handler that throws fails every message of the call; a returned { failed } fails those', async () => {
    let call = 0;
    const t = track(
      testConsumer({
        retry: { maxAttempts: 2, backoff: { ...SLOW_BACKOFF, jitter: 0 } },
        batchHandler: (messages) => {
          if (++call === 1) throw new Error('db down');
          return { failed: messages.filter((m) => m.id === 'd-2').map((message) => ({ message, error: new Error('constraint') })) };
        },
      }),
    );
    const finals = await t.pushBatchUntilSettled([{ id: 'd-1', json: {} }, { id: 'd-2', json: {} }]);
    expect(finals[0]?.history.map((o) => o.status)).toEqual(['retried', 'acked']);
    expect(finals[1]?.history.map((o) => o.status)).toEqual(['retried', 'dead-lettered']);
    expect(finals[0]?.history[0]?.status === 'retried' && finals[0].history[0].error).toEqual(new Error('db down'));
    expect(finals[1]?.status === 'dead-lettered' && finals[1].info).toMatchObject({ reason: 'max-attempts', attempts: 2, error: { message: 'constraint' } });
  });

  it('with handler and batchHandler, each message runs handler first and the ones it passes are gathered into one call', async () => {
    const t = track(
      testConsumer({
        handler: async (msg) => {
          // Different handler durations: the batch still waits for all of them.
          for (let i = 0; i < Number(msg.header('turns')); i++) await new Promise<void>((r) => setImmediate(r));
          if (msg.header('valid') === 'no') throw new PermanentError('invalid');
        },
        batchHandler: () => {},
      }),
    );
    const outcomes = await t.pushBatch([
      { id: 'h-1', json: {}, headers: { turns: '3' } },
      { id: 'h-2', json: {}, headers: { turns: '0', valid: 'no' } },
      { id: 'h-3', json: {}, headers: { turns: '1' } },
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['acked', 'dead-lettered', 'acked']);
    expect(t.batches).toEqual([{ key: undefined, ids: ['h-3', 'h-1'] }]);
  });

  it("batchMode: 'bulk' keeps production's rule: a partial batch waits for its size or timeout (here: the flush at close)", async () => {
    const t = track(testConsumer({ batchMode: 'bulk', batchHandler: () => {}, batch: { size: 2, timeoutMs: 600_000 } }));
    const outcome = t.push({ id: 'p-1', json: {} });
    await until(() => t.consumer.status().batching === 1, 'the message is gathered');
    expect(t.batches).toEqual([]);
    await t.close();
    expect(await outcome).toMatchObject({ status: 'acked' });
    expect(t.batches).toEqual([{ key: undefined, ids: ['p-1'] }]);
  });
});

describe('testConsumer: guards', () => {
  it('rejects bad input with errors that say what is wrong', async () => {
    const t = track(testConsumer({ handler: () => {} }));
    await expect(t.push({ json: {}, body: 'x' })).rejects.toThrow('has both "json" and "body"');
    await expect(t.pushBatch([])).rejects.toThrow('needs at least one message');
    await expect(t.pushBatch([{ id: 'x', json: 1 }, { id: 'x', json: 2 }])).rejects.toThrow('was given message id "x" twice');
    await expect(t.next('never-pushed')).rejects.toThrow('no message "never-pushed" was pushed');
    expect(() => testConsumer({ handler: () => {}, retryDelays: 'later' as 'skip' })).toThrow(`option "retryDelays" must be one of 'skip' | 'real'`);
    expect(() => testConsumer({ batch: { size: 5 } })).toThrow('option "handler" (or "batchHandler") must be a function');
  });

  it('a settled id can be pushed again (a redelivered duplicate); next() on a settled message rejects', async () => {
    let runs = 0;
    const t = track(testConsumer({ handler: () => void runs++ }));
    expect((await t.push({ id: 'same', json: {} })).status).toBe('acked');
    await expect(t.next('same')).rejects.toThrow('message "same" is settled');
    expect((await t.push({ id: 'same', json: {} })).status).toBe('acked');
    expect(runs).toBe(2);
  });

  it('close() rejects what still waits (a retry on the fake clock) and refuses new pushes', async () => {
    const t = track(testConsumer({ handler: charge, retry: { maxAttempts: 2 } }));
    expect((await t.push({ id: 'w', json: { amountCents: 1 }, headers: { card: 'declined' } })).status).toBe('retried');
    await t.close();
    await expect(t.next('w')).rejects.toThrow('closed before message "w" had another outcome');
    await expect(t.push({ json: {} })).rejects.toThrow('push() after close()');
    expect(t.consumer.state).toBe('stopped');
  });
});

describe('FakeClock', () => {
  it('runs timers in due order (ties in the order set), only when advanced, including timers set by a callback', () => {
    const clock = new FakeClock();
    const ran: string[] = [];
    clock.setTimeout(() => ran.push('b@20'), 20);
    clock.setTimeout(() => {
      ran.push('a@10');
      clock.setTimeout(() => ran.push('c@15'), 5);
    }, 10);
    clock.setTimeout(() => ran.push('d@20'), 20);
    const cancelled = clock.setTimeout(() => ran.push('never'), 1);
    clock.clearTimeout(cancelled);
    expect(clock.nextAt).toBe(10);
    clock.advance(9);
    expect(ran).toEqual([]);
    clock.advance(11);
    expect(ran).toEqual(['a@10', 'c@15', 'b@20', 'd@20']);
    expect(clock.now).toBe(20);
    expect(clock.pending).toBe(0);
    expect(() => clock.advance(-1)).toThrow(RangeError);
  });
});
