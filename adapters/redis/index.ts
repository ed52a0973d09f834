/**
 * `sluice/redis`: one rate limit shared by many processes through Redis (needs the optional peer
 * `ioredis`). The design — GCRA in Redis, short leases of tokens cached per process — is
 * explained in rate-limiter.ts and docs/flow-control.md.
 */
export { redisRateLimiter, RedisRateLimiter, type RedisRateLimiterEvents, type RedisRateLimiterMode, type RedisRateLimiterStatus } from './rate-limiter.js';
export type { RedisRateLimiterOptions } from './options.js';
export { GCRA_SCRIPT } from './gcra.js';
