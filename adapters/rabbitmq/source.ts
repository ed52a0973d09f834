import type { Channel, ConsumeMessage } from 'amqplib';
import { connectAtStart, redactError, withBackoff, type Source, type SourceCapabilities, type SourceContext } from '../../src/adapter/index.js';
import type { WorkerPool } from '../../src/pool/worker-pool.js';
import { RabbitDelivery, type DeliveryScope } from './delivery.js';
import type { QueueDeclaration, ResolvedRabbitOptions } from './options.js';
import { PublishBlockedError, Session } from './session.js';

/** What the source holds now (`consumer.source.status()`). */
export interface RabbitSourceStatus {
  /** Deliveries the runtime refused (pool full, a gate) that are kept unacked to be offered again on resume. */
  held: number;
  /**
   * Whether refused deliveries are held (a quorum queue, or a queue of unknown type) rather than
   * given back at once with `nack` (a classic queue).
   */
  holdsRefused: boolean;
  /** The prefetch in effect. */
  prefetch: number;
}

/** How long held deliveries may wait while the source is not paused before they are offered again anyway. */
const HELD_RECHECK_MS = 100;

/**
 * RabbitMQ's Source: basic.consume with prefetch as the broker-side credit, basic.cancel to
 * pause, a new basic.consume to resume, and a new Session (connection and channels) whenever the
 * old one is lost. Policies (retry, dead letter, overload) stay in the runtime.
 */
export class RabbitSource implements Source {
  readonly name: string;
  /**
   * No delayed retry: RabbitMQ cannot hold a message back (without plugins or delay queues), so
   * the runtime waits out the backoff and then calls `retry(0, n)`, a confirmed republish.
   * A nacked message is delivered again; `basic.cancel` stops deliveries at the broker.
   */
  readonly capabilities: SourceCapabilities = { delayedRetry: false, redelivery: true, pause: true };
  /** Unacked deliveries the queue hands this consumer: the prefetch it opens with. */
  get credit(): number {
    return this.#prefetch;
  }
  #context: SourceContext | undefined;
  #session: Session | undefined;
  #paused = false;
  #stopped = false;
  #recovering: Promise<void> | undefined;
  /** pause/resume/recover change the consumer one at a time, in order. */
  #chain: Promise<void> = Promise.resolve();
  readonly #scope: DeliveryScope;
  /** The prefetch in effect: the option, or the pool's capacity now when it follows an adaptive pool. */
  #prefetch: number;
  #unfollow: (() => void) | undefined;
  /** Set while following a pool: the per-consumer prefetch a classic queue's consumer opens with (the largest capacity). */
  #maxPrefetch: number | undefined;
  /** The prefetch each session's channel has now. */
  readonly #applied = new WeakMap<Session, number>();
  /**
   * A channel-wide (`global`) prefetch beside the per-consumer one: it bounds every unacked
   * delivery of the channel, also those of a consumer tag cancelled by a pause, so that a resumed
   * consumer does not get a fresh window on top of what is still held. Quorum queues refuse it
   * (closing the connection): off for a declared quorum queue, for a queue on the user's own
   * connection that sluice did not declare, and once the broker has refused it.
   */
  #globalQos: boolean;
  /**
   * Refused by the runtime at dispatch (pool full, a gate) on a queue that counts give-backs, in
   * delivery order; deliveries that arrive while some are held join the back. Kept unacked (each
   * keeps its prefetch slot) and offered again, first, when the runtime resumes the source — it
   * always pauses on such a refusal. A `nack` would have the broker deliver the message again and
   * count that delivery: quorum queues drop or dead-letter a message past their `delivery-limit`
   * (RabbitMQ 4.0–4.2 count every `nack` with requeue, 20 by default), so a gate refusing often
   * would walk healthy messages out of the queue. Given back (nacked) when stopping; dropped
   * when their channel dies (RabbitMQ has requeued them).
   */
  #held: RabbitDelivery[] = [];
  /** Offers held deliveries again if no pause came for them (see #watchHeld). */
  #recheck: NodeJS.Timeout | undefined;

  constructor(private readonly o: ResolvedRabbitOptions) {
    this.name = `rabbitmq:${o.queue}`;
    this.#scope = { queue: o.queue, deadLetter: o.deadLetter };
    this.#prefetch = o.prefetch;
    this.#globalQos = o.declare?.type !== 'quorum' && (o.declare !== undefined || o.connection === undefined);
  }

  /**
   * Prefetch follows an adaptive pool's capacity (its current limit + maxQueueSize) as the limit
   * moves (see #applyPrefetch); changes that arrive while one is applied are coalesced into the
   * latest, and a new session opens with the latest. rabbitConsumer calls it when `prefetch` was
   * not given; a fixed pool keeps the plain per-consumer prefetch.
   */
  followPool(pool: WorkerPool, batchSize = 1): void {
    // A fixed pool's capacity never moves: the plain per-consumer prefetch, as before.
    if (pool.status().adaptive === undefined) return;
    const maxPrefetch = this.o.declare?.type === 'quorum' ? 2000 : 65535;
    // Running batches hold their messages in one slot each: room for them beside the capacity (consumerCredit).
    const credit = (running: number, waiting: number) => Math.min(maxPrefetch, Math.max(1, running * batchSize + waiting));
    const capacity = () => credit(pool.limit, pool.status().maxQueueSize);
    this.#prefetch = capacity();
    const status = pool.status();
    this.#maxPrefetch = credit(status.maxConcurrency, status.maxQueueSize);
    this.#unfollow?.();
    this.#unfollow = pool.on('limit', () => {
      const prefetch = capacity();
      if (prefetch === this.#prefetch) return;
      this.#prefetch = prefetch;
      this.#chain = this.#chain.then(async () => {
        const session = this.#session;
        // A later change is queued behind this one, and a new session sets the latest at open.
        if (!session?.alive || this.#prefetch !== prefetch || this.#applied.get(session) === prefetch) return;
        try {
          await this.#applyPrefetch(session, prefetch);
        } catch (error) {
          // The channel died under us; its close event starts recovery, which opens with the latest prefetch.
          this.#context?.report({ type: 'error', error, detail: 'basic.qos' });
        }
      });
    });
  }

  /**
   * Classic queues: a channel-wide (`global`) basic.qos, which bounds every unacked delivery of
   * the consume channel at once, whatever consumer tag it came under (pause and resume make new
   * tags); the per-consumer prefetch was opened at the pool's largest capacity. Quorum queues do
   * not support global QoS: a per-consumer basic.qos, which RabbitMQ applies only to consumers
   * started after it, then basic.cancel + basic.consume.
   */
  async #applyPrefetch(session: Session, prefetch: number): Promise<void> {
    if (this.#globalQos) {
      await session.channel.prefetch(prefetch, true);
      this.#applied.set(session, prefetch);
      return;
    }
    await session.channel.prefetch(prefetch);
    this.#applied.set(session, prefetch);
    const tag = session.consumerTag;
    if (tag === undefined) return; // paused: the next basic.consume takes the new prefetch
    session.consumerTag = undefined;
    await session.channel.cancel(tag);
    if (!this.#paused && !this.#stopped && this.#held.length === 0) await this.#consume(session);
  }

  /** The prefetch in effect now. */
  get prefetch(): number {
    return this.#prefetch;
  }

  /** Deliveries refused by the runtime and held to be offered again on resume. */
  get held(): number {
    return this.#held.length;
  }

  /**
   * Whether a delivery the runtime refuses is held rather than given back: when the queue may count
   * a give-back against a delivery limit — a quorum queue (declared so, or found so when it refused
   * the channel-wide prefetch), or a queue of unknown type (on your own connection, not declared).
   * A classic queue counts nothing (no delivery limit): there a refusal is nacked back at once and
   * frees its prefetch slot. Only classic queues accept a channel-wide prefetch on RabbitMQ before
   * 4.3 (4.3 applies it per consumer, and counts no `nack` either).
   */
  get holdsRefused(): boolean {
    return !this.#globalQos;
  }

  status(): RabbitSourceStatus {
    return { held: this.#held.length, holdsRefused: this.holdsRefused, prefetch: this.#prefetch };
  }

  /** The address of the node the consumer is (or was last) connected to, password removed: with several URLs, which one. */
  get connectedTo(): string {
    return this.o.endpoints?.current ?? this.o.where;
  }

  /** The live consume channel, for what sluice does not wrap (e.g. inspecting the queue); undefined while recovering. */
  get channel(): Channel | undefined {
    return this.#session?.alive ? this.#session.channel : undefined;
  }

  async start(context: SourceContext): Promise<void> {
    this.#context = context;
    const connect = () => connectAtStart(this, this.o.where, this.o.recovery, context, () => this.#open());
    let session = await connect();
    try {
      await this.#consume(session);
    } catch (error) {
      // A queue sluice did not declare turned out to be a quorum queue: consume again without the channel-wide prefetch.
      if (!GLOBAL_QOS_REFUSED.test(`${session.lostReason?.message} ${session.connectionError?.message}`)) {
        await session.close();
        throw error;
      }
      this.#globalQos = false;
      session = await connect();
      await this.#consume(session);
    }
    this.#session = session;
    // A refusal among the first deliveries pauses the source before start() knows its session (the
    // pause found none to cancel): bring the consumer in line now.
    if (this.#paused || this.#stopped || this.#held.length > 0) await this.#reconcile();
    context.report({ type: 'connected', detail: `${this.name} at ${this.connectedTo}` });
  }

  pause(): Promise<void> {
    this.#paused = true;
    this.#clearRecheck();
    return this.#reconcile();
  }

  resume(): Promise<void> {
    this.#paused = false;
    // Held deliveries first, in order; a new basic.consume only once none is left (see #reconcile).
    this.#offerHeld();
    return this.#reconcile();
  }

  stop(): Promise<void> {
    this.#stopped = true;
    this.#releaseHeld();
    return this.#reconcile();
  }

  async close(): Promise<void> {
    this.#stopped = true;
    this.#releaseHeld();
    this.#unfollow?.();
    this.#unfollow = undefined;
    await this.#chain;
    await this.#session?.close();
  }

  /** Opens a session and sets up prefetch and the queues it needs; consuming starts separately. */
  async #open(): Promise<Session> {
    const session = await Session.open(
      this.o,
      (lost, reason) => this.#lost(lost, reason),
      // Reported, not acted on: retries and dead letters refused meanwhile go through the runtime's settlement policy.
      (reason) =>
        this.#context?.report({
          type: 'error',
          error: new PublishBlockedError(`RabbitMQ at ${this.connectedTo} blocks publishing (${reason}): retries and dead letters wait for the alarm to clear`),
          detail: 'connection.blocked',
        }),
    );
    try {
      if (this.#globalQos) {
        await session.channel.prefetch(this.#maxPrefetch ?? this.#prefetch);
        await session.channel.prefetch(this.#prefetch, true);
      } else {
        await session.channel.prefetch(this.#prefetch);
      }
      this.#applied.set(session, this.#prefetch);
      await declareTopology(session.channel, this.o);
      return session;
    } catch (error) {
      await session.close();
      throw new Error(`setting up queue "${this.o.queue}" failed: ${redactError(error)}`, { cause: error });
    }
  }

  async #consume(session: Session): Promise<void> {
    const { consumerTag } = await session.channel.consume(this.o.queue, (raw) => this.#deliver(session, raw), { noAck: false });
    session.consumerTag = consumerTag;
  }

  #deliver(session: Session, raw: ConsumeMessage | null): void {
    if (raw === null) {
      // The broker cancelled us (queue deleted, node down): rebuild everything, as for a lost channel.
      session.consumerTag = undefined;
      this.#lost(session, new Error(`the broker cancelled the consumer of queue "${this.o.queue}"`));
      void session.close();
      return;
    }
    session.acks.track(raw.fields.deliveryTag);
    const delivery = new RabbitDelivery(raw, session, this.#scope);
    // Behind held ones: delivery order is kept, and they are offered on resume.
    if (this.#held.length > 0 && !this.#stopped) {
      this.#held.push(delivery);
      return;
    }
    this.#offer(delivery);
  }

  /**
   * Hands a delivery to the runtime. Refused (the runtime will not touch it again): held when the
   * queue counts give-backs and the refusal is for overload or a gate, else nacked back now.
   * False when refused.
   */
  #offer(delivery: RabbitDelivery): boolean {
    const result = this.#context?.dispatch(delivery) ?? 'stopping';
    if (result === 'accepted') return true;
    if (result === 'stopping' || this.#stopped) {
      // Stopping, or the pool is closed: everything held would be refused the same way.
      delivery.refuse();
      this.#releaseHeld();
      return false;
    }
    if (!this.holdsRefused) {
      delivery.refuse();
      return false;
    }
    this.#held.push(delivery);
    this.#watchHeld();
    return false;
  }

  /** Offers the held deliveries again, in order, until one is refused (it stays first) or we pause. */
  #offerHeld(): void {
    this.#clearRecheck();
    const held = this.#held;
    while (held.length > 0 && !this.#paused && !this.#stopped) {
      const next = held.shift()!;
      // Its channel died: RabbitMQ has requeued it (and delivers it again on the new channel).
      if (next.stale()) continue;
      if (!this.#offer(next)) {
        // #offer put it at the back (or released everything); it was first.
        if (held.length > 1 && held[held.length - 1] === next) held.unshift(held.pop()!);
        return;
      }
    }
  }

  /** Stopping: what is held goes back to the queue (nack with requeue), in order. */
  #releaseHeld(): void {
    this.#clearRecheck();
    const held = this.#held;
    this.#held = [];
    for (const delivery of held) delivery.refuse();
  }

  /**
   * The runtime pauses the source on every refusal and resumes it later, which offers the held
   * deliveries again. Should a pause never reach the source (a pause reason that came and went
   * while an earlier pause or resume was still under way changes nothing at the source), held
   * deliveries would wait forever and the consumer with them: while not paused, they are offered
   * again after a short while.
   */
  #watchHeld(): void {
    if (this.#recheck !== undefined || this.#paused || this.#stopped) return;
    this.#recheck = setTimeout(() => {
      this.#recheck = undefined;
      if (this.#paused || this.#stopped || this.#held.length === 0) return;
      this.#offerHeld();
      if (this.#held.length > 0) this.#watchHeld();
      else void this.#reconcile();
    }, HELD_RECHECK_MS);
    this.#recheck.unref?.();
  }

  #clearRecheck(): void {
    if (this.#recheck === undefined) return;
    clearTimeout(this.#recheck);
    this.#recheck = undefined;
  }

  /** Brings the broker-side consumer in line with paused/stopped, one change at a time. */
  #reconcile(): Promise<void> {
    this.#chain = this.#chain.then(async () => {
      const session = this.#session;
      if (!session?.alive) return; // recovery consumes (or not) when it has a session again
      // While deliveries are held, no new basic.consume: on a quorum queue (per-consumer prefetch)
      // a new consumer tag brings a fresh window, which would join the held ones behind a refusal.
      const wanted = !this.#paused && !this.#stopped && this.#held.length === 0;
      try {
        if (wanted && session.consumerTag === undefined) await this.#consume(session);
        if (!wanted && session.consumerTag !== undefined) {
          const tag = session.consumerTag;
          session.consumerTag = undefined;
          await session.channel.cancel(tag);
        }
      } catch (error) {
        // The channel died under us; its close event starts recovery.
        this.#context?.report({ type: 'error', error, detail: wanted ? 'basic.consume' : 'basic.cancel' });
      }
    });
    return this.#chain;
  }

  #lost(session: Session, reason: Error): void {
    // Held deliveries of a dead channel are stale: RabbitMQ has requeued them and delivers them again.
    if (this.#held.length > 0) this.#held = this.#held.filter((delivery) => !delivery.stale());
    if (GLOBAL_QOS_REFUSED.test(`${reason.message} ${session.connectionError?.message}`)) this.#globalQos = false;
    if (session !== this.#session || this.#stopped || !this.#context) return;
    // The next connect starts with the next node of the list: this one may be stopping.
    this.o.endpoints?.lost();
    this.#context.report({ type: 'disconnected', error: reason, detail: `${this.name}: ${redactError(reason)}` });
    this.#recovering ??= this.#recover().finally(() => (this.#recovering = undefined));
  }

  async #recover(): Promise<void> {
    const context = this.#context!;
    const stopping = context.signal;
    // Close what is left of the old session so nothing of it lingers half-open.
    await this.#session?.close();
    let attempts = 0;
    try {
      const session = await withBackoff(
        (n) => {
          attempts = n;
          return this.#open();
        },
        {
          policy: this.o.recovery.backoff,
          signal: stopping,
          onFailure: (error, attempt, delayMs) =>
            context.report({ type: 'error', error, detail: `${this.name}: recovery attempt ${attempt} failed; next in ${delayMs} ms` }),
        },
      );
      if (this.#stopped) return void (await session.close());
      this.#session = session;
      await this.#reconcile();
      context.report({ type: 'recovered', detail: `${this.name} at ${this.connectedTo}`, attempts });
    } catch (error) {
      if (!stopping.aborted) context.report({ type: 'error', error, detail: 'recovery gave up' });
    }
  }
}

/** RabbitMQ's answer when a quorum queue is consumed on a channel with a global prefetch. */
const GLOBAL_QOS_REFUSED = /does not support global qos/i;

async function declareTopology(channel: Channel, o: ResolvedRabbitOptions): Promise<void> {
  const declare: QueueDeclaration | undefined = o.declare;
  // A dead-letter queue of the same type: beside a quorum queue (a cluster), a classic one would live on one node only.
  const dlqArgs = declare?.type === 'quorum' ? { 'x-queue-type': 'quorum' } : undefined;
  if ('queue' in o.deadLetter) await channel.assertQueue(o.deadLetter.queue, { durable: true, arguments: dlqArgs });
  if (!declare) {
    // Not ours to declare: it must exist (a 404 here names the queue).
    await channel.checkQueue(o.queue);
    return;
  }
  const args: Record<string, unknown> = { ...declare.arguments };
  if (declare.type === 'quorum') args['x-queue-type'] = 'quorum';
  await channel.assertQueue(o.queue, { durable: declare.durable ?? true, arguments: args });
  for (const binding of declare.bindings ?? []) {
    await channel.assertExchange(binding.exchange, binding.exchangeType ?? 'topic', { durable: true });
    await channel.bindQueue(o.queue, binding.exchange, binding.routingKey ?? '#');
  }
}

