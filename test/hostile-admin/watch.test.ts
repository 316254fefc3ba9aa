// `nexus audit watch` against a real daemon and its DNS server: the creator's monitor lists the
// entries about its IMVU (an admin's refused attempt included) and compares the zone the DNS server
// serves with the zone projected from the ledger. The operator then edits the records projection
// with SQL behind the daemon's back, with the daemon's own integrity check off, so that the DNS
// server serves the edited rows: the monitor must raise the alarm (exit 4) and name the record,
// whether it reads the zone by AXFR (the daemon allows transfers to 127.0.0.1) or, without that
// right, by DNSSEC-signed queries.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import Database from 'better-sqlite3';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { initDataDir } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { newKey } from '../support/api.ts';
import { identityIdFromPublicKey, loadPrivateKey, publicKeyRaw } from '../../src/core/identity/keys.ts';
import { spawn } from 'node:child_process';
import { BIN, run, submitDirect, tempDir, type Run } from '../cli/harness.ts';

const Z = 'imvu001.world';

let data: string;
let home: string;
let server: RunningServer;
let platformKey: KeyObject;
let env: Record<string, string>;
const nexus = (...args: string[]) => run(args, env);

function ok(r: Run): Run {
  expect(r.code, r.stderr + r.stdout).toBe(0);
  return r;
}

/** root's sqlite3 on the live database, as the daemon runs. */
function sql(statement: string, ...params: unknown[]): number {
  const db = new Database(join(data, 'nexus.db'));
  try {
    db.pragma('busy_timeout = 5000');
    return db.prepare(statement).run(...params).changes;
  } finally {
    db.close();
  }
}

async function setUp(xfr: boolean): Promise<void> {
  data = tempDir('watch-data');
  home = tempDir('watch-home');
  const init = await initDataDir(data);
  platformKey = init.platformKey;
  await init.close();
  // The daemon's own integrity check is off (0): only the creator's monitor can notice an edit.
  server = await startServer({
    dataDir: data,
    host: '127.0.0.1',
    port: 0,
    logger: false,
    dns: { port: 0, meterIntervalMs: 3_600_000, ...(xfr ? { xfr: { allow: ['127.0.0.1'] } } : {}) },
    integrityIntervalMs: 0,
  });
  env = { NEXUS_HOME: home, NEXUS_URL: server.url };
  ok(await nexus('identity', 'create', 'alice', '--role', 'creator'));
  // alice's own commands, signed with the key her CLI made (straight to the API: fewer processes).
  const alice = loadPrivateKey(join(home, 'keys', 'alice.key'));
  const aliceId = identityIdFromPublicKey(publicKeyRaw(alice));
  expect((await submitDirect(server.url, '/v1/imvus', alice, 'imvu.create', { name: 'Gallery', owner: aliceId, jurisdiction: 'EU-GDPR' })).status).toBe(201);
  for (const [type, value] of [['A', '192.0.2.10'], ['TXT', 'hello']] as const)
    expect((await submitDirect(server.url, `/v1/zones/${Z}/records`, alice, 'dns.record.add', { zone: Z, name: 'www', type, value })).status).toBe(201);
  // An admin (registered by the platform) tries to add a record to alice's zone: refused by gate 4, recorded.
  const ops = newKey();
  expect((await submitDirect(server.url, '/v1/identities', platformKey, 'identity.register', { name: 'ops', role: 'admin', publicKey: ops.publicKey })).status).toBe(201);
  const refused = await submitDirect(server.url, `/v1/zones/${Z}/records`, ops.key, 'dns.record.add', { zone: Z, name: 'pay', type: 'A', value: '203.0.113.9' });
  expect(refused.status).toBe(403);
}

afterEach(async () => {
  await server?.close();
  for (const d of [data, home]) if (d) rmSync(d, { recursive: true, force: true });
});

// Several CLI processes per test on a shared machine: generous limits (no timing is asserted).
vi.setConfig({ testTimeout: 120_000, hookTimeout: 60_000 });

describe.each([
  ['signed queries (no zone transfer allowed)', false, /signed queries/],
  ['AXFR (transfers allowed to 127.0.0.1)', true, /zone transfer/],
])('nexus audit watch by %s', (_name, xfr, mode) => {
  beforeEach(() => setUp(xfr));

  it('an honest platform: --once exits 0 and lists the creator entries, the admin refusal among them', async () => {
    const r = ok(await nexus('audit', 'watch', '--once'));
    expect(r.stdout).toMatch(/Checkpoint: tree size \d+/);
    expect(r.stdout).toMatch(/#\d+ .* alice +imvu\.create +IMVU-001 +ALLOWED/);
    expect(r.stdout).toMatch(/#\d+ .* alice +dns\.record\.add +IMVU-001 +ALLOWED/);
    expect(r.stdout).toMatch(/#\d+ .* ops +dns\.record\.add +IMVU-001 +DENIED gate 4: /);
    expect(r.stdout).toMatch(new RegExp(`✅ Zone ${Z.replace('.', '\\.')} \\(IMVU-001\\), serial \\d+: served as the ledger says`));
    expect(r.stdout).toMatch(mode);
    // The next round shows only what is new; nothing is.
    const again = ok(await nexus('audit', 'watch', '--once'));
    expect(again.stdout).not.toMatch(/imvu\.create/);
    expect(again.stdout).toMatch(/no new entries/);
    // JSON lines.
    const json = ok(await nexus('audit', 'watch', '--once', '--imvu', 'IMVU-001', '--json'));
    const lines = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as { kind: string; ok?: boolean });
    expect(lines.find((l) => l.kind === 'zone')).toMatchObject({ ok: true });
  });

  it('without --once it runs rounds until SIGINT, then exits 0', async () => {
    const child = spawn(process.execPath, [BIN, 'audit', 'watch', '--interval', '1'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
    // Two rounds: the second finds nothing new.
    for (let i = 0; i < 600 && !/no new entries/.test(out); i++) await new Promise((r) => setTimeout(r, 100));
    expect(out).toMatch(/no new entries/);
    child.kill('SIGINT');
    expect(await exited).toBe(0);
  });

  it('a record edited in the database behind the daemon: exit 4, the record named, evidence kept', async () => {
    expect(sql(`UPDATE records SET value = '203.0.113.66' WHERE zone = ? AND name = ? AND type = 'A'`, Z, `www.${Z}`)).toBe(1);
    const r = await nexus('audit', 'watch', '--once');
    expect(r.code, r.stdout + r.stderr).toBe(4);
    expect(r.stdout).toMatch(new RegExp(`www\\.imvu001\\.world A .*the served RRset differs from the ledger`));
    expect(r.stdout).toMatch(/expected \(ledger\): 3600 192\.0\.2\.10/);
    expect(r.stdout).toMatch(/served: +3600 203\.0\.113\.66/);
    expect(r.stdout).toMatch(/ALARM [0-9a-f]{8}/);
    const files = readdirSync(join(home, 'evidence')).filter((f) => f.includes('-served-'));
    expect(files).toHaveLength(1);
    const evidence = JSON.parse(readFileSync(join(home, 'evidence', files[0]!), 'utf8')) as { differences: { owner: string }[]; checkpoint: string };
    expect(evidence.differences.map((d) => d.owner)).toContain(`www.${Z}`);
    expect(evidence.checkpoint).toMatch(/^\S+\n\d+\n/);
  });

  it('a record injected in the database (the one the admin was refused) is found', async () => {
    expect(sql('INSERT INTO records (id, zone, name, type, value, ttl, entry) VALUES (?, ?, ?, ?, ?, ?, ?)', '999.0', Z, `pay.${Z}`, 'A', '203.0.113.9', 3600, 999)).toBe(1);
    const r = await nexus('audit', 'watch', '--once');
    expect(r.code, r.stdout + r.stderr).toBe(4);
    expect(r.stdout).toMatch(/pay\.imvu001\.world /);
    expect(r.stdout).toMatch(/the server (serves this RRset; the ledger has no such records|has a name the ledger does not)/);
  });

  it('a record deleted from the database is found', async () => {
    expect(sql(`DELETE FROM records WHERE zone = ? AND name = ? AND type = 'TXT'`, Z, `www.${Z}`)).toBe(1);
    const r = await nexus('audit', 'watch', '--once');
    expect(r.code, r.stdout + r.stderr).toBe(4);
    expect(r.stdout).toMatch(/www\.imvu001\.world (TXT|types) .*(the ledger has this RRset; the server does not serve it|not those of the ledger)/);
    expect(r.stdout).toMatch(/"hello"/);
    expect(existsSync(join(home, 'evidence'))).toBe(true);
  });
});
