import { createRequire } from 'node:module';
import { defineConfig } from 'vitest/config';

const require = createRequire(import.meta.url);

export default defineConfig({
  resolve: {
    // graphql 16 ships CJS and ESM builds without an exports map: Node loads the CJS one for
    // Yoga, Vite would load the ESM one for our code, and `instanceof GraphQLError` would fail
    // across them (masking our own errors). One copy for everybody, as in production.
    alias: [{ find: /^graphql$/, replacement: require.resolve('graphql') }],
  },
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/build-service.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Files isolate themselves (own database, own Redis prefix) and run in parallel.
    pool: 'forks',
    maxWorkers: 2,
    fileParallelism: true,
  },
});
