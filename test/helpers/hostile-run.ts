/**
 * One run of the hostile-input property on a broker: publish a batch of hostile messages, consume
 * them with a handler that decodes (or not, or fails) as each case says, wait until every message
 * is handled or dead-lettered, and check what the oracle (hostile.ts) says: the outcome, the
 * handler runs (never more than maxAttempts, whatever the attempt header says), a dead letter per
 * dead-lettered message with a readable reason and the original body, nothing left behind, no
 * `error` event, no unhandled rejection or uncaught exception in the process.
 */
import fc from 'fast-check';
import { expect } from 'vitest';
import type { Consumer, Message } from '../../src/index.js';
import type { StandardSchemaV1 } from '../../src/schema.js';
import { CASE_HEADER, describeCase, expected, Order, type Expectation, type HostileCase } from './hostile.js';
import { until } from './wait.js';

/** A dead letter as read back from the broker's dead-letter queue / stream / topic. */
export interface DeadRecord {
  /** The case: its CASE_HEADER when the message had a hostile id, else x-sluice-message-id. */
  id: string | undefined;
  reason: string | undefined;
  error: string | undefined;
  errorName: string | undefined;
  attempts: string | undefined;
  body: Uint8Array;
}

export interface ConsumerSpec {
  handler: (msg: Message) => Promise<void>;
  schema?: StandardSchemaV1;
  retry: { maxAttempts: number; backoff: { initialMs: number; maxMs: number } };
}

/** What a broker's test provides: one fresh destination per run. */
export interface HostileTarget {
  /** Publishes every case (confirmed by the broker). */
  publish(cases: HostileCase[]): Promise<void>;
  /** Where it is, for a test that looks at the broker itself (JetStream: the stream and durable). */
  stream?: string;
  durable?: string;
  /** Core NATS keeps nothing for a subscriber that is not there yet: publish once the consumer started. */
  publishAfterStart?: boolean;
  consumer(spec: ConsumerSpec): Consumer;
  /** Every dead letter, once `n` are there (and then no more arrive). */
  deadLetters(n: number): Promise<DeadRecord[]>;
  /** Resolves once nothing is left unsettled at the broker (queue, durable, group lag); throws after its guard. */
  settled(): Promise<void>;
  /** Deletes the destination (also when the run failed). */
  remove(): Promise<void>;
}

export interface HostileBroker {
  name: string;
  /** Handler runs a message gets at most (core NATS: 1). */
  maxAttempts: number;
  /** The attempt a case starts at on this broker (RabbitMQ reads the attempt header; the others count themselves). */
  start(c: HostileCase): number;
  target(): Promise<HostileTarget>;
}

/** Unhandled rejections and uncaught exceptions seen in this process since `watchProcess()`. */
export function watchProcess(): { problems: string[]; stop(): void } {
  const problems: string[] = [];
  const onRejection = (reason: unknown) => problems.push(`unhandledRejection: ${String((reason as Error)?.stack ?? reason)}`);
  const onException = (error: Error) => problems.push(`uncaughtException: ${String(error?.stack ?? error)}`);
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return {
    problems,
    stop() {
      process.off('unhandledRejection', onRejection);
      process.off('uncaughtException', onException);
    },
  };
}

const MAX_ATTEMPTS = 3;

/** The case a message is: by its CASE_HEADER when it was published under a hostile id. */
const caseOf = (msg: Message) => msg.header(CASE_HEADER) ?? msg.id;

/** The seed of every hostile property: fixed (HOSTILE_SEED overrides it), printed by fast-check on failure. */
export const HOSTILE_SEED = Number(process.env.HOSTILE_SEED ?? 20261207);

/**
 * Runs one batch through `broker`: true when everything held; a failed check throws with the
 * cases it concerns (fast-check adds the seed and the batch).
 */
export async function runBatch(broker: HostileBroker, cases: HostileCase[], withSchema: boolean): Promise<void> {
  const maxAttempts = Math.min(MAX_ATTEMPTS, broker.maxAttempts);
  const byId = new Map(cases.map((c) => [c.id, c]));
  const want = new Map<string, Expectation>(cases.map((c) => [c.id, expected(c, { schema: withSchema, maxAttempts, start: broker.start(c) })]));
  const calls = new Map<string, number>();
  const handled = new Map<string, number>();
  const dead = new Map<string, { reason: string; error: string; name: string; count: number }>();
  const errors: string[] = [];
  const unknown: string[] = [];
  const watch = watchProcess();
  const target = await broker.target();
  try {
    if (!target.publishAfterStart) await target.publish(cases);
    const consumer = target.consumer({
      schema: withSchema ? Order : undefined,
      retry: { maxAttempts, backoff: { initialMs: 1, maxMs: 5 } },
      handler: async (msg) => {
        const c = byId.get(caseOf(msg));
        if (c === undefined) {
          unknown.push(caseOf(msg));
          return;
        }
        calls.set(c.id, (calls.get(c.id) ?? 0) + 1);
        if (c.mode === 'text') msg.text();
        else if (c.mode === 'json') msg.json();
        else if (c.mode === 'fail') throw new Error(`refused ${c.id}\r\nsecond line\u2028\tü ✓`); // a multi-line message, as stack-like errors are
      },
    });
    consumer.on('handled', ({ message }) => handled.set(caseOf(message), (handled.get(caseOf(message)) ?? 0) + 1));
    consumer.on('deadLettered', ({ message, info }) => {
      const d = dead.get(caseOf(message));
      dead.set(caseOf(message), { reason: info.reason, error: info.error.message, name: info.error.name, count: (d?.count ?? 0) + 1 });
    });
    consumer.on('error', ({ error, during }) => errors.push(`${during}: ${String((error as Error)?.message ?? error)}`));
    await consumer.start();
    if (target.publishAfterStart) await target.publish(cases);
    try {
      await until(() => cases.every((c) => handled.has(c.id) || dead.has(c.id)) || watch.problems.length > 0, 'every message settled', 60_000).catch(() => {
        const open = cases.filter((c) => !handled.has(c.id) && !dead.has(c.id));
        throw new Error(`${broker.name}: ${open.length} message(s) neither handled nor dead-lettered within 60 s, e.g.\n  ${open.slice(0, 5).map(describeCase).join('\n  ')}\nerror events: ${errors.slice(0, 5).join('; ')}`);
      });
    } finally {
      await consumer.stop({ timeoutMs: 5_000 });
    }

    const wrong: string[] = [];
    for (const c of cases) {
      const w = want.get(c.id)!;
      const got = handled.has(c.id) ? 'handled' : dead.has(c.id) ? 'dead-letter' : 'nothing';
      const d = dead.get(c.id);
      const problems: string[] = [];
      if (got !== w.outcome) problems.push(`${got}, expected ${w.outcome}`);
      if ((handled.get(c.id) ?? 0) + (d?.count ?? 0) > 1) problems.push(`settled ${(handled.get(c.id) ?? 0) + (d?.count ?? 0)} times`);
      if (w.reason !== undefined && d !== undefined && (d.reason !== w.reason || d.name !== w.errorName)) problems.push(`dead-lettered as ${d.reason}/${d.name}, expected ${w.reason}/${w.errorName}`);
      if (d !== undefined && d.error.trim() === '') problems.push('dead-lettered with an empty error message');
      if ((calls.get(c.id) ?? 0) !== w.calls) problems.push(`handler ran ${calls.get(c.id) ?? 0} times, expected ${w.calls} (maxAttempts ${maxAttempts})`);
      if (problems.length > 0) wrong.push(`${problems.join('; ')}: ${describeCase(c)}`);
    }
    expect(wrong, `messages that did not end as they should on ${broker.name}`).toEqual([]);
    expect(unknown, 'messages the handler could not match to a case (their id was lost)').toEqual([]);

    const deadIds = cases.filter((c) => want.get(c.id)!.outcome === 'dead-letter').map((c) => c.id);
    const records = await target.deadLetters(deadIds.length);
    const recordProblems: string[] = [];
    const seen = new Set<string>();
    for (const r of records) {
      const c = r.id === undefined ? undefined : byId.get(r.id);
      if (c === undefined) {
        recordProblems.push(`a dead letter with x-sluice-message-id ${JSON.stringify(r.id)} matches no dead-lettered case`);
        continue;
      }
      if (seen.has(c.id)) recordProblems.push(`${c.id} dead-lettered twice`);
      seen.add(c.id);
      const w = want.get(c.id)!;
      if (r.reason !== w.reason) recordProblems.push(`${c.id}: x-sluice-reason ${JSON.stringify(r.reason)}, expected ${w.reason}`);
      if (r.errorName !== w.errorName) recordProblems.push(`${c.id}: x-sluice-error-name ${JSON.stringify(r.errorName)}, expected ${w.errorName}`);
      if (!r.error || r.error.trim() === '') recordProblems.push(`${c.id}: no readable x-sluice-error`);
      if (!/^\d+$/.test(r.attempts ?? '')) recordProblems.push(`${c.id}: x-sluice-attempts ${JSON.stringify(r.attempts)} is not a count`);
      if (!Buffer.from(r.body).equals(Buffer.from(c.body))) recordProblems.push(`${c.id}: the dead letter's body differs from the original (${r.body.length} vs ${c.body.length} bytes)`);
    }
    for (const id of deadIds) if (!seen.has(id)) recordProblems.push(`${describeCase(byId.get(id)!)}: no dead letter`);
    expect(recordProblems, `dead letters on ${broker.name}`).toEqual([]);
    await target.settled();
    expect(errors, `error events on ${broker.name}`).toEqual([]);
    expect(watch.problems, 'unhandled rejections / uncaught exceptions').toEqual([]);
  } finally {
    watch.stop();
    await target.remove();
  }
}

/** The property: `runs` batches of `min`–`max` hostile messages through `broker`, with or without a schema. */
export async function checkHostile(broker: HostileBroker, batch: fc.Arbitrary<HostileCase[]>, options: { withSchema: boolean; runs: number }): Promise<void> {
  // Each run is a real broker round: no shrinking (it would run the broker dozens of times); the
  // seed and path reproduce the failing batch, and the failed check names its cases (the batch
  // itself is too large to print whole).
  const details = await fc.check(
    fc.asyncProperty(batch, (cases) => runBatch(broker, cases, options.withSchema)),
    { numRuns: options.runs, seed: HOSTILE_SEED, endOnFailure: true },
  );
  if (details.failed) {
    const cause = details.errorInstance instanceof Error ? details.errorInstance : new Error(String(details.errorInstance));
    const error = new Error(`hostile input on ${broker.name} failed in run ${details.numRuns} (reproduce: HOSTILE_SEED=${details.seed}, fast-check path "${details.counterexamplePath}"):\n${cause.message}`);
    error.stack = `${error.message}\n${cause.stack ?? ''}`;
    throw error;
  }
}

/**
 * A consumer whose handler fails only `bigId` (retried once, so it goes to the dead-letter path at
 * once), recording what it handled and every error event, started: for a dead letter the
 * destination refuses as too large while the rest must flow.
 */
export async function startWithRefusedDeadLetter(target: HostileTarget, bigId: string): Promise<{ consumer: Consumer; handled: Set<string>; errors: string[] }> {
  const handled = new Set<string>();
  const errors: string[] = [];
  const consumer = target.consumer({
    retry: { maxAttempts: 1, backoff: { initialMs: 1, maxMs: 5 } },
    handler: async (msg) => {
      if (msg.id === bigId) throw new Error('refused');
    },
  });
  consumer.on('handled', ({ message }) => handled.add(message.id));
  consumer.on('error', ({ error, during }) => errors.push(`${during}: ${String((error as Error).message)}`));
  await consumer.start();
  return { consumer, handled, errors };
}
