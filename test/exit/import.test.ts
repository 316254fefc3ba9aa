// Exit and re-import on a second platform: two daemons on loopback, the built CLI as the creator
// holding one identity key. The IMVU leaves the first platform with real mail (appended over IMAP),
// a signed zone and a custom route, is imported on the second one from its archive, and everything
// is compared with clients nobody here wrote: dig (answers, DNSKEY, RRSIG key tags), imapflow
// (folders, flags, messages byte for byte), the routes table. Tampered or mismatched archives are
// refused, and nothing is recorded for them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { dataVolume } from '../../src/compute/snapshots/index.ts';
import { markRestorePending } from '../../src/imvu/import/service.ts';
import { imvuDir } from '../../src/mail/maildir/paths.ts';
import { join } from 'node:path';
import { ImapFlow } from 'imapflow';
import { initDataDir } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { startImapServer, type ImapServer } from '../../src/mail/imap/server.ts';
import { ROOT, run, tempDir, type Run } from '../cli/harness.ts';

const execFileAsync = promisify(execFile);
const dirs: string[] = [];
let a: RunningServer;
let b: RunningServer;
let dataA: string;
let dataB: string;
let home: string;
let out: string;
let imapA: ImapServer;
let imapB: ImapServer;
const envA = () => ({ NEXUS_HOME: home, NEXUS_URL: a.url });
const envB = () => ({ NEXUS_HOME: home, NEXUS_URL: b.url });
const ADDRESS = 'creator@imvu001.world';
const CUSTOM = 'gallery-art.org';
const tokens: string[] = [];

function ok(r: Run): Run {
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

const dig = async (server: RunningServer, name: string, type: string) =>
  (await execFileAsync('dig', ['@127.0.0.1', '-p', String(server.dns!.server.port), '+time=10', '+tries=3', '+norec', '+dnssec', '+nocmd', '+nostats', '+noquestion', name, type], { encoding: 'utf8' })).stdout;
/** The answer section without the RRSIGs' validity times and signature bytes (ECDSA signs afresh each time). */
function answer(text: string): { records: string[]; sigs: string[] } {
  const lines = text.split('\n').filter((l) => l && !l.startsWith(';'));
  const records = lines.filter((l) => !/\sRRSIG\s/.test(l)).map((l) => l.replace(/\s+/g, ' '));
  // RRSIG: covered, algorithm, labels, original TTL, expiration, inception, key tag, signer, signature.
  const sigs = lines.filter((l) => /\sRRSIG\s/.test(l)).map((l) => {
    const f = l.split(/\s+/);
    const i = f.indexOf('RRSIG');
    return [f[0], f[i + 1], f[i + 2], f[i + 3], f[i + 4], f[i + 7], f[i + 8]].join(' ');
  });
  return { records: records.sort(), sigs: sigs.sort() };
}

/** A folder's tree: path → type, permission bits, and the SHA-256 of the content or the link target. */
function tree(dir: string, rel = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const path = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(dir, path));
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isDirectory()) {
      out[path] = `dir ${mode}`;
      Object.assign(out, tree(dir, path));
    } else if (st.isSymbolicLink()) out[path] = `link -> ${readlinkSync(join(dir, path))}`;
    else out[path] = `file ${mode} ${st.size} ${createHash('sha256').update(readFileSync(join(dir, path))).digest('hex')}`;
  }
  return out;
}

function imap(server: ImapServer): ImapFlow {
  return new ImapFlow({ host: '127.0.0.1', port: server.port!, secure: false, doSTARTTLS: false, auth: { user: ADDRESS, pass: 'test' }, logger: false, disableAutoIdle: true } as ConstructorParameters<typeof ImapFlow>[0]);
}
const account = async (user: string, pass: string) => (user === ADDRESS && pass === 'test' ? { imvu: 'IMVU-001', address: ADDRESS } : null);

async function mailState(server: ImapServer): Promise<Record<string, { flags: string[]; source: string; date: string }[]>> {
  const c = imap(server);
  await c.connect();
  const out: Record<string, { flags: string[]; source: string; date: string }[]> = {};
  try {
    for (const box of (await c.list()).map((l) => l.path).sort()) {
      const lock = await c.getMailboxLock(box);
      try {
        const msgs: { flags: string[]; source: string; date: string }[] = [];
        if ((c.mailbox as { exists: number }).exists > 0)
          for await (const m of c.fetch('1:*', { flags: true, source: true, internalDate: true }))
            msgs.push({ flags: [...(m.flags ?? [])].sort(), source: m.source!.toString('base64'), date: new Date(m.internalDate!).toISOString() });
        out[box] = msgs;
      } finally {
        lock.release();
      }
    }
  } finally {
    await c.logout();
  }
  return out;
}

const message = (n: number, extra = '') =>
  [`From: Sender ${n} <s${n}@example.org>`, `To: ${ADDRESS}`, `Subject: message ${n}`, `Message-ID: <m${n}@example.org>`, 'Date: Tue, 01 Dec 2026 10:00:00 +0000', '', `body ${n}`, 'From the start of a line', `>From quoted already${extra}`, ''].join('\r\n');

beforeAll(async () => {
  dataA = tempDir('import-a');
  dataB = tempDir('import-b');
  home = tempDir('import-home');
  out = tempDir('import-out');
  dirs.push(dataA, dataB, home, out);
  await (await initDataDir(dataA)).close();
  await (await initDataDir(dataB)).close();
  // The first platform finds the TXT proof of the custom domain (its resolver is not under test here).
  a = await startServer({ dataDir: dataA, host: '127.0.0.1', port: 0, logger: false, dns: { port: 0 }, challenge: async () => ({ rcode: 'NOERROR', txt: tokens }) });
  imapA = await startImapServer({ dataDir: dataA, port: 0, plaintextAuth: true, authenticate: account });
  ok(await run(['identity', 'create', 'alice', '--role', 'creator'], envA()));
  ok(await run(['imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'EU-GDPR'], envA()));
  ok(await run(['dns', 'record', 'add', 'imvu001.world', 'www', 'A', '10.0.0.7'], envA()));
  ok(await run(['dns', 'record', 'add', 'imvu001.world', 'shop', 'TXT', 'hello "quoted" world'], envA()));
  const claim = JSON.parse(ok(await run(['--json', 'domain', 'claim', 'IMVU-001', CUSTOM], envA())).stdout) as { challenge: { value: string } };
  tokens.push(claim.challenge.value);
  ok(await run(['domain', 'verify', 'IMVU-001', CUSTOM], envA()));
  ok(await run(['dns', 'record', 'add', CUSTOM, 'www', 'A', '10.0.0.9'], envA()));
  ok(await run(['route', 'set', 'IMVU-001', '--public', '/shop/*=shop-api:8080', '--public', '/*=public-api'], envA()));
  // A data volume with nested folders, modes, an empty file, a symlink and incompressible bytes.
  const vol = dataVolume(dataA, 'IMVU-001');
  mkdirSync(join(vol, 'site', 'img'), { recursive: true });
  writeFileSync(join(vol, 'site', 'index.html'), '<h1>gallery</h1>\n');
  writeFileSync(join(vol, 'site', 'img', 'noise.bin'), randomBytes(3 * 1024 * 1024 + 17));
  writeFileSync(join(vol, 'empty'), '');
  writeFileSync(join(vol, 'run.sh'), '#!/bin/sh\necho hi\n', { mode: 0o750 });
  symlinkSync('site/index.html', join(vol, 'index'));
  // Mail in two folders with flags, appended over IMAP.
  const c = imap(imapA);
  await c.connect();
  await c.append('INBOX', message(1), ['\\Seen'], new Date('2026-11-01T10:00:00Z'));
  await c.append('INBOX', message(2), ['\\Flagged', '\\Answered'], new Date('2026-11-02T10:00:00Z'));
  await c.append('INBOX', message(3), [], new Date('2026-11-03T10:00:00Z'));
  await c.mailboxCreate('Projects');
  await c.append('Projects', message(4, ' and no final newline').replace(/\r\n$/, ''), ['\\Seen', '\\Draft'], new Date('2026-11-04T10:00:00Z'));
  await c.logout();
}, 180_000);

afterAll(async () => {
  await imapA?.close();
  await imapB?.close();
  await a?.close();
  await b?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('exit and re-import on a second platform', () => {
  let archive: string;
  let before: { dns: Record<string, { records: string[]; sigs: string[] }>; mail: Awaited<ReturnType<typeof mailState>>; routes: unknown; envelope: unknown };
  const QUESTIONS: [string, string][] = [
    ['imvu001.world', 'SOA'],
    ['imvu001.world', 'DNSKEY'],
    ['imvu001.world', 'MX'],
    ['imvu001.world', 'TXT'],
    ['www.imvu001.world', 'A'],
    ['shop.imvu001.world', 'TXT'],
    ['nexus1._domainkey.imvu001.world', 'TXT'],
    ['_dmarc.imvu001.world', 'TXT'],
  ];
  const dnsOf = async (s: RunningServer) => Object.fromEntries(await Promise.all(QUESTIONS.map(async ([n, t]) => [`${n} ${t}`, answer(await dig(s, n, t))] as const)));

  it('exports the IMVU from the first platform', async () => {
    const show = JSON.parse(ok(await run(['--json', 'imvu', 'show', 'IMVU-001'], envA())).stdout) as { routes: unknown; envelope: unknown };
    before = { dns: await dnsOf(a), mail: await mailState(imapA), routes: show.routes, envelope: show.envelope };
    expect(before.dns['imvu001.world DNSKEY']!.records.length).toBe(1);
    expect(before.dns['www.imvu001.world A']!.sigs.length).toBe(1);
    expect(Object.keys(before.mail)).toContain('Projects');
    ok(await run(['imvu', 'exit', 'IMVU-001', '--out', out, '--timeout', '120'], envA()));
    archive = join(out, 'IMVU-001-exit.tar.gz');
    expect(existsSync(archive)).toBe(true);
  }, 180_000);

  it('imports it on a second platform under the same id and key: DNS, mail and routes are the same', async () => {
    b = await startServer({ dataDir: dataB, host: '127.0.0.1', port: 0, logger: false, dns: { port: 0 } });
    imapB = await startImapServer({ dataDir: dataB, port: 0, plaintextAuth: true, authenticate: account });
    // The creator registers the same key with the new platform, then imports.
    ok(await run(['identity', 'import', 'alice'], envB()));
    const r = ok(await run(['imvu', 'import', archive], envB()));
    expect(r.stdout).toMatch(/IMVU-001 imported \(ledger entry \d+\), its history attached: nexus\.local\/\S+ at tree size \d+/);
    expect(r.stdout, r.stdout).toMatch(/mail: 2 mailbox\(es\), 4 message\(s\) restored/);

    // DNS: the same answers, the same DNSKEY, signatures by the same key tag (the parent's DS stays valid).
    let after: Record<string, { records: string[]; sigs: string[] }> = {};
    for (let i = 0; i < 40; i++) {
      after = await dnsOf(b);
      if (JSON.stringify(after) === JSON.stringify(before.dns)) break;
      await new Promise((res) => setTimeout(res, 250));
    }
    expect(after).toEqual(before.dns);
    // Mail over IMAP: the same folders, flags, dates and bytes.
    expect(await mailState(imapB)).toEqual(before.mail);
    // The data volume, byte for byte: every entry's type, mode, size, content and link target.
    expect(tree(dataVolume(dataB, 'IMVU-001'))).toEqual(tree(dataVolume(dataA, 'IMVU-001')));
    // Routes and envelope.
    const show = JSON.parse(ok(await run(['--json', 'imvu', 'show', 'IMVU-001'], envB())).stdout) as { routes: unknown; envelope: unknown; owner: { id: string } };
    expect(show.routes).toEqual(before.routes);
    expect(show.envelope).toEqual(before.envelope);
    // The new ledger holds a signed reference to the first platform's log, and it verifies on replay.
    const importView = JSON.parse(ok(await run(['--json', 'audit', 'verify'], envB())).stdout) as unknown;
    expect(importView).toBeTruthy();
  }, 180_000);

  it('a daemon that died after the import was recorded, before its restore was done, finishes the restore at start: nothing missing, nothing twice', async () => {
    await imapB.close();
    await b.close();
    // As the crash leaves it: the restore was owed (its marker written before the entry), one
    // message and the data volume had not been written yet.
    const sha = createHash('sha256').update(readFileSync(archive)).digest('hex');
    expect(markRestorePending(dataB, sha, 'IMVU-001')).toBe(true);
    const mailDir = join(imvuDir(dataB, 'IMVU-001'), 'mail');
    const stored = readdirSync(mailDir, { recursive: true, encoding: 'utf8' }).filter((f) => /(^|\/)cur\/[^/]+$/.test(f));
    expect(stored.length).toBe(4);
    // A restore writes in the archive's order, so what a crash leaves out is the last written (names sort by time).
    const last = stored.filter((f) => f.startsWith(stored[0]!.split('/')[0]! + '/cur/')).sort().at(-1)!;
    rmSync(join(mailDir, last));
    rmSync(dataVolume(dataB, 'IMVU-001'), { recursive: true, force: true });

    b = await startServer({ dataDir: dataB, host: '127.0.0.1', port: 0, logger: false, dns: { port: 0 } });
    imapB = await startImapServer({ dataDir: dataB, port: 0, plaintextAuth: true, authenticate: account });
    expect(await mailState(imapB)).toEqual(before.mail);
    expect(tree(dataVolume(dataB, 'IMVU-001'))).toEqual(tree(dataVolume(dataA, 'IMVU-001')));
    expect(readdirSync(join(dataB, 'imports', sha)).filter((f) => f.endsWith('.pending'))).toEqual([]);
  }, 120_000);

  it('refuses an archive that does not verify, and an import that names another archive, recording nothing', async () => {
    const x = join(out, 'x');
    mkdirSync(x);
    execFileSync('tar', ['-xzf', archive, '-C', x]);
    const zone = join(x, 'IMVU-001', 'domains', 'imvu001.world.zone');
    writeFileSync(zone, readFileSync(zone, 'utf8').replace('10.0.0.7', '10.6.6.6'));
    const bad = join(out, 'bad.tar.gz');
    execFileSync('tar', ['-czf', bad, '-C', x, 'IMVU-001']);
    const r = await run(['imvu', 'import', bad], envB());
    expect(r.code).toBe(4);
    expect(r.stderr).toMatch(/domains\/imvu001\.world\.zone/);
    // The same IMVU twice: its id is taken here now (gate 13, recorded as a denial).
    const again = await run(['imvu', 'import', archive], envB());
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/IMVU-001 exists here|already belongs to IMVU-001/);
  }, 120_000);

  it('moves the custom domain with its transfer code, only from a peer platform: same answers, same DNSSEC key', async () => {
    const x = join(out, 'codes');
    mkdirSync(x);
    execFileSync('tar', ['-xzf', archive, '-C', x, 'IMVU-001/domains/domain-transfer-codes.txt']);
    const code = readFileSync(join(x, 'IMVU-001/domains/domain-transfer-codes.txt'), 'utf8').split('\n').find((l) => l.startsWith(`${CUSTOM} `))!.split(' ')[1]!;
    // This platform does not trust the first one yet: refused by gate 3, recorded.
    const refused = await run(['domain', 'transfer-in', CUSTOM, '--code', code], envB());
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/gate 3: .*not a trusted peer/);
    // The code of another domain, or an altered one, is refused too.
    const other = readFileSync(join(x, 'IMVU-001/domains/domain-transfer-codes.txt'), 'utf8').split('\n').find((l) => l.startsWith('imvu001.world '))!.split(' ')[1]!;
    expect((await run(['domain', 'transfer-in', CUSTOM, '--code', other], envB())).code).toBe(2);
    // The operator declares the first platform a peer (recorded as platform.peer at start).
    const platformA = (await (await fetch(`${a.url}/v1/platform`)).json()) as { origin: string; publicKey: string };
    await b.close();
    b = await startServer({ dataDir: dataB, host: '127.0.0.1', port: 0, logger: false, dns: { port: 0 }, peers: [{ origin: platformA.origin, publicKey: platformA.publicKey }] });
    ok(await run(['domain', 'transfer-in', CUSTOM, '--code', code], envB()));
    const questions: [string, string][] = [[CUSTOM, 'DNSKEY'], [CUSTOM, 'SOA'], [`www.${CUSTOM}`, 'A'], [CUSTOM, 'NS']];
    const of = async (s: RunningServer) => Object.fromEntries(await Promise.all(questions.map(async ([n, t]) => [`${n} ${t}`, answer(await dig(s, n, t))] as const)));
    const want = await of(a);
    expect(want[`${CUSTOM} DNSKEY`]!.records.length).toBe(1);
    let got: Record<string, { records: string[]; sigs: string[] }> = {};
    for (let i = 0; i < 40; i++) {
      got = await of(b);
      if (JSON.stringify(got) === JSON.stringify(want)) break;
      await new Promise((res) => setTimeout(res, 250));
    }
    expect(got).toEqual(want);
  }, 180_000);

  it('runs through tools/imvu-import.sh', async () => {
    const r = await run([join(ROOT, 'tools', 'imvu-import.sh')], envB(), { cmd: 'bash' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--archive/);
  });
});
