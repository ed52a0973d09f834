import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 240_000,
    pool: 'forks',
    // Two cores: integration files talk to real brokers; more workers only add contention.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
