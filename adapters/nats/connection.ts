import { connect, type ConnectionOptions, type NatsConnection } from 'nats';
import { objectOption, redactError, redactText, stringOption, type SourceEvent } from '../../src/adapter/index.js';

/** How an adapter gets its NATS connection: made from `servers` (owned), or given (borrowed). */
export interface NatsConnectionOptions {
  /** `nats://user:pass@host:4222`, or several. One of `servers` / `connection`. */
  servers?: string | string[];
  /** Passed to `connect()`: `user`/`pass`, `token`, `authenticator` (nkeys, creds), `tls`, `name`, reconnect settings. */
  connectOptions?: Omit<ConnectionOptions, 'servers'>;
  /** A connection you own: sluice never closes or drains it. */
  connection?: NatsConnection;
}

export interface ResolvedConnection {
  servers: string[] | undefined;
  connectOptions: Omit<ConnectionOptions, 'servers'>;
  connection: NatsConnection | undefined;
  /** For errors and events, passwords removed. */
  where: string;
}

export function resolveConnection(owner: string, o: NatsConnectionOptions): ResolvedConnection {
  if ((o.servers === undefined) === (o.connection === undefined)) {
    throw new TypeError(`${owner}: give exactly one of option "servers" or option "connection"`);
  }
  const servers = o.servers === undefined ? undefined : (Array.isArray(o.servers) ? o.servers : [o.servers]).map((s, i) => stringOption(owner, `servers[${i}]`, s));
  if (o.connection !== undefined && typeof (o.connection as { jetstream?: unknown }).jetstream !== 'function') {
    throw new TypeError(`${owner}: option "connection" must be a NatsConnection (from nats' connect())`);
  }
  const connectOptions = o.connectOptions === undefined ? {} : (objectOption(owner, 'connectOptions', o.connectOptions) as ResolvedConnection['connectOptions']);
  return { servers, connectOptions, connection: o.connection, where: servers ? servers.map(redactText).join(',') : 'the given connection' };
}

/**
 * Connects (or borrows). The client reconnects by itself for as long as the consumer runs
 * (`maxReconnectAttempts: -1` unless told otherwise); the first connect fails fast and clearly.
 */
export async function openConnection(c: ResolvedConnection, name: string): Promise<{ nc: NatsConnection; owned: boolean }> {
  if (c.connection) return { nc: c.connection, owned: false };
  try {
    const nc = await connect({ name, maxReconnectAttempts: -1, reconnectTimeWait: 250, ...c.connectOptions, servers: c.servers });
    return { nc, owned: true };
  } catch (cause) {
    const reason = redactError(cause);
    throw new Error(`NATS at ${c.where} unreachable: ${reason}`, { cause });
  }
}

/**
 * Turns the client's status stream into source events until the connection closes; `onChange`
 * hears each status type too (a source stops pulling while disconnected and starts its pulls
 * over after a reconnect).
 */
export function watchStatus(
  nc: NatsConnection,
  report: (event: SourceEvent) => void,
  onChange?: (type: string) => void,
): void {
  void (async () => {
    let reconnects = 0;
    for await (const s of nc.status()) {
      const detail = `NATS ${s.type}${s.data ? `: ${redactText(String(s.data))}` : ''}`;
      if (s.type === 'disconnect') report({ type: 'disconnected', detail });
      else if (s.type === 'reconnect') report({ type: 'recovered', detail, attempts: ++reconnects });
      else if (s.type === 'error') report({ type: 'error', error: new Error(detail), detail: 'nats status' });
      onChange?.(s.type);
    }
  })().catch(() => {});
}
