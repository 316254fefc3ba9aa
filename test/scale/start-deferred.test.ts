// Daemon start (issue 16): background work that guards nothing served (the re-sign scheduler's
// first pass, which reads a week of ledger entries; the period closer's first pass; the DNS
// warm-up) starts once the API serves, not while the start-up check and the services start.
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { initDataDir } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { EarlyListener } from '../../src/api/early.ts';
import { eventually } from '../../src/domains/dns-authority/testing.ts';

let dir: string | undefined;
let server: RunningServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('daemon start', () => {
  it('runs the first re-sign pass and the DNS warm-up only after the API serves', async () => {
    dir = mkdtempSync(join(tmpdir(), 'nexus-start-deferred-'));
    await (await initDataDir(dir)).close();
    const early = await EarlyListener.listen({ host: '127.0.0.1', port: 0 });
    server = await startServer({ dataDir: dir, port: 0, logger: false, dns: { port: 0 }, integrityIntervalMs: 0, early });
    // startServer returns right after opening the API: nothing deferred has run yet.
    expect(server.dns!.resigner.stats.checks).toBe(0);
    expect(server.dns!.server.view.stats.loads).toBe(0);
    const health = await fetch(`http://127.0.0.1:${(early.server.address() as AddressInfo).port}/health`);
    expect(health.status).toBe(200);
    // Then they run.
    await eventually(async () => expect(server!.dns!.resigner.stats.checks).toBe(1), 20_000);
    await server.dns!.server.warmed;
    expect(server.dns!.server.view.stats.loads).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
