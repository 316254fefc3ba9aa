// The exit as a creator meets it: the built CLI against a real daemon (with its DNS server), the
// archive checked with the standard tool of each field (named-checkzone, age, tar), tampered with,
// and the IMVU's service compared before, during and after the exit (threat 4.1, 4.3; gate 13).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initDataDir } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { BIN, ROOT, run, tempDir, type Run } from '../cli/harness.ts';
import { ageDecryptWithPassphrase } from './age-pty.ts';

const execFileAsync = promisify(execFile);
let server: RunningServer;
let data: string;
let home: string;
let out: string;
let env: Record<string, string>;
const dirs: string[] = [];
const nexus = (...args: string[]) => run(args, env);

function ok(r: Run): Run {
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

// Asynchronously: the DNS server answers from this very process.
const dig = async (name: string, type = 'A') =>
  (await execFileAsync('dig', ['@127.0.0.1', '-p', String(server.dns!.server.port), '+time=2', '+tries=2', '+norec', name, type], { encoding: 'utf8' })).stdout;
const answer = (text: string) =>
  text
    .split('\n')
    .filter((l) => l && !l.startsWith(';'))
    .join('\n');
const status = (text: string) => /status: (\w+)/.exec(text)?.[1];

beforeAll(async () => {
  data = tempDir('exit-data');
  home = tempDir('exit-home');
  out = tempDir('exit-out');
  dirs.push(data, home, out);
  await (await initDataDir(data)).close();
  server = await startServer({ dataDir: data, host: '127.0.0.1', port: 0, logger: false, dns: { port: 0, meterIntervalMs: 1000 } });
  env = { NEXUS_HOME: home, NEXUS_URL: server.url };
  ok(await nexus('identity', 'create', 'alice', '--role', 'creator'));
  ok(await nexus('imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'EU-GDPR'));
  ok(await nexus('identity', 'create', 'bob', '--role', 'creator'));
  ok(await nexus('imvu', 'create', '--name', 'Shop', '--owner', 'bob', '--jurisdiction', 'US-CCPA'));
  ok(await nexus('dns', 'record', 'add', 'imvu001.world', 'www', 'A', '10.0.0.7'));
}, 120_000);

afterAll(async () => {
  await server?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('exit', () => {
  let archive: string;

  it('keeps the IMVU served and unthrottled while exiting, builds the archive, downloads and verifies it', async () => {
    // Some metered usage, so the archive carries a statement.
    for (let i = 0; i < 5; i++) await dig('www.imvu001.world');
    await new Promise((r) => setTimeout(r, 2500));
    const before = { www: answer(await dig('www.imvu001.world')), mx: answer(await dig('imvu001.world', 'MX')), imvu: JSON.parse(ok(await nexus('--json', 'imvu', 'show', 'IMVU-001')).stdout) as { envelope: unknown; routes: unknown } };

    const started = ok(await nexus('imvu', 'exit', 'IMVU-001'));
    expect(started.stderr).toMatch(/IMVU-001 is exiting/);
    // Threat 4.3: same answers, same quotas, same routes while exiting.
    expect(answer(await dig('www.imvu001.world'))).toBe(before.www);
    expect(answer(await dig('imvu001.world', 'MX'))).toBe(before.mx);
    const during = JSON.parse(ok(await nexus('--json', 'imvu', 'show', 'IMVU-001')).stdout) as { envelope: unknown; routes: unknown; status: string };
    expect(during.envelope).toEqual(before.imvu.envelope);
    expect(during.routes).toEqual(before.imvu.routes);

    const fetched = ok(await nexus('imvu', 'exit', 'IMVU-001', '--out', out));
    archive = join(out, 'IMVU-001-exit.tar.gz');
    expect(existsSync(archive)).toBe(true);
    expect(fetched.stdout).toMatch(/Export Verification Report for IMVU-001/);
    expect(fetched.stdout).toMatch(/✅ Domains: 1 zone exported and parsed/);
    expect(fetched.stdout).toMatch(/✅ Ledger: [\d,]+ events, each proved against the checkpoint/);
    expect(fetched.stdout).toMatch(/✅ Revenue: [1-9]\d* monthly statements? recomputed/);
    expect(fetched.stdout).toMatch(/Checksum: sha256:[0-9a-f]{64}/);

    const status = ok(await nexus('imvu', 'exit-status', 'IMVU-001')).stdout;
    expect(status).toMatch(/IMVU-001: exiting/);
    expect(status).toMatch(/✅ Domains and DNS complete/);
    expect(status).toMatch(/✅ Ledger and statements complete/);
    expect(status).toMatch(/archive ready .*sha256:[0-9a-f]{64}/);
  }, 120_000);

  it('holds each part in its standard format: tar, named-checkzone, age with the identity key, PDF statements', async () => {
    const x = join(out, 'x');
    mkdirSync(x);
    execFileSync('tar', ['-xzf', archive, '-C', x]);
    const root = join(x, 'IMVU-001');
    for (const f of ['MANIFEST.json', 'domains/imvu001.world.zone', 'domains/ds-records.txt', 'domains/ownership-certificate.json', 'domains/domain-transfer-codes.txt', 'mail/dkim/private.key', 'mail/policies/spf.txt', 'mail/policies/dmarc.txt', 'network/routing-policy.yaml', 'ledger/events.jsonl', 'ledger/checkpoint.note', 'ledger/audit/admin-actions.jsonl', 'ledger/audit/policy-checks.jsonl', 'ledger/compliance/consent-log.jsonl', 'ledger/compliance/jurisdiction-metadata.json', 'secrets/secrets.age'])
      expect(existsSync(join(root, f)), f).toBe(true);
    if (spawnSync('named-checkzone', ['-v']).status === 0) execFileSync('named-checkzone', ['imvu001.world', join(root, 'domains/imvu001.world.zone')]);
    expect(readFileSync(join(root, 'domains/imvu001.world.zone'), 'utf8')).toMatch(/^www\.imvu001\.world\.\s+\d+\s+IN\s+A\s+10\.0\.0\.7$/m);
    expect(readFileSync(join(root, 'domains/domain-transfer-codes.txt'), 'utf8')).toMatch(/^imvu001\.world [A-Za-z0-9_-]{40,}$/m);
    const pdf = readdirSync(join(root, 'ledger/revenue')).filter((f) => f.endsWith('.pdf'));
    expect(pdf.length).toBeGreaterThan(0);
    expect(readFileSync(join(root, 'ledger/revenue', pdf[0]!)).subarray(0, 8).toString()).toBe('%PDF-1.4');
    expect(readFileSync(join(root, 'ledger/compliance/jurisdiction-metadata.json'), 'utf8')).toMatch(/EU-GDPR/);
    // The secrets open with the creator's own identity key, in OpenSSH form.
    const key = join(out, 'alice-ssh');
    ok(await nexus('identity', 'ssh-key', 'alice', '--private-out', key));
    const secrets = JSON.parse(execFileSync('age', ['-d', '-i', key, join(root, 'secrets/secrets.age')], { encoding: 'utf8' })) as Record<string, string>;
    expect(Object.keys(secrets)).toContain('dkim/private.key');
    expect(secrets['dkim/private.key']).toMatch(/BEGIN PRIVATE KEY/);
    // The manifest says what is missing on this platform instead of faking it.
    const manifest = JSON.parse(readFileSync(join(root, 'MANIFEST.json'), 'utf8')) as { manifest: { parts: Record<string, { status: string }> } };
    expect(Object.keys(manifest.manifest.parts).sort()).toEqual(['compute', 'domains', 'ledger', 'mail', 'network', 'secrets']);
  });

  it('also writes the secrets for a passphrase (--passphrase-file), which age -d opens', async () => {
    const out2 = join(out, 'pass');
    mkdirSync(out2);
    const pf = join(out, 'passphrase.txt');
    writeFileSync(pf, 'a long exit passphrase\n', { mode: 0o600 });
    const r = ok(await nexus('imvu', 'exit', 'IMVU-001', '--out', out2, '--passphrase-file', pf));
    expect(r.stdout).toMatch(/IMVU-001-secrets\.age: the secrets, for your passphrase/);
    const file = join(out2, 'IMVU-001-secrets.age');
    expect(readFileSync(file).subarray(0, 32).toString('latin1')).toMatch(/^age-encryption\.org\/v1\n-> scrypt /);
    const opened = ageDecryptWithPassphrase(file, 'a long exit passphrase');
    expect(opened.code, opened.out).toBe(0);
    expect(Object.keys(JSON.parse(opened.plain) as object)).toContain('dkim/private.key');
    expect(ageDecryptWithPassphrase(file, 'not the passphrase').code).not.toBe(0);
  }, 120_000);

  it("runs through the spec's tools", async () => {
    const tool = (name: string, ...args: string[]) => run([join(ROOT, 'tools', name), ...args], env, { cmd: 'bash' });
    expect(ok(await tool('imvu-exit-status.sh', '--imvu-id', 'IMVU-001')).stdout).toMatch(/✅ Ledger and statements complete/);
    expect(ok(await tool('verify-export.sh', out)).stdout).toMatch(/Export Verification Report for IMVU-001/);
    expect(ok(await tool('verify-exit-capability.sh', archive)).stdout).toMatch(/gate 13 \(Exit Portability\) enforced[\s\S]*Checksum: sha256:/);
    expect((await tool('imvu-exit.sh')).code).toBe(2);
    const iso = await tool('verify-imvu-isolation.sh');
    expect(iso.code, iso.stderr).toBe(0);
    expect(iso.stdout).toMatch(/✅ gate 2 \(IMVU Isolation\) enforced/);
    expect(iso.stdout).toMatch(/✅ gate 16 \(No Cross-IMVU Leakage\) enforced in /);
    // Gate 16 is required like gate 2 (--strict changes nothing): a CLI reporting it anything but
    // enforced fails the check with exit 4, naming the gate.
    expect((await tool('verify-imvu-isolation.sh', '--strict')).code).toBe(0);
    const fake = join(out, 'gates-reported.mjs');
    writeFileSync(
      fake,
      `if (process.argv.includes('gates')) console.log(JSON.stringify([{ number: 2, status: 'enforced', enforcedIn: 'x' }, { number: 16, status: 'reported' }]));\n`,
    );
    const reported = await run([join(ROOT, 'tools', 'verify-imvu-isolation.sh')], { ...env, NEXUS_BIN: fake }, { cmd: 'bash' });
    expect(reported.code, reported.stdout).toBe(4);
    expect(reported.stderr).toMatch(/gate 16 \(No Cross-IMVU Leakage\) is not enforced: "reported"/);
  }, 180_000);

  it('fails offline verification with exit 4 naming the file when any byte is altered, added or removed', async () => {
    ok(await nexus('export', 'verify', archive));
    const cases: [string, (root: string) => void, RegExp][] = [
      ['a zone', (r) => writeFileSync(join(r, 'domains/imvu001.world.zone'), readFileSync(join(r, 'domains/imvu001.world.zone'), 'utf8').replace('10.0.0.7', '10.0.0.8')), /domains\/imvu001\.world\.zone: SHA-256/],
      ['a statement', (r) => {
        const dir = join(r, 'ledger/revenue');
        const csv = readdirSync(dir).find((f) => f.endsWith('.csv'))!;
        writeFileSync(join(dir, csv), readFileSync(join(dir, csv), 'utf8').replace(/^creator_55,,,,,(\d+)/m, (_m, n: string) => `creator_55,,,,,${BigInt(n) + 1n}`));
      }, /ledger\/revenue\/\d{4}-\d{2}\.csv/],
      ['a file removed', (r) => rmSync(join(r, 'ledger/checkpoint.note')), /ledger\/checkpoint\.note: listed in the manifest but missing/],
      ['a file added', (r) => writeFileSync(join(r, 'domains/extra.txt'), 'x'), /domains\/extra\.txt: not listed in the manifest/],
    ];
    for (const [what, tamper, reason] of cases) {
      const x = join(out, `t-${what.replace(/\W/g, '')}`);
      mkdirSync(x);
      execFileSync('tar', ['-xzf', archive, '-C', x]);
      tamper(join(x, 'IMVU-001'));
      const bad = join(out, `${what.replace(/\W/g, '')}.tar.gz`);
      execFileSync('tar', ['-czf', bad, '-C', x, 'IMVU-001']);
      const r = await nexus('export', 'verify', bad);
      expect(r.code, what).toBe(4);
      expect(r.stderr, what).toMatch(reason);
    }
  }, 60_000);

  it('fails the download with exit 4 when the archive it verifies as it arrives was altered, and does not hang', async () => {
    // The archive the daemon serves, one byte changed in its middle: the verification reading the
    // download as it arrives fails part way (bad deflate data or a digest) while the download goes on.
    const served = join(data, 'exports', 'IMVU-001', 'IMVU-001-exit.tar.gz');
    const bytes = readFileSync(served);
    const original = Buffer.from(bytes);
    const mid = bytes.length >> 1;
    bytes[mid] = bytes[mid]! ^ 0xff;
    writeFileSync(served, bytes);
    try {
      const x = tempDir('exit-out-bad');
      dirs.push(x);
      const r = await nexus('imvu', 'exit', 'IMVU-001', '--out', x);
      expect(r.code, r.stderr).toBe(4);
      expect(r.stderr).toMatch(/export verification failed|is not the one the ledger records/);
    } finally {
      writeFileSync(served, original);
    }
  }, 60_000);

  it('threat 2.5: a suspended IMVU still exits, and no admin command stops or changes it while exiting (denied, the creator notified)', async () => {
    ok(await nexus('identity', 'create', 'ops', '--role', 'admin', '--data', data));
    ok(await nexus('imvu', 'suspend', 'IMVU-002', '--reason', 'unpaid', '--as', 'ops'));
    const soaBefore = await dig('imvu002.world', 'SOA');
    // The creator's signature alone, whatever the status.
    ok(await nexus('imvu', 'exit', 'IMVU-002', '--as', 'bob'));
    const attempts: [string, string[]][] = [
      ['resume', ['imvu', 'resume', 'IMVU-002', '--as', 'ops']],
      ['scale down', ['imvu', 'scale', 'IMVU-002', '--cpu', '1', '--as', 'ops']],
      ['DNS change', ['dns', 'record', 'add', 'imvu002.world', 'evil', 'A', '10.6.6.6', '--as', 'ops']],
      ['purge', ['imvu', 'purge', 'IMVU-002', '--stage', 'release', '--as', 'ops']],
    ];
    for (const [what, args] of attempts) {
      const r = await nexus(...args);
      expect(r.code, `${what}: ${r.stdout}${r.stderr}`).toBe(1);
      expect(r.stderr, what).toMatch(what === 'DNS change' ? /gate (4|13)/ : /gate 13/);
    }
    const show = ok(await nexus('--json', 'imvu', 'show', 'IMVU-002', '--as', 'bob')).stdout;
    expect((JSON.parse(show) as { status: string }).status).toBe('exiting');
    expect(show).toMatch(/BLOCKED by gate 13/);
    // Its zone is still answered as before the exit.
    expect(answer(await dig('imvu002.world', 'SOA'))).toBe(answer(soaBefore));
  }, 120_000);

  it('shows a progress bar on a terminal and progress lines when piped', async () => {
    ok(await nexus('imvu', 'create', '--name', 'Tty', '--owner', 'alice', '--jurisdiction', 'EU-GDPR'));
    ok(await nexus('imvu', 'create', '--name', 'Piped', '--owner', 'alice', '--jurisdiction', 'EU-GDPR'));
    // A real terminal: script(1) gives the CLI a pseudo-terminal for its stdin, stdout and stderr.
    const ttyOut = join(out, 'tty');
    const cmd = [process.execPath, BIN, 'imvu', 'exit', 'IMVU-003', '--out', ttyOut].map((a) => `'${a}'`).join(' ');
    const tty = await execFileAsync('script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, ...env, NEXUS_DATA: '', NEXUS_AS: '' }, encoding: 'utf8', maxBuffer: 16 << 20 });
    expect(tty.stdout).toMatch(/Export Verification Report for IMVU-003/);
    // The bar redraws itself in place (carriage returns) and ends full; no progress lines.
    expect(tty.stdout).toMatch(/\r\[#{30}\] 100%/);
    expect(tty.stdout).not.toMatch(/building IMVU-003's archive/);
    // Piped: one plain line per change, ending at 100%, and no terminal control.
    const piped = ok(await nexus('imvu', 'exit', 'IMVU-004', '--out', join(out, 'piped')));
    expect(piped.stderr).toMatch(/^building IMVU-004's archive: 100%$/m);
    expect(piped.stderr).not.toMatch(/\r|\[#/);
    expect(piped.stdout).toMatch(/Export Verification Report for IMVU-004/);
  }, 240_000);

  it('after the creator confirms, the IMVU is no longer served or metered; the other IMVU is unaffected', async () => {
    ok(await nexus('imvu', 'exit-confirm', 'IMVU-001', '--archive', archive));
    // Its zone is no longer served, nor delegated by the platform's zone (no lame delegation):
    // REFUSED for the zone, NXDOMAIN from the suffix zone for the names below it.
    let text = '';
    for (let i = 0; i < 40; i++) {
      text = await dig('www.imvu001.world');
      if (status(text) === 'NXDOMAIN' || status(text) === 'REFUSED') break;
      await new Promise((r) => setTimeout(r, 250));
    }
    expect(['NXDOMAIN', 'REFUSED']).toContain(status(text));
    expect(text).not.toMatch(/imvu001\.world\.\s+\d+\s+IN\s+(A|NS)\s/);
    expect(status(await dig('imvu001.world', 'SOA'))).not.toBe('NOERROR');
    expect(status(await dig('imvu002.world', 'SOA'))).toBe('NOERROR');
    const s = ok(await nexus('imvu', 'exit-status', 'IMVU-001')).stdout;
    expect(s).toMatch(/IMVU-001: exited \(confirmed at /);
    // An admin (here: anyone but the platform's clock) cannot purge before the grace is over.
    const purge = await nexus('imvu', 'purge', 'IMVU-001', '--stage', 'delete', '--as', 'bob');
    expect(purge.code).toBe(1);
    expect(purge.stderr).toMatch(/gate 13|only an admin or the platform purges/);
  }, 60_000);
});
