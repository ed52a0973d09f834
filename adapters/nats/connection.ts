import { objectOption, redactError, redactText, stringOption, type SourceEvent } from '../../src/adapter/index.js';
import {
  appDependencies,
  chooseGeneration,
  generationOption,
  isNatsConnection,
  loadClient,
  type NatsClient,
  type NatsClientGeneration,
  type NatsConnectOptions,
  type NatsConnection,
} from './client.js';

/** How an adapter gets its NATS connection: made from `servers` (owned), or given (borrowed). */
export interface NatsConnectionOptions {
  /** `nats://user:pass@host:4222`, or several. One of `servers` / `connection`. */
  servers?: string | string[];
  /** Passed to `connect()`: `user`/`pass`, `token`, `authenticator` (nkeys, creds), `tls`, `name`, reconnect settings. */
  connectOptions?: NatsConnectOptions;
  /** A connection you own, from `nats` 2.x or `@nats-io/transport-node` 3.x: sluice never closes or drains it. */
  connection?: NatsConnection;
  /**
   * Which NATS client makes the connection from `servers`: 'v2' (`nats`) or 'v3'
   * (`@nats-io/transport-node` + `@nats-io/jetstream`). Default: `SLUICE_NATS_CLIENT`, else the
   * one your package.json depends on, else whichever is installed (`nats` first). With
   * `connection`, the connection's own generation is used.
   */
  client?: NatsClientGeneration;
}

export interface ResolvedConnection {
  servers: string[] | undefined;
  connectOptions: NatsConnectOptions;
  connection: NatsConnection | undefined;
  /** The generation to load; undefined: whichever is installed, `nats` first. */
  generation: NatsClientGeneration | undefined;
  /** For errors and events, passwords removed. */
  where: string;
}

export function resolveConnection(owner: string, o: NatsConnectionOptions): ResolvedConnection {
  if ((o.servers === undefined) === (o.connection === undefined)) {
    throw new TypeError(`${owner}: give exactly one of option "servers" or option "connection"`);
  }
  const servers = o.servers === undefined ? undefined : (Array.isArray(o.servers) ? o.servers : [o.servers]).map((s, i) => stringOption(owner, `servers[${i}]`, s));
  if (o.connection !== undefined && !isNatsConnection(o.connection)) {
    throw new TypeError(`${owner}: option "connection" must be a NatsConnection (from connect() of nats or @nats-io/transport-node)`);
  }
  const connectOptions = o.connectOptions === undefined ? {} : (objectOption(owner, 'connectOptions', o.connectOptions) as NatsConnectOptions);
  const generation = chooseGeneration(owner, {
    connection: o.connection,
    client: generationOption(owner, o.client),
    env: process.env.SLUICE_NATS_CLIENT,
    appDependencies,
  });
  return { servers, connectOptions, connection: o.connection, generation, where: servers ? servers.map(redactNatsUrl).join(',') : 'the given connection' };
}

/**
 * A server URL fit for errors and events: `user:pass@` loses the password (redactText), and a lone
 * `name@` is removed too, since NATS takes `nats://<token>@host` as a token.
 */
export function redactNatsUrl(url: string): string {
  return redactText(url).replace(/^([a-z][a-z0-9+.-]*:\/\/)([^:@/\s]+)@/i, '$1***@');
}

/** The client package(s) for this connection: a missing one is an error naming what to install, before any connect attempt. */
export async function clientFor(owner: string, c: ResolvedConnection): Promise<NatsClient> {
  try {
    return await loadClient(c.generation);
  } catch (cause) {
    throw new Error(`${owner}: ${redactError(cause)}`, { cause });
  }
}

/**
 * Connects (or borrows). The client reconnects by itself for as long as the consumer runs
 * (`maxReconnectAttempts: -1` unless told otherwise), also through credentials the server refuses
 * for a while (`ignoreAuthErrorAbort: true`: by default the client closes the connection for good
 * after the same authorization error twice, which left the consumer down until restarted, even
 * once the server took the credentials again); the first connect fails fast and clearly.
 */
export async function openConnection(c: ResolvedConnection, name: string, client: NatsClient): Promise<{ nc: NatsConnection; owned: boolean }> {
  if (c.connection) return { nc: c.connection, owned: false };
  try {
    const nc = await client.connect({ name, maxReconnectAttempts: -1, reconnectTimeWait: 250, ignoreAuthErrorAbort: true, ...c.connectOptions, servers: c.servers });
    return { nc, owned: true };
  } catch (cause) {
    const reason = redactError(cause);
    throw new Error(`NATS at ${c.where} unreachable: ${reason}`, { cause });
  }
}

/** A status event's detail in either generation: 2.x puts it in `data`, 3.x in `server` or `error`. */
function statusDetail(s: { type: string; data?: unknown; server?: unknown; error?: unknown }): string {
  const value = s.data ?? s.server ?? (s.error instanceof Error ? s.error.message : s.error);
  return value === undefined || value === null || typeof value === 'object' ? '' : String(value);
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
    // Reported as transitions: while credentials are refused the client says 'disconnect' and the
    // same error on every attempt (several a second), then 'reconnect' once per attempt at once.
    let down = false;
    let lastError = '';
    for await (const s of nc.status()) {
      const data = statusDetail(s);
      const detail = `NATS ${s.type}${data ? `: ${redactText(data)}` : ''}`;
      if (s.type === 'disconnect') {
        if (down) continue;
        down = true;
        report({ type: 'disconnected', detail });
      } else if (s.type === 'reconnect') {
        if (!down) continue;
        down = false;
        lastError = '';
        report({ type: 'recovered', detail, attempts: ++reconnects });
      } else if (s.type === 'error') {
        if (detail !== lastError) report({ type: 'error', error: new Error(detail), detail: 'nats status' });
        lastError = detail;
      }
      onChange?.(s.type);
    }
  })().catch(() => {});
}
