import type { Channel, ConsumeMessage } from 'amqplib';
import { withRetries } from '../../src/reconnect.js';
import { redactError } from '../../src/redact.js';
import type { Source, SourceContext } from '../../src/source.js';
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
  #context: SourceContext | undefined;
  #session: Session | undefined;
  #paused = false;
  #stopped = false;
  #recovering: Promise<void> | undefined;
  /** pause/resume/recover change the consumer one at a time, in order. */
  #chain: Promise<void> = Promise.resolve();
  #retries = new Map<NodeJS.Timeout, () => Promise<void>>();
  readonly #scope: DeliveryScope;

  constructor(private readonly o: ResolvedRabbitOptions) {
    this.name = `rabbitmq:${o.queue}`;
    this.#scope = { queue: o.queue, deadLetter: o.deadLetter, later: (delayMs, republish) => this.#later(delayMs, republish) };
  }

  /** The live consume channel, for what sluice does not wrap (e.g. inspecting the queue); undefined while recovering. */
  get channel(): Channel | undefined {
    return this.#session?.alive ? this.#session.channel : undefined;
  }

  async start(context: SourceContext): Promise<void> {
    this.#context = context;
    const session = await withRetries(() => this.#open(), {
      policy: { maxAttempts: this.o.startAttempts, delayMs: (n) => this.o.backoff.delayMs(n) },
      signal: context.signal,
      onRetry: (error, attempt, delayMs) =>
        context.report({ type: 'error', error, detail: `connect attempt ${attempt} of ${this.o.startAttempts} failed; next in ${delayMs} ms` }),
    }).catch((error: unknown) => {
      throw new Error(`${this.name}: could not start after ${this.o.startAttempts} attempt(s): ${redactError(error)}`, { cause: error });
    });
    this.#session = session;
    await this.#consume(session);
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
    // Retries waiting out their backoff are republished now rather than dropped or delayed.
    const pending = [...this.#retries.entries()];
    this.#retries.clear();
    for (const [timer, republish] of pending) {
      clearTimeout(timer);
      await republish().catch((error: unknown) => this.#context?.report({ type: 'error', error, detail: 'retry on close' }));
    }
    await this.#chain;
    await this.#session?.close();
  }

  /** Opens a session and sets up prefetch and the queues it needs; consuming starts separately. */
  async #open(): Promise<Session> {
    const session = await Session.open(this.o, (lost, reason) => this.#lost(lost, reason));
    try {
      await session.channel.prefetch(this.o.prefetch);
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
    this.#context?.dispatch(new RabbitDelivery(raw, session, this.#scope));
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
      const session = await withRetries(
        (n) => {
          attempts = n;
          return this.#open();
        },
        {
          policy: this.o.backoff,
          signal: stopping,
          onRetry: (error, attempt, delayMs) => context.report({ type: 'error', error, detail: `recovery attempt ${attempt} failed; next in ${delayMs} ms` }),
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

  #later(delayMs: number, republish: () => Promise<void>): void {
    const timer = setTimeout(() => {
      this.#retries.delete(timer);
      republish().catch((error: unknown) => this.#context?.report({ type: 'error', error, detail: 'retry republish' }));
    }, delayMs);
    this.#retries.set(timer, republish);
  }
}

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

