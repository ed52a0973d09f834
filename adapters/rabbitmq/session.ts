import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';
import { setMaxListeners, type EventEmitter } from 'node:events';
import { redactError, redactText } from '../../src/redact.js';
import { AckBatcher } from './acks.js';
import type { Endpoints } from './endpoints.js';

/** A closed channel or connection: deliveries of it can no longer be acked (RabbitMQ requeues them). */
export class ChannelLostError extends Error {
  override readonly name = 'ChannelLostError';
}

export interface ConnectionSource {
  /** Where to connect; undefined with a connection of the user's. */
  endpoints: Endpoints | undefined;
  socketOptions: Record<string, unknown> | undefined;
  /** A connection the user owns: sluice never closes it and cannot reconnect it. */
  connection: ChannelModel | undefined;
  /** For error messages, password removed. */
  where: string;
}

/** The broker blocks publishing (a memory or disk alarm): a retry or dead letter cannot be published now. */
export class PublishBlockedError extends Error {
  override readonly name = 'PublishBlockedError';
}

/**
 * One consume channel and one confirm channel (retries, dead letters). It is either alive or dead
 * for good: recovery builds a new Session, so deliveries of an old one can tell that their
 * channel is gone instead of acking into a closed channel.
 *
 * The confirm channel has a connection of its own when sluice opens the connections: under a
 * memory or disk alarm RabbitMQ stops reading from a connection that publishes
 * (`connection.blocked`), which on a shared connection would stop acks and consumption too.
 */
export class Session {
  #alive = true;
  consumerTag: string | undefined;
  readonly acks: AckBatcher;
  /** Why the broker blocks the publishing connection, while it does. */
  #blocked: string | undefined;
  /** Aborted when the broker blocks publishing: confirms waited for then would come only after the alarm. */
  #publishing = Session.#controller();

  private constructor(
    readonly connection: ChannelModel,
    /** The confirm channel's connection: `connection` itself when that is the user's. */
    readonly publisher: ChannelModel,
    readonly ownsConnection: boolean,
    readonly channel: Channel,
    readonly confirm: ConfirmChannel,
    onLost: (session: Session, reason: Error) => void,
    onBlocked: (reason: string) => void,
  ) {
    this.acks = new AckBatcher(channel, () => this.#alive);
    const lost = (what: string) => (error?: Error) => {
      if (!this.#alive) return;
      this.#alive = false;
      const detail = error ? `: ${redactText(error.message)}` : '';
      this.lostReason = new ChannelLostError(`${what} closed${detail}`, { cause: error });
      onLost(this, this.lostReason);
    };
    // Without 'error' listeners amqplib's errors would be thrown; the 'close' that follows says what happened.
    const errors = new Map<unknown, Error>();
    const watched: [EventEmitter, string][] = [
      [channel, 'consume channel'],
      [confirm, 'confirm channel'],
      [connection, 'connection'],
    ];
    if (publisher !== connection) watched.push([publisher, 'publishing connection']);
    for (const [emitter, what] of watched) {
      this.#gone.set(emitter, new Promise((resolve) => emitter.once('close', () => resolve())));
      if (emitter === connection && !ownsConnection) continue; // the user's: we only listen, below
      emitter.on('error', (error: Error) => {
        errors.set(emitter, error);
        if (emitter === connection || emitter === publisher) this.connectionError ??= error;
      });
      emitter.on('close', (error?: Error) => lost(what)(error ?? errors.get(emitter)));
    }
    if (!ownsConnection) {
      this.#onConnectionClose = (error?: Error) => lost('connection')(error);
      connection.on('close', this.#onConnectionClose);
    }
    this.#onBlocked = (reason: unknown) => {
      this.#blocked = String(reason || 'an alarm');
      this.#publishing.abort(new PublishBlockedError(`RabbitMQ blocked publishing (${this.#blocked}): no confirm before the alarm clears`));
      onBlocked(this.#blocked);
    };
    this.#onUnblocked = () => {
      this.#blocked = undefined;
      this.#publishing = Session.#controller();
    };
    publisher.on('blocked', this.#onBlocked);
    publisher.on('unblocked', this.#onUnblocked);
  }

  /** Every confirm awaited on the session listens on it: many at once is expected, not a leak. */
  static #controller(): AbortController {
    const controller = new AbortController();
    setMaxListeners(0, controller.signal);
    return controller;
  }

  readonly #onBlocked: (reason: unknown) => void;
  readonly #onUnblocked: () => void;
  #onConnectionClose: ((error?: Error) => void) | undefined;
  /** Why it died, once it has. */
  lostReason: Error | undefined;
  /** The error its own connection closed with (the channels may report closing before it, without a reason). */
  connectionError: Error | undefined;
  /** Settles when each emitter has closed: closing something that is already dying must not wait for a reply that never comes. */
  readonly #gone = new Map<EventEmitter, Promise<void>>();

  async #closeOne(emitter: EventEmitter & { close(): Promise<void> }): Promise<void> {
    await Promise.race([emitter.close().catch(() => {}), this.#gone.get(emitter)]);
  }

  /**
   * Throws while the broker blocks publishing, else returns the signal a confirm is awaited
   * with: the broker reads nothing more from a blocked connection, so a publish sent just before
   * the block is not confirmed before the alarm clears; the signal ends that wait when the block
   * comes, so a settlement never holds its slot for as long as the alarm lasts. (That publish may
   * still land once the alarm clears: a duplicate copy, never a loss.)
   */
  publishable(action: string, id: string): AbortSignal {
    if (this.#blocked !== undefined) {
      throw new PublishBlockedError(`cannot ${action} message ${id}: RabbitMQ blocks publishing (${this.#blocked}) until the alarm clears`);
    }
    return this.#publishing.signal;
  }

  /** Why the broker blocks publishing now, or undefined. */
  get blocked(): string | undefined {
    return this.#blocked;
  }

  get alive(): boolean {
    return this.#alive;
  }

  /** Opens a connection (unless given one) and the two channels. */
  static async open(
    from: ConnectionSource,
    onLost: (session: Session, reason: Error) => void,
    onBlocked: (reason: string) => void = () => {},
  ): Promise<Session> {
    const owns = from.connection === undefined;
    let connection: ChannelModel;
    let publisher: ChannelModel;
    try {
      connection = from.connection ?? (await from.endpoints!.connect(from.socketOptions));
    } catch (cause) {
      throw new Error(`RabbitMQ at ${from.where}: ${redactError(cause)}`, { cause });
    }
    try {
      // The same node as the consume connection (the endpoints start where they connected last).
      publisher = owns ? await from.endpoints!.connect(from.socketOptions) : connection;
    } catch (cause) {
      await connection.close().catch(() => {});
      throw new Error(`RabbitMQ at ${from.where}, publishing connection: ${redactError(cause)}`, { cause });
    }
    try {
      const channel = await connection.createChannel();
      const confirm = await publisher.createConfirmChannel();
      return new Session(connection, publisher, owns, channel, confirm, onLost, onBlocked);
    } catch (error) {
      if (owns) await Promise.all([connection.close().catch(() => {}), publisher.close().catch(() => {})]);
      throw error;
    }
  }

  /** Marks the session dead and closes what it owns; safe to call on a dead session. */
  async close(): Promise<void> {
    if (this.#alive) this.acks.flush();
    this.#alive = false;
    // Channels first, on their own: channel.close() is sent after the flushed acks on the same
    // channel and waits for the broker's reply, whereas a connection.close() could overtake them
    // and the broker would requeue messages that were handled.
    // A blocked connection's broker reads nothing, so a channel.close() there would wait for the
    // alarm to end; amqplib closes a blocked connection at once (its unconfirmed publishes fail).
    const blocked = this.#blocked !== undefined;
    if (!blocked || this.publisher !== this.connection) await this.#closeOne(this.channel);
    if (!blocked) await this.#closeOne(this.confirm);
    this.publisher.off('blocked', this.#onBlocked);
    this.publisher.off('unblocked', this.#onUnblocked);
    if (this.ownsConnection) {
      await this.#closeOne(this.connection);
      if (this.publisher !== this.connection) await this.#closeOne(this.publisher);
    } else if (this.#onConnectionClose) this.connection.off('close', this.#onConnectionClose);
  }
}
