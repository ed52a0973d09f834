import { defineConfig } from 'vitest/config';

// The fault suite (`npm run test:faults`): private clusters and nodes, killed and restarted, chaos
// runs of competing processes, hostile input. One file at a time: each starts its own brokers
// (JVMs, Erlang nodes, nats-servers) beside the shared ones on a 2-core machine.
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    testTimeout: 300_000,
    hookTimeout: 300_000,
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    reporters: ['default'],
  },
});
