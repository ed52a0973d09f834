import { nanos, type ConsumerConfig, type JetStreamClient, type JetStreamManager, type Msg, type NatsClient, type NatsClientGeneration, type NatsConnection, type Subscription } from './client.js';
// The pull protocol is driven here (see JetStreamSource); a pulled message becomes a JsMsg with
// ack/nak/working/term by the adapter's own wrapper, the same for both client generations.
import { PulledJsMsg, type JsMsg } from './jsmsg.js';
import { abortableDelay, connectAtStart, redactError, withBackoff, type ResolvedRecovery, type Source, type SourceCapabilities, type SourceContext } from '../../src/adapter/index.js';
import { clientFor, openConnection, watchStatus, type ResolvedConnection } from './connection.js';
import { JetStreamDelivery, type JetStreamScope } from './jetstream-delivery.js';

export interface ResolvedJetStreamOptions {
  connection: ResolvedConnection;
  stream: string;
  durable: string;
  /** Create or update the durable with this; undefined: it must exist. */
  consumerConfig: Partial<ConsumerConfig> | undefined;
  deadLetterSubject: string;
  /** The pool's capacity: what pulls are sized against. */
  capacity: number;
  /** What may be unacked at the server: the capacity, plus the messages of running batches (consumerCredit). */
  credit: number;
  pullExpiresMs: number;
  recovery: ResolvedRecovery;
}

/** Open pull requests at most: the server keeps at most `max_waiting` (512) per durable, shared by every instance. */
const MAX_OPEN_REQUESTS = 8;
const encoder = new TextEncoder();
const ACK = encoder.encode('+ACK');
/** Acks remembered to be sent again after a reconnect or a rebinding (see #recentAcks): about 60 KB. */
const RECENT_ACKS = 1024;

/**
 * JetStream pull consumer whose pulls never ask for more than the pool can take: each pull
 * request asks for the pool's free places minus what open requests may still deliver, so the
 * messages unacked at the server stay within the pool's capacity.
 *
 * It speaks the pull protocol itself over one inbox subscription (what nats.js `consume()` does
 * inside) instead of a `fetch()` per batch: a pull is then one small publish, so it can be sent as
 * soon as a slot frees (no waiting for half the capacity), and an idle consumer costs one
 * long-poll request per `pullExpiresMs` plus the server's idle heartbeats, like the raw client's
 * `consume()` loop — no subscription, status iterator and timers per pull, no lookup per empty pull.
 * The server answers requests in order, so deliveries are counted against the oldest open request;
 * a request that ends early (expired, 409) says how much it left undelivered.
 */
export interface JetStreamSourceStatus {
  /** Messages the open pull requests may still deliver. */
  outstanding: number;
  openPulls: number;
  /** Delivered while paused or refused by the runtime: kept alive here, offered again on resume. */
  held: number;
  /** Handed to the runtime and not settled. */
  live: number;
}

export class JetStreamSource implements Source {
  readonly name: string;
  readonly capabilities: SourceCapabilities = { delayedRetry: true, redelivery: true, pause: true };
  #ctx!: SourceContext;
  #nc: NatsConnection | undefined;
  #client!: NatsClient;
  #owned = false;
  #js!: JetStreamClient;
  #jsm: JetStreamManager | undefined;
  #sub: Subscription | undefined;
  #inbox = '';
  #pullSubject: string;
  #ackWaitMs = 30_000;
  /** The durable's max_ack_pending (-1: unlimited): a batch larger than it could never fill. */
  #maxAckPending = -1;
  readonly #heartbeatMs: number;
  /** When the durable the source is bound to was created: a different one means it was made anew. */
  #createdAt: string | undefined;
  #paused = false;
  #stopped = false;
  #connected = true;
  #recovering = false;
  /** What each open pull request may still deliver, oldest first. */
  #requests: number[] = [];
  /** When the newest pull request was sent: the open ones expire by then + pullExpiresMs. */
  #lastPullAt = 0;
  /** Their sum: requested from the server and not yet delivered. */
  #outstanding = 0;
  /** Last time anything (a message, a heartbeat, a status) arrived on the inbox. */
  #lastActivity = 0;
  #pullScheduled = false;
  #waitingForRoom = false;
  #monitor: NodeJS.Timeout | undefined;
  /** Dispatched and not settled, with the time they arrived: they need `working()` before ack_wait ends. */
  #live = new Map<JsMsg, number>();
  /**
   * Delivered while paused, or refused by the runtime (pool full, a gate): kept here, kept alive,
   * and offered again on resume. A nak would hand it straight back into the open pull, and every
   * redelivery raises the server's delivery count, which is the message's attempt number: a gate
   * refusing often would walk healthy messages into the dead-letter queue.
   */
  #held: JsMsg[] = [];
  /** Runs only while something is live: an idle consumer has no keep-alive timer. */
  #keepAlive: NodeJS.Timeout | undefined;
  readonly #scope: JetStreamScope;
  /**
   * Acks of this event-loop turn, sent together: one socket write instead of one per message
   * (nats.js flushes at the first microtask after a publish). Still unacked at the server, so
   * they count against the pull size.
   */
  #acks: JsMsg[] = [];
  /**
   * Where the last acks went (reply subjects, RECENT_ACKS or the credit if larger). An ack written
   * into a connection that was dying, or taken by a durable's leader that died before replicating
   * it, is lost: the server holds the message unacked until ack_wait, and with max_ack_pending full
   * it delivers nothing meanwhile. So they are sent again after a reconnect and after the durable
   * is bound again (the server ignores an ack for a message it no longer holds). More than the
   * credit: when a majority of the durable's servers dies at once, the acks the survivors had not
   * replicated yet are lost too.
   */
  #recentAcks: string[] = [];
  #recentAckNext = 0;

  /** For `msg.raw.ackAck()`: a request on this source's connection. */
  readonly #ackRequest = (subject: string, payload: Uint8Array, timeoutMs: number): Promise<unknown> => this.#nc!.request(subject, payload, { timeout: timeoutMs });

  constructor(private readonly o: ResolvedJetStreamOptions) {
    this.name = `nats:${o.stream}/${o.durable}`;
    this.#pullSubject = `$JS.API.CONSUMER.MSG.NEXT.${o.stream}.${o.durable}`;
    // As nats.js consume(): half the expiry, at most 15 s (so an idle consumer costs what the raw
    // client's loop costs). Two missed ones mean the open requests are gone: that is also how a
    // durable deleted between two pulls is noticed (the server does not answer pulls for a durable
    // that does not exist; one deleted while a pull waits answers 409 at once).
    this.#heartbeatMs = Math.min(15_000, Math.max(500, Math.floor(o.pullExpiresMs / 2)));
    this.#scope = {
      stream: o.stream,
      deadLetterSubject: o.deadLetterSubject,
      js: undefined as never,
      client: undefined as never,
      epoch: 0,
      closed: () => this.#nc?.isClosed() ?? false,
      ack: (msg) => {
        if (this.#acks.push(msg) === 1) setImmediate(this.#flushAcks);
      },
      settled: (msg) => {
        this.#live.delete(msg);
        this.#schedulePull();
      },
      giveBackDelayMs: () => this.#giveBackDelayMs(),
      keepsSettled: false,
      report: (error) => this.#ctx?.report({ type: 'error', error, detail: 'dead-letter' }),
    };
  }

  /** The NATS client generation in use once started: 'v2' (`nats`) or 'v3' (`@nats-io/*`). */
  get client(): NatsClientGeneration | undefined {
    return (this.#client as NatsClient | undefined)?.generation;
  }

  /** What the adapter holds now: pulls open at the server, messages held back (paused or refused), messages in the runtime. */
  status(): JetStreamSourceStatus {
    return { outstanding: this.#outstanding, openPulls: this.#requests.length, held: this.#held.length, live: this.#live.size - this.#held.length };
  }

  async start(ctx: SourceContext): Promise<void> {
    this.#ctx = ctx;
    const client = await clientFor(this.name, this.o.connection);
    const { nc, owned } = await connectAtStart(this, this.o.connection.where, this.o.recovery, ctx, () => openConnection(this.o.connection, this.name, client));
    this.#nc = nc;
    this.#owned = owned;
    this.#client = client;
    try {
      this.#js = await client.jetstream(nc);
      this.#scope.js = this.#js;
      this.#scope.client = client;
    } catch (error) {
      if (owned) await nc.close().catch(() => {});
      throw new Error(`${this.name}: ${redactError(error)}`, { cause: error });
    }
    try {
      await withBackoff(() => this.#bindConsumer(), {
        policy: { maxAttempts: this.o.recovery.startAttempts, delayMs: (n) => this.o.recovery.backoff.delayMs(n) },
        signal: ctx.signal,
        onFailure: (error, attempt, delayMs) => ctx.report({ type: 'error', error, detail: `${this.name}: binding attempt ${attempt} failed; next in ${delayMs} ms` }),
      });
    } catch (error) {
      if (owned) await nc.close().catch(() => {});
      throw new Error(`${this.name}: ${redactError(error)}`, { cause: error });
    }
    const maxAckPending = this.#maxAckPending;
    if (maxAckPending > 0 && maxAckPending < ctx.batchSize) {
      if (owned) await nc.close().catch(() => {});
      throw new RangeError(
        `${this.name}: the durable's max_ack_pending ${maxAckPending} is below batch.size ${ctx.batchSize}: a batch could never fill; ` +
          'raise max_ack_pending (or give consumerConfig, which raises it to the pool\'s capacity) or lower batch.size',
      );
    }
    watchStatus(nc, (event) => ctx.report(event), (type) => this.#onStatusChange(type));
    this.#inbox = client.createInbox((nc as { options?: { inboxPrefix?: string } }).options?.inboxPrefix);
    this.#sub = nc.subscribe(this.#inbox, { callback: (error, msg) => this.#onInbox(error, msg) });
    this.#lastActivity = Date.now();
    this.#monitor = setInterval(() => this.#checkHeartbeats(), this.#heartbeatMs);
    this.#pull();
    ctx.report({ type: 'connected', detail: `${this.name} at ${this.o.connection.where}` });
  }

  async pause(): Promise<void> {
    // No new pulls; what open requests still deliver (at most the free places they were sized by) is held, not handled.
    this.#paused = true;
  }

  async resume(): Promise<void> {
    this.#paused = false;
    this.#offerHeld();
    this.#schedulePull();
  }

  async stop(): Promise<void> {
    // Open requests keep delivering until they end: what is given back from now on waits them
    // out (see #giveBackDelayMs), what still arrives is refused by the runtime and given back so.
    this.#stopped = true;
    this.#releaseHeld();
  }

  /**
   * How long a message given back must wait before the server may deliver it again. 0 while
   * running. Once stopping, until this source's open pull requests have expired: delivered into
   * them, it would be refused and given back again, each bounce counting a delivery (its
   * attempt). Closing the inbox instead is not safe on nats-server 2.9, which loses track of a
   * redelivery that finds only a request without interest (it re-delivers an older sequence).
   */
  #giveBackDelayMs(): number {
    if (!this.#stopped || this.#outstanding === 0) return 0;
    return Math.max(0, Math.ceil(this.#lastPullAt + this.o.pullExpiresMs + 1000 - performance.now()));
  }

  async close(): Promise<void> {
    this.#stopped = true;
    this.#flushAcks();
    clearInterval(this.#monitor);
    clearInterval(this.#keepAlive);
    this.#keepAlive = undefined;
    this.#sub?.unsubscribe();
    this.#sub = undefined;
    if (this.#owned) await this.#nc?.drain().catch(() => this.#nc?.close());
  }

  /** Finds (or creates, or updates) the durable; the errors name the stream and durable. */
  async #bindConsumer(): Promise<void> {
    const jsm = (this.#jsm ??= await this.#client.jetstreamManager(this.#nc!));
    const { stream, durable, consumerConfig } = this.o;
    try {
      const { config } = await jsm.streams.info(stream);
      this.#scope.keepsSettled = config.retention === 'limits';
    } catch (cause) {
      throw new Error(`stream "${stream}" not found (${redactError(cause)})`, { cause });
    }
    if (consumerConfig) {
      const config: Partial<ConsumerConfig> = {
        deliver_policy: 'all',
        ack_wait: nanos(30_000),
        ...consumerConfig,
        durable_name: durable,
        ack_policy: 'explicit',
        // sluice decides when a message is dead: the server must not stop delivering first.
        max_deliver: -1,
        max_ack_pending: Math.max(consumerConfig.max_ack_pending ?? 0, this.o.credit),
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
    // A durable made anew (deleted under us): what was delivered by the old one can no longer be acked usefully.
    if (this.#createdAt !== undefined && info.created !== this.#createdAt) {
      this.#scope.epoch++;
      this.#recentAcks = []; // the same reply subjects would ack the new durable's messages
    }
    this.#createdAt = info.created;
    this.#ackWaitMs = Math.max(1000, Number(info.config.ack_wait ?? nanos(30_000)) / 1e6);
    this.#maxAckPending = info.config.max_ack_pending ?? -1;
  }

  #onInbox(error: Error | null, msg: Msg): void {
    if (error) {
      // The server refused the subscription (permissions): nothing will arrive on it.
      this.#ctx.report({ type: 'error', error, detail: `${this.name}: pull inbox` });
      return;
    }
    this.#lastActivity = Date.now();
    // Statuses (heartbeats, expiry, errors) come on the inbox itself; messages keep their subject.
    if (msg.subject === this.#inbox) return this.#onPullStatus(msg);
    this.#delivered();
    const jsMsg = new PulledJsMsg(msg, this.#ackRequest);
    try {
      this.#live.set(jsMsg, performance.now());
      this.#keepAlive ??= setInterval(this.#keepWorking, Math.max(100, this.#ackWaitMs / 3));
      if (this.#paused || this.#held.length > 0) this.#held.push(jsMsg);
      else this.#offer(jsMsg);
    } catch (error) {
      // This runs inside the client's socket reader, which an exception would end (no input found
      // one yet). Not kept alive: the server delivers it again after ack_wait.
      this.#live.delete(jsMsg);
      this.#ctx.report({ type: 'error', error, detail: `${this.name}: message ${msg.subject} could not be taken; the server delivers it again after ack_wait` });
      this.#schedulePull();
    }
  }

  /** Hands a message to the runtime; false when it was refused and is held for later. */
  #offer(jsMsg: JsMsg): boolean {
    const result = this.#ctx.dispatch(new JetStreamDelivery(jsMsg, this.#scope));
    if (result === 'accepted') return true;
    if (result === 'stopping' || this.#stopped) {
      this.#nakNow(jsMsg);
      this.#schedulePull();
    } else {
      // Pool full or a gate: the runtime pauses us meanwhile; offered again first on resume.
      this.#held.push(jsMsg);
    }
    return false;
  }

  /** Offers the held messages again, in order, until one is refused (it stays first) or we pause. */
  #offerHeld(): void {
    while (this.#held.length > 0 && !this.#paused && !this.#stopped) {
      const next = this.#held.shift()!;
      if (!this.#offer(next)) {
        // #offer put it at the end; it was first.
        if (this.#held[this.#held.length - 1] === next) this.#held.unshift(this.#held.pop()!);
        return;
      }
    }
    if (this.#stopped) this.#releaseHeld();
  }

  /** Stopping: what is held goes back to the server. */
  #releaseHeld(): void {
    const held = this.#held;
    this.#held = [];
    for (const msg of held) this.#nakNow(msg);
  }

  #nakNow(jsMsg: JsMsg): void {
    this.#live.delete(jsMsg);
    try {
      const delayMs = this.#giveBackDelayMs();
      if (delayMs > 0) jsMsg.nak(delayMs);
      else jsMsg.nak();
    } catch {
      // Connection closed: the server delivers it again after ack_wait.
    }
  }

  /** One message of the oldest open request arrived. */
  #delivered(): void {
    const head = this.#requests[0];
    if (head === undefined) return; // a request from before a reset: not counted any more
    this.#outstanding--;
    if (head <= 1) this.#requests.shift();
    else this.#requests[0] = head - 1;
  }

  #onPullStatus(msg: Msg): void {
    const code = msg.headers?.code ?? 0;
    if (code === 100) return; // idle heartbeat
    const description = msg.headers?.description ?? '';
    const left = msg.headers?.get('Nats-Pending-Messages');
    if (left) {
      // A request ended (expired, or cut short: leadership change, size limit) with this much undelivered.
      this.#endOldest(Number(left));
      this.#schedulePull();
    } else if (code === 409 && /consumer deleted/i.test(description)) {
      this.#recover(new Error(`${this.name}: the durable was deleted (409 ${description})`));
    } else if (code === 503) {
      this.#recover(new Error(`${this.name}: no responders for pulls (JetStream unavailable?)`));
    } else if (code === 408 || code === 404) {
      this.#endOldest(undefined);
      this.#schedulePull();
    } else {
      // Refused when it was made (400 bad request, 409 exceeded max waiting, …): the newest request.
      const newest = this.#requests.pop();
      if (newest !== undefined) this.#outstanding -= newest;
      this.#ctx.report({ type: 'error', error: new Error(`${this.name}: pull refused: ${code} ${description}`), detail: `${this.name}: pull` });
    }
  }

  /** The oldest open request ended with `left` undelivered (the server's count, when it sent one). */
  #endOldest(left: number | undefined): void {
    const head = this.#requests.shift();
    if (head === undefined) return;
    if (left !== undefined && left !== head && this.#requests.length > 0) {
      // Deliveries counted against the oldest were for the next one (or the other way round).
      this.#requests[0] = Math.max(0, this.#requests[0]! + (head - left));
    }
    this.#outstanding = this.#requests.reduce((sum, n) => sum + n, 0);
  }

  #resetRequests(): void {
    this.#requests = [];
    this.#outstanding = 0;
  }

  #onStatusChange(type: string): void {
    if (type === 'disconnect') {
      this.#connected = false;
    } else if (type === 'reconnect') {
      // The requests may have died with the old connection (or the server): count none and pull again.
      this.#connected = true;
      this.#resetRequests();
      this.#lastActivity = Date.now();
      this.#resendAcks();
      this.#schedulePull();
    }
  }

  #rememberAck(reply: string): void {
    if (!reply) return;
    this.#recentAcks[this.#recentAckNext] = reply;
    this.#recentAckNext = (this.#recentAckNext + 1) % Math.max(RECENT_ACKS, this.o.credit);
  }

  /** See #recentAcks. */
  #resendAcks(): void {
    try {
      for (const reply of this.#recentAcks) this.#nc!.publish(reply, ACK);
    } catch {
      // Closed again: the next reconnect sends them.
    }
  }

  /** After the pool has freed the slot (the task ends right after it settles), look for more work. */
  #schedulePull(): void {
    if (this.#pullScheduled) return;
    this.#pullScheduled = true;
    setImmediate(this.#pullSoon);
  }

  readonly #pullSoon = (): void => {
    this.#pullScheduled = false;
    this.#pull();
  };

  /**
   * Asks for the free places not yet asked for. With nothing outstanding any free place is worth a
   * pull (a busy stream answers at once); with requests open, a top-up waits for a sixteenth of
   * the capacity: small enough that slots freed by slow handlers do not wait long for work, large
   * enough that a trickle does not pile up tiny requests at the server.
   */
  #pull(): void {
    if (this.#stopped || this.#paused || this.#recovering || !this.#connected || !this.#sub) return;
    const free = this.#ctx.freeCapacity() - this.#outstanding - this.#acks.length - this.#held.length;
    const worth = this.#outstanding === 0 ? 1 : Math.max(1, Math.ceil(this.o.capacity / 16));
    if (free >= worth && this.#requests.length < MAX_OPEN_REQUESTS) {
      this.#request(free);
    } else if (free <= 0 && this.#outstanding === 0 && this.#live.size === 0) {
      // Nothing of ours will settle to wake us (a pool shared with others is full): wait for room.
      this.#waitForRoom();
    }
  }

  #request(batch: number): void {
    this.#requests.push(batch);
    this.#outstanding += batch;
    this.#lastPullAt = performance.now();
    if (this.#requests.length === 1) this.#lastActivity = Date.now();
    try {
      const body = `{"batch":${batch},"expires":${nanos(this.o.pullExpiresMs)},"idle_heartbeat":${nanos(this.#heartbeatMs)}}`;
      this.#nc!.publish(this.#pullSubject, encoder.encode(body), { reply: this.#inbox });
    } catch (error) {
      this.#requests.pop();
      this.#outstanding -= batch;
      if (!this.#stopped) this.#ctx.report({ type: 'error', error, detail: `${this.name}: pull` });
    }
  }

  #waitForRoom(): void {
    if (this.#waitingForRoom) return;
    this.#waitingForRoom = true;
    this.#ctx
      .whenAvailable(this.#ctx.signal)
      // The pool has room, but gates may still hold it back: do not spin on that.
      .then(() => (this.#ctx.freeCapacity() > 0 ? undefined : abortableDelay(100, this.#ctx.signal)))
      .then(
        () => {
          this.#waitingForRoom = false;
          this.#schedulePull();
        },
        () => {
          this.#waitingForRoom = false; // stopping
        },
      );
  }

  /**
   * Open requests and not a sound for two heartbeats: they are gone (a server restarted without
   * the client noticing, a durable that no longer exists, whose pulls the server does not answer).
   */
  #checkHeartbeats(): void {
    if (this.#requests.length === 0 || !this.#connected || this.#recovering || this.#stopped) {
      this.#lastActivity = Date.now();
      return;
    }
    const silentMs = Date.now() - this.#lastActivity;
    if (silentMs > 2 * this.#heartbeatMs) this.#recover(new Error(`${this.name}: no heartbeat from open pulls for ${silentMs} ms`));
  }

  /** Forgets the open requests, looks the durable up again (re-creating it with consumerConfig), then pulls again. */
  #recover(error: Error): void {
    if (this.#recovering || this.#stopped) return;
    this.#recovering = true;
    this.#resetRequests();
    this.#ctx.report({ type: 'disconnected', error, detail: error.message });
    let attempts = 1;
    void withBackoff(() => this.#bindConsumer(), {
      policy: this.o.recovery.backoff,
      signal: this.#ctx.signal,
      onFailure: (e, attempt, delayMs) => {
        attempts = attempt + 1;
        this.#ctx.report({ type: 'error', error: e, detail: `${this.name}: rebinding attempt ${attempt} failed; next in ${delayMs} ms` });
      },
    })
      .then(
        () => {
          this.#resendAcks();
          this.#ctx.report({ type: 'recovered', detail: `${this.name}: durable bound again`, attempts });
        },
        () => {}, // stopping
      )
      .finally(() => {
        this.#recovering = false;
        this.#lastActivity = Date.now();
        this.#schedulePull();
      });
  }

  /** Slow but healthy handlers (and messages waiting in the pool's queue) must not be redelivered. */
  readonly #keepWorking = (): void => {
    if (this.#live.size === 0) {
      clearInterval(this.#keepAlive);
      this.#keepAlive = undefined;
      return;
    }
    const due = performance.now() - this.#ackWaitMs / 3;
    try {
      for (const [msg, since] of this.#live) if (since <= due) msg.working();
    } catch {
      // Connection closed: nothing can be kept alive; the server delivers them again.
    }
  };

  readonly #flushAcks = (): void => {
    const acks = this.#acks;
    if (acks.length === 0) return;
    this.#acks = [];
    for (const msg of acks) {
      try {
        msg.ack();
        this.#rememberAck(msg.reply);
      } catch (error) {
        // A closed connection: the server redelivers it after ack_wait; the runtime copes with the duplicate.
        this.#ctx.report({ type: 'error', error, detail: `${this.name}: ack` });
      }
      this.#live.delete(msg);
    }
    this.#pull();
  };
}
