import { MemoryBroker, memoryConsumer } from '../../../adapters/memory/index.js';
import type { DemoBroker, Payment } from '../demo-broker.js';

const QUEUE = 'payments';

/** The demo on the in-process broker: nothing to install. */
export async function createDemoBroker(): Promise<DemoBroker> {
  const broker = new MemoryBroker();
  return {
    name: 'memory',
    async publish(payments: Payment[]) {
      for (const p of payments) broker.publishJson(QUEUE, p, { id: p.id });
      // One message no JSON handler can read: it must go to the dead-letter queue, not crash anything.
      broker.publish(QUEUE, 'this is not json', { id: 'malformed-1' });
    },
    async consumer(options) {
      // Twice the pool's capacity in credit, as when several queues share one pool: overload happens and is shown.
      const pool = 'status' in options.pool ? options.pool.status() : options.pool;
      return memoryConsumer({ ...options, broker, queue: QUEUE, prefetch: 2 * (pool.maxConcurrency + pool.maxQueueSize) });
    },
    async deadLettered() {
      return broker.depth(`${QUEUE}.dlq`).ready;
    },
    async close() {
      broker.close();
    },
  };
}
