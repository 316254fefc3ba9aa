import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startDnsServer, type DnsServer } from '../../src/domains/dns-authority/server.ts';
import { dnsFixture, eventually, type DnsFixture } from '../../src/domains/dns-authority/testing.ts';
import { DnssecKeyring, dsView, onlineSigner } from '../../src/domains/dnssec/index.ts';
import { exportZone } from '../../src/domains/zonefile/export.ts';
import { provisioner } from '../../src/imvu/provision.ts';

// DNSSEC checked by validators we did not write (Debian packages bind9-dnsutils for delv,
// bind9-utils for dnssec-verify, ldnsutils for ldns-verify-zone). delv validates the online
// answers from our server with nothing but the zone's trust anchor (as `nexus dns ds` gives it);
// dnssec-verify and ldns-verify-zone check the whole signed zone as a transfer would carry it.

const run = promisify(execFile);
const has = (cmd: string, ...args: string[]) => {
  const r = spawnSync(cmd, args);
  return !r.error;
};
const hasDelv = has('delv', '-v');
const hasVerify = has('dnssec-verify', '-V');
const hasLdns = has('ldns-verify-zone', '-v');
if (!hasDelv) console.warn('dnssec interop: delv not found (apt-get install bind9-dnsutils); skipping the delv tests');
if (!hasVerify) console.warn('dnssec interop: dnssec-verify not found (apt-get install bind9-utils); skipping it');
if (!hasLdns) console.warn('dnssec interop: ldns-verify-zone not found (apt-get install ldnsutils); skipping it');

const Z = 'imvu001.world';

describe.skipIf(!hasDelv && !hasVerify && !hasLdns)('DNSSEC validated by delv, dnssec-verify and ldns-verify-zone', () => {
  let f: DnsFixture;
  let srv: DnsServer;
  /** The same zones with compact denial (RFC 9824), the other `denial` mode. */
  let compact: DnsServer;
  let dir: string;
  let anchor: string;
  let badAnchor: string;

  beforeAll(async () => {
    // IMVUs created through the chokepoint with the platform's provisioning: DKIM and DNSSEC keys.
    f = await dnsFixture({ provision: provisioner });
    srv = await startDnsServer({ store: f.p.store, rrl: false, dnssec: onlineSigner(f.p.store, f.p.dataDir) });
    compact = await startDnsServer({ store: f.p.store, rrl: false, dnssec: onlineSigner(f.p.store, f.p.dataDir, { denial: 'compact' }) });
    dir = mkdtempSync(join(tmpdir(), 'nexus-dnssec-'));
    const ds = (await dsView(f.p.store, Z))!;
    anchor = join(dir, 'anchor.conf');
    writeFileSync(anchor, ds.trustAnchor + '\n');
    // The same anchor with one byte of the public key flipped: nothing may validate against it.
    const key = Buffer.from(ds.publicKey, 'base64');
    key[40]! ^= 0x01;
    badAnchor = join(dir, 'bad-anchor.conf');
    writeFileSync(badAnchor, ds.trustAnchor.replace(ds.publicKey, key.toString('base64')) + '\n');
  });
  afterAll(async () => {
    await srv?.close();
    await compact?.close();
    await f?.p.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** delv against our server only, with the zone's own trust anchor (no root, no recursion). */
  const delv = async (name: string, type: string, anchorFile = anchor, server = srv): Promise<string> => {
    const args = ['@127.0.0.1', '-p', String(server.port), '-a', anchorFile, `+root=${Z}`, name, type];
    const r = await run('delv', args, { timeout: 20_000 }).catch((err: { stdout?: string; stderr?: string }) => ({ stdout: err.stdout ?? '', stderr: err.stderr ?? '' }));
    return r.stdout + r.stderr;
  };

  describe.skipIf(!hasDelv)('delv', () => {
    it('positive answer: fully validated', async () => {
      const out = await delv(`www.${Z}`, 'A');
      expect(out).toContain('; fully validated');
      expect(out).toMatch(new RegExp(`^www\\.imvu001\\.world\\.\\s+3600\\s+IN\\s+A\\s+192\\.0\\.2\\.7$`, 'm'));
      expect(out).toMatch(/RRSIG\s+A 13 3 3600 \d{14} \d{14} \d+ imvu001\.world\./);
    });

    it('NXDOMAIN (NSEC chain: the NSEC covering the name and the one proving no wildcard): negative response, fully validated', async () => {
      for (const name of [`nope.${Z}`, `a.b.nope.${Z}`, `zzzz.${Z}`, `x.a.ent.wild.${Z}`]) {
        const out = await delv(name, 'A');
        expect(out, name).toContain('; negative response, fully validated');
        expect(out, name).toContain('NXDOMAIN');
        expect(out, name).not.toContain('TYPE128');
        expect(out).toMatch(/ NSEC \S+\. .*RRSIG NSEC/);
      }
    });

    it('NODATA: negative response, fully validated, the NSEC listing the types the name has; an empty non-terminal and a wildcard without the type too', async () => {
      const out = await delv(`www.${Z}`, 'MX');
      expect(out).toContain('; negative response, fully validated');
      expect(out).toMatch(new RegExp(`; www\\.imvu001\\.world\\. NSEC \\S+ A AAAA RRSIG NSEC`));
      for (const [name, type] of [[`ent.wild.${Z}`, 'A'], [`any.thing.wild.${Z}`, 'AAAA']] as const)
        expect(await delv(name, type), `${name} ${type}`).toContain('; negative response, fully validated');
      // A CNAME synthesised from a wildcard (signed as *.cwild: Labels 3), to a name without the type.
      const cname = await delv(`x.cwild.${Z}`, 'MX');
      expect(cname).toContain('; fully validated');
      expect(cname).toMatch(/RRSIG\s+CNAME 13 3 /);
    });

    it('a wildcard that is only an empty non-terminal (a record at x-1.*.entwild): NODATA beside it, NXDOMAIN below it (RFC 4592 2.2.1), fully validated', async () => {
      await f.add('x-1.*.entwild', 'A', '192.0.2.98');
      await eventually(async () => {
        const o = await delv(`x-1.*.entwild.${Z}`, 'A');
        if (!o.includes('192.0.2.98')) throw new Error(o);
      }, 5000);
      // b.entwild: the wildcard *.entwild exists (it has a name below it) and owns nothing.
      const beside = await delv(`b.entwild.${Z}`, 'A');
      expect(beside).toContain('; negative response, fully validated');
      expect(beside).not.toContain('NXDOMAIN');
      // a.*.entwild: its closest encloser is *.entwild, and there is no *.*.entwild.
      const below = await delv(`a.*.entwild.${Z}`, 'A');
      expect(below).toContain('; negative response, fully validated');
      expect(below).toContain('NXDOMAIN');
      expect(await delv(`*.entwild.${Z}`, 'A')).toContain('; negative response, fully validated');
    });

    it('compact denial (--dnssec-denial compact): NXDOMAIN as NODATA with NSEC RRSIG NSEC NXNAME, NODATA, fully validated', async () => {
      const nx = await delv(`nope.${Z}`, 'A', anchor, compact);
      expect(nx).toContain('; negative response, fully validated');
      expect(nx).toContain(`NSEC \\000.nope.${Z}. RRSIG NSEC TYPE128`);
      const nodata = await delv(`www.${Z}`, 'MX', anchor, compact);
      expect(nodata).toContain('; negative response, fully validated');
      expect(nodata).toContain(`NSEC \\000.www.${Z}. A AAAA RRSIG NSEC`);
      expect(await delv(`any.thing.wild.${Z}`, 'A', anchor, compact)).toContain('; fully validated');
    });

    it('wildcard, CNAME chain, DNSKEY, and the proof that a delegation is unsigned: fully validated', async () => {
      expect(await delv(`any.thing.wild.${Z}`, 'A')).toContain('; fully validated');
      const chain = await delv(`chain.${Z}`, 'A');
      expect(chain).toContain('; fully validated');
      expect(chain).toMatch(/^www\.imvu001\.world\.\s+3600\s+IN\s+A\s+192\.0\.2\.7$/m);
      expect(await delv(Z, 'DNSKEY')).toContain('; fully validated');
      const ds = await delv(`sub.${Z}`, 'DS');
      expect(ds).toContain('; negative response, fully validated');
      expect(ds).toMatch(new RegExp(`; sub\\.imvu001\\.world\\. NSEC \\S+ NS RRSIG NSEC`));
      // The wildcard answer is signed as the wildcard (Labels 3: *.wild.imvu001.world).
      expect(await delv(`any.thing.wild.${Z}`, 'A')).toMatch(/RRSIG\s+A 13 3 /);
    });

    it('a committed change is served signed at once', async () => {
      await f.add('fresh', 'A', '192.0.2.99');
      const out = await eventually(async () => {
        const o = await delv(`fresh.${Z}`, 'A');
        if (!o.includes('192.0.2.99')) throw new Error(o);
        return o;
      }, 5000);
      expect(out).toContain('; fully validated');
    });

    it('with one byte of the key flipped in the trust anchor, nothing validates', async () => {
      for (const [name, type] of [[`www.${Z}`, 'A'], [`nope.${Z}`, 'A'], [`www.${Z}`, 'MX']] as const) {
        const out = await delv(name, type, badAnchor);
        expect(out).not.toContain('fully validated');
        expect(out).toMatch(/broken trust chain|no valid signature|insecurity proof failed|resolution failed/);
      }
    });
  });

  describe('the signed zone, as transferred', () => {
    let file: string;
    beforeAll(async () => {
      file = join(dir, `${Z}.signed`);
      writeFileSync(file, await exportZone(f.p.store, Z, { dnssec: new DnssecKeyring(f.p.store, f.p.dataDir) }));
    });

    // -z: our one key is a combined signing key (flags 257) that signs every RRset; without -z
    // dnssec-verify also wants a key without the SEP flag ("Missing ZSK").
    it.skipIf(!hasVerify)('dnssec-verify: zone fully signed; a changed record fails', async () => {
      const ok = spawnSync('dnssec-verify', ['-z', '-o', Z, file], { encoding: 'utf8' });
      expect(ok.stdout + ok.stderr).toContain('Zone fully signed');
      expect(ok.status, ok.stdout + ok.stderr).toBe(0);
      const tampered = join(dir, 'tampered');
      writeFileSync(tampered, readFileSync(file, 'utf8').replace('IN\tA\t192.0.2.7', 'IN\tA\t192.0.2.66'));
      const bad = spawnSync('dnssec-verify', ['-z', '-o', Z, tampered], { encoding: 'utf8' });
      expect(bad.status).not.toBe(0);
    });

    it.skipIf(!hasLdns)('ldns-verify-zone: verified and complete; a broken NSEC chain fails', async () => {
      const ok = spawnSync('ldns-verify-zone', [file], { encoding: 'utf8' });
      expect(ok.stdout + ok.stderr).toContain('Zone is verified and complete');
      expect(ok.status, ok.stdout + ok.stderr).toBe(0);
      const broken = join(dir, 'broken');
      writeFileSync(broken, readFileSync(file, 'utf8').replace(/^(www\.imvu001\.world\.\t300\tIN\tNSEC\t)\S+/m, '$1zzz.imvu001.world.'));
      const bad = spawnSync('ldns-verify-zone', [broken], { encoding: 'utf8' });
      expect(bad.status).not.toBe(0);
    });
  });
});
