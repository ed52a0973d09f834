import type { Msg, NatsConnection, Subscription } from 'nats';
import { deadLetterHeaders, type DeadLetterInfo } from '../../src/dead-letter.js';
import { Message } from '../../src/message.js';
import { withRetries } from '../../src/reconnect.js';
import { redactError } from '../../src/redact.js';
import { retryPolicy } from '../../src/retry.js';
import type { Delivery, Source, SourceContext } from '../../src/source.js';
import { openConnection, watchStatus, type ResolvedConnection } from './connection.js';
import { fromNatsHeaders, toNatsHeaders } from './message.js';

export interface ResolvedCoreOptions {
  connection: ResolvedConnection;
  subject: string;
  queueGroup: string | undefined;
  deadLetterSubject: string | undefined;
  startAttempts: number;
}

/** The error a requester gets, as NATS services (nats.js `services`) send it. */
function errorReply(msg: Msg, code: number, description: string): void {
  msg.respond(new Uint8Array(), { headers: toNatsHeaders({ 'Nats-Service-Error': description, 'Nats-Service-Error-Code': String(code) }) });
}

/**
 * Core NATS: at most once. There is nothing to ack and nothing the server redelivers, so an
 * outcome can only be answered (requests) or dropped and counted (plain messages).
 */
export class CoreSource implements Source {
  readonly name: string;
  #ctx!: SourceContext;
  #nc: NatsConnection | undefined;
  #owned = false;
  #subscription: Subscription | undefined;
  /** Plain messages that could not be processed (overload, failure, shutdown) and had nowhere to go. */
  dropped = 0;

  constructor(private readonly o: ResolvedCoreOptions) {
    this.name = `nats:${o.subject}${o.queueGroup ? ` (${o.queueGroup})` : ''}`;
  }

  async start(ctx: SourceContext): Promise<void> {
    this.#ctx = ctx;
    const opened = await withRetries(() => openConnection(this.o.connection, this.name), {
      policy: retryPolicy({ maxAttempts: this.o.startAttempts, backoff: { initialMs: 100, maxMs: 2000 } }, this.name),
      signal: ctx.signal,
    }).catch((error: unknown) => {
      throw new Error(`${this.name}: could not start after ${this.o.startAttempts} attempt(s): ${redactError(error)}`, { cause: error });
    });
    this.#nc = opened.nc;
    this.#owned = opened.owned;
    watchStatus(opened.nc, (event) => ctx.report(event as never));
    this.#subscribe();
    // A round trip, so that messages published after start() resolves are seen.
    await opened.nc.flush();
    ctx.report({ type: 'connected', detail: `${this.name} at ${this.o.connection.where}` });
  }

  /**
   * In a queue group: unsubscribes, so the other members take the traffic meanwhile. Alone:
   * stays subscribed, because an unsubscribed subject loses messages without anyone counting
   * them; what the pool cannot take is answered (503) or dropped and counted instead.
   */
  async pause(): Promise<void> {
    if (this.o.queueGroup) this.#unsubscribe();
  }

  async resume(): Promise<void> {
    if (!this.#subscription && this.#nc && !this.#nc.isClosed()) this.#subscribe();
  }

  async stop(): Promise<void> {
    this.#unsubscribe();
  }

  async close(): Promise<void> {
    this.#unsubscribe();
    if (this.#owned) await this.#nc?.drain().catch(() => this.#nc?.close());
  }

  #unsubscribe(): void {
    this.#subscription?.unsubscribe();
    this.#subscription = undefined;
  }

  #subscribe(): void {
    this.#subscription = this.#nc!.subscribe(this.o.subject, {
      queue: this.o.queueGroup,
      callback: (error, msg) => {
        if (error) return this.#ctx.report({ type: 'error', error, detail: `${this.name}: subscription` });
        this.#ctx.dispatch(this.#delivery(msg));
      },
    });
  }

  #delivery(msg: Msg): Delivery<Msg> {
    const message = new Message<Msg>({
      body: msg.data,
      headers: fromNatsHeaders(msg.headers),
      id: msg.headers?.get('Nats-Msg-Id') || `${msg.subject}:${msg.sid}:${Date.now().toString(36)}:${Math.random().toString(36).slice(2, 8)}`,
      key: msg.subject,
      source: this.o.subject,
      raw: msg,
    });
    const fail = async (info: DeadLetterInfo) => {
      if (msg.reply) errorReply(msg, 500, info.error.message);
      if (this.o.deadLetterSubject) {
        this.#nc!.publish(this.o.deadLetterSubject, msg.data, { headers: toNatsHeaders(deadLetterHeaders(message, info)) });
      } else if (!msg.reply) this.dropped++;
    };
    return {
      message,
      ack: () => {},
      // natsSubscriber allows one attempt only: a retry would need a redelivery core NATS does not have.
      retry: async () => {
        throw new Error(`${this.name}: core NATS cannot redeliver; retry is not available`);
      },
      deadLetter: fail,
      giveBack: async () => {
        if (msg.reply) errorReply(msg, 503, 'overloaded');
        else this.dropped++;
      },
    };
  }
}
