import { connect, type ChannelModel, type Options } from 'amqplib';
import { redactUrl } from '../../src/adapter/index.js';
import { explainConnectError } from './connect-error.js';

/**
 * How long one address may take to accept the connection and finish the AMQP handshake, unless
 * `socketOptions.timeout` says otherwise. amqplib has none: a node whose host drops packets would
 * hold each connect for the OS's TCP timeout (about two minutes) before the next node is tried.
 */
export const CONNECT_TIMEOUT_MS = 10_000;

/** One broker address: an `amqp(s)://` URL or amqplib's connect object. */
export type RabbitAddress = string | Options.Connect;

/**
 * The nodes of a cluster a client may connect to. One connect tries them in order, starting at
 * the one after the node whose connection was lost last (that node is likely stopping or gone),
 * and takes the first that answers; the caller's backoff runs between whole rounds, so a dead
 * node costs one refused TCP connect, not a backoff delay.
 */
export class Endpoints {
  #next = 0;
  #current: number | undefined;

  constructor(readonly addresses: readonly RabbitAddress[]) {
    if (addresses.length === 0) throw new TypeError('Endpoints: at least one address');
  }

  /** Every address, passwords removed: for errors that are about all of them. */
  get all(): string {
    return this.addresses.map(describeAddress).join(', ');
  }

  /** The address of the connection made last (password removed), or undefined before the first. */
  get current(): string | undefined {
    return this.#current === undefined ? undefined : describeAddress(this.addresses[this.#current]!);
  }

  /** Opens a connection to the first address that answers; rejects naming each address's error. */
  async connect(socketOptions: Record<string, unknown> | undefined): Promise<ChannelModel> {
    const failures: string[] = [];
    let last: Error | undefined;
    for (let k = 0; k < this.addresses.length; k++) {
      const i = (this.#next + k) % this.addresses.length;
      try {
        const connection = await connect(this.addresses[i]!, { timeout: CONNECT_TIMEOUT_MS, ...socketOptions });
        this.#current = i;
        this.#next = i;
        return connection;
      } catch (error) {
        last = explainConnectError(error, this.addresses[i]!);
        failures.push(`${describeAddress(this.addresses[i]!)}: ${last.message}`);
      }
    }
    // One address: its error as it is (the caller names the address); several: each one's.
    if (failures.length === 1) throw last;
    throw new Error(failures.join('; '), { cause: last });
  }

  /** The connection made last was lost: the next connect starts with the address after it. */
  lost(): void {
    if (this.#current !== undefined) this.#next = (this.#current + 1) % this.addresses.length;
  }
}

/** A broker address fit for logs, events and errors: the password removed. */
export function describeAddress(url: RabbitAddress): string {
  if (typeof url === 'string') return redactUrl(url);
  return `${url.protocol ?? 'amqp'}://${url.hostname ?? 'localhost'}:${url.port ?? 5672}${url.vhost ? `/${url.vhost}` : ''}`;
}
