import { connect, type Channel, type ChannelModel, type ConfirmChannel, type Options } from 'amqplib';
import type { EventEmitter } from 'node:events';
import { redactError, redactText } from '../../src/redact.js';
import { AckBatcher } from './acks.js';

/** A closed channel or connection: deliveries of it can no longer be acked (RabbitMQ requeues them). */
export class ChannelLostError extends Error {
  override readonly name = 'ChannelLostError';
}

export interface ConnectionSource {
  url: string | Options.Connect | undefined;
  socketOptions: Record<string, unknown> | undefined;
  /** A connection the user owns: sluice never closes it and cannot reconnect it. */
  connection: ChannelModel | undefined;
  /** For error messages, password removed. */
  where: string;
}

/**
 * One consume channel and one confirm channel (retries, dead letters) on one connection. It is
 * either alive or dead for good: recovery builds a new Session, so deliveries of an old one can
 * tell that their channel is gone instead of acking into a closed channel.
 */
export class Session {
  #alive = true;
  consumerTag: string | undefined;
  readonly acks: AckBatcher;

  private constructor(
    readonly connection: ChannelModel,
    readonly ownsConnection: boolean,
    readonly channel: Channel,
    readonly confirm: ConfirmChannel,
    onLost: (session: Session, reason: Error) => void,
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
    ];
    watched.push([connection, 'connection']);
    for (const [emitter, what] of watched) {
      this.#gone.set(emitter, new Promise((resolve) => emitter.once('close', () => resolve())));
      if (emitter === connection && !ownsConnection) continue; // the user's: we only listen, below
      emitter.on('error', (error: Error) => {
        errors.set(emitter, error);
        if (emitter === connection) this.connectionError = error;
      });
      emitter.on('close', (error?: Error) => lost(what)(error ?? errors.get(emitter)));
    }
    if (!ownsConnection) {
      this.#onConnectionClose = (error?: Error) => lost('connection')(error);
      connection.on('close', this.#onConnectionClose);
    }
  }

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

  get alive(): boolean {
    return this.#alive;
  }

  /** Opens a connection (unless given one) and the two channels. */
  static async open(from: ConnectionSource, onLost: (session: Session, reason: Error) => void): Promise<Session> {
    const owns = from.connection === undefined;
    let connection: ChannelModel;
    try {
      connection = from.connection ?? (await connect(from.url as string | Options.Connect, from.socketOptions));
    } catch (cause) {
      const reason = redactError(cause);
      throw new Error(`RabbitMQ at ${from.where} unreachable: ${reason}`, { cause });
    }
    try {
      const channel = await connection.createChannel();
      const confirm = await connection.createConfirmChannel();
      return new Session(connection, owns, channel, confirm, onLost);
    } catch (error) {
      if (owns) await connection.close().catch(() => {});
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
    await this.#closeOne(this.channel);
    await this.#closeOne(this.confirm);
    if (this.ownsConnection) await this.#closeOne(this.connection);
    else if (this.#onConnectionClose) this.connection.off('close', this.#onConnectionClose);
  }
}
