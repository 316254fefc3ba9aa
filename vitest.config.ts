import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts', 'test/**/*.test.ts'],
    // Builds dist/ when a source is newer than it: the CLI subprocess tests run the built CLI.
    globalSetup: ['test/support/build.ts'],
    // Daemons the suites start as processes run no HAProxy gateway (one per host on 443/80 as
    // root), nor mail on 25/587/465/143/993 as root; the gateway and mail suites give explicit ports.
    env: { NEXUS_GATEWAY: 'false', NEXUS_MAIL: 'false' },
    // Two files at a time: most suites wait on real daemons, peers and sockets rather than on the
    // CPU, and vitest's default on two cores (cores - 1) runs every file one after the other.
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
