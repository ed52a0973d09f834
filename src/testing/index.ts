/**
 * `sluice/testing`: unit-test a handler without a broker (Broadway's `test_message` /
 * `test_batch`). `testConsumer(options)` builds the real Consumer runtime on an in-memory broker
 * of its own; `push` a message and await its outcome (acked, retried, dead-lettered with its info,
 * given back), with retry delays on a fake clock. README: "Testing your handlers".
 */
export {
  testConsumer,
  TestConsumer,
  type TestConsumerOptions,
  type TestMessage,
  type Outcome,
  type Settled,
  type SettleOptions,
  type BatchCall,
} from './harness.js';
export { FakeClock } from './clock.js';
export type { MemoryBrokerTimers, MemoryBrokerOptions } from '../../adapters/memory/broker.js';
