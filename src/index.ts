// The root entry: what an application that consumes messages uses. Adapter authors: `sluice/adapter`.
export { WorkerPool } from './pool/worker-pool.js';
export type * from './pool/types.js';
export { Consumer } from './consumer.js';
export type {
  ConsumerOptions,
  OverloadPolicy,
  Middleware,
  FailurePolicy,
  FailureDecision,
  FailureInfo,
  SettlementOptions,
  FlowOptions,
  ShareOptions,
  BatchOptions,
} from './consumer-options.js';
export { PoolDisplacedError } from './pool/share.js';
export type * from './consumer-events.js';
export type { Handler, HandlerContext, BatchHandler, BatchContext, BatchResult } from './handler.js';
export { Message, type Headers, type HeaderValue } from './message.js';
export type { Settlement, GiveBackReason } from './settlement.js';
export type { FlowGate, GateDecision, GatedConsumer, GateOutcome } from './flow/gate.js';
export { InFlightLimit, type InFlightLimitOptions } from './flow/in-flight-limit.js';
export { RateLimiter, type RateLimiterOptions } from './flow/rate-limit.js';
export { CircuitBreaker, type CircuitBreakerOptions, type CircuitBreakerStatus, type CircuitBreakerState, type CircuitBreakerEvents, type CircuitBreakerOpenReason } from './flow/circuit-breaker.js';
export type { RetryOptions, BackoffOptions } from './retry.js';
export type { RecoveryOptions } from './adapter/recovery.js';
export { DEAD_LETTER_HEADERS, ATTEMPT_HEADER, type DeadLetterInfo } from './dead-letter.js';
export { DecodeError, PermanentError, PoolClosedError, SettlementError, ShutdownError, TaskTimeoutError, ValidationError } from './errors.js';
export type { StandardSchemaV1, StandardSchemaIssue, InferOutput, ValidationIssue } from './schema.js';
export * from './ops/index.js';
