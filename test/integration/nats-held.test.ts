/**
 * JetStream deliveries that arrive while the consumer is paused, or that the runtime refuses (a
 * gate, a full pool), are held by the adapter and offered again on resume: nothing is handled
 * while paused, and a refusal never raises the server's delivery count (the attempt number).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { natsConsumer, type JetStreamSource } from '../../adapters/nats/index.js';
import type { FlowGate } from '../../src/index.js';
import { natsFixture, unique, type NatsFixture } from '../helpers/nats.js';
import { until } from '../helpers/wait.js';

let nats: NatsFixture;
beforeAll(async () => {
  nats = await natsFixture();
});
afterAll(async () => {
  await nats?.close();
});

describe('JetStream: held deliveries', () => {
  it('an open pull that delivers after pause() resolved is held, not handled, and handled once after resume', async () => {
    const { stream, subject, dlq } = await nats.stream('held-pause');
    const handled: string[] = [];
    const consumer = natsConsumer({
      servers: nats.url,
      stream,
      durable: unique('d'),
      consumerConfig: {},
      deadLetter: { subject: dlq },
      pullExpiresMs: 30_000, // the pull stays open across the pause
      pool: { maxConcurrency: 4, maxQueueSize: 8 },
      handler: async (m) => void handled.push(m.id),
    });
    await consumer.start();
    await nats.fill(subject, 3, 'warm');
    await until(() => handled.length === 3, 'warm-up handled');
    await consumer.pause();
    // An open request waits at the server: what is published now is delivered into it.
    const ids = await nats.fill(subject, 5, 'while-paused');
    const source = consumer.source as JetStreamSource;
    await until(() => source.status().held === 5, 'five held by the adapter');
    expect(handled).toHaveLength(3);
    await consumer.resume();
    await until(() => handled.length === 8, 'handled after resume');
    await consumer.stop();
    expect(handled.slice(3).sort()).toEqual([...ids].sort());
  });

  it('a gate refusing many times does not count attempts: a message failing once is retried, not dead-lettered', async () => {
    const { stream, subject, dlq } = await nats.stream('held-gate');
    let refusing = true;
    let refusals = 0;
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    const gate: FlowGate = {
      name: 'switch',
      admit: () => {
        if (!refusing) return { admit: true };
        refusals++;
        return { admit: false, resumeWhen: opened };
      },
    };
    const attempts: number[] = [];
    const consumer = natsConsumer({
      servers: nats.url,
      stream,
      durable: unique('d'),
      consumerConfig: {},
      deadLetter: { subject: dlq },
      pullExpiresMs: 30_000,
      retry: { maxAttempts: 3, backoff: { initialMs: 10 } },
      flow: { gates: [gate] },
      pool: { maxConcurrency: 4, maxQueueSize: 8 },
      handler: async (m) => {
        attempts.push(m.deliveryAttempt);
        if (m.deliveryAttempt === 1) throw new Error('fails once');
      },
    });
    await consumer.start();
    await nats.fill(subject, 1, 'm');
    await until(() => refusals >= 1 && consumer.status().pausedBy.includes('switch'), 'refused and paused');
    refusing = false;
    open();
    await until(() => consumer.status().handled === 1, 'handled on its second attempt');
    await consumer.stop();
    expect(attempts).toEqual([1, 2]);
    expect(consumer.status()).toMatchObject({ deadLettered: 0, retried: 1 });
  });
});
