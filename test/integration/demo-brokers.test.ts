/** The payment-handler demo against the real brokers: every payment processed or dead-lettered, none lost. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { kafkaBrokers, natsUrl, rabbitUrl } from '../helpers/brokers.js';

const root = new URL('../../', import.meta.url);
const demo = (args: string[], env: Record<string, string>) =>
  promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/payment-handler/main.ts', ...args], { cwd: root, env: { ...process.env, ...env } });

const brokers = [
  { broker: 'rabbitmq', env: async () => ({ AMQP_URL: await rabbitUrl() }), banner: /on rabbitmq \(queue payments-demo-[0-9a-f]{8}\): 151 messages/ },
  { broker: 'kafka', env: async () => ({ KAFKA_BROKERS: (await kafkaBrokers()).join(',') }), banner: /on kafka \(.*topic payments-[0-9a-f]{8}\): 151 messages/ },
  { broker: 'nats', env: async () => ({ NATS_URL: await natsUrl() }), banner: /on nats \(stream PAYMENTS_DEMO_[0-9A-F]{8}\): 151 messages/ },
];

describe('npm start -- --broker <real broker>', () => {
  it.each(brokers)('$broker: 150 payments, 7 dead letters (6 declined + 1 malformed), no duplicates, exit 0', async ({ broker, env, banner }) => {
    const { stdout } = await demo(['--broker', broker, '--count', '150'], await env());
    expect(stdout).toMatch(banner);
    expect(stdout).toMatch(/processed \(acked\)\s+144\n/);
    expect(stdout).toMatch(/duplicates\s+0\n/);
    expect(stdout).toMatch(/dead-lettered\s+7 \(7 in the dead-letter queue\)/);
    expect(stdout).toContain('every payment was processed or dead-lettered; none lost.');
  }, 120_000);
});
