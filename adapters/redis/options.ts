import type { Redis } from 'ioredis';
import { integerOption, numberOption, oneOfOption, stringOption } from '../../src/adapter/index.js';
import { perSecondOption } from '../../src/flow/rate-limit.js';

/** Options of `redisRateLimiter(...)`. Every field but `key` and `perSecond` has a default. */
export interface RedisRateLimiterOptions {
  /**
   * Where the shared budget lives: an ioredis client you own (the limiter never closes it), or a
   * `redis://` / `rediss://` URL the limiter connects to and closes on `close()`.
   * Default `'redis://127.0.0.1:6379'`.
   */
  redis?: Redis | string;
  /**
   * The limit's name: every process that uses the same key (with the same `keyPrefix`) shares one
   * budget. One Redis key per limit, `keyPrefix + key`. Required, a non-empty string.
   */
  key: string;
  /** Prepended to `key` in Redis. Default `'sluice:rate:'`. */
  keyPrefix?: string;
  /**
   * Messages admitted per second on average, summed over every process and consumer sharing the
   * key. Required: a finite number > 0. Every process must use the same `perSecond`, `burst` and
   * `leaseMs` for one key.
   */
  perSecond: number;
  /**
   * Over any window of t seconds at most `perSecond × t + burst` messages pass, summed over all
   * processes. An integer ≥ 2 (part of it covers the tokens leased ahead, see `leaseMs`).
   * Default: a tenth of a second's worth, `Math.max(2, Math.ceil(perSecond / 10))`.
   */
  burst?: number;
  /**
   * How long a process may hold tokens it took from Redis before it must use them or drop them.
   * Tokens are leased ahead because `admit()` is synchronous; so that leased tokens can never add
   * to a burst, the Redis bucket is `burst − perSecond × leaseMs / 1000` tokens (at least 1).
   * Longer leases survive a slower event loop; shorter ones keep more of the burst.
   * Default: a quarter of the time the burst takes to refill beyond one token,
   * `250 × (burst − 1) / perSecond` ms, at most 1000. A finite number ≥ 5.
   */
  leaseMs?: number;
  /** `redisRateLimiter()` rejects when Redis has not answered within this. Default 2000 ms; an integer ≥ 1. */
  connectTimeoutMs?: number;
  /** A Redis call that takes longer counts as failed (see `onRedisError`). Default 1000 ms; an integer ≥ 1. */
  commandTimeoutMs?: number;
  /**
   * What a process does while Redis cannot be reached after start. `'closed'` (default): it admits
   * only the tokens it already holds (their lease), then nothing: every consumer of the limiter
   * stays paused until Redis answers again. `'local'`: it falls back to a local RateLimiter of
   * `perSecond / processes` (burst `burst / processes`, at least 1, starting empty) until Redis
   * answers again — right only if `processes` is at least the number of processes sharing the key.
   */
  onRedisError?: 'closed' | 'local';
  /** How many processes share the key; required with `onRedisError: 'local'`. An integer ≥ 1. */
  processes?: number;
  /** How often Redis is asked again while it fails: the wait doubles from 100 ms up to this. Default 2000 ms; an integer ≥ 100. */
  retryMaxMs?: number;
  /** The gate's name: the pause reason in `status().pausedBy` and events. Default `'rate-limit'`. */
  name?: string;
}

export interface ResolvedRedisRateLimiterOptions {
  /** A client of the user's, or the URL to connect to. */
  redis: Redis | string;
  key: string;
  perSecond: number;
  burst: number;
  leaseMs: number;
  /** Tokens in the Redis bucket: burst less what leases may hold. */
  redisBurst: number;
  connectTimeoutMs: number;
  commandTimeoutMs: number;
  onRedisError: 'closed' | 'local';
  processes: number | undefined;
  retryMaxMs: number;
  name: string;
}

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

export function resolveRedisRateLimiterOptions(options: RedisRateLimiterOptions): ResolvedRedisRateLimiterOptions {
  if (options === null || typeof options !== 'object') throw new TypeError('redisRateLimiter: options must be an object with "key" and "perSecond"');
  const owner = `redisRateLimiter(${JSON.stringify(options.key)})`;
  const key = stringOption(owner, 'key', options.key);
  const keyPrefix = options.keyPrefix === '' ? '' : stringOption(owner, 'keyPrefix', options.keyPrefix, 'sluice:rate:');
  const perSecond = perSecondOption(owner, options.perSecond);
  const burst = integerOption(owner, 'burst', options.burst, { min: 2, fallback: Math.max(2, Math.ceil(perSecond / 10)) });
  const leaseMs = numberOption(owner, 'leaseMs', options.leaseMs, { min: 5, fallback: Math.max(5, Math.min(1000, (250 * (burst - 1)) / perSecond)) });
  const redisBurst = burst - (perSecond * leaseMs) / 1000;
  if (redisBurst < 1) {
    throw new RangeError(
      `${owner}: option "burst" (${burst}) is too small for ${perSecond}/s with leaseMs ${leaseMs}: tokens leased ahead take ` +
        `perSecond × leaseMs / 1000 of the burst and Redis needs one more; use burst ≥ ${Math.ceil(1 + (perSecond * leaseMs) / 1000)}` +
        (leaseMs > 5 ? ' or a shorter leaseMs' : ''),
    );
  }
  let redis: Redis | string;
  if (options.redis === undefined) redis = DEFAULT_REDIS_URL;
  else if (typeof options.redis === 'string') redis = stringOption(owner, 'redis', options.redis);
  else if (typeof (options.redis as Partial<Redis>)?.evalsha === 'function') redis = options.redis;
  else throw new TypeError(`${owner}: option "redis" must be an ioredis client or a redis:// URL`);
  const onRedisError = oneOfOption(owner, 'onRedisError', options.onRedisError, ['closed', 'local'] as const, 'closed');
  const processes = options.processes === undefined && onRedisError === 'closed' ? undefined : integerOption(owner, 'processes', options.processes, { min: 1 });
  return {
    redis,
    key: keyPrefix + key,
    perSecond,
    burst,
    leaseMs,
    redisBurst,
    connectTimeoutMs: integerOption(owner, 'connectTimeoutMs', options.connectTimeoutMs, { min: 1, fallback: 2000 }),
    commandTimeoutMs: integerOption(owner, 'commandTimeoutMs', options.commandTimeoutMs, { min: 1, fallback: 1000 }),
    onRedisError,
    processes,
    retryMaxMs: integerOption(owner, 'retryMaxMs', options.retryMaxMs, { min: 100, fallback: 2000 }),
    name: stringOption(owner, 'name', options.name, 'rate-limit'),
  };
}
