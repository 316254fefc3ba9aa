// Served state equals the ledger. An operator with root edits the projections in nexus.db with
// SQL (the rows the DNS server answers from, the route table, the envelopes): while the daemon is
// stopped, and while it runs. The platform must notice by itself, serve what the ledger says again,
// record an integrity alarm in the ledger and tell each creator whose rows were touched.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initDataDir } from '../../src/core/platform.ts';
import { verifyDataDir } from '../../src/core/policy/verify.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { query, udpAsk, eventually } from '../../src/domains/dns-authority/testing.ts';
import type { LedgerEntry } from '../../src/core/types.ts';
import { Client, newKey, type Actor } from '../support/api.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { run, tempDir } from '../cli/harness.ts';

const POLICY = {
  public: [{ path: '/*', backend: 'gallery-web' }],
  private: [{ path: '/studio/*', backend: 'gallery-studio', require_identity: true }],
  restricted: [],
};
const EVIL_POLICY = JSON.stringify({ public: [{ path: '/*', backend: 'attacker-proxy' }], private: [], restricted: [] });

let dir: string;
let server: RunningServer | undefined;
let client: Client;
let origin: string;
/** Reads of the whole ledger are the platform's (admins and the platform see every entry). */
let platformReader: Actor;
let alice: Actor;
let bob: Actor;

async function boot(integrityIntervalMs = 0): Promise<void> {
  server = await startServer({ dataDir: dir, port: 0, logger: false, dns: { port: 0, meterIntervalMs: 3_600_000 }, integrityIntervalMs });
  client = new Client(server.url, platformReader);
}

async function stop(): Promise<void> {
  await server?.close();
  server = undefined;
}

async function creator(name: string): Promise<Actor> {
  const k = newKey();
  const r = await client.request('POST', '/v1/identities', signCommand(k.key, 'identity.register', { name, role: 'creator', publicKey: k.publicKey }, { origin }));
  expect(r.status).toBe(201);
  return { name, id: k.id, key: k.key };
}

async function send(actor: Actor, method: string, path: string, type: Parameters<typeof signCommand>[1], body: Record<string, unknown>): Promise<void> {
  const r = await client.request(method, path, signCommand(actor.key, type, body as never, { origin }));
  expect(r.status, r.text).toBeLessThan(300);
}

async function wwwAnswer(): Promise<string[]> {
  const reply = await udpAsk(server!.dns!.server.port, query('www.imvu001.world', 'A'));
  return (reply.answers ?? []).filter((a) => a.type === 'A').map((a) => String((a as { data?: unknown }).data));
}

async function served(): Promise<{ cpu: number; routes: unknown; www: string[] }> {
  const imvu = (await client.get<{ envelope: { cpu_cores: number } }>('/v1/imvus/IMVU-001')).body;
  const routes = (await client.get<{ routes: unknown }>('/v1/imvus/IMVU-001/routes')).body.routes;
  return { cpu: imvu.envelope.cpu_cores, routes, www: await wwwAnswer() };
}

async function entries(): Promise<LedgerEntry[]> {
  const size = await client.size();
  const out: LedgerEntry[] = [];
  while (out.length < size) out.push(...(await client.get<{ entries: LedgerEntry[] }>(`/v1/ledger/entries?from=${out.length}&to=${size}`)).body.entries);
  return out;
}

async function notesOf(who: Actor): Promise<{ about: number; gate: number; message: string; imvu: string }[]> {
  return (await client.get<{ notifications: { about: number; gate: number; message: string; imvu: string }[] }>(`/v1/notifications?recipient=${who.id}`)).body.notifications;
}

/** What root does with sqlite3: rewrite the rows the services answer from. */
function tamper(db: Database.Database, bumpSerial: boolean): void {
  expect(db.prepare("UPDATE records SET value = '203.0.113.66' WHERE zone = 'imvu001.world' AND name = 'www.imvu001.world' AND type = 'A'").run().changes).toBe(1);
  expect(db.prepare('UPDATE routes SET policy = ? WHERE imvu = ?').run(EVIL_POLICY, 'IMVU-001').changes).toBe(1);
  expect(db.prepare("UPDATE envelopes SET cpu_cores = 1 WHERE imvu = 'IMVU-001'").run().changes).toBe(1);
  // So that a running DNS server reloads the zone and serves the edited record.
  if (bumpSerial) db.prepare("UPDATE zones SET serial = serial + 1 WHERE name = 'imvu001.world'").run();
}

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nexus-projections-'));
  const init = await initDataDir(dir);
  origin = init.config.origin;
  platformReader = { name: 'platform', id: init.platformId, key: init.platformKey };
  await init.close();
  await boot();
  alice = await creator('alice');
  bob = await creator('bob');
  await send(alice, 'POST', '/v1/imvus', 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'EU-GDPR' });
  await send(bob, 'POST', '/v1/imvus', 'imvu.create', { name: 'Shop', owner: bob.id, jurisdiction: 'US-CCPA' });
  await send(alice, 'POST', '/v1/zones/imvu001.world/records', 'dns.record.add', { zone: 'imvu001.world', name: 'www', type: 'A', value: '192.0.2.10' });
  await send(alice, 'PUT', '/v1/imvus/IMVU-001/routes', 'route.set', { imvu: 'IMVU-001', policy: POLICY });
});

afterEach(async () => {
  await stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('projections edited behind the platform are rebuilt from the ledger', () => {
  it('a restart without edits replays nothing and raises no alarm', async () => {
    const before = await client.size();
    await stop();
    await boot();
    expect(await client.size()).toBe(before);
    expect((await entries()).some((e) => e.command.command.type === 'integrity.alarm')).toBe(false);
  });

  it('records, routes and envelopes edited with SQL while the daemon was stopped: undone at start, alarmed, the creator told', async () => {
    // The DNS server picks a committed change up within its refresh interval.
    let truth = await served();
    for (let i = 0; i < 50 && truth.www.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      truth = await served();
    }
    expect(truth).toEqual({ cpu: 2, routes: POLICY, www: ['192.0.2.10'] });
    await stop();

    const db = new Database(join(dir, 'nexus.db'));
    tamper(db, true);
    db.close();
    expect((await verifyDataDir(dir)).problems.map((p) => p.kind)).toContain('projection');

    await boot();
    // What is served is what the ledger says, not what was written into the database.
    expect(await served()).toEqual(truth);

    const alarm = (await entries()).find((e) => e.command.command.type === 'integrity.alarm');
    expect(alarm?.decision.allowed).toBe(true);
    expect(alarm!.command.command.actor).toBe((await client.get<{ id: string }>('/v1/platform')).body.id);
    expect(alarm!.command.command.body).toMatchObject({ trigger: 'start', imvus: ['IMVU-001'] });
    expect(alarm!.command.command.body.tables).toEqual(expect.arrayContaining(['envelopes', 'records', 'routes', 'zones']));

    const notes = (await notesOf(alice)).filter((n) => n.about === alarm!.index);
    expect(notes).toHaveLength(1);
    expect(notes[0]!.imvu).toBe('IMVU-001');
    expect(notes[0]!.message).toMatch(/integrity alarm: the state the platform served for IMVU-001 differed from the ledger \(.*routes.*\), found at start/);
    // Bob's rows were not touched: he is not told anything.
    expect((await notesOf(bob)).some((n) => n.about === alarm!.index)).toBe(false);

    await stop();
    expect((await verifyDataDir(dir)).problems).toEqual([]);
    const audit = await run(['audit', 'verify', '--data', dir], { NEXUS_HOME: tempDir('home') });
    expect(audit.stderr).toBe('');
    expect(audit.code).toBe(0);
    expect(audit.stdout).toMatch(/Replayed through the 17 gates/);
  });

  it('the same edits while the daemon runs: the periodic check repairs and alarms', async () => {
    await stop();
    await boot(150);
    const truth = await served();

    const db = new Database(join(dir, 'nexus.db'));
    db.pragma('busy_timeout = 5000');
    tamper(db, true);
    db.close();

    const alarm = await eventually(async () => {
      const a = (await entries()).find((e) => e.command.command.type === 'integrity.alarm');
      if (!a) throw new Error('no alarm yet');
      return a;
    }, 15_000);
    expect(alarm.command.command.body).toMatchObject({ trigger: 'periodic', imvus: ['IMVU-001'] });
    expect(alarm.command.command.body.tables).toEqual(expect.arrayContaining(['envelopes', 'records', 'routes', 'zones']));
    // The DNS server dropped what it compiled from the edited rows.
    expect(await eventually(async () => {
      const now = await served();
      expect(now).toEqual(truth);
      return now;
    }, 5_000)).toEqual(truth);
    expect((await notesOf(alice)).filter((n) => n.about === alarm.index)).toHaveLength(1);

    // The platform keeps working and the log verifies.
    await send(alice, 'POST', '/v1/zones/imvu001.world/records', 'dns.record.add', { zone: 'imvu001.world', name: 'api', type: 'A', value: '192.0.2.11' });
    await stop();
    expect((await verifyDataDir(dir)).problems).toEqual([]);
  });
});
