/**
 * The one place that knows which NATS client generation is in use: `nats` 2.x ('v2') or the
 * `@nats-io/transport-node` + `@nats-io/jetstream` 3.x packages ('v3'). Everything else in this
 * adapter is written against the small structural types below, which both generations satisfy,
 * and against the `NatsClient` this file loads. No NATS package is imported until a consumer
 * starts (or a publisher is made), so `sluice/nats` loads with either one installed.
 *
 * Which generation (docs/nats.md, "Client packages"):
 *  1. a `connection` you pass: its own generation (a v2 connection has `jetstream()`, a v3 one has not);
 *  2. else the `client` option ('v2' | 'v3');
 *  3. else the environment variable `SLUICE_NATS_CLIENT` ('v2' | 'v3');
 *  4. else the one your application's package.json (in the working directory) depends on, when it
 *     names exactly one of `nats` / `@nats-io/transport-node`;
 *  5. else whichever is installed, `nats` first.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** 'v2': the `nats` package (2.29); 'v3': `@nats-io/transport-node` + `@nats-io/jetstream` (3.x). */
export type NatsClientGeneration = 'v2' | 'v3';

/**
 * NATS message headers, as both generations make them (the same interface in `nats` 2.x and
 * `@nats-io/nats-core` 3.x, whose `Match` constants differ: numbers in 2.x, strings in 3.x).
 */
export interface MsgHdrs extends Iterable<[string, string[]]> {
  /** A status message's code (100 heartbeat, 404, 408, 409, 503…); 0 on a plain message. */
  readonly code: number;
  readonly description: string;
  readonly hasError: boolean;
  readonly status: string;
  get(key: string, match?: unknown): string;
  set(key: string, value: string, match?: unknown): void;
  append(key: string, value: string, match?: unknown): void;
  has(key: string, match?: unknown): boolean;
  keys(): string[];
  values(key: string, match?: unknown): string[];
  delete(key: string, match?: unknown): void;
  last(key: string, match?: unknown): string;
}

/** A core NATS message (both generations). */
export interface Msg {
  readonly subject: string;
  readonly sid: number;
  readonly reply?: string;
  readonly data: Uint8Array;
  readonly headers?: MsgHdrs;
  respond(payload?: Uint8Array | string, options?: { headers?: MsgHdrs; reply?: string }): boolean;
  json<T = unknown>(): T;
  string(): string;
}

export interface Subscription {
  unsubscribe(max?: number): void;
}

/**
 * What sluice uses of a NATS connection: the `NatsConnection` of `nats` 2.x (`connect()` from
 * 'nats') and of 3.x (`connect()` from '@nats-io/transport-node') both are one.
 */
export interface NatsConnection {
  publish(subject: string, payload?: Uint8Array | string, options?: { reply?: string; headers?: MsgHdrs }): void;
  subscribe(subject: string, options?: { queue?: string; callback?: (error: Error | null, msg: Msg) => void }): Subscription;
  request(subject: string, payload?: Uint8Array | string, options?: { timeout: number; headers?: MsgHdrs }): Promise<Msg>;
  flush(): Promise<void>;
  drain(): Promise<void>;
  close(): Promise<void>;
  isClosed(): boolean;
  status(): AsyncIterable<{ type: string }>;
}

/**
 * Options for `connect()`, as both generations take them (see your client's docs; `servers` is
 * sluice's own option). `authenticator` and `tls` are passed through as given: make them with the
 * same package as the connection (`usernamePasswordAuthenticator`, `credsAuthenticator`, …).
 */
export interface NatsConnectOptions {
  authenticator?: unknown;
  debug?: boolean;
  maxPingOut?: number;
  maxReconnectAttempts?: number;
  name?: string;
  noEcho?: boolean;
  noRandomize?: boolean;
  pass?: string;
  pedantic?: boolean;
  pingInterval?: number;
  port?: number;
  reconnect?: boolean;
  reconnectDelayHandler?: () => number;
  reconnectJitter?: number;
  reconnectJitterTLS?: number;
  reconnectTimeWait?: number;
  timeout?: number;
  tls?: unknown;
  token?: string;
  user?: string;
  verbose?: boolean;
  waitOnFirstConnect?: boolean;
  ignoreClusterUpdates?: boolean;
  inboxPrefix?: string;
  ignoreAuthErrorAbort?: boolean;
  noAsyncTraces?: boolean;
  resolve?: boolean;
  /** 3.x only. */
  reconnectToServer?: unknown;
}

/**
 * A JetStream consumer's config (the server's JSON names; policies as their string values, so
 * both generations' `AckPolicy` / `DeliverPolicy` constants fit; durations in nanoseconds).
 */
export interface ConsumerConfig {
  ack_policy?: string;
  deliver_policy?: string;
  deliver_group?: string;
  durable_name?: string;
  name?: string;
  description?: string;
  flow_control?: boolean;
  idle_heartbeat?: number;
  opt_start_seq?: number;
  opt_start_time?: string;
  rate_limit_bps?: number;
  replay_policy?: string;
  pause_until?: string;
  ack_wait?: number;
  max_deliver?: number;
  sample_freq?: string;
  max_ack_pending?: number;
  max_waiting?: number;
  headers_only?: boolean;
  deliver_subject?: string;
  max_batch?: number;
  max_expires?: number;
  inactive_threshold?: number;
  backoff?: number[];
  max_bytes?: number;
  num_replicas?: number;
  mem_storage?: boolean;
  filter_subject?: string;
  filter_subjects?: string[];
  metadata?: Record<string, string>;
  priority_groups?: string[];
  priority_policy?: string;
  priority_timeout?: number;
}

/** The stream's answer to a JetStream publish. */
export interface PubAck {
  stream: string;
  seq: number;
  duplicate: boolean;
  domain?: string;
}

export interface JetStreamClient {
  publish(subject: string, payload?: Uint8Array | string, options?: { headers?: MsgHdrs; msgID?: string }): Promise<PubAck>;
}

/** What sluice reads of a durable's info (the client's object has all the server sent). */
export interface ConsumerInfo {
  created: string;
  config: { ack_wait?: number; max_ack_pending?: number };
  num_ack_pending: number;
  num_pending: number;
  num_waiting: number;
  num_redelivered: number;
}

/** A stream's config and state, as the server sends them (the main fields). */
export interface StreamInfo {
  /** `retention`: `limits` keeps acked messages (until its limits), `workqueue` and `interest` remove them. */
  config: { name: string; subjects?: string[]; retention?: 'limits' | 'interest' | 'workqueue' | string };
  state: { messages: number; bytes: number; first_seq: number; last_seq: number; consumer_count: number };
  created: string;
}

/** The parts of either generation's JetStreamManager that sluice (and its demo) use. */
export interface JetStreamManager {
  streams: {
    info(stream: string): Promise<StreamInfo>;
    find(subject: string): Promise<string>;
    add(config: { name?: string; subjects?: string[]; retention?: string; max_msgs?: number; max_bytes?: number; discard?: string; duplicate_window?: number }): Promise<StreamInfo>;
    delete(stream: string): Promise<boolean>;
    purge(stream: string): Promise<unknown>;
  };
  consumers: {
    info(stream: string, durable: string): Promise<ConsumerInfo>;
    add(stream: string, config: ConsumerConfig): Promise<ConsumerInfo>;
    update(stream: string, durable: string, config: ConsumerConfig): Promise<ConsumerInfo>;
    delete(stream: string, durable: string): Promise<boolean>;
  };
}

/** One generation's entry points, loaded once. */
export interface NatsClient {
  readonly generation: NatsClientGeneration;
  /** The package(s), for messages. */
  readonly packages: string;
  connect(options: NatsConnectOptions & { servers?: string[] }): Promise<NatsConnection>;
  headers(): MsgHdrs;
  createInbox(prefix?: string): string;
  jetstream(nc: NatsConnection): Promise<JetStreamClient>;
  jetstreamManager(nc: NatsConnection): Promise<JetStreamManager>;
}

const V2_PACKAGE = 'nats';
const V3_PACKAGE = '@nats-io/transport-node';
const V3_JETSTREAM = '@nats-io/jetstream';
const PACKAGES: Record<NatsClientGeneration, string> = { v2: `${V2_PACKAGE} (2.x)`, v3: `${V3_PACKAGE} + ${V3_JETSTREAM} (3.x)` };
const INSTALL = `npm install ${V2_PACKAGE}, or npm install ${V3_PACKAGE} ${V3_JETSTREAM}`;

/** A connection's generation: `nats` 2.x connections have `jetstream()` and `jetstreamManager()`; 3.x ones leave JetStream to @nats-io/jetstream. */
export function connectionGeneration(nc: unknown): NatsClientGeneration {
  return typeof (nc as { jetstream?: unknown }).jetstream === 'function' ? 'v2' : 'v3';
}

export function isNatsConnection(value: unknown): value is NatsConnection {
  const nc = value as Partial<Record<keyof NatsConnection, unknown>> | null;
  return typeof nc === 'object' && nc !== null && typeof nc.publish === 'function' && typeof nc.subscribe === 'function' && typeof nc.status === 'function';
}

export function generationOption(owner: string, value: unknown): NatsClientGeneration | undefined {
  if (value === undefined) return undefined;
  if (value === 'v2' || value === 'v3') return value;
  throw new TypeError(`${owner}: option "client" must be 'v2' (the nats package) or 'v3' (@nats-io/transport-node + @nats-io/jetstream), got ${JSON.stringify(value)}`);
}

/** What the choice is made from; `installed` and `appDependencies` are looked up only when needed. */
export interface GenerationInputs {
  connection?: unknown;
  client?: NatsClientGeneration;
  env?: string | undefined;
  /** The NATS client packages the application's package.json names (dependencies of any kind). */
  appDependencies?: () => NatsClientGeneration[];
}

/**
 * The generation to load, by rules 1–4 above; undefined: rule 5 (whichever is installed, `nats`
 * first) decides when it is loaded. Pure, so the rule is unit-tested.
 */
export function chooseGeneration(owner: string, i: GenerationInputs): NatsClientGeneration | undefined {
  if (i.connection !== undefined) {
    const own = connectionGeneration(i.connection);
    if (i.client !== undefined && i.client !== own) {
      throw new TypeError(`${owner}: option "client" is '${i.client}' but the given connection is a ${PACKAGES[own]} connection ('${own}')`);
    }
    return own;
  }
  if (i.client) return i.client;
  if (i.env !== undefined && i.env !== '') {
    if (i.env === 'v2' || i.env === 'v3') return i.env;
    throw new TypeError(`${owner}: SLUICE_NATS_CLIENT must be 'v2' or 'v3', got ${JSON.stringify(i.env)}`);
  }
  const named = i.appDependencies?.() ?? [];
  return named.length === 1 ? named[0] : undefined;
}

/** The NATS client packages named in the working directory's package.json (read once). */
let appDeps: NatsClientGeneration[] | undefined;
export function appDependencies(): NatsClientGeneration[] {
  if (appDeps) return appDeps;
  try {
    const pkg = JSON.parse(readFileSync(join(process.cwd(), 'package.json'), 'utf8')) as Record<string, unknown>;
    const names = new Set<string>();
    for (const field of ['dependencies', 'devDependencies', 'optionalDependencies', 'peerDependencies']) {
      const deps = pkg[field];
      if (deps && typeof deps === 'object') for (const name of Object.keys(deps)) names.add(name);
    }
    appDeps = [...(names.has(V2_PACKAGE) ? (['v2'] as const) : []), ...(names.has(V3_PACKAGE) ? (['v3'] as const) : [])];
  } catch {
    appDeps = [];
  }
  return appDeps;
}

function notInstalled(error: unknown): boolean {
  const code = (error as { code?: string } | null)?.code;
  return code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND';
}

async function loadV2(): Promise<NatsClient> {
  const nats = await import('nats');
  return {
    generation: 'v2',
    packages: PACKAGES.v2,
    connect: (options) => nats.connect(options as Parameters<typeof nats.connect>[0]) as unknown as Promise<NatsConnection>,
    headers: () => nats.headers() as unknown as MsgHdrs,
    createInbox: (prefix) => nats.createInbox(prefix),
    jetstream: async (nc) => (nc as unknown as import('nats').NatsConnection).jetstream() as unknown as JetStreamClient,
    jetstreamManager: async (nc) => (await (nc as unknown as import('nats').NatsConnection).jetstreamManager()) as unknown as JetStreamManager,
  };
}

async function loadV3(): Promise<NatsClient> {
  const transport = await import('@nats-io/transport-node');
  // Only JetStream needs the second package: a core subscriber without dead letters runs without it.
  let js: Promise<typeof import('@nats-io/jetstream')> | undefined;
  const jetstreamPackage = () =>
    (js ??= import('@nats-io/jetstream').catch((error: unknown) => {
      js = undefined;
      if (!notInstalled(error)) throw error;
      throw new Error(`JetStream with the 3.x NATS client needs ${V3_JETSTREAM} (npm install ${V3_JETSTREAM})`, { cause: error });
    }));
  return {
    generation: 'v3',
    packages: PACKAGES.v3,
    connect: (options) => transport.connect(options as Parameters<typeof transport.connect>[0]) as unknown as Promise<NatsConnection>,
    headers: () => transport.headers() as unknown as MsgHdrs,
    createInbox: (prefix) => transport.createInbox(prefix),
    jetstream: async (nc) => (await jetstreamPackage()).jetstream(nc as never) as unknown as JetStreamClient,
    jetstreamManager: async (nc) => (await (await jetstreamPackage()).jetstreamManager(nc as never)) as unknown as JetStreamManager,
  };
}

const loaded = new Map<NatsClientGeneration, Promise<NatsClient>>();

function load(generation: NatsClientGeneration): Promise<NatsClient> {
  let client = loaded.get(generation);
  if (!client) {
    client = generation === 'v2' ? loadV2() : loadV3();
    loaded.set(generation, client);
    client.catch(() => loaded.delete(generation));
  }
  return client;
}

/**
 * Loads the chosen generation (`undefined`: `nats` if installed, else 3.x). A missing package is
 * one clear error naming what to install.
 */
export async function loadClient(generation: NatsClientGeneration | undefined): Promise<NatsClient> {
  if (generation) {
    try {
      return await load(generation);
    } catch (error) {
      if (!notInstalled(error)) throw error;
      throw new Error(`the NATS client ${PACKAGES[generation]} is not installed (${generation === 'v2' ? `npm install ${V2_PACKAGE}` : `npm install ${V3_PACKAGE} ${V3_JETSTREAM}`})`, { cause: error });
    }
  }
  for (const g of ['v2', 'v3'] as const) {
    try {
      return await load(g);
    } catch (error) {
      if (!notInstalled(error)) throw error;
    }
  }
  throw new Error(`no NATS client is installed: ${INSTALL}`);
}

/** Nanoseconds, as the JetStream API counts durations. */
export const nanos = (ms: number): number => ms * 1_000_000;
