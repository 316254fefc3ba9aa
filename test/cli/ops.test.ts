// Operating the daemon from the built CLI, in real processes: `nexus status` and `nexus stop`
// (found by data directory or URL), the start-up banner and readable logs on a terminal, denied
// commands in the JSON log with their type, actor, gate and reason, TLS for the API (the CLI
// trusting a self-signed certificate with --ca / NEXUS_CA), and plain HTTP refused off loopback.
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'node:http';
import { spawnDaemon, type DaemonProcess } from '../support/daemon.ts';
import { initDataDir } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { EXIT } from '../../src/cli/errors.ts';
import type { DaemonStatus } from '../../src/api/status-view.ts';
import { BIN, ROOT, run, tempDir } from './harness.ts';
import { startWitnesses, waitFor } from '../support/witnesses.ts';

const dir = tempDir('ops');
const daemons: DaemonProcess[] = [];
const cleanup: (() => void)[] = [];
let inProcess: RunningServer | undefined;
afterAll(async () => {
  await Promise.all(daemons.map((d) => d.stop(2_000)));
  await inProcess?.close();
  for (const c of cleanup.reverse()) c();
  rmSync(dir, { recursive: true, force: true });
});

const nexus = (args: string[], env: Record<string, string | undefined> = {}) => run(args, { NEXUS_HOME: join(dir, 'home'), ...env });
const jsonOf = <T>(text: string) => JSON.parse(text) as T;

/** GET over plain HTTP to 127.0.0.1 only. */
function getLocal(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false }, (r) => {
      let body = '';
      r.on('data', (d: Buffer) => (body += d.toString()));
      r.on('end', () => res({ status: r.statusCode ?? 0, body }));
    });
    req.on('error', rej);
    req.end();
  });
}

describe('nexus status and nexus stop', () => {
  it('status shows the running daemon by data directory and by URL; stop ends it; status then says down (exit 3)', async () => {
    const data = join(dir, 'status');
    const d = await spawnDaemon(data, [], { via: 'cli' });
    daemons.push(d);
    const pid = d.child.pid!;
    const api = Number(new URL(d.url).port);
    const dns = (d.listening.dns as { port: number }).port;

    const human = await nexus(['status', '--data', data]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(new RegExp(`^daemon +up \\(nexus \\d+\\.\\d+\\.\\d+, pid ${pid}, since `, 'm'));
    expect(human.stdout).toMatch(new RegExp(`^listens +API HTTP +127\\.0\\.0\\.1:${api}$`, 'm'));
    expect(human.stdout).toMatch(new RegExp(`^listens +DNS UDP +127\\.0\\.0\\.1:${dns}$`, 'm'));
    expect(human.stdout).toMatch(new RegExp(`^listens +DNS TCP +127\\.0\\.0\\.1:${dns}$`, 'm'));
    expect(human.stdout).toMatch(new RegExp(`^data +${data}$`, 'm'));
    expect(human.stdout).toMatch(/^ledger +\d+ entries$/m);
    expect(human.stdout).toMatch(/^checkpoint +tree size \d+, 0 cosignatures$/m);
    expect(human.stdout).toMatch(/^IMVUs +0 \(0 active\)$/m);
    expect(human.stdout).toMatch(/^integrity +ok \(last check \d{4}-/m);
    expect(human.stdout).toMatch(/^witnesses +none configured$/m);

    // By URL, with --json: the same facts as one object.
    const byUrl = await nexus(['status', '--json'], { NEXUS_URL: d.url });
    expect(byUrl.code, byUrl.stderr).toBe(0);
    const s = jsonOf<DaemonStatus & { up: boolean }>(byUrl.stdout);
    const platform = jsonOf<{ id: string }>((await getLocal(api, '/v1/platform')).body);
    expect(s).toMatchObject({ up: true, pid, dataDir: data, platform: { id: platform.id }, tls: false, imvus: { total: 0, active: 0 }, witnesses: [] });
    expect(s.listeners).toEqual([
      { service: 'api', protocol: 'http', address: '127.0.0.1', port: api },
      { service: 'dns', protocol: 'udp', address: '127.0.0.1', port: dns },
      { service: 'dns', protocol: 'tcp', address: '127.0.0.1', port: dns },
    ]);
    expect(s.ledger.checkpoint?.size).toBe(s.ledger.size);
    expect(s.integrity).toMatchObject({ alarm: false, alarmsSinceStart: 0 });
    // Nothing secret in it.
    expect(byUrl.stdout).not.toMatch(/secret|PRIVATE KEY|tsig/i);

    const stopped = await nexus(['stop', '--data', data]);
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(stopped.stdout.trim()).toBe(`Stopped the daemon (pid ${pid}) serving ${data}.`);
    // It had exited by the time stop returned, cleanly, and left no pid or URL file behind.
    expect(d.child.exitCode ?? (await d.exited).code).toBe(0);
    expect(existsSync(join(data, 'daemon.pid'))).toBe(false);
    expect(existsSync(join(data, 'daemon.url'))).toBe(false);

    const down = await nexus(['status', '--data', data]);
    expect(down.code).toBe(EXIT.unreachable);
    expect(down.stdout.trim()).toBe(`daemon  down: no daemon serves ${data}`);
    const downUrl = await nexus(['status', '--json'], { NEXUS_URL: d.url });
    expect(downUrl.code).toBe(EXIT.unreachable);
    expect(jsonOf<{ up: boolean; reason: string }>(downUrl.stdout)).toMatchObject({ up: false, url: d.url, reason: expect.stringContaining('connection refused') });

    const again = await nexus(['stop', '--data', data]);
    expect(again.code).toBe(0);
    expect(again.stdout.trim()).toBe(`No daemon serves ${data}; nothing to stop.`);
  });

  it('stop signals nothing when the pid file names a process that does not hold the lock (a stale or forged pid file)', async () => {
    const data = join(dir, 'forged');
    const d = await spawnDaemon(data, [], { via: 'cli' });
    daemons.push(d);
    const bystander = spawn('sleep', ['60'], { stdio: 'ignore' });
    cleanup.push(() => bystander.kill('SIGKILL'));
    writeFileSync(join(data, 'daemon.pid'), `${bystander.pid}\n`);
    const r = await nexus(['stop', '--data', data]);
    expect(r.code).toBe(EXIT.denied);
    expect(r.stderr).toContain(`pid ${bystander.pid} (named by ${join(data, 'daemon.pid')}) does not hold ${join(data, 'daemon.lock')}`);
    expect(bystander.exitCode).toBeNull();
    expect(bystander.signalCode).toBeNull();
    expect(d.child.exitCode).toBeNull();
    expect((await getLocal(Number(new URL(d.url).port), '/v1/status')).status).toBe(200);
  });

  it('status shows the newest checkpoint with the witnesses that cosigned it, and each witness reachable', { timeout: 120_000 }, async () => {
    const data = join(dir, 'witnessed');
    const p = await initDataDir(data);
    const ws = await startWitnesses(p, 2, cleanup);
    await p.close();
    inProcess = await startServer({
      dataDir: data, host: '127.0.0.1', port: 0, logger: false,
      witnesses: { endpoints: ws.map((w) => ({ url: w.proc.url, vkey: w.vkey })), timeoutMs: 2_000, minIntervalMs: 10, backoffMs: 100 },
    });
    const url = inProcess.url;
    const s = await waitFor('both cosignatures in the status', async () => {
      const r = await nexus(['status', '--json'], { NEXUS_URL: url });
      const st = jsonOf<DaemonStatus>(r.stdout);
      return st.ledger.checkpoint?.cosignatures === 2 && st.witnesses.every((w) => w.reachable) ? st : undefined;
    });
    expect(s.ledger.checkpoint).toEqual({ size: s.ledger.size, cosignatures: 2, witnesses: ['witness.test/w1', 'witness.test/w2'] });
    const human = await nexus(['status'], { NEXUS_URL: url });
    expect(human.stdout).toMatch(/^checkpoint +tree size \d+, 2 cosignatures \(witness\.test\/w1, witness\.test\/w2\)$/m);
    expect(human.stdout).toMatch(new RegExp(`^witness +witness\\.test/w1 ${ws[0]!.proc.url.replace(/[.]/g, '\\.')}: reachable; cosigned up to tree size ${s.ledger.size}$`, 'm'));
  });
});

describe('logs and the start-up banner', () => {
  it('a denied command is logged (JSON, not a terminal) with its type, actor id and name, gate and reason', { timeout: 60_000 }, async () => {
    const data = join(dir, 'denied');
    const home = join(dir, 'denied-home');
    const d = await spawnDaemon(data, [], { via: 'cli' });
    daemons.push(d);
    const env = { NEXUS_URL: d.url, NEXUS_HOME: home };
    expect((await run(['identity', 'create', 'alice', '--role', 'creator'], env)).code).toBe(0);
    // An admin lowering the creator's CPU (the tour's step 4): refused by gate 15 and recorded.
    expect((await run(['identity', 'create', 'ops', '--role', 'admin', '--data', data], env)).code).toBe(0);
    expect((await run(['imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'EU-GDPR', '--as', 'alice'], env)).code).toBe(0);
    const ops = jsonOf<Record<string, string>>(readFileSync(join(home, 'identities.json'), 'utf8')).ops;
    const refused = await run(['imvu', 'scale', 'IMVU-001', '--cpu', '1', '--as', 'ops'], env);
    expect(refused.code).toBe(EXIT.denied);
    const record = await waitFor('the denial in the log', async () =>
      d.output.map((l) => (l.startsWith('{') ? jsonOf<Record<string, unknown>>(l) : {})).find((r) => r.msg === 'command denied'),
    );
    expect(record).toMatchObject({ level: 40, type: 'imvu.scale', actor: { id: ops, name: 'ops', role: 'admin' }, gate: 15, reason: expect.any(String), index: expect.any(Number) });
    expect(refused.stderr).toContain(`recorded as ledger entry ${record.index}`);
  });

  it('on a terminal (--log-format pretty, as a tty gets by default): a banner with the status facts and readable log lines', { timeout: 60_000 }, async () => {
    const data = join(dir, 'banner');
    const child = spawn(process.execPath, [BIN, 'start', '--data', data, '--port', '0', '--dns-port', '0', '--log-format', 'pretty'], { cwd: ROOT, env: { ...process.env, NEXUS_CONFIG: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    cleanup.push(() => child.kill('SIGKILL'));
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    await waitFor('the banner', async () => /^ {2}stop /m.test(out), 30_000);
    const text = out.replace(new RegExp(String.fromCharCode(27) + '\\[[0-9;]*m', 'g'), '');
    expect(text).toMatch(new RegExp(`^nexus daemon\\n {2}daemon +up \\(nexus [^,]+, pid ${child.pid}, since`, 'm'));
    for (const row of ['url', 'platform', 'listens', 'data', 'ledger', 'checkpoint', 'IMVUs', 'integrity', 'witnesses', 'stop']) expect(text).toMatch(new RegExp(`^ {2}${row} `, 'm'));
    expect(text).toMatch(/^ {2}listens +DNS UDP +127\.0\.0\.1:\d+$/m);
    // Log lines for people, not JSON.
    expect(text).toMatch(/^\[\d\d:\d\d:\d\d\] INFO: nexus daemon listening$/m);
    expect(text.split('\n').filter((l) => l.startsWith('{"level"'))).toEqual([]);
    const stopped = await nexus(['stop', '--data', data]);
    expect(stopped.code, stopped.stderr).toBe(0);
  });

  it.skipIf(!existsSync('/usr/bin/script'))('a real terminal (script(1)) gets the banner without any flag', { timeout: 60_000 }, async () => {
    const data = join(dir, 'tty');
    const typescript = join(dir, 'tty.out');
    const child = spawn('script', ['-qfc', `${process.execPath} ${BIN} start --data ${data} --port 0 --dns-port 0`, typescript], { cwd: ROOT, env: { ...process.env, NEXUS_CONFIG: '' }, stdio: ['ignore', 'ignore', 'ignore'] });
    cleanup.push(() => child.kill('SIGKILL'));
    await waitFor('the banner', async () => existsSync(typescript) && /^ {2}stop /m.test(readFileSync(typescript, 'utf8')), 30_000);
    expect(readFileSync(typescript, 'utf8')).toMatch(/^ {2}integrity +ok/m);
    expect((await nexus(['stop', '--data', data])).code).toBe(0);
  });
});

const haveOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('TLS and exposure', () => {
  it.skipIf(!haveOpenssl)('serves the API over HTTPS from --tls-cert/--tls-key; the CLI trusts it with --ca or NEXUS_CA, and not without', { timeout: 60_000 }, async () => {
    const certDir = tempDir('ops-tls');
    cleanup.push(() => rmSync(certDir, { recursive: true, force: true }));
    const cert = join(certDir, 'cert.pem');
    const key = join(certDir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=nexus test', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    chmodSync(key, 0o600);
    const data = join(dir, 'tls');

    // A key every user may read is refused before anything listens.
    chmodSync(key, 0o644);
    const loose = await nexus(['start', '--data', data, '--port', '0', '--dns-port', '0', '--tls-cert', cert, '--tls-key', key]);
    expect(loose.code).toBe(EXIT.usage);
    expect(loose.stderr).toContain(`refusing TLS key file ${key}`);
    chmodSync(key, 0o600);

    const d = await spawnDaemon(data, ['--tls-cert', cert, '--tls-key', key], { via: 'cli' });
    daemons.push(d);
    expect(d.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(d.listening.tls).toBe(true);

    const untrusted = await nexus(['status'], { NEXUS_URL: d.url });
    expect(untrusted.code).toBe(EXIT.unreachable);
    expect(untrusted.stdout).toMatch(/TLS certificate is not trusted.*--ca FILE or NEXUS_CA/);

    const trusted = await nexus(['status', '--ca', cert, '--server', d.url]);
    expect(trusted.code, trusted.stdout + trusted.stderr).toBe(0);
    expect(trusted.stdout).toMatch(new RegExp(`^listens +API HTTPS +127\\.0\\.0\\.1:${new URL(d.url).port}$`, 'm'));
    const byDir = await nexus(['status', '--data', data], { NEXUS_CA: cert });
    expect(byDir.code, byDir.stdout).toBe(0);

    // The whole client path (platform pinning, signed command, receipt) over HTTPS.
    const made = await nexus(['identity', 'create', 'tina', '--role', 'creator'], { NEXUS_URL: d.url, NEXUS_CA: cert, NEXUS_HOME: join(dir, 'tls-home') });
    expect(made.code, made.stderr).toBe(0);
    const noCa = await nexus(['imvu', 'list', '--as', 'tina'], { NEXUS_URL: d.url, NEXUS_HOME: join(dir, 'tls-home') });
    expect(noCa.code).toBe(EXIT.unreachable);
    expect(noCa.stderr).toContain('not trusted');
    expect((await nexus(['stop', '--data', data])).code).toBe(0);
  });

  it('binding the API to 0.0.0.0 without TLS is refused with a warning; --insecure-http starts it, warned', { timeout: 60_000 }, async () => {
    const data = join(dir, 'exposed');
    const refused = await nexus(['start', '--data', data, '--host', '0.0.0.0', '--port', '0', '--dns-port', '0']);
    expect(refused.code).toBe(EXIT.usage);
    expect(refused.stderr).toMatch(/^nexus: refusing to start: the API would listen on 0\.0\.0\.0:0 without TLS: .*--tls-cert FILE --tls-key FILE.*--insecure-http/);
    expect(existsSync(join(data, 'daemon.pid'))).toBe(false);
    // The stand-alone entry too.
    const viaEntry = await run([join(ROOT, 'dist', 'api', 'daemon.js'), '--data', data, '--host', '0.0.0.0', '--port', '0', '--dns-port', '0'], {}, { cmd: process.execPath });
    expect(viaEntry.code).toBe(EXIT.usage);
    expect(viaEntry.stderr).toContain('without TLS');

    const d = await spawnDaemon(data, ['--host', '0.0.0.0', '--insecure-http'], { via: 'cli' });
    daemons.push(d);
    await waitFor('the warning', async () => d.output.some((l) => l.includes('WARNING: the API would listen on 0.0.0.0')));
    // The log record of it may follow the plain warning line by a moment (the API binds before the daemon's logger runs).
    const record = () => d.output.map((l) => (l.startsWith('{') ? jsonOf<Record<string, unknown>>(l) : {})).find((r) => r.level === 40 && String(r.msg).includes('--insecure-http'));
    await waitFor('the logged warning', async () => record() !== undefined);
    const warned = record();
    expect(String(warned?.msg)).toMatch(/^--insecure-http: the API would listen on 0\.0\.0\.0/);
    // Reached on loopback only.
    const port = Number(new URL(d.url).port);
    expect((await getLocal(port, '/v1/status')).status).toBe(200);
    const s = await nexus(['status', '--data', data, '--json']);
    expect(s.code, s.stdout).toBe(0);
    expect(jsonOf<DaemonStatus & { url: string }>(s.stdout)).toMatchObject({ url: `http://127.0.0.1:${port}`, listeners: [{ service: 'api', protocol: 'http', address: '0.0.0.0', port }, {}, {}] });
    expect((await nexus(['stop', '--data', data])).code).toBe(0);
  });
});
