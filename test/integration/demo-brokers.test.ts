/** The payment-handler demo against the real brokers: every payment processed or dead-lettered, none lost. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { kafkaBrokers, natsUrl, rabbitUrl } from '../helpers/brokers.js';

const root = new URL('../../', import.meta.url);
const demo = (args: string[], env: Record<string, string>) =>
  promisify(execFile)(process.execPath, ['--import', 'tsx', 'examples/payment-handler/main.ts', ...args], { cwd: root, env: { ...process.env, ...env } });

describe('npm start -- --broker <real broker>', () => {
  it('rabbitmq: 150 payments, 7 dead letters (6 declined + 1 malformed), no duplicates, exit 0', async () => {
    const { stdout } = await demo(['--broker', 'rabbitmq', '--count', '150'], { AMQP_URL: await rabbitUrl() });
    expect(stdout).toMatch(/on rabbitmq \(queue payments-demo-[0-9a-f]{8}\): 151 messages/);
    expect(stdout).toMatch(/processed \(acked\)\s+144\n/);
    expect(stdout).toMatch(/duplicates\s+0\n/);
    expect(stdout).toMatch(/dead-lettered\s+7 \(7 in the dead-letter queue\)/);
    expect(stdout).toContain('every payment was processed or dead-lettered; none lost.');
  }, 120_000);

  it('kafka: 150 payments keyed by card, 7 dead letters, no duplicates, exit 0', async () => {
    const { stdout } = await demo(['--broker', 'kafka', '--count', '150'], { KAFKA_BROKERS: (await kafkaBrokers()).join(',') });
    expect(stdout).toMatch(/on kafka \(.*topic payments-[0-9a-f]{8}\): 151 messages/);
    expect(stdout).toMatch(/processed \(acked\)\s+144\n/);
    expect(stdout).toMatch(/duplicates\s+0\n/);
    expect(stdout).toMatch(/dead-lettered\s+7 \(7 in the dead-letter queue\)/);
    expect(stdout).toContain('every payment was processed or dead-lettered; none lost.');
  }, 120_000);

  it('nats: 150 payments through JetStream, 7 dead letters, no duplicates, exit 0', async () => {
    const { stdout } = await demo(['--broker', 'nats', '--count', '150'], { NATS_URL: await natsUrl() });
    expect(stdout).toMatch(/on nats \(stream PAYMENTS_DEMO_[0-9A-F]{8}\): 151 messages/);
    expect(stdout).toMatch(/processed \(acked\)\s+144\n/);
    expect(stdout).toMatch(/duplicates\s+0\n/);
    expect(stdout).toMatch(/dead-lettered\s+7 \(7 in the dead-letter queue\)/);
    expect(stdout).toContain('every payment was processed or dead-lettered; none lost.');
  }, 120_000);
});
