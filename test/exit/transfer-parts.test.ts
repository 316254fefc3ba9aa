// A custom domain whose zone is larger than one ledger entry (thousands of records, a zone file over
// 200 KiB) moved with `nexus domain transfer-in` between two daemons: a `domain.transfer` header
// declaring its parts, then `imvu.import.part` entries bound to that header. The CLI is killed after
// its second part: the domain is then not served at all (REFUSED), across a daemon restart, while
// the IMVU's own zone is; the same command resumes, and then dig answers and the record lists are
// the same on both platforms, running it once more changes nothing, and the ledger replays.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { initDataDir } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { loadPrivateKey } from '../../src/core/identity/keys.ts';
import { signRead } from '../../src/api/read-auth.ts';
import { BIN, ROOT, run, submitDirect, tempDir } from '../cli/harness.ts';
import { answer, dig, dnsOf as dnsOfServer, ok, questionsFor, recordName } from './zone-answers.ts';

const dirs: string[] = [];
let a: RunningServer;
let b: RunningServer;
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
    const child = spawn(process.execPath, [BIN, 'domain', 'transfer-in', CUSTOM, '--code', code], { cwd: ROOT, env: { ...process.env, ...envB() }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    await new Promise<void>((res, rej) => {
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (/part 2 of \d+ recorded/.test(err)) {
          child.kill('SIGKILL');
          res();
        }
      });
      child.once('exit', (c) => rej(new Error(`the transfer ended (${c}) before its second part: ${err}`)));
    });
    const total = Number(/part \d+ of (\d+) recorded/.exec(err)![1]);
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
    const child = spawn(process.execPath, [BIN, 'domain', 'transfer-in', CUSTOM, '--code', code], { cwd: ROOT, env: { ...process.env, ...envB() }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    await new Promise<void>((res, rej) => {
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
        if (/part 2 of \d+ recorded/.test(err)) {
          child.kill('SIGKILL');
          res();
        }
      });
      child.once('exit', (c) => rej(new Error(`the transfer ended (${c}) before its second part: ${err}`)));
    });
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
});
