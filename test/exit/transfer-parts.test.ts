// A custom domain whose zone is larger than one ledger entry (thousands of records, a zone file over
// 200 KiB) moved with `nexus domain transfer-in` between two daemons: a `domain.transfer` header
// declaring its parts, then `imvu.import.part` entries bound to that header. The CLI is killed after
// its second part: the domain is then not served at all (REFUSED), across a daemon restart, while
// the IMVU's own zone is; the same command resumes, and then dig answers and the record lists are
// the same on both platforms, running it once more changes nothing, and the ledger replays.
// An exit while a transfer still misses parts exports that domain as incomplete, never as a zone:
// the offline verifier refuses an archive that presents it as whole, and a re-import on a third
// platform does not serve it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initDataDir } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { loadPrivateKey } from '../../src/core/identity/keys.ts';
import { signRead } from '../../src/api/read-auth.ts';
import { hashFile, signManifest, type SignedManifest } from '../../src/imvu/exit/manifest.ts';
import { run, submitDirect, tempDir } from '../cli/harness.ts';
import { killedAfterPart } from './killed-cli.ts';
import { answer, dig, dnsOf as dnsOfServer, ok, questionsFor, recordName } from './zone-answers.ts';

const dirs: string[] = [];
let a: RunningServer;
let b: RunningServer;
let c: RunningServer | undefined;
let dataA: string;
let dataB: string;
let home: string;
let out: string;
let peers: { origin: string; publicKey: string }[] = [];
const envA = () => ({ NEXUS_HOME: home, NEXUS_URL: a.url });
const envB = () => ({ NEXUS_HOME: home, NEXUS_URL: b.url });
const PRIMARY = 'imvu001.world';
const CUSTOM = 'gallery-art.org';
const RECORDS = 2400;
const tokens: string[] = [];
const startB = async () => (b = await startServer({ dataDir: dataB, host: '127.0.0.1', port: 0, logger: false, dns: { port: 0 }, peers, challenge: async () => ({ rcode: 'NOERROR', txt: tokens }) }));

const name = recordName;
const QUESTIONS = questionsFor(CUSTOM, RECORDS);
const dnsOf = (s: RunningServer) => dnsOfServer(s, QUESTIONS);
/** The answers once the daemon's zone view has caught up with the ledger (or the last ones after 10 s). */
async function settled(): Promise<Record<string, string>> {
  let after: Record<string, string> = {};
  for (let i = 0; i < 40; i++) {
    after = await dnsOf(b);
    if (JSON.stringify(after) === JSON.stringify(before)) break;
    await new Promise((res) => setTimeout(res, 250));
  }
  return after;
}
let before: Record<string, string>;
/** `nexus domain transfer-in` on the second platform, killed once it has recorded its second part; the number of parts it declared. */
const transferKilledAfterPart2 = (code: string) => killedAfterPart(['domain', 'transfer-in', CUSTOM, '--code', code], envB(), 2);
const recordsOf = async (env: Record<string, string>) =>
  (JSON.parse(ok(await run(['--json', 'dns', 'record', 'list', CUSTOM], env)).stdout) as { records: { name: string; type: string; value: string; ttl: number }[] }).records
    .map((r) => `${r.name} ${r.ttl} ${r.type} ${r.value}`)
    .sort();

beforeAll(async () => {
  dataA = tempDir('transfer-a');
  dataB = tempDir('transfer-b');
  home = tempDir('transfer-home');
  out = tempDir('transfer-out');
  dirs.push(dataA, dataB, home, out);
  await (await initDataDir(dataA)).close();
  await (await initDataDir(dataB)).close();
  // The first platform finds the TXT proof of the custom domain (its resolver is not under test here).
  a = await startServer({ dataDir: dataA, host: '127.0.0.1', port: 0, logger: false, dns: { port: 0 }, challenge: async () => ({ rcode: 'NOERROR', txt: tokens }) });
  ok(await run(['identity', 'create', 'alice', '--role', 'creator'], envA()));
  ok(await run(['imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'EU-GDPR'], envA()));
  const claim = JSON.parse(ok(await run(['--json', 'domain', 'claim', 'IMVU-001', CUSTOM], envA())).stdout) as { challenge: { value: string } };
  tokens.push(claim.challenge.value);
  ok(await run(['domain', 'verify', 'IMVU-001', CUSTOM], envA()));
  // Thousands of records in the custom domain, signed by the creator's key straight to the daemon, a few in flight.
  const key = loadPrivateKey(join(home, 'keys', 'alice.key'));
  const adds: { name: string; type: string; value: string }[] = [];
  for (let i = 0; i < RECORDS; i++) {
    adds.push({ name: name(i), type: 'TXT', value: `record ${i} of a zone larger than one ledger entry, with some text to make it weigh ${'x'.repeat(40)}` });
    if (i % 3 === 0) adds.push({ name: name(i), type: 'A', value: `10.${(i >> 8) & 255}.${i & 255}.9` });
  }
  for (let i = 0; i < adds.length; i += 16)
    await Promise.all(
      adds.slice(i, i + 16).map(async (r) => {
        let res = await submitDirect(a.url, `/v1/zones/${CUSTOM}/records`, key, 'dns.record.add', { zone: CUSTOM, ...r });
        // Over the daemon's per-identity rate nothing is recorded: wait as it says and send again.
        while (res.status === 429) {
          await new Promise((ok) => setTimeout(ok, 1000));
          res = await submitDirect(a.url, `/v1/zones/${CUSTOM}/records`, key, 'dns.record.add', { zone: CUSTOM, ...r });
        }
        expect(res.status, JSON.stringify(res.body)).toBe(201);
      }),
    );
  const platformA = (await (await fetch(`${a.url}/v1/platform`)).json()) as { origin: string; publicKey: string };
  peers = [{ origin: platformA.origin, publicKey: platformA.publicKey }];
}, 900_000);

afterAll(async () => {
  await a?.close();
  await b?.close();
  await c?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('transfer-in of a custom domain larger than one ledger entry', () => {
  let archive: string;
  let code: string;
  let list: string[];

  it('exports the custom domain (a zone file over 200 KiB) and imports the IMVU on a peer platform', async () => {
    before = await dnsOf(a);
    list = await recordsOf(envA());
    expect(list.length).toBeGreaterThan(RECORDS);
    expect(before[`${name(2399)}.${CUSTOM} TXT`]).toMatch(/^NOERROR\n/);
    ok(await run(['imvu', 'exit', 'IMVU-001', '--out', out, '--timeout', '600'], envA()));
    archive = join(out, 'IMVU-001-exit.tar.gz');
    const x = join(out, 'x');
    mkdirSync(x);
    execFileSync('tar', ['-xzf', archive, '-C', x, `IMVU-001/domains/${CUSTOM}.zone`, 'IMVU-001/domains/domain-transfer-codes.txt']);
    expect(statSync(join(x, 'IMVU-001', 'domains', `${CUSTOM}.zone`)).size).toBeGreaterThan(200 * 1024);
    code = readFileSync(join(x, 'IMVU-001/domains/domain-transfer-codes.txt'), 'utf8').split('\n').find((l) => l.startsWith(`${CUSTOM} `))!.split(' ')[1]!;
    await startB();
    ok(await run(['identity', 'import', 'alice'], envB()));
    ok(await run(['imvu', 'import', archive], envB()));
  }, 900_000);

  it('a killed transfer leaves the domain not served, across a daemon restart, and takes only the declared parts', async () => {
    // The CLI, killed once it has recorded its second part.
    const total = await transferKilledAfterPart2(code);
    expect(total).toBeGreaterThan(4);
    await b.close();
    await startB();
    // Not half-served: the domain is not answered at all, neither its apex nor a record already recorded.
    for (const [n, t] of [[CUSTOM, 'SOA'], [`${name(0)}.${CUSTOM}`, 'TXT'], [CUSTOM, 'DNSKEY']] as const) {
      const got = answer(await dig(b, n, t));
      expect(got).toMatch(/^REFUSED(\n|$)/);
      expect(got).not.toMatch(new RegExp(`^${n.replace(/\./g, '\\.')}\\.\\s`, 'm'));
    }
    // The IMVU itself stays served meanwhile.
    expect(answer(await dig(b, PRIMARY, 'SOA'))).toMatch(/^NOERROR\n/);
    // A part that is not the one declared, or names another header, is refused (gate 13, recorded).
    const key = loadPrivateKey(join(home, 'keys', 'alice.key'));
    const aliceId = String(((await (await fetch(`${b.url}/v1/identities/alice`)).json()) as { id: string }).id);
    const url = `${b.url}/v1/imvus/IMVU-001/import`;
    const view = (await (await fetch(url, { headers: { ...signRead(key, aliceId, 'GET', url) } })).json()) as { parts: { zone: string; part: number; header: string; entry: number | null }[] };
    const mine = view.parts.filter((p) => p.zone === CUSTOM);
    expect(mine.length).toBe(total);
    expect(mine.filter((p) => p.entry !== null).length).toBeGreaterThanOrEqual(2);
    const open = mine.find((p) => p.entry === null)!;
    const forged = [{ name: `evil.${CUSTOM}`, type: 'A', value: '10.6.6.6', ttl: 300 }];
    const bad = await submitDirect(b.url, '/v1/imvus/IMVU-001/import/parts', key, 'imvu.import.part', { imvu: 'IMVU-001', import: open.header, part: open.part, records: forged });
    expect(bad.status).toBe(403);
    expect(JSON.stringify(bad.body)).toMatch(/is not the part the transfer declared/);
    const other = await submitDirect(b.url, '/v1/imvus/IMVU-001/import/parts', key, 'imvu.import.part', { imvu: 'IMVU-001', import: 'f'.repeat(64), part: open.part, records: forged });
    expect(other.status).toBe(403);
  }, 900_000);

  it('the same command resumes: dig answers and every record the same on both platforms; again, nothing changes; the ledger replays', async () => {
    const r = ok(await run(['domain', 'transfer-in', CUSTOM, '--code', code], envB()));
    expect(r.stderr).toMatch(/resuming the transfer of gallery-art\.org: \d+ of \d+ parts still to record/);
    expect(r.stdout).toMatch(/gallery-art\.org transferred to IMVU-001 .*its zone in \d+ parts/);
    expect(await settled()).toEqual(before);
    expect(await recordsOf(envB())).toEqual(list);
    // Once more: every part is recorded, nothing is sent, and the answers are the same.
    const again = ok(await run(['domain', 'transfer-in', CUSTOM, '--code', code], envB()));
    expect(again.stderr).toMatch(/resuming the transfer of gallery-art\.org: 0 of \d+ parts still to record/);
    expect(again.stderr).not.toMatch(/part \d+ of \d+ recorded/);
    expect(await recordsOf(envB())).toEqual(list);
    await b.close();
    ok(await run(['audit', 'verify', '--data', dataB], envB()));
    await startB();
    expect(await settled()).toEqual(before);
  }, 900_000);

  it('a domain released before its last part owes nothing more: claimed again it is served, transferred again it is whole', async () => {
    ok(await run(['domain', 'release', CUSTOM, '--imvu', 'IMVU-001'], envB()));
    await transferKilledAfterPart2(code);
    ok(await run(['domain', 'release', CUSTOM, '--imvu', 'IMVU-001'], envB()));
    expect(answer(await dig(b, CUSTOM, 'SOA'))).toMatch(/^REFUSED(\n|$)/);
    // Claimed and proved afresh: a new zone of its own, served (nothing of the old transfer is owed).
    const claim = JSON.parse(ok(await run(['--json', 'domain', 'claim', 'IMVU-001', CUSTOM], envB())).stdout) as { challenge: { value: string } };
    tokens.push(claim.challenge.value);
    ok(await run(['domain', 'verify', 'IMVU-001', CUSTOM], envB()));
    let soa = '';
    for (let i = 0; i < 40 && !/^NOERROR\n/.test(soa); i++) {
      soa = answer(await dig(b, CUSTOM, 'SOA'));
      if (!/^NOERROR\n/.test(soa)) await new Promise((res) => setTimeout(res, 250));
    }
    expect(soa).toMatch(/^NOERROR\n/);
    // Released again and transferred again with the code: whole, as on the first platform.
    ok(await run(['domain', 'release', CUSTOM, '--imvu', 'IMVU-001'], envB()));
    ok(await run(['domain', 'transfer-in', CUSTOM, '--code', code], envB()));
    expect(await settled()).toEqual(before);
    expect(await recordsOf(envB())).toEqual(list);
  }, 900_000);

  it('an exit while the transfer misses parts lists the domain as incomplete, never as a zone; the verifier refuses it presented whole; a re-import does not serve it', async () => {
    ok(await run(['domain', 'release', CUSTOM, '--imvu', 'IMVU-001'], envB()));
    const total = await transferKilledAfterPart2(code);
    expect(answer(await dig(b, CUSTOM, 'SOA'))).toMatch(/^REFUSED(\n|$)/);
    // The parts not recorded, as the daemon lists them (a part in flight at the kill may have landed).
    const key = loadPrivateKey(join(home, 'keys', 'alice.key'));
    const aliceId = String(((await (await fetch(`${b.url}/v1/identities/alice`)).json()) as { id: string }).id);
    const url = `${b.url}/v1/imvus/IMVU-001/import`;
    const view = (await (await fetch(url, { headers: { ...signRead(key, aliceId, 'GET', url) } })).json()) as { parts: { zone: string; part: number; entry: number | null }[] };
    const missing = view.parts.filter((p) => p.zone === CUSTOM && p.entry === null).map((p) => p.part);
    expect(missing.length).toBeGreaterThan(0);
    expect(missing).toEqual(Array.from({ length: missing.length }, (_, i) => total - missing.length + i));
    const outB = tempDir('transfer-out-b');
    dirs.push(outB);
    const exit = ok(await run(['imvu', 'exit', 'IMVU-001', '--out', outB, '--timeout', '600'], envB()));
    const incompleteLine = new RegExp(`⚠️ {2}Domains: incomplete, not exported as a zone: gallery-art\\.org: ${missing.length} of the ${total} parts its domain\\.transfer \\(ledger entry \\d+\\) declared were never recorded \\(imvu\\.import\\.part ${missing[0]}-${total - 1}\\)`);
    expect(exit.stdout).toMatch(incompleteLine);
    expect(ok(await run(['imvu', 'exit-status', 'IMVU-001'], envB())).stdout).toMatch(/incomplete, not exported: gallery-art\.org: /);
    const archiveB = join(outB, 'IMVU-001-exit.tar.gz');
    const x = join(outB, 'x');
    mkdirSync(x);
    execFileSync('tar', ['-xzf', archiveB, '-C', x]);
    const root = join(x, 'IMVU-001');
    const read = (f: string) => readFileSync(join(root, f), 'utf8');
    // The IMVU's own zone is exported; nothing presents the half-transferred one as a zone.
    expect(existsSync(join(root, 'domains', `${PRIMARY}.zone`))).toBe(true);
    expect(existsSync(join(root, 'domains', `${CUSTOM}.zone`))).toBe(false);
    expect(readdirSync(join(root, 'domains', 'dnssec')).filter((f) => f.startsWith(`K${CUSTOM}.`))).toEqual([]);
    expect(read('domains/ds-records.txt')).not.toContain(`${CUSTOM}.`);
    expect(read('domains/domain-transfer-codes.txt')).not.toContain(CUSTOM);
    const cert = JSON.parse(read('domains/ownership-certificate.json')) as { statement: { domains: string[] } };
    expect(cert.statement.domains).toContain(PRIMARY);
    expect(cert.statement.domains).not.toContain(CUSTOM);
    expect((JSON.parse(read('IMVU.json')) as { zones: { name: string }[] }).zones.map((z) => z.name)).toEqual([PRIMARY]);
    const signed = JSON.parse(read('MANIFEST.json')) as SignedManifest;
    expect(signed.manifest.incomplete).toEqual([{ zone: CUSTOM, declaredBy: 'domain.transfer', entry: expect.any(Number), parts: total, missing }]);
    expect(ok(await run(['export', 'verify', archiveB], envB())).stdout).toMatch(incompleteLine);

    // An archive signed by the same platform key that presents the domain as whole (the zone file
    // of the first platform's archive, listed and hashed, nothing said incomplete) fails, naming the file.
    const platformKey = loadPrivateKey(join(dataB, 'keys', 'platform.key'));
    const forge = async (name: string, edit: (dir: string, m: SignedManifest['manifest']) => Promise<void>) => {
      const dir = join(outB, name);
      cpSync(x, dir, { recursive: true });
      const m = structuredClone(signed.manifest);
      await edit(join(dir, 'IMVU-001'), m);
      writeFileSync(join(dir, 'IMVU-001', 'MANIFEST.json'), JSON.stringify(signManifest(m, platformKey), null, 2) + '\n');
      const file = join(outB, `${name}.tar.gz`);
      execFileSync('tar', ['-czf', file, '-C', dir, 'IMVU-001']);
      return run(['export', 'verify', file], envB());
    };
    const whole = await forge('whole', async (dir, m) => {
      cpSync(join(out, 'x', 'IMVU-001', 'domains', `${CUSTOM}.zone`), join(dir, 'domains', `${CUSTOM}.zone`));
      m.files = [...m.files, { path: `domains/${CUSTOM}.zone`, ...(await hashFile(join(dir, 'domains', `${CUSTOM}.zone`))) }].sort((p, q) => (p.path < q.path ? -1 : 1));
      delete m.incomplete;
    });
    expect(whole.code, whole.stdout).toBe(4);
    expect(whole.stderr).toMatch(/domains\/gallery-art\.org\.zone: gallery-art\.org: \d+ of the \d+ parts .* the archive holds its zone file as if it were complete/);
    // Nothing presents it as whole, but the manifest no longer says it is incomplete.
    const silent = await forge('silent', async (_dir, m) => {
      delete m.incomplete;
    });
    expect(silent.code, silent.stdout).toBe(4);
    expect(silent.stderr).toMatch(/MANIFEST\.json: lists as incomplete none; the exported ledger says gallery-art\.org: /);

    // Re-imported on a third platform that takes the second's transfer codes: the IMVU's own zone is
    // served, the half-transferred domain is not, and no code moves it there from this archive.
    const dataC = tempDir('transfer-c');
    dirs.push(dataC);
    await (await initDataDir(dataC)).close();
    const platformB = (await (await fetch(`${b.url}/v1/platform`)).json()) as { origin: string; publicKey: string };
    c = await startServer({ dataDir: dataC, host: '127.0.0.1', port: 0, logger: false, dns: { port: 0 }, peers: [platformB] });
    const envC = { NEXUS_HOME: home, NEXUS_URL: c.url };
    ok(await run(['identity', 'import', 'alice'], envC));
    expect(ok(await run(['imvu', 'import', archiveB], envC)).stdout).toMatch(/gallery-art\.org: not whole on .* when it exited \(\d+ of \d+ parts never recorded\): not in the archive; claim it here and prove control/);
    let soa = '';
    for (let i = 0; i < 40 && !/^NOERROR\n/.test(soa); i++) {
      soa = answer(await dig(c, PRIMARY, 'SOA'));
      if (!/^NOERROR\n/.test(soa)) await new Promise((res) => setTimeout(res, 250));
    }
    expect(soa).toMatch(/^NOERROR\n/);
    expect(answer(await dig(c, CUSTOM, 'SOA'))).toMatch(/^REFUSED(\n|$)/);
    expect(answer(await dig(c, `${name(0)}.${CUSTOM}`, 'TXT'))).toMatch(/^REFUSED(\n|$)/);
    const moved = await run(['domain', 'transfer-in', CUSTOM, '--code', code], envC);
    expect(moved.code).not.toBe(0);
    expect(moved.stderr).toMatch(/holds no zone gallery-art\.org/);
    expect(answer(await dig(c, CUSTOM, 'SOA'))).toMatch(/^REFUSED(\n|$)/);
  }, 900_000);
});
