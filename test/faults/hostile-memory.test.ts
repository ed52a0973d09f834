/**
 * Hostile input on the in-memory broker: the runtime's own treatment of hostile bodies and headers
 * (decoding, schema, retries bounded by maxAttempts, dead-letter reasons) without a broker client
 * in between; the broker tests (hostile-rabbitmq/nats/kafka) add what each client and server does.
 */
import { describe, it } from 'vitest';
import { MemoryBroker, memoryConsumer } from '../../adapters/memory/index.js';
import type { HeaderValue } from '../../src/message.js';
import { CASE_HEADER, hostileBatch, type HostileValue } from '../helpers/hostile.js';
import { checkHostile, type HostileBroker } from '../helpers/hostile-run.js';
import { unique } from '../helpers/names.js';
import { until } from '../helpers/wait.js';

/** The memory broker carries any header value as it is. */
function value(v: HostileValue): HeaderValue {
  return v.kind === 'null' ? null : v.value;
}

const broker = new MemoryBroker();
const memory: HostileBroker = {
  name: 'memory',
  maxAttempts: 3,
  start: () => 1, // the memory broker counts attempts itself; the header is only a header
  async target() {
    const queue = unique('hostile');
    return {
      async publish(cases) {
        for (const c of cases) {
          const headers: Record<string, HeaderValue> = Object.create(null); // a header may be named __proto__
          for (const [name, v] of c.headers) headers[name] = value(v);
          if (c.attempt !== undefined) headers['x-sluice-attempt'] = value(c.attempt);
          if (c.messageId !== undefined) headers[CASE_HEADER] = c.id;
          broker.publish(queue, c.body, { id: c.messageId ?? c.id, headers, key: c.key === null ? undefined : Buffer.from(c.key).toString('utf8') });
        }
      },
      consumer: (spec) => memoryConsumer({ broker, queue, pool: { maxConcurrency: 4, maxQueueSize: 16 }, ...spec }),
      async deadLetters(n) {
        await until(() => broker.depth(`${queue}.dlq`).ready >= n, `${n} dead letters`);
        return broker.drain(`${queue}.dlq`).map((m) => ({
          id: (m.headers[CASE_HEADER] ?? m.headers['x-sluice-message-id']) as string | undefined,
          reason: m.headers['x-sluice-reason'] as string | undefined,
          error: m.headers['x-sluice-error'] as string | undefined,
          errorName: m.headers['x-sluice-error-name'] as string | undefined,
          attempts: m.headers['x-sluice-attempts'] as string | undefined,
          body: m.body,
        }));
      },
      async settled() {
        await until(() => {
          const d = broker.depth(queue);
          return d.ready + d.unacked + d.delayed === 0;
        }, `${queue} empty`);
      },
      async remove() {
        broker.drain(queue);
        broker.drain(`${queue}.dlq`);
      },
    };
  },
};

describe('hostile input on the memory broker', () => {
  it('handlers that decode, and handlers that do not', async () => {
    await checkHostile(memory, hostileBatch('mem', 100, 200), { withSchema: false, runs: 25 });
  });

  it('a consumer with a schema', async () => {
    await checkHostile(memory, hostileBatch('mem-schema', 100, 200), { withSchema: true, runs: 25 });
  });
});
