import { MemorySource, type MemoryBroker, type StoredMessage } from '../../adapters/memory/index.js';
import { poolCapacity } from '../adapter/credit.js';
import { Consumer } from '../consumer.js';
import type { StopResult } from '../consumer-events.js';
import type { ConsumerOptions } from '../consumer-options.js';
import type { DeadLetterInfo } from '../dead-letter.js';
import type { BatchHandler, Handler } from '../handler.js';
import type { Headers, Message } from '../message.js';
import type { WorkerPoolOptions } from '../pool/types.js';
import type { WorkerPool } from '../pool/worker-pool.js';
import type { GiveBackReason, Settlement } from '../settlement.js';
import { objectOption, oneOfOption, stringOption } from '../validate.js';
import { FakeClock } from './clock.js';
import { TestBroker, TestSource } from './source.js';

/** A message to push: `json` (encoded as JSON) or `body` (bytes or text); neither: an empty body. */
export interface TestMessage {
  /** Default `test-1`, `test-2`, ... Unique among the messages still on their way. */
  id?: string;
  json?: unknown;
  body?: Uint8Array | string;
  headers?: Headers;
  key?: string;
}

interface OutcomeBase<Data> {
  id: string;
  /** The delivery attempt this outcome ends (1-based). */
  attempt: number;
  /** The message as the handler saw it (`message.data`: what the schema made of it). */
  message: Message<StoredMessage, Data>;
}

/**
 * What the consumer did with one delivery of a message: exactly one of these per delivery.
 * `error` is what the handler threw (or `ctx.fail` was given) when it failed.
 */
export type Outcome<Data = unknown> =
  | (OutcomeBase<Data> & { status: 'acked' })
  | (OutcomeBase<Data> & { status: 'retried'; error: unknown; nextAttempt: number; delayMs: number })
  | (OutcomeBase<Data> & { status: 'dead-lettered'; error: unknown; info: DeadLetterInfo })
  | (OutcomeBase<Data> & { status: 'given-back'; reason: GiveBackReason; error: unknown })
  /** The broker refused the retry or dead letter; the message was set aside and comes back (`error`: the SettlementError). */
  | (OutcomeBase<Data> & { status: 'deferred'; settlement: Settlement['type']; error: Error });

/** The end of a message's way (acked, dead-lettered, or given back at close), with every outcome on the way. */
export type Settled<Data = unknown> = Extract<Outcome<Data>, { status: 'acked' | 'dead-lettered' | 'given-back' }> & {
  history: Outcome<Data>[];
};

/** One `batchHandler` call: the ids it was given, in order, and its batch key. */
export interface BatchCall {
  key: string | undefined;
  ids: string[];
}

export interface TestConsumerOptions<Data = unknown> extends Omit<ConsumerOptions<StoredMessage, Data>, 'pool'> {
  /** Default `{ maxConcurrency: 8, maxQueueSize: 100 }` (more waiting room if `batch.size` needs it). */
  pool?: WorkerPool | WorkerPoolOptions;
  /** The memory queue's name (the dead-letter queue is `<queue>.dlq`). Default `'test'`. */
  queue?: string;
  /**
   * `'skip'` (default): the broker holds delayed redeliveries on a fake clock (`t.clock`), and
   * `next` / `pushUntilSettled` move it to the moment the message is due: no real waiting for
   * backoff. `'real'`: the broker waits with real timers, as in production.
   */
  retryDelays?: 'skip' | 'real';
  /**
   * With `batchHandler`: `'flush'` (default) hands a batch over as soon as every message the test
   * broker holds is gathered (at most `batch.size` per call, grouped by `batch.key`); `'bulk'`
   * waits for `batch.size` or `batch.timeoutMs` (real time), as in production.
   */
  batchMode?: 'flush' | 'bulk';
}

export interface SettleOptions {
  /** Fail instead of following a message for more outcomes than this (a handler that never settles). Default 100. */
  maxOutcomes?: number;
}

interface Waiter<Data> {
  resolve: (outcome: Outcome<Data>) => void;
  reject: (error: Error) => void;
}

interface Track<Data> {
  /** Outcomes nobody has taken with `next` yet, oldest first. */
  outcomes: Outcome<Data>[];
  waiters: Waiter<Data>[];
  /** The error of the last failed attempt, for the outcome that follows it. */
  error: unknown;
  /** Something may still happen to it (not acked, dead-lettered or given back at close). */
  live: boolean;
}

const isFinal = (outcome: Outcome<unknown>): boolean =>
  outcome.status === 'acked' || outcome.status === 'dead-lettered' || (outcome.status === 'given-back' && outcome.reason === 'shutdown');

const OWNER = 'testConsumer';

/**
 * A consumer on an in-memory broker of its own, for unit tests of handlers (Broadway's
 * `test_message` / `test_batch`): push a message, await what the real runtime did with it. Make one
 * with `testConsumer(options)`.
 */
export class TestConsumer<Data = unknown> implements AsyncDisposable {
  /** The real consumer under test: its events, `status()`, `health()`. */
  readonly consumer: Consumer<StoredMessage>;
  /** The in-memory broker it consumes from (read the dead-letter queue with `broker.drain(t.deadLetterQueue)`). */
  readonly broker: MemoryBroker;
  /** The fake clock delayed redeliveries wait on (with `retryDelays: 'skip'`): `clock.now` is the fake time passed. */
  readonly clock: FakeClock;
  readonly queue: string;
  readonly deadLetterQueue: string;
  /** Every `batchHandler` call so far, in order. */
  readonly batches: BatchCall[] = [];
  readonly #broker: TestBroker;
  readonly #skip: boolean;
  readonly #tracks = new Map<string, Track<Data>>();
  readonly #started: Promise<void>;
  #nextId = 1;
  #inHandler = 0;
  #closing = false;
  #closed: Promise<StopResult> | undefined;

  constructor(options: TestConsumerOptions<Data>) {
    const o = objectOption(OWNER, 'options', options) as TestConsumerOptions<Data>;
    const { queue: queueOption, retryDelays, batchMode, pool: poolOption, handler, batchHandler, ...rest } = o;
    this.queue = stringOption(OWNER, 'queue', queueOption, 'test');
    this.deadLetterQueue = `${this.queue}.dlq`;
    this.#skip = oneOfOption(OWNER, 'retryDelays', retryDelays, ['skip', 'real'] as const, 'skip') === 'skip';
    const flush = oneOfOption(OWNER, 'batchMode', batchMode, ['flush', 'bulk'] as const, 'flush') === 'flush';
    const clock = new FakeClock();
    this.clock = clock;
    this.#broker = new TestBroker({ ...(this.#skip ? { timers: clock } : {}), now: () => clock.now });
    this.broker = this.#broker;
    const size = o.batch?.size;
    const pool = poolOption ?? { maxConcurrency: 8, maxQueueSize: typeof size === 'number' && Number.isInteger(size) && size > 100 ? size : 100 };
    const source = new TestSource(
      new MemorySource({ broker: this.#broker, queue: this.queue, prefetch: poolCapacity(pool), deadLetterQueue: this.deadLetterQueue }),
      this.#broker,
      this.queue,
      flush && batchHandler !== undefined,
      () => this.#inHandler,
    );
    const consumerOptions: ConsumerOptions<StoredMessage, Data> = { ...rest, pool };
    if (handler !== undefined) consumerOptions.handler = batchHandler === undefined || typeof handler !== 'function' ? handler : this.#counted(handler);
    if (batchHandler !== undefined) consumerOptions.batchHandler = typeof batchHandler === 'function' ? this.#recorded(batchHandler) : batchHandler;
    this.consumer = new Consumer<StoredMessage>(source, consumerOptions);
    this.#listen();
    this.#started = this.consumer.start();
    // A start that fails is reported by the push that awaits it, not as an unhandled rejection.
    this.#started.catch(() => {});
  }

  /** Publishes one message and resolves with the outcome of its delivery (a retry is one outcome: see `next`). */
  push(message: TestMessage): Promise<Outcome<Data>> {
    let ids: string[];
    try {
      ids = this.#publish([message], 'push');
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#started.then(() => this.next(ids[0]!));
  }

  /** Publishes one message and follows it through its retries to the end: acked, dead-lettered (or given back at close). */
  pushUntilSettled(message: TestMessage, options: SettleOptions = {}): Promise<Settled<Data>> {
    let ids: string[];
    try {
      ids = this.#publish([message], 'pushUntilSettled');
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#started.then(() => this.#follow(ids[0]!, options));
  }

  /**
   * Publishes the messages at once (with `batchHandler` they are gathered into batches by the
   * runtime's rules) and resolves with each one's outcome, in the order given.
   */
  pushBatch(messages: TestMessage[]): Promise<Outcome<Data>[]> {
    let ids: string[];
    try {
      ids = this.#publish(messages, 'pushBatch');
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#started.then(() => Promise.all(ids.map((id) => this.next(id))));
  }

  /** `pushBatch`, then follows every message to its end as `pushUntilSettled` does. */
  pushBatchUntilSettled(messages: TestMessage[], options: SettleOptions = {}): Promise<Settled<Data>[]> {
    let ids: string[];
    try {
      ids = this.#publish(messages, 'pushBatchUntilSettled');
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#started.then(() => Promise.all(ids.map((id) => this.#follow(id, options))));
  }

  /**
   * The next outcome of a message already pushed (e.g. after `retried`). With `retryDelays: 'skip'`
   * a message waiting for its retry delay is released by moving the fake clock to when it is due.
   * Rejects if nothing more can happen to it.
   */
  next(id: string): Promise<Outcome<Data>> {
    const track = this.#tracks.get(id);
    if (track === undefined) return Promise.reject(new TypeError(`${OWNER}: no message "${id}" was pushed`));
    const ready = track.outcomes.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (!track.live) return Promise.reject(new Error(`${OWNER}: message "${id}" is settled: nothing more will happen to it`));
    if (this.#closing) return Promise.reject(new Error(`${OWNER}: closed before message "${id}" had another outcome`));
    const outcome = new Promise<Outcome<Data>>((resolve, reject) => track.waiters.push({ resolve, reject }));
    if (this.#skip) {
      const due = this.#broker.dueAt(id);
      if (due !== undefined) this.clock.advanceTo(due);
    }
    return outcome;
  }

  /**
   * Stops the consumer (in-flight handlers finish; see `stopTimeoutMs`), cancels delayed
   * redeliveries and rejects every `next` still waiting. Idempotent.
   */
  close(options: { timeoutMs?: number } = {}): Promise<StopResult> {
    this.#closed ??= this.#close(options.timeoutMs);
    return this.#closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(timeoutMs: number | undefined): Promise<StopResult> {
    this.#closing = true;
    await this.#started.catch(() => {});
    const result = await this.consumer.stop(timeoutMs === undefined ? {} : { timeoutMs });
    this.#broker.close();
    for (const [id, track] of this.#tracks) {
      for (const waiter of track.waiters.splice(0)) waiter.reject(new Error(`${OWNER}: closed before message "${id}" had another outcome`));
    }
    return result;
  }

  async #follow(id: string, options: SettleOptions): Promise<Settled<Data>> {
    const max = options.maxOutcomes ?? 100;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`${OWNER}: option "maxOutcomes" must be an integer >= 1, got ${String(max)}`);
    const history: Outcome<Data>[] = [];
    for (;;) {
      const outcome = await this.next(id);
      history.push(outcome);
      if (isFinal(outcome)) return { ...(outcome as Extract<Outcome<Data>, { status: 'acked' | 'dead-lettered' | 'given-back' }>), history };
      if (history.length >= max) {
        throw new Error(`${OWNER}: message "${id}" is not settled after ${max} outcomes (${history.map((h) => h.status).join(', ')})`);
      }
    }
  }

  /** Checks every message first, then publishes them all in one go (one broker turn delivers them together). */
  #publish(messages: TestMessage[], method: string): string[] {
    if (this.#closing) throw new Error(`${OWNER}: ${method}() after close()`);
    if (!Array.isArray(messages) || messages.length === 0) throw new TypeError(`${OWNER}: ${method}() needs at least one message`);
    const prepared = messages.map((m, i) => this.#prepare(m, messages.length === 1 ? method : `${method}()[${i}]`));
    const seen = new Set<string>();
    for (const { id } of prepared) {
      if (seen.has(id)) throw new TypeError(`${OWNER}: ${method}() was given message id "${id}" twice`);
      seen.add(id);
      if (this.#tracks.get(id)?.live) {
        throw new TypeError(`${OWNER}: message "${id}" is still on its way (retried or given back): follow it with next("${id}"), or push another id`);
      }
    }
    for (const { id, body, publish } of prepared) {
      this.#tracks.set(id, { outcomes: [], waiters: [], error: undefined, live: true });
      this.#broker.publish(this.queue, body, publish);
    }
    return prepared.map((p) => p.id);
  }

  #prepare(message: TestMessage, where: string) {
    const m = objectOption(OWNER, where, message) as TestMessage;
    const id = m.id === undefined ? this.#freshId() : stringOption(OWNER, `${where}.id`, m.id);
    if (m.json !== undefined && m.body !== undefined) throw new TypeError(`${OWNER}: ${where} has both "json" and "body"; give one`);
    let body: Uint8Array | string = '';
    if (m.json !== undefined) {
      const text = JSON.stringify(m.json);
      if (typeof text !== 'string') throw new TypeError(`${OWNER}: ${where}.json cannot be encoded as JSON (${typeof m.json})`);
      body = text;
    } else if (m.body !== undefined) {
      if (typeof m.body !== 'string' && !(m.body instanceof Uint8Array)) throw new TypeError(`${OWNER}: ${where}.body must be a string or a Uint8Array`);
      body = m.body;
    }
    const headers = m.headers === undefined ? undefined : (objectOption(OWNER, `${where}.headers`, m.headers) as Headers);
    const key = m.key === undefined ? undefined : stringOption(OWNER, `${where}.key`, m.key);
    return { id, body, publish: { id, ...(key === undefined ? {} : { key }), ...(headers === undefined ? {} : { headers }) } };
  }

  #freshId(): string {
    let id: string;
    do id = `test-${this.#nextId++}`;
    while (this.#tracks.has(id));
    return id;
  }

  #track(id: string): Track<Data> {
    let track = this.#tracks.get(id);
    // A message published straight to `broker` is followed too.
    if (track === undefined) this.#tracks.set(id, (track = { outcomes: [], waiters: [], error: undefined, live: true }));
    return track;
  }

  #listen(): void {
    const c = this.consumer;
    const message = (m: Message) => m as Message<StoredMessage, Data>;
    c.on('failed', ({ message: m, error }) => {
      this.#track(m.id).error = error;
    });
    c.on('handled', ({ message: m }) => this.#record({ status: 'acked', id: m.id, attempt: m.deliveryAttempt, message: message(m) }));
    c.on('retried', ({ message: m, nextAttempt, delayMs }) =>
      this.#record({ status: 'retried', id: m.id, attempt: m.deliveryAttempt, message: message(m), error: this.#takeError(m.id), nextAttempt, delayMs }),
    );
    c.on('deadLettered', ({ message: m, info }) =>
      this.#record({ status: 'dead-lettered', id: m.id, attempt: m.deliveryAttempt, message: message(m), error: this.#takeError(m.id), info }),
    );
    c.on('givenBack', ({ message: m, reason }) =>
      this.#record({ status: 'given-back', id: m.id, attempt: m.deliveryAttempt, message: message(m), reason, error: this.#takeError(m.id) }),
    );
    // The handler's error stays for the outcome once the set-aside message comes back.
    c.on('deferred', ({ message: m, settlement, error }) =>
      this.#record({ status: 'deferred', id: m.id, attempt: m.deliveryAttempt, message: message(m), settlement, error }),
    );
  }

  #takeError(id: string): unknown {
    const track = this.#track(id);
    const error = track.error;
    track.error = undefined;
    return error;
  }

  #record(outcome: Outcome<Data>): void {
    const track = this.#track(outcome.id);
    if (outcome.status === 'acked') track.error = undefined;
    if (isFinal(outcome)) track.live = false;
    const waiter = track.waiters.shift();
    if (waiter !== undefined) waiter.resolve(outcome);
    else track.outcomes.push(outcome);
  }

  /** With `batchHandler` too, messages in `handler` are still to be gathered: the flush credit counts them. */
  #counted(handler: Handler<StoredMessage, Data>): Handler<StoredMessage, Data> {
    return (message, ctx) => {
      this.#inHandler++;
      let result: ReturnType<Handler<StoredMessage, Data>>;
      try {
        result = handler(message, ctx);
      } catch (error) {
        this.#inHandler--;
        throw error;
      }
      if (result !== undefined && result !== null && typeof (result as PromiseLike<void>).then === 'function') {
        return Promise.resolve(result).finally(() => {
          this.#inHandler--;
        });
      }
      this.#inHandler--;
      return result;
    };
  }

  #recorded(batchHandler: BatchHandler<StoredMessage, Data>): BatchHandler<StoredMessage, Data> {
    return (messages, ctx) => {
      this.batches.push({ key: ctx.key, ids: messages.map((m) => m.id) });
      return batchHandler(messages, ctx);
    };
  }
}

/**
 * A consumer for unit tests: the real runtime on an in-memory broker of its own, any
 * ConsumerOptions (`pool` optional). `await t.push({ json })` resolves with what happened to the
 * message; `pushUntilSettled` runs its retries on a fake clock; `pushBatch` for `batchHandler`.
 * `await t.close()` (or `await using t = testConsumer(...)`) at the end.
 */
export function testConsumer<Data = unknown>(options: TestConsumerOptions<Data>): TestConsumer<Data> {
  return new TestConsumer<Data>(options);
}
