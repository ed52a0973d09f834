import type { JetStreamClient, Msg, NatsClient, NatsClientGeneration, NatsConnection, Subscription } from './client.js';
import { connectAtStart, deadLetterHeaders, Message, type DeadLetterInfo, type Delivery, type ResolvedRecovery, type Source, type SourceCapabilities, type SourceContext } from '../../src/adapter/index.js';
import { clientFor, openConnection, watchStatus, type ResolvedConnection } from './connection.js';
import { deadLetterNatsHeaders, receivedHeaders, writableNatsHeaders } from './message.js';

export interface ResolvedCoreOptions {
  connection: ResolvedConnection;
  subject: string;
  queueGroup: string | undefined;
  deadLetterSubject: string | undefined;
  recovery: ResolvedRecovery;
}

/** The error a requester gets, as NATS services (nats.js `services`) send it. */
function errorReply(client: NatsClient, msg: Msg, code: number, description: string): void {
  msg.respond(new Uint8Array(), { headers: writableNatsHeaders(client, { 'Nats-Service-Error': description, 'Nats-Service-Error-Code': String(code) }) });
}

/**
 * Core NATS: at most once. There is nothing to ack and nothing the server redelivers, so an
 * outcome can only be answered (requests) or dropped and counted (plain messages).
 */
export class CoreSource implements Source {
  readonly name: string;
  readonly capabilities: SourceCapabilities;
  #ctx!: SourceContext;
  #nc: NatsConnection | undefined;
  #client!: NatsClient;
  #owned = false;
  #subscription: Subscription | undefined;
  /** Set when a JetStream stream captures the dead-letter subject: dead letters then wait for its PubAck. */
  #deadLetterJs: JetStreamClient | undefined;
  /** Plain messages that could not be processed (overload, failure, shutdown) and had nowhere to go. */
  dropped = 0;

  constructor(private readonly o: ResolvedCoreOptions) {
    this.name = `nats:${o.subject}${o.queueGroup ? ` (${o.queueGroup})` : ''}`;
    // Only a queue group can stop deliveries without losing them: the other members take them.
    this.capabilities = { delayedRetry: false, redelivery: false, pause: o.queueGroup !== undefined };
  }

  /** The NATS client generation in use once started: 'v2' (`nats`) or 'v3' (`@nats-io/*`). */
  get client(): NatsClientGeneration | undefined {
    return (this.#client as NatsClient | undefined)?.generation;
  }

  async start(ctx: SourceContext): Promise<void> {
    this.#ctx = ctx;
    const client = (this.#client = await clientFor(this.name, this.o.connection));
    const opened = await connectAtStart(this, this.o.connection.where, this.o.recovery, ctx, () => openConnection(this.o.connection, this.name, client));
    this.#nc = opened.nc;
    this.#owned = opened.owned;
    watchStatus(opened.nc, (event) => ctx.report(event));
    if (this.o.deadLetterSubject) this.#deadLetterJs = await this.#streamCapturing(this.o.deadLetterSubject);
    this.#subscribe();
    // A round trip, so that messages published after start() resolves are seen.
    await opened.nc.flush();
    ctx.report({ type: 'connected', detail: `${this.name} at ${this.o.connection.where}` });
  }

  /** A JetStream client when some stream captures `subject` (then its publish can be confirmed by a PubAck). */
  async #streamCapturing(subject: string): Promise<JetStreamClient | undefined> {
    try {
      const jsm = await this.#client.jetstreamManager(this.#nc!);
      await jsm.streams.find(subject);
      return await this.#client.jetstream(this.#nc!);
    } catch {
      return undefined; // no stream captures it, no JetStream on this server (or, on 3.x, no @nats-io/jetstream installed)
    }
  }

  /**
   * In a queue group: unsubscribes, so the other members take the traffic meanwhile. Alone:
   * stays subscribed (capabilities.pause is false), because an unsubscribed subject loses
   * messages without anyone counting them; what the pool cannot take is answered (503) or dropped
   * and counted instead.
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
        // Refused (pool full, a gate, stopping): nothing can hand it back.
        if (this.#ctx.dispatch(new CoreDelivery(msg, this)) !== 'accepted') this.refuse(msg);
      },
    });
  }

  /** A request gets a 503 the requester can back off on and retry; a plain message is dropped and counted. */
  refuse(msg: Msg): void {
    if (msg.reply) errorReply(this.#client, msg, 503, 'overloaded');
    else this.dropped++;
  }

  /** Publishes a dead letter and confirms it where NATS can: a PubAck from the stream, else a server round trip. */
  async publishDeadLetter(data: Uint8Array, headers: Record<string, string>, msgID: string): Promise<void> {
    const subject = this.o.deadLetterSubject!;
    if (this.#deadLetterJs) {
      await this.#deadLetterJs.publish(subject, data, { headers: deadLetterNatsHeaders(this.#client, headers), msgID });
      return;
    }
    this.#nc!.publish(subject, data, { headers: deadLetterNatsHeaders(this.#client, headers) });
    await this.#nc!.flush();
  }

  /** Answers a request with a service error (its headers made by the connection's client). */
  errorReply(msg: Msg, code: number, description: string): void {
    errorReply(this.#client, msg, code, description);
  }

  get deadLetterSubject(): string | undefined {
    return this.o.deadLetterSubject;
  }
}

let sequence = 0;

/** Core NATS's translation of the settlements: answers and counts, since nothing is redelivered. */
class CoreDelivery implements Delivery<Msg> {
  readonly message: Message<Msg>;
  /** The requester got its one answer (a 500 for a failed handler): a later give-back must not answer again. */
  #answered = false;
  /**
   * This delivery's own: the same for every try of its dead letter (stored once), another for any
   * other message, also one whose Nats-Msg-Id is the same (the stream would drop its dead letter
   * as a duplicate, and core NATS has nothing that could deliver it again).
   */
  readonly #delivery: string;

  constructor(
    private readonly msg: Msg,
    private readonly source: CoreSource,
  ) {
    const { headers, msgId } = receivedHeaders(msg);
    this.#delivery = `${msg.subject}:${msg.sid}:${Date.now().toString(36)}:${(++sequence).toString(36)}`;
    this.message = new Message<Msg>({
      body: msg.data,
      headers,
      id: msgId ?? this.#delivery,
      key: msg.subject,
      source: source.name.slice('nats:'.length),
      raw: msg,
    });
  }

  ack(): void {}

  // natsSubscriber allows one attempt only: a retry would need a redelivery core NATS does not have.
  async retry(): Promise<void> {
    throw new Error(`${this.source.name}: core NATS cannot redeliver; retry is not available`);
  }

  /**
   * A request gets a 500 with the error at once (once, even if the dead-letter publish is tried
   * again); then the dead letter is published and confirmed. No dead-letter subject: a plain
   * message is dropped and counted. A refused dead-letter publish throws: the runtime tries again,
   * and gives the message up (counted) if it keeps failing.
   */
  async deadLetter(info: DeadLetterInfo): Promise<void> {
    const msg = this.msg;
    if (msg.reply && !this.#answered) {
      this.#answered = true;
      this.source.errorReply(msg, 500, info.error.message);
    }
    if (this.source.deadLetterSubject) {
      const headers = deadLetterHeaders(this.message, info);
      delete headers['Nats-Msg-Id']; // the dead letter's own id (below): JetStream would deduplicate it against the original
      await this.source.publishDeadLetter(msg.data, headers, `dlq:${this.#delivery}`);
    } else if (!msg.reply) this.source.dropped++;
  }

  async giveBack(): Promise<void> {
    if (this.msg.reply && this.#answered) return;
    this.#answered = true;
    this.source.refuse(this.msg);
  }
}
