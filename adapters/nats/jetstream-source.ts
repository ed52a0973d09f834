import { AckPolicy, DeliverPolicy, nanos, type ConsumerConfig, type ConsumerMessages, type Consumer as JsConsumer, type JetStreamClient, type JetStreamManager, type JsMsg, type NatsConnection } from 'nats';
import { abortableDelay, withRetries } from '../../src/reconnect.js';
import { redactError } from '../../src/redact.js';
import type { RetryPolicy } from '../../src/retry.js';
import type { Source, SourceContext } from '../../src/source.js';
import { openConnection, watchStatus, type ResolvedConnection } from './connection.js';
import { JetStreamDelivery, type JetStreamScope } from './jetstream-delivery.js';

export interface ResolvedJetStreamOptions {
  connection: ResolvedConnection;
  stream: string;
  durable: string;
  /** Create or update the durable with this; undefined: it must exist. */
  consumerConfig: Partial<ConsumerConfig> | undefined;
  deadLetterSubject: string;
  /** The pool's capacity: the most this source may have unacked at the server. */
  capacity: number;
  pullExpiresMs: number;
  startAttempts: number;
  backoff: RetryPolicy;
}


/**
 * JetStream pull consumer whose pulls never ask for more than the pool can take: each pull
 * requests at most the pool's free places minus what earlier pulls may still deliver, so the
 * messages unacked at the server stay within the pool's capacity. Several pulls overlap so the
 * pipe does not empty between batches.
 */
export class JetStreamSource implements Source {
  readonly name: string;
  #ctx!: SourceContext;
  #nc: NatsConnection | undefined;
  #owned = false;
  #js!: JetStreamClient;
  #consumer: JsConsumer | undefined;
  #ackWaitMs = 30_000;
  #paused = false;
  #stopped = false;
  /** Requested from the server and not yet delivered. */
  #outstanding = 0;
  #batches = new Set<ConsumerMessages>();
  /** Dispatched and not settled, with the time they arrived: they need `working()` before ack_wait ends. */
  #live = new Map<JsMsg, number>();
  #keepAlive: NodeJS.Timeout | undefined;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;
  readonly #scope: JetStreamScope;
  /**
   * Acks of this event-loop turn, sent together: one socket write instead of one per message
   * (nats.js flushes at the first microtask after a publish). Still unacked at the server, so
   * they count against the pull size.
   */
  #acks: JsMsg[] = [];
  #notifyScheduled = false;
  /** Set when a pull ended in an error: the loop recovers (backoff, rebind) before pulling again. */
  #pullError: unknown;
  #jsm: JetStreamManager | undefined;
  /** When the durable was last looked up after an empty pull. */
  #lastLookup = 0;

  constructor(private readonly o: ResolvedJetStreamOptions) {
    this.name = `nats:${o.stream}/${o.durable}`;
    this.#scope = {
      stream: o.stream,
      deadLetterSubject: o.deadLetterSubject,
      js: undefined as never,
      ack: (msg) => {
        if (this.#acks.push(msg) === 1) setImmediate(this.#flushAcks);
      },
      settled: (msg) => {
        this.#live.delete(msg);
        this.#notifySoon();
      },
    };
  }

  async start(ctx: SourceContext): Promise<void> {
    this.#ctx = ctx;
    await withRetries(() => this.#open(), {
      policy: { maxAttempts: this.o.startAttempts, delayMs: (n) => this.o.backoff.delayMs(n) },
      signal: ctx.signal,
      onRetry: (error, attempt, delayMs) => ctx.report({ type: 'error', error, detail: `start attempt ${attempt} of ${this.o.startAttempts} failed; next in ${delayMs} ms` }),
    }).catch((error: unknown) => {
      throw new Error(`${this.name}: could not start after ${this.o.startAttempts} attempt(s): ${redactError(error)}`, { cause: error });
    });
    watchStatus(this.#nc!, (event) => ctx.report(event as never));
    this.#keepAlive = setInterval(() => this.#keepWorking(), Math.max(100, this.#ackWaitMs / 3));
    this.#loop = this.#pullLoop();
    ctx.report({ type: 'connected', detail: `${this.name} at ${this.o.connection.where}` });
  }

  async pause(): Promise<void> {
    this.#paused = true;
  }

  async resume(): Promise<void> {
    this.#paused = false;
    this.#notify();
  }

  async stop(): Promise<void> {
    // Pulls already sent keep delivering until they end; what arrives now is given back (nak) at once.
    this.#stopped = true;
    this.#notify();
  }

  async close(): Promise<void> {
    this.#stopped = true;
    this.#flushAcks();
    this.#notify();
    for (const batch of this.#batches) batch.stop();
    await this.#loop;
    clearInterval(this.#keepAlive);
    if (this.#owned) await this.#nc?.drain().catch(() => this.#nc?.close());
  }

  /** Connects and finds (or creates) the durable consumer; the errors name the stream and durable. */
  async #open(): Promise<void> {
    if (!this.#nc) {
      const { nc, owned } = await openConnection(this.o.connection, this.name);
      this.#nc = nc;
      this.#owned = owned;
      this.#js = nc.jetstream();
      this.#scope.js = this.#js;
    }
    await this.#bindConsumer();
  }

  async #bindConsumer(): Promise<void> {
    const jsm = (this.#jsm ??= await this.#nc!.jetstreamManager());
    const { stream, durable, consumerConfig } = this.o;
    try {
      await jsm.streams.info(stream);
    } catch (cause) {
      throw new Error(`stream "${stream}" not found (${redactError(cause)})`, { cause });
    }
    if (consumerConfig) {
      const config: Partial<ConsumerConfig> = {
        deliver_policy: DeliverPolicy.All,
        ack_wait: nanos(30_000),
        ...consumerConfig,
        durable_name: durable,
        ack_policy: AckPolicy.Explicit,
        // sluice decides when a message is dead: the server must not stop delivering first.
        max_deliver: -1,
        max_ack_pending: Math.max(consumerConfig.max_ack_pending ?? 0, this.o.capacity),
      };
      const exists = await jsm.consumers.info(stream, durable).then(
        () => true,
        () => false,
      );
      if (exists) await jsm.consumers.update(stream, durable, config);
      else await jsm.consumers.add(stream, config);
    }
    let info;
    try {
      info = await jsm.consumers.info(stream, durable);
    } catch (cause) {
      throw new Error(`consumer "${durable}" not found on stream "${stream}" (${redactError(cause)}); give consumerConfig to have it created`, { cause });
    }
    this.#ackWaitMs = Math.max(1000, Number(info.config.ack_wait ?? nanos(30_000)) / 1e6);
    this.#consumer = await this.#js.consumers.get(stream, durable);
  }

  async #pullLoop(): Promise<void> {
    // Fewer, larger pulls: each pull costs a subscription and a round trip (half the capacity measured best).
    const minPull = Math.max(1, Math.floor(this.o.capacity / 2));
    let failures = 0;
    while (!this.#stopped) {
      if (this.#paused) {
        await this.#changed(1000);
        continue;
      }
      try {
        await this.#ctx.whenAvailable(this.#ctx.signal);
      } catch {
        break; // stopping
      }
      if (this.#pullError !== undefined) {
        // A pull that ended in an error (the durable deleted, missed heartbeats): same path as a failed fetch.
        const error = this.#pullError;
        this.#pullError = undefined;
        await this.#recover(error, ++failures);
        continue;
      }
      const want = this.#ctx.freeCapacity() - this.#outstanding - this.#acks.length;
      // Wait for a worthwhile pull, unless nothing is outstanding at all (then any room is worth it).
      if (want < (this.#outstanding === 0 ? 1 : minPull)) {
        await this.#changed(100);
        continue;
      }
      try {
        const batch = await this.#consumer!.fetch({ max_messages: want, expires: this.o.pullExpiresMs });
        this.#outstanding += want;
        this.#batches.add(batch);
        void this.#drainBatch(batch, want);
        if (failures > 0) this.#ctx.report({ type: 'recovered', detail: this.name, attempts: failures });
        failures = 0;
      } catch (error) {
        if (this.#stopped) break;
        await this.#recover(error, ++failures);
      }
    }
    // Let pulls already sent end (they deliver to the runtime, which gives back while stopping).
    while (this.#batches.size > 0) await this.#changed(100);
  }

  async #recover(error: unknown, failures: number): Promise<void> {
    this.#ctx.report({ type: failures === 1 ? 'disconnected' : 'error', error, detail: `${this.name}: pull failed: ${redactError(error)}` });
    // Pulls still waiting were sent to what failed: end them now rather than at their expiry (what
    // they had delivered is dispatched; what the server sends after is unacked and comes back).
    for (const batch of this.#batches) batch.stop();
    await abortableDelay(this.o.backoff.delayMs(failures), this.#ctx.signal).catch(() => {});
    if (this.#stopped) return;
    // The consumer may have been deleted or the server restarted: look it up (or create it) again.
    await this.#bindConsumer().catch((e: unknown) => this.#ctx.report({ type: 'error', error: e, detail: 'rebinding the consumer' }));
  }

  async #drainBatch(batch: ConsumerMessages, requested: number): Promise<void> {
    let delivered = 0;
    try {
      for await (const msg of batch) {
        delivered++;
        this.#outstanding--;
        this.#live.set(msg, performance.now());
        this.#ctx.dispatch(new JetStreamDelivery(msg, this.#scope));
      }
    } catch (error) {
      if (!this.#stopped) this.#pullError = error;
    } finally {
      this.#outstanding -= requested - delivered;
      this.#batches.delete(batch);
      if (delivered === 0 && !this.#stopped && this.#pullError === undefined) void this.#lookUpDurable();
      this.#notify();
    }
  }

  /**
   * A pull that ends empty may mean an idle stream, or a durable deleted under us: the server
   * does not answer pulls for a consumer that does not exist, so the pull just expires. Look it
   * up (at most once per pull expiry) and recover if it is gone.
   */
  async #lookUpDurable(): Promise<void> {
    const now = performance.now();
    if (!this.#jsm || now - this.#lastLookup < this.o.pullExpiresMs) return;
    this.#lastLookup = now;
    try {
      await this.#jsm.consumers.info(this.o.stream, this.o.durable);
    } catch (error) {
      if (this.#stopped || !/not found/i.test(redactError(error))) return; // a timeout or a cut: the pulls report those
      this.#pullError = error;
      this.#notify();
    }
  }

  /** Slow but healthy handlers (and messages waiting in the pool's queue) must not be redelivered. */
  #keepWorking(): void {
    const due = performance.now() - this.#ackWaitMs / 3;
    for (const [msg, since] of this.#live) if (since <= due) msg.working();
  }

  readonly #flushAcks = (): void => {
    const acks = this.#acks;
    this.#acks = [];
    for (const msg of acks) {
      try {
        msg.ack();
      } catch (error) {
        // A closed connection: the server redelivers it after ack_wait; the runtime copes with the duplicate.
        this.#ctx.report({ type: 'error', error, detail: `${this.name}: ack` });
      }
      this.#live.delete(msg);
    }
    this.#notify();
  };

  /** After the pool has freed the slot (the task ends right after it settles), look for more work. */
  #notifySoon(): void {
    if (this.#notifyScheduled) return;
    this.#notifyScheduled = true;
    setImmediate(() => {
      this.#notifyScheduled = false;
      this.#notify();
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }

  /** Resolves on the next settle, resume, batch end or stop, or after `ms` at the latest. */
  #changed(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }
}
