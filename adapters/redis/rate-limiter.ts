import { Redis } from 'ioredis';
import { redactError, redactUrl, TypedEmitter } from '../../src/adapter/index.js';
import { ADMIT, type FlowGate, type GateDecision, type GateOutcome } from '../../src/flow/gate.js';
import { RateLimiter } from '../../src/flow/rate-limit.js';
import { loadScript, takeTokens, type Grant } from './gcra.js';
import { resolveRedisRateLimiterOptions, type RedisRateLimiterOptions, type ResolvedRedisRateLimiterOptions } from './options.js';

/**
 * One rate limit shared by every process that uses the same Redis key.
 *
 * Design. A gate's `admit()` is synchronous and runs for every message, so it cannot ask Redis.
 * Each process therefore keeps a small local cache of tokens **leased** from Redis ahead of need,
 * refilled asynchronously by one loop per limiter:
 *
 *  - Redis holds the budget as GCRA in one atomic script over one key (gcra.ts), on Redis's clock.
 *    A call takes up to `leaseSize` tokens at once; with none left it says when there will be,
 *    and the loop sleeps exactly that long (no polling).
 *  - A lease is valid for `leaseMs` from the moment its request was sent (the local monotonic
 *    clock; the grant happened after that), then its unused tokens are dropped. So every token
 *    admitted inside a window [t1, t2] was granted inside [t1 − leaseMs, t2].
 *  - Redis's bucket is `burst − perSecond × leaseMs / 1000` tokens instead of `burst`. GCRA grants
 *    at most `perSecond × (t + leaseMs/1000) + thatBucket` tokens over t + leaseMs, which is
 *    `perSecond × t + burst`: summed over any number of processes, admissions never exceed the
 *    limit, and the bound does not depend on how many processes there are.
 *  - Tokens of an expired lease are dropped, not given back to Redis: while a lease is held the
 *    Redis bucket may fill up and be capped, and tokens returned then would outlive their lease
 *    and add to a burst. Dropped tokens cost budget, never the bound (`status().wasted`).
 *  - Lease sizes adapt per process: they start at 1, double when a lease is used up before it
 *    expires, halve when tokens expire unused (at most half of Redis's bucket). The loop runs only
 *    on demand: a refusal, a cache that runs low, or `capacity()` answering 0.
 *  - A message without a cached token is refused (it does not take a pool slot) and its consumer
 *    pauses at the broker until the loop brings tokens (`resumeWhen`). A message admitted that
 *    never ran (pool full, a later gate) gives its token back to its lease.
 *
 * Redis failing at run time (an error, or no answer within `commandTimeoutMs`): tokens already
 * leased are still used until their lease ends, since they were granted within the bound. Then
 * `onRedisError: 'closed'` (default) admits nothing — consumers stay paused — while the loop asks
 * Redis again with backoff (100 ms doubling to `retryMaxMs`); `'local'` switches to a local
 * RateLimiter of `perSecond / processes` that starts empty, until Redis answers again. A switch
 * back to Redis may add one burst to a window that spans it; nothing is ever unbounded.
 */
export class RedisRateLimiter extends TypedEmitter<RedisRateLimiterEvents> implements FlowGate {
  readonly name: string;
  /** The Redis key of this limit. */
  readonly key: string;
  readonly perSecond: number;
  readonly burst: number;
  readonly leaseMs: number;
  readonly #o: ResolvedRedisRateLimiterOptions;
  readonly #client: Redis;
  readonly #ownsClient: boolean;
  /** Where Redis is, for errors (no password). */
  readonly #where: string;
  readonly #intervalUs: number;
  readonly #toleranceUs: number;
  readonly #maxLease: number;
  /** Unexpired leases, oldest first; none is empty. */
  readonly #leases: Lease[] = [];
  #cached = 0;
  #leaseSize = 1;
  #demand = false;
  #refilling = false;
  #arrival: { promise: Promise<void>; resolve: () => void } | undefined;
  #mode: RedisRateLimiterMode = 'redis';
  #local: RateLimiter | undefined;
  #failures = 0;
  #sleep: { timer: NodeJS.Timeout; wake: () => void } | undefined;
  #started: Promise<void> | undefined;
  #closed = false;
  /** The last message admitted and the lease its token came from, so a skipped one can give it back. */
  #lastMessage: unknown;
  #lastLease: Lease | undefined;
  #lastError: string | undefined;
  readonly #counts = { admitted: 0, refused: 0, leased: 0, wasted: 0, redisCalls: 0, redisErrors: 0 };

  /** Prefer `await redisRateLimiter(options)`, which also starts it. */
  constructor(options: RedisRateLimiterOptions) {
    super();
    const o = resolveRedisRateLimiterOptions(options);
    this.#o = o;
    this.name = o.name;
    this.key = o.key;
    this.perSecond = o.perSecond;
    this.burst = o.burst;
    this.leaseMs = o.leaseMs;
    this.#intervalUs = 1_000_000 / o.perSecond;
    this.#toleranceUs = o.redisBurst * this.#intervalUs;
    this.#maxLease = Math.max(1, Math.floor(o.redisBurst / 2));
    if (typeof o.redis === 'string') {
      this.#where = redactUrl(o.redis);
      this.#ownsClient = true;
      this.#client = new Redis(o.redis, {
        lazyConnect: true,
        // Fail at once while disconnected (the limiter's fallback takes over) instead of queueing.
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        connectTimeout: o.connectTimeoutMs,
        retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times - 1, 10), o.retryMaxMs),
      });
      // ioredis reports every failed reconnect; the limiter reports the state change instead.
      this.#client.on('error', (error: unknown) => void (this.#lastError = redactError(error)));
    } else {
      this.#client = o.redis;
      this.#ownsClient = false;
      const { host, port } = o.redis.options ?? {};
      this.#where = host === undefined ? 'the given client' : `${host}:${port ?? 6379}`;
    }
  }

  /**
   * Connects (its own client) and loads the script; rejects with an error naming Redis's address
   * when Redis does not answer within `connectTimeoutMs`. Idempotent.
   */
  start(): Promise<void> {
    this.#started ??= this.#start();
    return this.#started;
  }

  async #start(): Promise<void> {
    const owner = `redisRateLimiter(${JSON.stringify(this.key)})`;
    try {
      await withTimeout(
        (async () => {
          if (this.#ownsClient && this.#client.status === 'wait') await this.#client.connect();
          await loadScript(this.#client);
        })(),
        this.#o.connectTimeoutMs,
      );
    } catch (error) {
      if (this.#ownsClient) this.#client.disconnect();
      this.#closed = true;
      // ioredis's own rejection says only "Connection is closed."; its error event said why.
      const cause = this.#lastError ?? redactError(error);
      throw new Error(
        `${owner}: cannot reach Redis at ${this.#where} (${cause}; connectTimeoutMs ${this.#o.connectTimeoutMs}); the shared rate limit needs Redis to start`,
        { cause: error },
      );
    }
  }

  admit(message: unknown, _consumer?: unknown): GateDecision {
    if (this.#cached > 0) {
      const now = performance.now();
      const lease = this.#head(now);
      if (lease !== undefined) {
        lease.left--;
        this.#cached--;
        this.#lastMessage = message;
        this.#lastLease = lease;
        if (lease.left === 0) {
          this.#leases.shift();
          // Used up before it expired: the next lease may be larger.
          if (lease.granted >= this.#leaseSize) this.#leaseSize = Math.min(this.#maxLease, this.#leaseSize * 2);
        }
        if (this.#cached <= this.#lowWater()) this.#want();
        this.#counts.admitted++;
        return ADMIT;
      }
    }
    if (this.#local !== undefined) {
      // Redis is down and the fallback is local; asking Redis again goes on meanwhile.
      this.#want();
      const decision = this.#local.admit();
      if (decision.admit) {
        this.#lastMessage = message;
        this.#lastLease = undefined;
        this.#counts.admitted++;
      } else this.#counts.refused++;
      return decision;
    }
    this.#counts.refused++;
    this.#want();
    return { admit: false, resumeWhen: this.#nextArrival() };
  }

  /** A message admitted here that never ran gives its token back, to the lease it came from while that lasts. */
  done(message: unknown, outcome: GateOutcome): void {
    if (outcome.result !== 'skipped' || message !== this.#lastMessage) return;
    this.#lastMessage = undefined;
    const lease = this.#lastLease;
    this.#lastLease = undefined;
    if (lease === undefined) return this.#local?.done(message, outcome);
    if (lease.expiresAt <= performance.now()) return;
    if (lease.left === 0) this.#leases.unshift(lease);
    lease.left++;
    this.#cached++;
  }

  /** Tokens this process may admit now (its leases, or the local fallback's); asks Redis for more when low. */
  capacity(): number {
    this.#head(performance.now());
    if (this.#cached <= this.#lowWater()) this.#want();
    return this.#cached + (this.#local?.capacity() ?? 0);
  }

  status(): RedisRateLimiterStatus {
    this.#head(performance.now());
    return {
      mode: this.#mode,
      cachedTokens: this.#cached,
      leaseSize: this.#leaseSize,
      ...this.#counts,
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }),
    };
  }

  /** Stops asking Redis, wakes paused consumers (they stop or find no token), and closes its own client. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#wake();
    this.#resolveArrival();
    if (!this.#ownsClient || this.#client.status === 'end') return;
    if (this.#client.status === 'ready') await this.#client.quit().catch(() => this.#client.disconnect());
    else this.#client.disconnect();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // --- the cache ------------------------------------------------------------------------

  /** The oldest lease still valid, after dropping the expired ones (their tokens are wasted, and leases shrink). */
  #head(now: number): Lease | undefined {
    const leases = this.#leases;
    while (leases.length > 0 && leases[0]!.expiresAt <= now) {
      const expired = leases.shift()!;
      this.#cached -= expired.left;
      this.#counts.wasted += expired.left;
      this.#leaseSize = Math.max(1, Math.floor(this.#leaseSize / 2));
    }
    return leases[0];
  }

  /** Ask ahead when the cache holds half a lease or less. */
  #lowWater(): number {
    return this.#leaseSize >> 1;
  }

  #want(): void {
    this.#demand = true;
    if (!this.#refilling && !this.#closed) void this.#refill();
  }

  /** The one refill loop: runs while there is demand, one Redis call at a time. */
  async #refill(): Promise<void> {
    this.#refilling = true;
    try {
      while (this.#demand && !this.#closed) {
        const want = this.#leaseSize;
        const sentAt = performance.now();
        let grant: Grant;
        try {
          this.#counts.redisCalls++;
          grant = await withTimeout(takeTokens(this.#client, this.key, this.#intervalUs, this.#toleranceUs, want), this.#o.commandTimeoutMs);
        } catch (error) {
          if (this.#closed) return;
          this.#failed(error);
          await this.#pause(Math.min(this.#o.retryMaxMs, 100 * 2 ** Math.min(this.#failures - 1, 10)));
          continue;
        }
        if (this.#closed) return;
        this.#recovered();
        if (grant.granted > 0) {
          this.#leases.push({ left: grant.granted, granted: grant.granted, expiresAt: sentAt + this.#o.leaseMs });
          this.#cached += grant.granted;
          this.#counts.leased += grant.granted;
          if (this.#cached > this.#lowWater()) this.#demand = false;
          this.#resolveArrival();
        } else {
          await this.#pause(Math.max(1, grant.waitMs));
        }
      }
    } finally {
      this.#refilling = false;
    }
  }

  #failed(error: unknown): void {
    this.#failures++;
    this.#counts.redisErrors++;
    this.#lastError = redactError(error);
    if (this.#mode !== 'redis') return;
    if (this.#o.onRedisError === 'local') {
      const processes = this.#o.processes!;
      this.#local = new RateLimiter({
        perSecond: this.perSecond / processes,
        burst: Math.max(1, Math.floor(this.burst / processes)),
        initialTokens: 0,
        name: this.name,
      });
      this.#mode = 'local';
      // Consumers waiting for Redis's tokens try the local limit now.
      this.#resolveArrival();
    } else {
      this.#mode = 'closed';
    }
    this.emit('redis', { state: 'down', mode: this.#mode, error });
  }

  #recovered(): void {
    this.#failures = 0;
    if (this.#mode === 'redis') return;
    this.#mode = 'redis';
    this.#local = undefined;
    this.emit('redis', { state: 'up', mode: 'redis' });
  }

  #nextArrival(): Promise<void> {
    if (this.#arrival === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#arrival = { promise, resolve };
    }
    return this.#arrival.promise;
  }

  #resolveArrival(): void {
    const arrival = this.#arrival;
    this.#arrival = undefined;
    arrival?.resolve();
  }

  /** A wait that close() cuts short. */
  #pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#sleep = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#sleep = { timer, wake };
    });
  }

  #wake(): void {
    this.#sleep?.wake();
  }
}

interface Lease {
  left: number;
  granted: number;
  /** performance.now() after which its tokens may no longer be used. */
  expiresAt: number;
}

/** `'redis'`: tokens come from Redis; `'closed'`: Redis fails and nothing beyond held leases is admitted; `'local'`: Redis fails and the local fallback admits. */
export type RedisRateLimiterMode = 'redis' | 'closed' | 'local';

export interface RedisRateLimiterEvents {
  /** Redis stopped answering (`'down'`, with the error and the mode now in force) or answers again (`'up'`). */
  redis: { state: 'down' | 'up'; mode: RedisRateLimiterMode; error?: unknown };
}

export interface RedisRateLimiterStatus {
  mode: RedisRateLimiterMode;
  /** Leased tokens this process holds now. */
  cachedTokens: number;
  /** Tokens the next Redis call asks for. */
  leaseSize: number;
  /** Messages admitted / refused by this process. */
  admitted: number;
  refused: number;
  /** Tokens Redis granted to this process, and those of them that expired unused. */
  leased: number;
  wasted: number;
  redisCalls: number;
  redisErrors: number;
  lastError?: string;
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/**
 * A rate limit shared across processes through Redis, started: it rejects (naming Redis's
 * address) if Redis does not answer within `connectTimeoutMs`. Pass it to any number of
 * consumers in `flow: { gates: [limiter] }`; `await limiter.close()` when done.
 */
export async function redisRateLimiter(options: RedisRateLimiterOptions): Promise<RedisRateLimiter> {
  const limiter = new RedisRateLimiter(options);
  await limiter.start();
  return limiter;
}
