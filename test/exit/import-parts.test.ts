// Re-import of a zone larger than one ledger entry: thousands of records (a zone file over 200 KiB)
// exported from one daemon and imported on another as an `imvu.import` header and declared
// `imvu.import.part` entries. The CLI is killed after a few parts: the IMVU is then `importing` and
// its zone is not served at all (REFUSED), across a daemon restart; the same command resumes, and
// then dig answers and the record lists are the same on both platforms, and the ledger replays.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { initDataDir } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { loadPrivateKey } from '../../src/core/identity/keys.ts';
import { signRead } from '../../src/api/read-auth.ts';
import { run, submitDirect, tempDir } from '../cli/harness.ts';
import { killedAfterPart } from './killed-cli.ts';
import { answer, dig, dnsOf as dnsOfServer, ok, questionsFor, recordName } from './zone-answers.ts';

const dirs: string[] = [];
let a: RunningServer;
let b: RunningServer;
let dataA: string;
let dataB: string;
let home: string;
let out: string;
const envA = () => ({ NEXUS_HOME: home, NEXUS_URL: a.url });
const envB = () => ({ NEXUS_HOME: home, NEXUS_URL: b.url });
const ZONE = 'imvu001.world';
const RECORDS = 2400;
// Thousands of records from one creator in a few minutes: above the default per-identity rate.
const BULK = { perSource: { rate: 100_000, burst: 100_000 }, perIdentity: { rate: 100_000, burst: 100_000 } };

const name = recordName;
const QUESTIONS = questionsFor(ZONE, RECORDS);
const dnsOf = (s: RunningServer) => dnsOfServer(s, QUESTIONS);
const recordsOf = async (env: Record<string, string>) =>
  (JSON.parse(ok(await run(['--json', 'dns', 'record', 'list', ZONE], env)).stdout) as { records: { name: string; type: string; value: string; ttl: number }[] }).records
    .map((r) => `${r.name} ${r.ttl} ${r.type} ${r.value}`)
    .sort();

beforeAll(async () => {
  dataA = tempDir('parts-a');
  dataB = tempDir('parts-b');
  home = tempDir('parts-home');
  out = tempDir('parts-out');
  dirs.push(dataA, dataB, home, out);
  await (await initDataDir(dataA)).close();
  await (await initDataDir(dataB)).close();
  a = await startServer({ dataDir: dataA, host: '127.0.0.1', port: 0, logger: false, dns: { port: 0 }, limits: BULK });
  ok(await run(['identity', 'create', 'alice', '--role', 'creator'], envA()));
  ok(await run(['imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'EU-GDPR'], envA()));
  // Thousands of records, signed by the creator's key straight to the daemon, a few in flight.
  const key = loadPrivateKey(join(home, 'keys', 'alice.key'));
  const adds: { name: string; type: string; value: string }[] = [];
  for (let i = 0; i < RECORDS; i++) {
    adds.push({ name: name(i), type: 'TXT', value: `record ${i} of a zone larger than one ledger entry, with some text to make it weigh ${'x'.repeat(40)}` });
    if (i % 3 === 0) adds.push({ name: name(i), type: 'A', value: `10.${(i >> 8) & 255}.${i & 255}.7` });
  }
  for (let i = 0; i < adds.length; i += 16)
    await Promise.all(
      adds.slice(i, i + 16).map(async (r) => {
        const res = await submitDirect(a.url, `/v1/zones/${ZONE}/records`, key, 'dns.record.add', { zone: ZONE, ...r });
        expect(res.status, JSON.stringify(res.body)).toBe(201);
      }),
    );
}, 600_000);

afterAll(async () => {
  await a?.close();
  await b?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('re-import of a zone larger than one ledger entry', () => {
  let archive: string;
  let before: Record<string, string>;
  let list: string[];

  it('exports a zone of thousands of records (a zone file over 200 KiB)', async () => {
    before = await dnsOf(a);
    list = await recordsOf(envA());
    expect(list.length).toBeGreaterThan(RECORDS);
    expect(before[`${name(2399)}.${ZONE} TXT`]).toMatch(/^NOERROR\n/);
    ok(await run(['imvu', 'exit', 'IMVU-001', '--out', out, '--timeout', '300'], envA()));
    archive = join(out, 'IMVU-001-exit.tar.gz');
    const x = join(out, 'x');
    mkdirSync(x);
    execFileSync('tar', ['-xzf', archive, '-C', x, `IMVU-001/domains/${ZONE}.zone`]);
    expect(statSync(join(x, 'IMVU-001', 'domains', `${ZONE}.zone`)).size).toBeGreaterThan(200 * 1024);
  }, 600_000);

  it('a killed import leaves the IMVU importing and its zone not served, across a daemon restart', async () => {
    b = await startServer({ dataDir: dataB, host: '127.0.0.1', port: 0, logger: false, dns: { port: 0 } });
    ok(await run(['identity', 'import', 'alice'], envB()));
    // The CLI, killed once it has recorded its second part.
    const total = await killedAfterPart(['imvu', 'import', archive], envB(), 2);
    expect(total).toBeGreaterThan(4);
    await b.close();
    b = await startServer({ dataDir: dataB, host: '127.0.0.1', port: 0, logger: false, dns: { port: 0 } });
    const show = JSON.parse(ok(await run(['--json', 'imvu', 'show', 'IMVU-001'], envB())).stdout) as { status: string };
    expect(show.status).toBe('importing');
    // Not half-served: the zone is not answered at all, neither its apex nor a record already
    // recorded (the platform's own zone, which holds no delegation for it, says the name does not exist).
    for (const [n, t] of [[ZONE, 'SOA'], [`${name(0)}.${ZONE}`, 'TXT'], [ZONE, 'DNSKEY']] as const) {
      const got = answer(await dig(b, n, t));
      expect(got).toMatch(/^(REFUSED|NXDOMAIN)\n/);
      expect(got).not.toMatch(new RegExp(`^${n.replace(/\./g, '\\.')}\\.\\s`, 'm'));
    }
    // A part that is not the one declared, or names another header, is refused (gate 13, recorded).
    const key = loadPrivateKey(join(home, 'keys', 'alice.key'));
    const aliceId = String(((await (await fetch(`${b.url}/v1/identities/alice`)).json()) as { id: string }).id);
    const url = `${b.url}/v1/imvus/IMVU-001/import`;
    const view = (await (await fetch(url, { headers: { ...signRead(key, aliceId, 'GET', url) } })).json()) as { parts: { part: number; header: string; entry: number | null }[] };
    expect(view.parts.filter((p) => p.entry !== null).length).toBeGreaterThanOrEqual(2);
    const open = view.parts.find((p) => p.entry === null)!;
    const forged = [{ name: `evil.${ZONE}`, type: 'A', value: '10.6.6.6', ttl: 300 }];
    const bad = await submitDirect(b.url, '/v1/imvus/IMVU-001/import/parts', key, 'imvu.import.part', { imvu: 'IMVU-001', import: open.header, part: open.part, records: forged });
    expect(bad.status).toBe(403);
    expect(JSON.stringify(bad.body)).toMatch(/is not the part the import declared/);
    const other = await submitDirect(b.url, '/v1/imvus/IMVU-001/import/parts', key, 'imvu.import.part', { imvu: 'IMVU-001', import: 'f'.repeat(64), part: open.part, records: forged });
    expect(JSON.stringify(other.body)).toMatch(/names the import f{64}/);
    // Nothing else is taken for it meanwhile (gate 13).
    const add = await run(['dns', 'record', 'add', ZONE, 'late', 'A', '10.9.9.9'], envB());
    expect(add.code).toBe(1);
    expect(add.stderr).toMatch(/gate 13: IMVU-001 is still importing/);
  }, 600_000);

  it('the same command resumes: dig answers and every record the same on both platforms, and the ledger replays', async () => {
    const r = ok(await run(['imvu', 'import', archive], envB()));
    expect(r.stderr).toMatch(/resuming IMVU-001's import: \d+ of \d+ parts still to record/);
    expect(r.stdout).toMatch(/IMVU-001 imported \(ledger entry \d+, its zone in \d+ parts\)/);
    const show = JSON.parse(ok(await run(['--json', 'imvu', 'show', 'IMVU-001'], envB())).stdout) as { status: string };
    expect(show.status).toBe('active');
    let after: Record<string, string> = {};
    for (let i = 0; i < 40; i++) {
      after = await dnsOf(b);
      if (JSON.stringify(after) === JSON.stringify(before)) break;
      await new Promise((res) => setTimeout(res, 250));
    }
    expect(after).toEqual(before);
    expect(await recordsOf(envB())).toEqual(list);
    // The same import again: the IMVU and its zone are taken here now (gates 3 and 13).
    const again = await run(['imvu', 'import', archive], envB());
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/IMVU-001 exists here|already belongs to IMVU-001/);
    await b.close();
    ok(await run(['audit', 'verify', '--data', dataB], envB()));
    b = await startServer({ dataDir: dataB, host: '127.0.0.1', port: 0, logger: false, dns: { port: 0 } });
    expect(existsSync(archive)).toBe(true);
  }, 600_000);
});
