import { WorkerPool } from 'sluice';
import { MemoryBroker, memoryConsumer } from 'sluice/memory';

// One bounded pool: 8 payments at a time, 16 more may wait, anything beyond is given back.
const pool = new WorkerPool({ name: 'payments', maxConcurrency: 8, maxQueueSize: 16 });

const broker = new MemoryBroker(); // swap for rabbitConsumer / kafkaConsumer / natsConsumer
for (let i = 0; i < 100; i++) broker.publishJson('payments', { id: i, amountCents: 100 * i }, { id: `p-${i}` });

const consumer = memoryConsumer({
  broker,
  queue: 'payments',
  pool,
  onOverload: 'pause', // or 'nack'
  retry: { maxAttempts: 3, backoff: { initialMs: 50, maxMs: 1_000 } },
  handlerTimeoutMs: 5_000,
  handler: async (msg, { signal }) => {
    const payment = msg.json<{ id: number; amountCents: number }>(); // not JSON → dead-letter, no retry
    await new Promise((resolve) => setTimeout(resolve, 5)); // the slow downstream; honour `signal`
    if (signal.aborted) throw signal.reason;
    if (payment.id === 13) throw new Error('card declined'); // retried, then dead-lettered
  },
});

consumer.on('deadLettered', ({ message, info }) => console.log(`dead-lettered ${message.id}: ${info.error.message}`));
await consumer.start();
while (consumer.status().handled + consumer.status().deadLettered < 100) await new Promise((r) => setTimeout(r, 20));
await consumer.stop({ timeoutMs: 5_000 });
console.log(consumer.status().handled, 'handled;', broker.depth('payments.dlq').ready, 'in the dead-letter queue');
await pool.close();
