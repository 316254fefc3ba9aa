import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // Builds dist/ when a source is newer than it: the CLI subprocess tests run the built CLI.
    globalSetup: ['test/support/build.ts'],
    // Daemons the suites start as processes run no HAProxy gateway (one per host on 443/80 as
    // root); the gateway suites start theirs with explicit ports.
    env: { NEXUS_GATEWAY: 'false' },
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
