// Mail for an IMVU whose import is not whole yet: its zone is larger than one ledger entry, so it
// arrives as an `imvu.import` header and declared parts, and the CLI is killed after the first.
// While the IMVU is `importing`, swaks (a client nobody here wrote) sending to one of its mailboxes
// through the second platform's MX gets a temporary 450 (a sender keeps the message and retries);
// once the same command has recorded the last part, the same message is accepted and delivered.
// The first platform, where the IMVU has exited, still refuses for good (550).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { initDataDir } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { loadPrivateKey } from '../../src/core/identity/keys.ts';
import { mailboxRoot } from '../../src/mail/maildir/paths.ts';
import { run, submitDirect, tempDir } from '../cli/harness.ts';
import { killedAfterPart } from './killed-cli.ts';
import { startFixtureDns } from '../mail/fixture-dns.ts';
import { ok, recordName } from './zone-answers.ts';

const hasSwaks = spawnSync('swaks', ['--version']).status === 0;
if (!hasSwaks) console.warn('import-mail: swaks not found (apt-get install swaks); skipping');

// Asynchronous: the daemons run in this process, so the client must not block its event loop.
const swaks = (port: number, ...args: string[]) =>
  new Promise<{ status: number; out: string }>((resolve) => {
    execFile('swaks', ['--server', '127.0.0.1', '--port', String(port), '--timeout', '20', '--ehlo', 'client.good.test', '--from', 'news@good.test', ...args], { encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ status: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });

const dirs: string[] = [];
let a: RunningServer;
let b: RunningServer;
let dns: Awaited<ReturnType<typeof startFixtureDns>>;
let dataA: string;
let dataB: string;
let home: string;
let archive: string;
const envA = () => ({ NEXUS_HOME: home, NEXUS_URL: a.url });
const envB = () => ({ NEXUS_HOME: home, NEXUS_URL: b.url });
const ZONE = 'imvu001.world';
const RCPT = `creator@${ZONE}`;
// A zone over gate 0's 48 KiB body bound with few records: long TXT values, so it goes in parts.
const RECORDS = 60;
const mail = () => ({
  hostname: 'mx.test',
  smtpPort: 0,
  submissionPort: null,
  smtpsPort: null,
  resolver: { rootHints: [{ name: 'root.', address: '127.0.0.1', port: dns.port }], upstreamPort: dns.port, limits: { timeoutMs: 500, requestTimeoutMs: 1500 } },
});
const inbox = () =>
  ['new', 'cur'].flatMap((sub) => {
    const dir = join(mailboxRoot(dataB, 'IMVU-001', RCPT), sub);
    return existsSync(dir) ? readdirSync(dir).map((f) => readFileSync(join(dir, f), 'utf8')) : [];
  });

beforeAll(async () => {
  if (!hasSwaks) return;
  dns = await startFixtureDns([{ name: 'good.test', type: 'TXT', data: 'v=spf1 ip4:127.0.0.1 -all' }]);
  dataA = tempDir('import-mail-a');
  dataB = tempDir('import-mail-b');
  home = tempDir('import-mail-home');
  const out = tempDir('import-mail-out');
  dirs.push(dataA, dataB, home, out);
  await (await initDataDir(dataA)).close();
  await (await initDataDir(dataB)).close();
  a = await startServer({ dataDir: dataA, host: '127.0.0.1', port: 0, logger: false, dns: { port: 0 }, mail: mail() });
  ok(await run(['identity', 'create', 'alice', '--role', 'creator'], envA()));
  ok(await run(['imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'EU-GDPR'], envA()));
  const key = loadPrivateKey(join(home, 'keys', 'alice.key'));
  for (let i = 0; i < RECORDS; i += 10)
    await Promise.all(
      Array.from({ length: 10 }, async (_, j) => {
        const res = await submitDirect(a.url, `/v1/zones/${ZONE}/records`, key, 'dns.record.add', { zone: ZONE, name: recordName(i + j), type: 'TXT', value: `record ${i + j} ${'x'.repeat(1900)}` });
        expect(res.status, JSON.stringify(res.body)).toBe(201);
      }),
    );
  // One message held before the exit: the import must restore it once its last part is recorded.
  const held = await swaks(a.mail!.mx!.port, '--to', RCPT, '--header', 'Subject: held before the exit');
  expect(held.status, held.out).toBe(0);
  ok(await run(['imvu', 'exit', 'IMVU-001', '--out', out, '--timeout', '300'], envA()));
  archive = join(out, 'IMVU-001-exit.tar.gz');
  ok(await run(['imvu', 'exit-confirm', 'IMVU-001', '--archive', archive], envA()));
  b = await startServer({ dataDir: dataB, host: '127.0.0.1', port: 0, logger: false, dns: { port: 0 }, mail: mail() });
  ok(await run(['identity', 'import', 'alice'], envB()));
}, 600_000);

afterAll(async () => {
  await a?.close();
  await b?.close();
  await dns?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe.skipIf(!hasSwaks)('mail to an IMVU still importing', () => {
  it('is refused for now (450 4.2.1) while parts are missing, not as an unknown mailbox', async () => {
    expect(await killedAfterPart(['imvu', 'import', archive], envB(), 1)).toBeGreaterThan(1);
    const show = JSON.parse(ok(await run(['--json', 'imvu', 'show', 'IMVU-001'], envB())).stdout) as { status: string };
    expect(show.status).toBe('importing');
    const r = await swaks(b.mail!.mx!.port, '--to', RCPT, '--header', 'Subject: while importing');
    expect(r.status, r.out).not.toBe(0);
    expect(r.out).toMatch(/<\*\* 450 4\.2\.1 <creator@imvu001\.world>: this mailbox is being imported/);
    expect(r.out).not.toMatch(/<\*\* 5\d\d /);
    expect(inbox()).toEqual([]);
    // A mailbox the importing IMVU does not have is still unknown for good.
    const unknown = await swaks(b.mail!.mx!.port, '--to', `nobody@${ZONE}`);
    expect(unknown.out).toMatch(/<\*\* 550 5\.1\.1/);
  }, 300_000);

  it('is accepted and delivered once the last part is recorded; the platform the IMVU left still says 550', async () => {
    ok(await run(['imvu', 'import', archive], envB()));
    const show = JSON.parse(ok(await run(['--json', 'imvu', 'show', 'IMVU-001'], envB())).stdout) as { status: string };
    expect(show.status).toBe('active');
    // The restore ran with the last part (not at some later start): the held message is back and
    // nothing is owed, so the MX takes mail again.
    expect(inbox().filter((m) => m.includes('Subject: held before the exit'))).toHaveLength(1);
    const imports = join(dataB, 'imports');
    expect(readdirSync(imports).flatMap((d) => readdirSync(join(imports, d))).filter((f) => f.endsWith('.pending'))).toEqual([]);
    const r = await swaks(b.mail!.mx!.port, '--to', RCPT, '--header', 'Subject: while importing');
    expect(r.status, r.out).toBe(0);
    expect(r.out).toMatch(/<- {2}250 2\.0\.0 delivered/);
    expect(inbox().filter((m) => m.includes('Subject: while importing'))).toHaveLength(1);
    const gone = await swaks(a.mail!.mx!.port, '--to', RCPT);
    expect(gone.status).not.toBe(0);
    expect(gone.out).toMatch(/<\*\* 550 5\.1\.1/);
  }, 300_000);
});
