import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Files isolate themselves (own database, own Redis prefix) and run in parallel.
    pool: 'forks',
    maxWorkers: 2,
    fileParallelism: true,
  },
});
