// A daemon binds its API socket before it opens the data directory (src/api/early.ts), so that it
// is seen to be up while the start-up check reads every projection row. Rows edited with SQL while
// the daemon was down must still never be served nor decided on: /health says "verifying", and
// a read and a command sent meanwhile wait and are answered from the state rebuilt from the ledger.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { initDataDir } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { EarlyListener } from '../../src/api/early.ts';
import { eventually } from '../../src/domains/dns-authority/testing.ts';
import type { LedgerEntry } from '../../src/core/types.ts';
import { Client, newKey, type Actor } from '../support/api.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';

const POLICY = { public: [{ path: '/*', backend: 'gallery-web' }], private: [], restricted: [] };
const EVIL_POLICY = JSON.stringify({ public: [{ path: '/*', backend: 'attacker-proxy' }], private: [], restricted: [] });

let dir: string;
let server: RunningServer | undefined;
let early: EarlyListener | undefined;
let origin: string;
let platformReader: Actor;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nexus-start-verifying-'));
  const init = await initDataDir(dir);
  origin = init.config.origin;
  platformReader = { name: 'platform', id: init.platformId, key: init.platformKey };
  await init.close();
});

afterEach(async () => {
  await server?.close();
  server = undefined;
  if (early?.server.listening) await early.close();
  early = undefined;
  rmSync(dir, { recursive: true, force: true });
});

describe('the API socket bound before the start-up check', () => {
  it('says "verifying" and answers what waited from the repaired state, never from rows edited while the daemon was down', async () => {
    // A creator, an IMVU, its routes; then the daemon stops.
    server = await startServer({ dataDir: dir, port: 0, logger: false, dns: false, integrityIntervalMs: 0 });
    let client = new Client(server.url, platformReader);
    const k = newKey();
    const alice: Actor = { name: 'alice', id: k.id, key: k.key };
    const send = async (type: Parameters<typeof signCommand>[1], method: string, path: string, body: Record<string, unknown>) =>
      client.request(method, path, signCommand(alice.key, type, body as never, { origin }));
    expect((await send('identity.register', 'POST', '/v1/identities', { name: 'alice', role: 'creator', publicKey: k.publicKey })).status).toBe(201);
    expect((await send('imvu.create', 'POST', '/v1/imvus', { name: 'Gallery', owner: alice.id, jurisdiction: 'EU-GDPR' })).status).toBeLessThan(300);
    expect((await send('route.set', 'PUT', '/v1/imvus/IMVU-001/routes', { imvu: 'IMVU-001', policy: POLICY })).status).toBeLessThan(300);
    await server.close();
    server = undefined;

    // Root edits the routes and the envelope while it is down.
    const db = new Database(join(dir, 'nexus.db'));
    expect(db.prepare('UPDATE routes SET policy = ? WHERE imvu = ?').run(EVIL_POLICY, 'IMVU-001').changes).toBe(1);
    expect(db.prepare("UPDATE envelopes SET cpu_cores = 1 WHERE imvu = 'IMVU-001'").run().changes).toBe(1);
    db.close();

    // The socket is bound; the data directory is not open yet.
    early = await EarlyListener.listen({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${(early.server.address() as AddressInfo).port}`;
    client = new Client(url, platformReader);
    const health = await client.get<{ status: string }>('/health');
    expect(health.status).toBe(503);
    expect(health.body.status).toBe('verifying');
    // A read of the edited rows and a command, sent now: they wait.
    const routes = client.get<{ routes: unknown }>('/v1/imvus/IMVU-001/routes');
    const imvu = client.get<{ envelope: { cpu_cores: number } }>('/v1/imvus/IMVU-001');
    const command = send('consent.record', 'POST', '/v1/consents', { imvu: 'IMVU-001', subject: alice.id, purpose: 'analytics', granted: true });
    await eventually(async () => expect(early!.waiting).toBe(3), 20_000);

    server = await startServer({ dataDir: dir, port: 0, logger: false, dns: false, integrityIntervalMs: 0, early });
    // What waited is answered from the ledger's state, not from the edited rows.
    expect((await routes).body.routes).toEqual(POLICY);
    expect((await imvu).body.envelope.cpu_cores).toBe(2);
    const receipt = await command;
    expect(receipt.status, receipt.text).toBeLessThan(300);
    const index = (receipt.body as { index: number }).index;
    const entries = (await client.get<{ entries: LedgerEntry[] }>(`/v1/ledger/entries?from=0&to=${index + 1}`)).body.entries;
    const alarm = entries.find((e) => e.command.command.type === 'integrity.alarm');
    expect(alarm?.command.command.body).toMatchObject({ trigger: 'start', imvus: ['IMVU-001'] });
    // The command was decided after the repair that the alarm records.
    expect(index).toBeGreaterThan(alarm!.index);
    expect((await client.get<{ status: string }>('/health')).body.status).toBe('ok');
  }, 120_000);
});
