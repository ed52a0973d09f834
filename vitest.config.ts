import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // test/faults has its own config and command (vitest.faults.config.ts, npm run test:faults).
    include: ['test/unit/**/*.test.ts', 'test/integration/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 240_000,
    pool: 'forks',
    // Two cores: integration files talk to real brokers; more workers only add contention.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
