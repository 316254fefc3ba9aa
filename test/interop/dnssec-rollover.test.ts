import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DNSKEY_TTL_S } from '../../src/core/policy/gates/platform-powers.ts';
import { decodeEntry } from '../../src/core/ledger/ledger.ts';
import { verifyStore } from '../../src/core/policy/verify.ts';
import { deniedBy } from '../../src/core/testing.ts';
import { startDnsServer, type DnsServer } from '../../src/domains/dns-authority/server.ts';
import { dnsFixture, eventually, type DnsFixture } from '../../src/domains/dns-authority/testing.ts';
import { advanceRollovers, dnssecKeyPath, generateZoneKey, keyViews, onlineSigner, startRollover, type KeyView } from '../../src/domains/dnssec/index.ts';
import { provisioner } from '../../src/imvu/provision.ts';

// A DNSSEC key rollover as the platform may do it (gate 17): publish the new key beside the old,
// switch signing after the DNSKEY TTL, remove the old key a TTL later. delv (Debian
// bind9-dnsutils) validates answers from our server at every step, with nothing but the DS the
// parent would hold: the old DS (the parent before the creator acts on the notice), the new DS
// (after). Entry times are moved forward by the platform clock; signatures use the real clock.

const run = promisify(execFile);
const hasDelv = !spawnSync('delv', ['-v']).error;
if (!hasDelv) console.warn('dnssec rollover interop: delv not found (apt-get install bind9-dnsutils); skipping');

const Z = 'imvu001.world';

describe.skipIf(!hasDelv)('a DNSSEC key rollover, validated by delv at every step', () => {
  let f: DnsFixture;
  let srv: DnsServer;
  let dir: string;
  let offset = 0;
  let oldKey: KeyView;
  let newKey: KeyView;
  const anchors: Record<string, string> = {};

  const dsAnchor = (name: string, k: KeyView) => {
    const file = join(dir, `${name}.conf`);
    writeFileSync(file, `trust-anchors { "${Z}." static-ds ${k.keyTag} ${k.algorithm} ${k.digestType} "${k.digest}"; };\n`);
    anchors[name] = file;
  };
  const delv = async (name: string, type: string, anchor: string): Promise<string> => {
    const args = ['@127.0.0.1', '-p', String(srv.port), '-a', anchors[anchor]!, `+root=${Z}`, name, type];
    const r = await run('delv', args, { timeout: 20_000 }).catch((err: { stdout?: string; stderr?: string }) => ({ stdout: err.stdout ?? '', stderr: err.stderr ?? '' }));
    return r.stdout + r.stderr;
  };
  /** Every answer a resolver needs validates with the given parent DS. */
  const validates = async (anchor: string) => {
    for (const [name, type] of [[`www.${Z}`, 'A'], [Z, 'DNSKEY'], [Z, 'SOA']] as const) expect(await delv(name, type, anchor), `${name} ${type} with the ${anchor} DS`).toContain('; fully validated');
    expect(await delv(`nope.${Z}`, 'A', anchor)).toContain('; negative response, fully validated');
  };
  const serial = async () => Number((await f.p.store.get<{ serial: number }>('SELECT serial FROM zones WHERE name = ?', [Z]))!.serial);
  /** Waits until the server answers with the zone's current serial. */
  const served = async () => {
    const want = await serial();
    await eventually(async () => {
      const out = await delv(Z, 'SOA', 'new');
      if (!new RegExp(`SOA\\s+\\S+\\s+\\S+\\s+${want}\\s`).test(out)) throw new Error(`serial ${want} not served yet: ${out}`);
    }, 10_000);
  };
  const dnskeys = async () => (await delv(Z, 'DNSKEY', 'new')).split('\n').filter((l) => /\sIN\s+DNSKEY\s/.test(l)).length;
  const dnskeySigners = async () => [...(await delv(Z, 'DNSKEY', 'new')).matchAll(/RRSIG\s+DNSKEY 13 2 3600 \d{14} \d{14} (\d+) /g)].map((m) => Number(m[1])).sort();
  const aSigner = async () => Number(/RRSIG\s+A 13 3 3600 \d{14} \d{14} (\d+) /.exec(await delv(`www.${Z}`, 'A', 'new'))?.[1]);

  beforeAll(async () => {
    f = await dnsFixture({ provision: provisioner, clock: () => new Date(Date.now() + offset) });
    srv = await startDnsServer({ store: f.p.store, rrl: false, dnssec: onlineSigner(f.p.store, f.p.dataDir) });
    dir = mkdtempSync(join(tmpdir(), 'nexus-rollover-'));
    oldKey = (await keyViews(f.p.store, Z))[0]!;
    dsAnchor('old', oldKey!);
  });
  afterAll(async () => {
    await srv?.close();
    await f?.p.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('before: one key, validated with its DS', async () => {
    await validates('old');
  });

  it('the swap attack is gone: a new key published by the platform waits beside the old one, and nothing stops validating', async () => {
    // Today a second dnssec.publish replaced the key in place and every DO query answered SERVFAIL.
    const r = await startRollover(f.p, Z);
    expect(r.allowed).toBe(true);
    const keys = await keyViews(f.p.store, Z);
    expect(keys.map((k) => k.state)).toEqual(['active', 'published']);
    newKey = keys[1]!;
    dsAnchor('new', newKey);
    // The creator is told, with the DS to add at the parent.
    const notice = decodeEntry((await f.p.store.readEntries(r.followUps[0]!.index, r.followUps[0]!.index + 1))[0]!).command.command;
    expect(notice).toMatchObject({ type: 'notify.creator', body: { imvu: 'IMVU-001', recipient: f.alice.id, about: r.index } });
    expect(String(notice.body.message)).toContain(newKey.ds);
    // No second rollover, no early switch.
    const { publicKey } = await generateZoneKey();
    const again = await f.p.chokepoint.submit(f.p.chokepoint.platformCommand('dnssec.publish', { imvu: 'IMVU-001', zone: Z, algorithm: 13, flags: 257, publicKey: publicKey.toString('base64') }));
    expect(deniedBy(again)).toEqual([17]);
    const early = await f.p.chokepoint.submit(f.p.chokepoint.platformCommand('dnssec.activate', { imvu: 'IMVU-001', zone: Z, publicKey: newKey.publicKey }));
    expect(deniedBy(early)).toEqual([17]);
    expect(await advanceRollovers(f.p, Date.now() + offset)).toEqual([]);

    await served();
    // The DNSKEY RRset holds both keys, signed by both; data is still signed by the old key.
    expect(await dnskeys()).toBe(2);
    expect(await dnskeySigners()).toEqual([oldKey.keyTag, newKey.keyTag].sort());
    expect(await aSigner()).toBe(oldKey.keyTag);
    await validates('old');
    await validates('new');
  });

  it(`after the DNSKEY TTL (${DNSKEY_TTL_S}s of entry time) the new key signs; the old one stays in the RRset; both DS still validate`, async () => {
    offset += DNSKEY_TTL_S * 1000;
    const [activate] = await advanceRollovers(f.p, Date.now() + offset);
    expect(activate).toMatchObject({ allowed: true });
    expect((await keyViews(f.p.store, Z)).map((k) => k.state)).toEqual(['retired', 'active']);
    // The retired key cannot go yet.
    const early = await f.p.chokepoint.submit(f.p.chokepoint.platformCommand('dnssec.remove', { imvu: 'IMVU-001', zone: Z, publicKey: oldKey.publicKey }));
    expect(deniedBy(early)).toEqual([17]);

    await served();
    expect(await aSigner()).toBe(newKey.keyTag);
    expect(await dnskeys()).toBe(2);
    await validates('old');
    await validates('new');
  });

  it('a TTL later the old key is removed (and its private key deleted); the new DS validates', async () => {
    offset += DNSKEY_TTL_S * 1000;
    const [remove] = await advanceRollovers(f.p, Date.now() + offset);
    expect(remove).toMatchObject({ allowed: true });
    expect((await keyViews(f.p.store, Z)).map((k) => k.state)).toEqual(['active']);
    expect(existsSync(dnssecKeyPath(f.p.dataDir, Z))).toBe(false);
    expect(existsSync(dnssecKeyPath(f.p.dataDir, Z, Buffer.from(newKey.publicKey, 'base64')))).toBe(true);

    await served();
    expect(await dnskeys()).toBe(1);
    await validates('new');
    // The old DS alone no longer leads anywhere: the creator was told to replace it two TTLs ago.
    expect(await delv(`www.${Z}`, 'A', 'old')).not.toContain('fully validated');
    // Every step is a decision the verifier reaches again from the ledger.
    expect((await verifyStore(f.p.store)).problems).toEqual([]);
  });
});
