// `nexus mail dkim rotate` (issue 11 item 4): a creator asks for a new DKIM key with a signed
// `dkim.rotate`; the platform publishes the next selector beside the active one (a follow-up the
// gates check, notified to the creator), and the scheduler takes the timed steps: the new selector
// signs once its record TTL has passed, the old one is removed after its retention. Watched with
// dig against our own DNS server and checked with python3-dkim (a verifier we did not write).
import { execFile, spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testPlatform, type Actor, type TestPlatform } from '../../src/core/testing.ts';
import { decodeEntry } from '../../src/core/ledger/ledger.ts';
import { DKIM_RETIRE_S, DKIM_TTL_S } from '../../src/core/policy/gates/platform-powers.ts';
import { startDnsServer, type DnsServer } from '../../src/domains/dns-authority/server.ts';
import { provisioner } from '../../src/imvu/provision.ts';
import { dkimSigner, splitMessage } from '../../src/mail/signing/dkim.ts';
import { selectorKeyPath } from '../../src/mail/signing/keys.ts';
import { startDkimScheduler, type DkimScheduler } from '../../src/mail/signing/rotate.ts';
import { initDataDir } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { run as runCli, tempDir } from '../cli/harness.ts';

const VERIFY = join(import.meta.dirname, '..', 'support', 'dkimverify-dig.py');
const exec = promisify(execFile);

const txt = async (port: number, selector: string, domain = 'imvu001.world') =>
  (await exec('dig', ['@127.0.0.1', '-p', String(port), '+short', '+time=2', '+tries=2', 'TXT', `${selector}._domainkey.${domain}`])).stdout.trim();

function verify(port: number, message: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn('/usr/bin/python3', [VERIFY, '127.0.0.1', String(port)], { timeout: 30_000 });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('error', reject);
    c.on('close', () => resolve(/signature ok/.test(out) ? 'signature ok' : out.trim()));
    c.stdin.end(message);
  });
}

async function until<T>(f: () => Promise<T | undefined> | T | undefined, what: string, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const selectorOf = (m: Buffer) => /\bs=([^;\s]+)/.exec(splitMessage(m).fields[0]!.replace(/\r\n\s+/g, ''))![1];
const message = (subject: string) => Buffer.from(`From: <creator@imvu001.world>\r\nTo: <someone@outside.test>\r\nSubject: ${subject}\r\n\r\nHello.\r\n`);

describe('DKIM rotation asked for by the creator, advanced by the scheduler', () => {
  let offset = 0;
  const now = () => new Date(Date.now() + offset);
  let p: TestPlatform;
  let alice: Actor;
  let mallory: Actor;
  let dns: DnsServer;
  let scheduler: DkimScheduler;

  beforeAll(async () => {
    p = await testPlatform({ provision: provisioner, clock: now });
    alice = await p.register('alice', 'creator');
    mallory = await p.register('mallory', 'creator');
    expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    dns = await startDnsServer({ store: p.store, address: '127.0.0.1', port: 0, rrl: false, refreshMs: 20 });
    scheduler = startDkimScheduler(p, { intervalMs: 50, now });
  }, 60_000);
  afterAll(async () => {
    await scheduler?.close();
    await dns?.close();
    await p?.cleanup();
  });

  const sign = (subject: string) => dkimSigner(p.dataDir, p.store)({ imvu: 'IMVU-001', identity: alice.id, raw: message(subject) });
  const states = async () => (await p.store.all<{ selector: string; state: string }>("SELECT selector, state FROM dkim_keys WHERE imvu = 'IMVU-001' ORDER BY entry")).map((k) => `${k.selector} ${k.state}`);

  it('overlap: both selectors served; mail signed before and after the switch verifies; then only the new one remains', async () => {
    // Someone else's request is refused (gate 1) and changes nothing.
    const foreign = await p.as(mallory, 'dkim.rotate', { imvu: 'IMVU-001' });
    expect(foreign.allowed).toBe(false);
    expect(foreign.gates.find((g) => g.status === 'deny')).toMatchObject({ gate: 1 });
    expect(await states()).toEqual(['nexus1 active']);

    const before = await sign('signed with nexus1');
    expect(selectorOf(before)).toBe('nexus1');

    const r = await p.as(alice, 'dkim.rotate', { imvu: 'IMVU-001' });
    expect(r.allowed).toBe(true);
    // The platform's follow-ups: the new selector published, and the creator told.
    const entries = (await p.store.readEntries(r.index, p.chokepoint.ledger.size)).map(decodeEntry);
    const publish = entries.find((e) => e.command.command.type === 'dkim.publish');
    expect(publish?.decision.allowed).toBe(true);
    expect(publish?.command.command.body).toMatchObject({ imvu: 'IMVU-001', selector: 'nexus2' });
    expect(publish?.command.command.actor).toBe(p.platformId);
    expect(entries.some((e) => e.command.command.type === 'notify.creator' && e.command.command.body.recipient === alice.id && /dkim\.publish/.test(String(e.command.command.body.message)))).toBe(true);
    expect(existsSync(selectorKeyPath(p.dataDir, 'IMVU-001', 'nexus2'))).toBe(true);
    expect(await states()).toEqual(['nexus1 active', 'nexus2 published']);

    // A second request while one is under way is refused.
    expect((await p.as(alice, 'dkim.rotate', { imvu: 'IMVU-001' })).allowed).toBe(false);

    // Both selectors are in the zone; mail is still signed with nexus1 until the TTL has passed.
    await until(async () => /v=DKIM1/.test(await txt(dns.port, 'nexus2')), 'nexus2 served');
    expect(await txt(dns.port, 'nexus1')).toMatch(/v=DKIM1/);
    expect(selectorOf(await sign('still nexus1'))).toBe('nexus1');
    await scheduler.tick();
    expect(await states()).toEqual(['nexus1 active', 'nexus2 published']);

    // The scheduler switches once the record TTL has passed.
    offset += DKIM_TTL_S * 1000 + 1000;
    await until(async () => (await states()).join() === 'nexus1 retired,nexus2 active', 'nexus2 active');
    const after = await sign('signed with nexus2');
    expect(selectorOf(after)).toBe('nexus2');
    expect(await txt(dns.port, 'nexus1')).toMatch(/v=DKIM1/);
    expect(await txt(dns.port, 'nexus2')).toMatch(/v=DKIM1/);
    expect(await verify(dns.port, after)).toBe('signature ok');
    // Mail signed before the switch (queued, retried) still verifies during the overlap.
    expect(await verify(dns.port, before)).toBe('signature ok');

    // After the retention the scheduler removes the old selector, from the zone and from disk.
    offset += DKIM_RETIRE_S * 1000 + 1000;
    await until(async () => (await states()).join() === 'nexus2 active', 'nexus1 removed');
    await until(async () => (await txt(dns.port, 'nexus1')) === '', 'nexus1 gone from the zone');
    expect(await txt(dns.port, 'nexus2')).toMatch(/v=DKIM1/);
    expect(existsSync(selectorKeyPath(p.dataDir, 'IMVU-001', 'nexus1'))).toBe(false);
    expect(await verify(dns.port, await sign('after the rotation'))).toBe('signature ok');
    expect(await verify(dns.port, before)).not.toBe('signature ok');

    // Every platform step was notified to the creator.
    const all = (await p.store.readEntries(0, p.chokepoint.ledger.size)).map(decodeEntry);
    for (const type of ['dkim.publish', 'dkim.activate', 'dkim.remove']) {
      expect(all.some((e) => e.command.command.type === type && e.decision.allowed && e.command.command.actor === p.platformId), type).toBe(true);
      expect(all.some((e) => e.command.command.type === 'notify.creator' && e.command.command.body.recipient === alice.id && String(e.command.command.body.message).includes(`performed ${type}`)), type).toBe(true);
    }
  }, 120_000);
});

describe('nexus mail dkim rotate (the CLI against a daemon with its DNS)', () => {
  let data: string;
  let home: string;
  let server: RunningServer;
  beforeAll(async () => {
    data = tempDir('dkim-cli-data');
    home = tempDir('dkim-cli-home');
    await (await initDataDir(data)).close();
    server = await startServer({ dataDir: data, host: '127.0.0.1', port: 0, logger: false, dns: { address: '127.0.0.1', port: 0 } });
  }, 60_000);
  afterAll(async () => {
    await server?.close();
    for (const d of [data, home]) if (d) rmSync(d, { recursive: true, force: true });
  });

  it('publishes the next selector beside the active one, both served by our DNS; a second rotation is refused', async () => {
    const env = { NEXUS_HOME: home, NEXUS_URL: server.url };
    const nexus = async (...args: string[]) => {
      const r = await runCli(args, env);
      return r;
    };
    expect((await nexus('identity', 'create', 'alice', '--role', 'creator')).code).toBe(0);
    const created = await nexus('imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'US-CCPA');
    expect(created.code, created.stderr).toBe(0);
    const port = server.dns!.server.port;
    await until(async () => /v=DKIM1/.test(await txt(port, 'nexus1')), 'nexus1 served');
    expect(await txt(port, 'nexus2')).toBe('');

    const r = await nexus('mail', 'dkim', 'rotate', 'IMVU-001');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/DKIM rotation of IMVU-001 started/);
    await until(async () => /v=DKIM1/.test(await txt(port, 'nexus2')), 'nexus2 served');
    expect(await txt(port, 'nexus1')).toMatch(/v=DKIM1/);

    const again = await nexus('mail', 'dkim', 'rotate', 'IMVU-001');
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/rotation of IMVU-001 is under way/);
    const help = await nexus('mail', 'dkim', 'rotate', '--help');
    expect(help.stdout).toMatch(/both stay published during the overlap/);
  }, 120_000);
});
