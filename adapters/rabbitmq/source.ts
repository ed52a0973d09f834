import type { Channel, ConsumeMessage } from 'amqplib';
import { connectAtStart, redactError, withBackoff, type Source, type SourceCapabilities, type SourceContext } from '../../src/adapter/index.js';
import type { WorkerPool } from '../../src/pool/worker-pool.js';
import { RabbitDelivery, type DeliveryScope } from './delivery.js';
import type { QueueDeclaration, ResolvedRabbitOptions } from './options.js';
import { Session } from './session.js';

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
    if (!this.#paused && !this.#stopped) await this.#consume(session);
  }

  /** The prefetch in effect now. */
  get prefetch(): number {
    return this.#prefetch;
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
    context.report({ type: 'connected', detail: `${this.name} at ${this.o.where}` });
  }

  pause(): Promise<void> {
    this.#paused = true;
    return this.#reconcile();
  }

  resume(): Promise<void> {
    this.#paused = false;
    return this.#reconcile();
  }

  stop(): Promise<void> {
    this.#stopped = true;
    return this.#reconcile();
  }

  async close(): Promise<void> {
    this.#stopped = true;
    this.#unfollow?.();
    this.#unfollow = undefined;
    await this.#chain;
    await this.#session?.close();
  }

  /** Opens a session and sets up prefetch and the queues it needs; consuming starts separately. */
  async #open(): Promise<Session> {
    const session = await Session.open(this.o, (lost, reason) => this.#lost(lost, reason));
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
    // Refused (pool full, a gate, stopping): the runtime will not touch it again; it goes back now.
    if (this.#context?.dispatch(delivery) !== 'accepted') delivery.refuse();
  }

  /** Brings the broker-side consumer in line with paused/stopped, one change at a time. */
  #reconcile(): Promise<void> {
    this.#chain = this.#chain.then(async () => {
      const session = this.#session;
      if (!session?.alive) return; // recovery consumes (or not) when it has a session again
      const wanted = !this.#paused && !this.#stopped;
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
    if (GLOBAL_QOS_REFUSED.test(`${reason.message} ${session.connectionError?.message}`)) this.#globalQos = false;
    if (session !== this.#session || this.#stopped || !this.#context) return;
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
      context.report({ type: 'recovered', detail: `${this.name} at ${this.o.where}`, attempts });
    } catch (error) {
      if (!stopping.aborted) context.report({ type: 'error', error, detail: 'recovery gave up' });
    }
  }
}

/** RabbitMQ's answer when a quorum queue is consumed on a channel with a global prefetch. */
const GLOBAL_QOS_REFUSED = /does not support global qos/i;

async function declareTopology(channel: Channel, o: ResolvedRabbitOptions): Promise<void> {
  if ('queue' in o.deadLetter) await channel.assertQueue(o.deadLetter.queue, { durable: true });
  const declare: QueueDeclaration | undefined = o.declare;
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

