import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { signCommand } from '../../src/core/identity/envelope.ts';
import type { LedgerEntry } from '../../src/core/types.ts';
import { testPlatform, type Actor as CoreActor, type TestPlatform } from '../../src/core/testing.ts';
import { startDnsServer, type DnsServer } from '../../src/domains/dns-authority/server.ts';
import { eventually } from '../../src/domains/dns-authority/testing.ts';
import { startRollover } from '../../src/domains/dnssec/rollover.ts';
import { DnssecKeyring, dsView, keyViews, onlineSigner, platformZoneDsView, type DsView } from '../../src/domains/dnssec/index.ts';
import { ensurePlatformZone } from '../../src/domains/registry/declare.ts';
import { exportZone } from '../../src/domains/zonefile/export.ts';
import { provisioner } from '../../src/imvu/provision.ts';
import { Client, newKey, type Actor } from '../support/api.ts';
import { spawnDaemon, type DaemonProcess } from '../support/daemon.ts';

// The platform's own zone (the suffix `world`) makes one chain of trust down to every IMVU zone:
// a validating resolver that holds nothing but the suffix's trust anchor (what `nexus dns ds`
// prints as the platform zone's anchor) validates any IMVU record, the name servers every IMVU
// zone names resolve, and names under the suffix that are not delegated are proven not to
// exist. Checked with delv (Debian bind9-dnsutils) against the daemon as `nexus serve` runs it,
// and, in process, with the IMVU zone's key replaced (the DS follows it); named-checkzone,
// dnssec-verify and ldns-verify-zone read the suffix zone's export.

const run = promisify(execFile);
const has = (cmd: string, ...args: string[]) => !spawnSync(cmd, args).error;
const hasDelv = has('delv', '-v');
const hasChecker = spawnSync('named-checkzone', ['-v']).status === 0;
const hasVerify = has('dnssec-verify', '-V');
const hasLdns = has('ldns-verify-zone', '-v');
if (!hasDelv) console.warn('platform-zone interop: delv not found (apt-get install bind9-dnsutils); skipping the delv validation');

interface Health {
  dns: { address: string; port: number } | null;
}
type DsResponse = DsView & { parent: string | null; platformZone: DsView | null };

/** delv against one server only, with `anchorFile` as its only trust anchor, for the suffix `world` (no root, no recursion). */
async function delv(port: number, anchorFile: string, name: string, type: string): Promise<string> {
  const args = ['@127.0.0.1', '-p', String(port), '-a', anchorFile, '+root=world', name, type];
  const r = await run('delv', args, { timeout: 20_000 }).catch((err: { stdout?: string; stderr?: string }) => ({ stdout: err.stdout ?? '', stderr: err.stderr ?? '' }));
  return r.stdout + r.stderr;
}

/** The same anchor with one byte of the key flipped. */
function flipped(anchor: DsView): string {
  const key = Buffer.from(anchor.publicKey, 'base64');
  key[40]! ^= 0x01;
  return anchor.trustAnchor.replace(anchor.publicKey, key.toString('base64'));
}

describe.skipIf(!hasDelv)('the daemon: one trust anchor, the suffix, validates every IMVU zone (delv)', () => {
  let dir: string;
  let daemon: DaemonProcess;
  let api: Client;
  let port: number;
  let alice: Actor;
  let ds: DsResponse;
  let anchor: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nexus-platform-zone-'));
    daemon = await spawnDaemon(join(dir, 'data'));
    api = new Client(daemon.url);
    port = (await api.get<Health>('/health')).body.dns!.port;
    const k = newKey();
    alice = { name: 'alice', id: k.id, key: k.key };
    const reg = await api.request('POST', '/v1/identities', signCommand(alice.key, 'identity.register', { name: 'alice', role: 'creator', publicKey: k.publicKey }, { origin: await api.origin() }));
    expect(reg.status, reg.text).toBe(201);
    for (const name of ['Gallery', 'Shop']) {
      const created = await api.as(alice, 'POST', '/v1/imvus', 'imvu.create', { name, owner: alice.id, jurisdiction: 'EU-GDPR' });
      expect(created.status, created.text).toBe(201);
    }
    const add = await api.as(alice, 'POST', '/v1/zones/imvu001.world/records', 'dns.record.add', { zone: 'imvu001.world', name: 'www', type: 'A', value: '192.0.2.80' });
    expect(add.status, add.text).toBe(201);
    const r = await api.get<DsResponse>('/v1/zones/imvu001.world/ds');
    expect(r.status, r.text).toBe(200);
    ds = r.body;
    anchor = join(dir, 'world.anchor');
    // Only the platform zone's anchor: nothing about any IMVU zone.
    writeFileSync(anchor, ds.platformZone!.trustAnchor + '\n');
  }, 60_000);

  afterAll(async () => {
    if (daemon) expect(await daemon.stop()).toEqual({ code: 0, signal: null });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('GET /v1/zones/:zone/ds gives the platform zone (world) as the parent and its trust anchor', () => {
    expect(ds).toMatchObject({ zone: 'imvu001.world', imvu: 'IMVU-001', parent: 'world' });
    expect(ds.platformZone).toMatchObject({ zone: 'world', imvu: null, algorithm: 13, flags: 257 });
    expect(ds.platformZone!.trustAnchor).toMatch(/^trust-anchors \{ "world\." static-key 257 3 13 "[A-Za-z0-9+/]{86}=="; \};$/);
  });

  it('validates records of every IMVU zone, from the suffix anchor alone', async () => {
    const www = await eventually(async () => {
      const out = await delv(port, anchor, 'www.imvu001.world', 'A');
      expect(out).toContain('192.0.2.80');
      return out;
    }, 10_000);
    expect(www).toContain('; fully validated');
    expect(www).toMatch(/^www\.imvu001\.world\.\s+\d+\s+IN\s+A\s+192\.0\.2\.80$/m);
    const mx = await delv(port, anchor, 'imvu002.world', 'MX');
    expect(mx).toContain('; fully validated');
    expect(mx).toMatch(/^imvu002\.world\.\s+\d+\s+IN\s+MX\s+10 mail\.imvu002\.world\.$/m);
    // And a name an IMVU zone does not have: proven absent, from the same anchor.
    expect(await delv(port, anchor, 'nothing.imvu002.world', 'A')).toContain('; negative response, fully validated');
  }, 60_000);

  it("the IMVU zones' name servers resolve, validated: ns1.world at the DNS address", async () => {
    const nsr = await delv(port, anchor, 'imvu001.world', 'NS');
    expect(nsr).toContain('; fully validated');
    expect(nsr).toMatch(/^imvu001\.world\.\s+\d+\s+IN\s+NS\s+ns1\.world\.$/m);
    const a = await delv(port, anchor, 'ns1.world', 'A');
    expect(a).toContain('; fully validated');
    expect(a).toMatch(/^ns1\.world\.\s+\d+\s+IN\s+A\s+127\.0\.0\.1$/m);
    const ds2 = await delv(port, anchor, 'imvu002.world', 'DS');
    expect(ds2).toContain('; fully validated');
    // delv splits long digests with a space.
    expect(ds2).toMatch(/^imvu002\.world\.\s+\d+\s+IN\s+DS\s+\d+ 13 2 [0-9A-F ]+$/m);
  }, 60_000);

  it('a name under the suffix that is not delegated: negative response, fully validated; the apex SOA too', async () => {
    expect(await delv(port, anchor, 'imvu999.world', 'A')).toContain('; negative response, fully validated');
    expect(await delv(port, anchor, 'nothing.world', 'TXT')).toContain('; negative response, fully validated');
    expect(await delv(port, anchor, 'world', 'SOA')).toContain('; fully validated');
  }, 60_000);

  it('restarted with --nameserver: the new server is declared, served with its address, and named by every IMVU zone', async () => {
    expect(await daemon.stop()).toEqual({ code: 0, signal: null });
    daemon = await spawnDaemon(join(dir, 'data'), ['--nameserver', 'ns1.world=127.0.0.1', '--nameserver', 'NS2.world=[::1]']);
    api = new Client(daemon.url);
    port = (await api.get<Health>('/health')).body.dns!.port;
    const nsr = await eventually(async () => {
      const out = await delv(port, anchor, 'imvu002.world', 'NS');
      expect(out).toMatch(/^imvu002\.world\.\s+\d+\s+IN\s+NS\s+ns2\.world\.$/m);
      return out;
    }, 10_000);
    expect(nsr).toContain('; fully validated');
    expect(nsr).toMatch(/^imvu002\.world\.\s+\d+\s+IN\s+NS\s+ns1\.world\.$/m);
    const aaaa = await delv(port, anchor, 'ns2.world', 'AAAA');
    expect(aaaa).toContain('; fully validated');
    expect(aaaa).toMatch(/^ns2\.world\.\s+\d+\s+IN\s+AAAA\s+::1$/m);
    // The same key: the anchor configured before the restart still validates.
    expect(await delv(port, anchor, 'www.imvu001.world', 'A')).toContain('; fully validated');
    // The IMVU's log shows the entry that changed its zone's NS (not the declaration before it existed).
    const log = (await api.getAs<{ entries: LedgerEntry[] }>(alice, '/v1/ledger/entries?imvu=IMVU-001')).body.entries;
    const declared = log.filter((e) => e.command?.command?.type === 'platform.zone');
    expect(declared.map((e) => e.command.command.body.nameservers)).toEqual([[{ name: 'ns1.world', address: '127.0.0.1' }, { name: 'ns2.world', address: '::1' }]]);
  }, 60_000);

  it('with one byte of the suffix key flipped in the anchor, nothing validates', async () => {
    const bad = join(dir, 'bad.anchor');
    writeFileSync(bad, flipped(ds.platformZone!) + '\n');
    for (const [name, type] of [['www.imvu001.world', 'A'], ['ns1.world', 'A'], ['imvu999.world', 'A']] as const) {
      const out = await delv(port, bad, name, type);
      expect(out).not.toContain('fully validated');
      expect(out).toMatch(/broken trust chain|no valid signature|insecurity proof failed|resolution failed/);
    }
  }, 60_000);
});

describe("in process: the DS follows the IMVU zone's key, and the suffix zone's files pass BIND's and ldns's checks", () => {
  let p: TestPlatform;
  let alice: CoreActor;
  let srv: DnsServer;
  let dir: string;
  let anchor: string;

  beforeAll(async () => {
    p = await testPlatform({ provision: provisioner });
    alice = await p.register('alice', 'creator');
    expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    expect((await p.as(alice, 'dns.record.add', { zone: 'imvu001.world', name: 'www', type: 'A', value: '192.0.2.7' })).allowed).toBe(true);
    await ensurePlatformZone(p, [{ name: 'ns1.world', address: '127.0.0.1' }, { name: 'ns2.world', address: '::1' }]);
    srv = await startDnsServer({ store: p.store, rrl: false, dnssec: onlineSigner(p.store, p.dataDir) });
    dir = mkdtempSync(join(tmpdir(), 'nexus-platform-zone-'));
    anchor = join(dir, 'world.anchor');
    writeFileSync(anchor, (await platformZoneDsView(p.store))!.trustAnchor + '\n');
  });
  afterAll(async () => {
    await srv?.close();
    await p?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(!hasDelv)("a new key for the IMVU zone (a rollover's published key): the suffix zone serves its DS beside the old one and delv still validates from the suffix anchor", async () => {
    expect(await delv(srv.port, anchor, 'www.imvu001.world', 'A')).toContain('; fully validated');
    const old = (await dsView(p.store, 'imvu001.world'))!;
    expect((await startRollover(p, 'imvu001.world')).allowed).toBe(true);
    const now = (await keyViews(p.store, 'imvu001.world')).find((k) => k.state === 'published')!;
    expect(now.keyTag === old.keyTag && now.digest === old.digest).toBe(false);
    const out = await eventually(async () => {
      const o = await delv(srv.port, anchor, 'imvu001.world', 'DS');
      // delv splits long digests with a space.
      expect(o.replace(/ /g, '')).toContain(now.digest);
      return o;
    }, 5000);
    expect(out).toContain('; fully validated');
    // The old key still signs until the rollover activates the new one: its DS stays.
    expect(out.replace(/ /g, '')).toContain(old.digest);
    expect(await delv(srv.port, anchor, 'www.imvu001.world', 'A')).toContain('; fully validated');
  }, 60_000);

  it.skipIf(!hasChecker)('named-checkzone loads the export of world: SOA, NS, glue, delegation with DS', async () => {
    const file = join(dir, 'world.zone');
    writeFileSync(file, await exportZone(p.store, 'world'));
    const check = spawnSync('named-checkzone', ['-k', 'fail', '-n', 'fail', '-m', 'fail', '-M', 'fail', '-S', 'fail', 'world', file], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(check.stdout + check.stderr).not.toMatch(/error|ignoring/i);
    const dump = spawnSync('named-checkzone', ['-q', '-D', '-o', '-', 'world', file], { encoding: 'utf8' }).stdout;
    const ds = (await dsView(p.store, 'imvu001.world'))!;
    expect(dump).toMatch(/^world\.\s+3600\s+IN\s+NS\s+ns2\.world\.$/m);
    expect(dump).toMatch(/^ns2\.world\.\s+3600\s+IN\s+AAAA\s+::1$/m);
    expect(dump).toMatch(/^imvu001\.world\.\s+3600\s+IN\s+NS\s+ns1\.world\.$/m);
    // BIND splits long digests with a space.
    // One DS per key of the zone (the active one, and the one a rollover published beside it).
    const dsLines = dump.split('\n').filter((l) => /^imvu001\.world\.\s+3600\s+IN\s+DS\s/.test(l)).map((l) => l.trim().split(/\s+/));
    const fields = dsLines.find((f) => f[4] === String(ds.keyTag))!;
    expect(fields.slice(4, 7)).toEqual([String(ds.keyTag), '13', '2']);
    expect(fields.slice(7).join('')).toBe(ds.digest);
  });

  it.skipIf(!hasVerify && !hasLdns)('the signed export of world verifies (dnssec-verify -z, ldns-verify-zone)', async () => {
    const file = join(dir, 'world.signed');
    writeFileSync(file, await exportZone(p.store, 'world', { dnssec: new DnssecKeyring(p.store, p.dataDir) }));
    if (hasVerify) {
      const r = spawnSync('dnssec-verify', ['-z', '-o', 'world', file], { encoding: 'utf8' });
      expect(r.stdout + r.stderr).toContain('Zone fully signed');
      expect(r.status, r.stdout + r.stderr).toBe(0);
    }
    if (hasLdns) {
      const r = spawnSync('ldns-verify-zone', [file], { encoding: 'utf8' });
      expect(r.stdout + r.stderr).toContain('Zone is verified and complete');
      expect(r.status, r.stdout + r.stderr).toBe(0);
    }
  });
});
