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
import type { Answer } from 'dns-packet';
import { decodeEntry } from '../../src/core/ledger/ledger.ts';
import { DnsTcpClient } from '../../src/domains/watch/dns-client.ts';
import { compareByQueries, compareTransfer } from '../../src/domains/watch/compare.ts';
import { expectedZones } from '../../src/domains/watch/expected.ts';
import { ZONEMD, decodeZonemd, encodeZonemd } from '../../src/domains/zonefile/zonemd.ts';

const Z = 'imvu001.world';

let data: string;
let home: string;
let server: RunningServer;
let platformKey: KeyObject;
let env: Record<string, string>;
let aliceKey: KeyObject;
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
  aliceKey = alice;
  const aliceId = identityIdFromPublicKey(publicKeyRaw(alice));
  expect((await submitDirect(server.url, '/v1/imvus', alice, 'imvu.create', { name: 'Gallery', owner: aliceId, jurisdiction: 'EU-GDPR' })).status).toBe(201);
  for (const [type, value] of [['A', '192.0.2.10'], ['TXT', 'hello']] as const)
    expect((await submitDirect(server.url, `/v1/zones/${Z}/records`, alice, 'dns.record.add', { zone: Z, name: 'www', type, value })).status).toBe(201);
  // An admin (registered by the platform) tries to add a record to alice's zone: refused by gate 4, recorded.
  const ops = newKey();
  expect((await submitDirect(server.url, '/v1/identities', platformKey, 'identity.register', { name: 'ops', role: 'admin', publicKey: ops.publicKey })).status).toBe(201);
  const refused = await submitDirect(server.url, `/v1/zones/${Z}/records`, ops.key, 'dns.record.add', { zone: Z, name: 'pay', type: 'A', value: '203.0.113.9' });
  expect(refused.status).toBe(403);
  await servedTxt('www', 'hello');
}

/** Waits until the DNS server serves `name` TXT `text` in Z: the DNS view follows the log a moment after each commit. */
async function servedTxt(name: string, text: string): Promise<void> {
  const dns = new DnsTcpClient({ host: '127.0.0.1', port: server.dns!.server.port });
  try {
    for (let i = 0; ; i++) {
      const m = await dns.query(`${name}.${Z}`, 'TXT').catch(() => undefined);
      if ((m?.answers ?? []).some((a) => a.type === 'TXT' && [a.data].flat().map((x) => String(x)).join('').includes(text))) return;
      if (i > 500) throw new Error(`the DNS server does not serve ${name}.${Z} TXT ${text}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  } finally {
    dns.close();
  }
}

/**
 * After an edit behind the daemon's back: the DNS server compiles a zone once per serial, so the
 * edit is served from the zone's next change (here alice's own, recorded), as it would be on a
 * live platform.
 */
async function nextChange(): Promise<void> {
  expect((await submitDirect(server.url, `/v1/zones/${Z}/records`, aliceKey, 'dns.record.add', { zone: Z, name: 'later', type: 'TXT', value: 'next' })).status).toBe(201);
  await servedTxt('later', 'next');
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
    await nextChange();
    const r = await nexus('audit', 'watch', '--once');
    expect(r.code, r.stdout + r.stderr).toBe(4);
    expect(r.stdout).toMatch(new RegExp(`www\\.imvu001\\.world A .*the served RRset differs from the ledger`));
    expect(r.stdout).toMatch(/expected \(ledger\): 3600 192\.0\.2\.10/);
    expect(r.stdout).toMatch(/served: +3600 203\.0\.113\.66/);
    expect(r.stdout).toMatch(/ALARM [0-9a-f]{8}/);
    // What really happens to the ZONEMD: the DNS server computes (and, with the zone key it holds,
    // signs) the digest over the zone as it serves it, edit included, so the served ZONEMD matches
    // the transfer and carries the ledger's serial. It is the comparison with the ledger that finds
    // the edit; the ZONEMD checks find a zone served other than as its own digest says (below).
    expect(r.stdout).not.toMatch(/ZONEMD/);
    expect(r.stdout).toMatch(/1 difference from the ledger/);
    const files = readdirSync(join(home, 'evidence')).filter((f) => f.includes('-served-'));
    expect(files).toHaveLength(1);
    const evidence = JSON.parse(readFileSync(join(home, 'evidence', files[0]!), 'utf8')) as { differences: { owner: string }[]; checkpoint: string };
    expect(evidence.differences.map((d) => d.owner)).toContain(`www.${Z}`);
    expect(evidence.checkpoint).toMatch(/^\S+\n\d+\n/);
  });

  it('a record injected in the database (the one the admin was refused) is found', async () => {
    expect(sql('INSERT INTO records (id, zone, name, type, value, ttl, entry) VALUES (?, ?, ?, ?, ?, ?, ?)', '999.0', Z, `pay.${Z}`, 'A', '203.0.113.9', 3600, 999)).toBe(1);
    await nextChange();
    const r = await nexus('audit', 'watch', '--once');
    expect(r.code, r.stdout + r.stderr).toBe(4);
    expect(r.stdout).toMatch(/pay\.imvu001\.world /);
    expect(r.stdout).toMatch(/the server (serves this RRset; the ledger has no such records|has a name the ledger does not)/);
  });

  it('a record deleted from the database is found', async () => {
    expect(sql(`DELETE FROM records WHERE zone = ? AND name = ? AND type = 'TXT'`, Z, `www.${Z}`)).toBe(1);
    await nextChange();
    const r = await nexus('audit', 'watch', '--once');
    expect(r.code, r.stdout + r.stderr).toBe(4);
    expect(r.stdout).toMatch(/www\.imvu001\.world (TXT|types) .*(the ledger has this RRset; the server does not serve it|not those of the ledger)/);
    expect(r.stdout).toMatch(/"hello"/);
    expect(existsSync(join(home, 'evidence'))).toBe(true);
  });
});

describe('ZONEMD in a zone transfer', () => {
  beforeEach(() => setUp(true));

  it('by queries: the apex ZONEMD must be answered, signed with a ledger key, with the serial the ledger gives', async () => {
    const size = await server.store.ledgerSize();
    const entries = (await server.store.readEntries(0, size)).map(decodeEntry);
    const z = (await expectedZones(entries, { imvus: ['IMVU-001'] })).zones.find((x) => x.zone === Z)!;
    const real = new DnsTcpClient({ host: '127.0.0.1', port: server.dns!.server.port });
    // A server that answers the ZONEMD query as `edit` says, and everything else truthfully.
    const serving = (edit: (answers: Answer[]) => Answer[]) =>
      ({
        query: async (name: string, type: string) => {
          const m = await real.query(name, type);
          return type === ZONEMD ? { ...m, answers: edit((m.answers ?? []) as Answer[]) } : m;
        },
      }) as unknown as DnsTcpClient;
    try {
      const zonemdDiffs = async (edit: (answers: Answer[]) => Answer[]) => (await compareByQueries(z, serving(edit))).differences.filter((d) => d.type === 'ZONEMD').map((d) => d.problem);
      expect(await zonemdDiffs((a) => a)).toEqual([]);
      expect(await zonemdDiffs(() => [])).toEqual(['the zone carries no ZONEMD at its apex']);
      expect(await zonemdDiffs((a) => a.filter((r) => r.type !== 'RRSIG'))).toEqual(['the served ZONEMD is not signed']);
      const restamped = (a: Answer[]) =>
        a.map((r) => (r.type === (ZONEMD as never) ? ({ ...r, data: encodeZonemd({ ...decodeZonemd((r as { data: Buffer }).data), serial: z.serial + 1 }) } as unknown as Answer) : r));
      expect(await zonemdDiffs(restamped)).toEqual([
        `the served ZONEMD is for serial ${z.serial + 1}, not the serial ${z.serial} the ledger gives`,
        'no signature of the served ZONEMD validates with the keys the ledger published',
      ]);
    } finally {
      real.close();
    }
  });

  it('a transfer whose records its ZONEMD does not cover, or whose ZONEMD is missing or for another serial, is a difference', async () => {
    // The zone as the ledger gives it (entries read from the daemon's store), and a real transfer from its DNS server.
    const size = await server.store.ledgerSize();
    const entries = (await server.store.readEntries(0, size)).map(decodeEntry);
    const { zones } = await expectedZones(entries, { imvus: ['IMVU-001'] });
    const z = zones.find((x) => x.zone === Z)!;
    const dns = new DnsTcpClient({ host: '127.0.0.1', port: server.dns!.server.port });
    let xfr;
    try {
      xfr = await dns.axfr(Z);
    } finally {
      dns.close();
    }
    if ('refused' in xfr) throw new Error(`transfer refused: ${xfr.refused}`);
    const { records, messages } = xfr;
    expect(compareTransfer(z, records, messages).differences).toEqual([]);
    const zonemdOf = (rrs: Answer[]) => rrs.filter((r) => r.type === (ZONEMD as never) && r.name.toLowerCase() === Z);
    expect(zonemdOf(records)).toHaveLength(1);

    // A hostile server slips in a record its ZONEMD does not cover (the one the admin was refused).
    const extra = { name: `pay.${Z}`, type: 'A', class: 'IN', ttl: 3600, data: '203.0.113.9' } as Answer;
    const injected = [...records.slice(0, -1), extra, records[records.length - 1]!];
    const found = compareTransfer(z, injected, messages).differences;
    expect(found.find((d) => d.type === 'ZONEMD')).toMatchObject({ owner: Z, problem: 'the served ZONEMD is not the digest of the zone transferred (the digest does not match the zone)' });
    expect(found.find((d) => d.owner === `pay.${Z}` && d.type === 'A')).toMatchObject({ problem: 'the server serves this RRset; the ledger has no such records' });

    // Without its ZONEMD; with a ZONEMD for another serial.
    const without = records.filter((r) => !zonemdOf([r]).length);
    expect(compareTransfer(z, without, messages).differences.map((d) => [d.type, d.problem])).toContainEqual(['ZONEMD', 'the zone carries no ZONEMD at its apex']);
    const stale = records.map((r) => {
      if (!zonemdOf([r]).length) return r;
      const d = decodeZonemd((r as { data: Buffer }).data);
      return { ...r, data: encodeZonemd({ ...d, serial: d.serial - 1 }) } as unknown as Answer;
    });
    const staleDiffs = compareTransfer(z, stale, messages).differences.filter((d) => d.type === 'ZONEMD').map((d) => d.problem);
    expect(staleDiffs).toContain(`the served ZONEMD is for serial ${z.serial - 1}, not the serial ${z.serial} the ledger gives`);
    // Its signature no longer covers it either.
    expect(compareTransfer(z, stale, messages).differences.map((d) => d.type)).toContain('RRSIG(UNKNOWN_63)');
  });
});
