/**
 * `sluice/adapter`: what an adapter author needs to connect a broker to the runtime. An adapter
 * implements `Source` and `Delivery` (src/source.ts) and builds a `Consumer` from them; policies
 * (retry, dead-letter decisions, overload, flow gates, failed broker actions, shutdown) stay in
 * the runtime. docs/adapters.md walks through writing one.
 */
export type { Delivery, DispatchResult, Source, SourceCapabilities, SourceContext, SourceEvent } from '../source.js';
export type { Settlement, GiveBackReason } from '../settlement.js';
export { Consumer } from '../consumer.js';
export type { ConsumerOptions } from '../consumer-options.js';
export { Message, headerText, type MessageInit, type Headers, type HeaderValue } from '../message.js';
export { ATTEMPT_HEADER, bodylessDeadLetterHeaders, DEAD_LETTER_HEADERS, deadLetterHeaders, type DeadLetterInfo } from '../dead-letter.js';
export { DonePrefix } from './done-prefix.js';
export { findError, type FoundError } from './find-error.js';
export { LinkedQueue, type QueueNode } from '../pool/linked-queue.js';
export { consumerCredit, poolCapacity } from './credit.js';
export { connectAtStart, resolveRecovery, RECOVERY_DEFAULTS, type RecoveryOptions, type ResolvedRecovery } from './recovery.js';
export { withBackoff, abortableDelay, type WithBackoffOptions } from '../backoff.js';
export { retryPolicy, type BackoffOptions, type RetryPolicy } from '../retry.js';
export { TypedEmitter, type Listener } from '../emitter.js';
export { redactUrl, redactText, redactError } from '../redact.js';
export { integerOption, numberOption, objectOption, oneOfOption, stringOption, functionOption } from '../validate.js';
