/**
 * One chaos worker process: a sluice consumer (rabbitConsumer / natsConsumer / kafkaConsumer)
 * whose handler works a few ms and then records the id, synchronously, before it returns. Started
 * by the chaos driver with `node --import tsx`; SIGKILLed at random, or SIGTERMed at the end
 * (then it stops the consumer, which settles what is in flight, and exits 0).
 */
import type { Consumer, Message } from '../../../src/index.js';
import { kafkaConsumer, type KafkaRecord } from '../../../adapters/kafka/index.js';
import { natsConsumer } from '../../../adapters/nats/index.js';
import { rabbitConsumer } from '../../../adapters/rabbitmq/index.js';
import { resolveKafka } from '../../../adapters/kafka/options.js';
import { DriverWatch, kafkaClient } from '../../helpers/kafka.js';
import { RecordWriter } from './records.js';
import { WORKER_CONFIG_ENV, type WorkerConfig } from './worker-config.js';

const config = JSON.parse(process.env[WORKER_CONFIG_ENV] ?? 'null') as WorkerConfig | null;
if (config === null) throw new Error(`${WORKER_CONFIG_ENV} is not set: this script is started by test/faults/chaos/driver.ts`);

const records = new RecordWriter(config.record);
const log = (line: string) => process.stdout.write(`${new Date().toISOString()} worker ${config.worker}: ${line}\n`);
const work = () => new Promise((resolve) => setTimeout(resolve, config.workMs));

async function handler(msg: Message): Promise<void> {
  const started = Date.now();
  await work();
  const { id } = msg.json<{ id: number }>();
  if (config!.broker === 'kafka') {
    const raw = msg.raw as KafkaRecord;
    records.handled(id, started, msg.redelivered, { partition: raw.partition, offset: Number(raw.message.offset) });
  } else {
    records.handled(id, started, msg.redelivered);
  }
}

function consumer(c: WorkerConfig): Consumer<unknown> {
  switch (c.broker) {
    case 'rabbitmq':
      return rabbitConsumer({ ...c.options, handler }) as Consumer<unknown>;
    case 'nats':
      return natsConsumer({ ...c.options, handler }) as Consumer<unknown>;
    case 'kafka': {
      // Through the driver port (any driver): when a rebalance starts and when the assignment comes.
      const watch = new DriverWatch();
      watch.on('rebalancing', () => records.group('rebalancing'));
      watch.on('assigned', (assignment) => records.group('assigned', assignment));
      const { driver } = resolveKafka('chaos worker', kafkaClient(c.brokers));
      return kafkaConsumer({ ...c.options, kafka: watch.wrap(driver), handler }) as Consumer<unknown>;
    }
  }
}

const running = consumer(config);
running.on('connection', (e) => log(`connection ${e.state}${e.detail ? `: ${e.detail}` : ''}`));
running.on('error', (e) => log(`error during ${e.during}: ${e.error instanceof Error ? e.error.message : String(e.error)}`));

process.once('SIGTERM', () => {
  log('SIGTERM: stopping');
  running
    .stop({ timeoutMs: 10_000 })
    .then((result) => {
      log(`stopped ${JSON.stringify(result)}; status ${JSON.stringify(running.status())}`);
      records.close();
      process.exit(0);
    })
    .catch((error: unknown) => {
      log(`stop failed: ${String(error)}`);
      process.exit(3);
    });
});

running.start().then(
  () => log('started'),
  (error: unknown) => {
    log(`start failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(2);
  },
);
