import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import type { Answer } from 'dns-packet';
import { startDnsServer, type DnsServer } from '../../src/domains/dns-authority/server.ts';
import { dnsFixture, decode, eventually, framed, query, udpExchange, type DnsFixture } from '../../src/domains/dns-authority/testing.ts';
import { freePort, startKnot } from '../support/knot.ts';
import { DnssecKeyring, onlineSigner } from '../../src/domains/dnssec/index.ts';
import { rrText } from '../../src/domains/dnssec/presentation.ts';
import { exportZone } from '../../src/domains/zonefile/export.ts';
import { verifyZonemd, ZONEMD } from '../../src/domains/zonefile/zonemd.ts';
import { provisioner } from '../../src/imvu/provision.ts';

// ZONEMD (RFC 8976) checked by verifiers nobody here wrote: ldns-verify-zone -Z (ldnsutils)
// recomputes the digest of the exported and of the transferred zone; a zone with one record
// changed after the digest was made fails it. knotd (Knot DNS 3.2, package knot) as a secondary
// with `zonemd-verify: on` checks the ZONEMD of every zone it transfers from us. (kzonecheck 3.2
// does not check ZONEMD: it passes a zone whose digest is wrong, so it is not used here.)

const has = (cmd: string, ...args: string[]) => spawnSync(cmd, args).error === undefined;
const hasLdns = has('ldns-verify-zone', '-v');
const hasKnotd = has('knotd', '-V');
if (!hasLdns) console.warn('zonemd interop: ldns-verify-zone not found (apt-get install ldnsutils); skipping it');
if (!hasKnotd) console.warn('zonemd interop: knotd not found (apt-get install knot); skipping it');

const Z = 'imvu001.world';

/** Every record of a TCP AXFR, the closing SOA left out. */
function axfr(port: number, zone: string): Promise<Answer[]> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    const rs: Answer[] = [];
    sock.setTimeout(10_000, () => sock.destroy(new Error('AXFR timed out')));
    sock.on('error', reject);
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const msg = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + msg.length);
        rs.push(...(dnsPacket.decode(msg).answers ?? []));
        if (rs.length > 1 && rs.filter((r) => r.type === 'SOA').length >= 2) {
          sock.end();
          resolve(rs.slice(0, -1));
        }
      }
    });
    sock.write(framed(query(zone, 'AXFR', { rd: false })));
  });
}

const ldns = (file: string, ...flags: string[]) => {
  const r = spawnSync('ldns-verify-zone', [...flags, file], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
};

describe.skipIf(!hasLdns && !hasKnotd)('ZONEMD verified by ldns-verify-zone and Knot', () => {
  let f: DnsFixture;
  let srv: DnsServer;
  let dir: string;

  beforeAll(async () => {
    // IMVUs created with the platform's provisioning: their zones have DNSSEC keys.
    f = await dnsFixture({ provision: provisioner });
    srv = await startDnsServer({ store: f.p.store, rrl: false, dnssec: onlineSigner(f.p.store, f.p.dataDir), xfr: { allow: ['127.0.0.1'] } });
    dir = mkdtempSync(join(tmpdir(), 'nexus-zonemd-'));
  });
  afterAll(async () => {
    await srv?.close();
    await f?.p.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(!hasLdns)('the unsigned BIND export: ZONEMD verifies (-Z); one record changed afterwards fails', async () => {
    const file = join(dir, 'unsigned.zone');
    const text = await exportZone(f.p.store, Z);
    writeFileSync(file, text);
    const ok = ldns(file, '-Z');
    expect(ok.out).toContain('Zone is verified and complete');
    expect(ok.status, ok.out).toBe(0);
    const tampered = join(dir, 'unsigned-tampered.zone');
    expect(text).toMatch(/\tIN\tA\t192\.0\.2\.7$/m);
    writeFileSync(tampered, text.replace(/\tIN\tA\t192\.0\.2\.7$/m, '\tIN\tA\t192.0.2.66'));
    const bad = ldns(tampered, '-Z');
    expect(bad.status).not.toBe(0);
    expect(bad.out).toMatch(/ZONEMD/);
  });

  it.skipIf(!hasLdns)('the signed export: DNSSEC and a signed ZONEMD verify (-ZZ); unsigned glue changed afterwards fails on the digest', async () => {
    const file = join(dir, 'signed.zone');
    const text = await exportZone(f.p.store, Z, { dnssec: new DnssecKeyring(f.p.store, f.p.dataDir) });
    writeFileSync(file, text);
    const ok = ldns(file, '-ZZ');
    expect(ok.out).toContain('Zone is verified and complete');
    expect(ok.status, ok.out).toBe(0);
    // Glue is not signed (RRSIGs cannot catch it): only the ZONEMD does.
    const glue = /^ns1\.sub\.imvu001\.world\.\t\d+\tIN\tA\t(\S+)$/m.exec(text);
    expect(glue).not.toBeNull();
    const tampered = join(dir, 'signed-tampered.zone');
    writeFileSync(tampered, text.replace(glue![0], glue![0].replace(glue![1]!, '192.0.2.250')));
    const bad = ldns(tampered, '-ZZ');
    expect(bad.status).not.toBe(0);
    expect(bad.out).toMatch(/ZONEMD/);
  });

  it.skipIf(!hasKnotd)('knotd as a secondary with zonemd-verify: the transferred zone verifies, after a change too', async () => {
    const port = await freePort();
    const knot = startKnot({ port, primary: { port: srv.port }, zones: [Z], zonemdVerify: true });
    try {
      await eventually(async () => expect(knot.log()).toMatch(/ZONEMD, verification successful/), 10_000).catch((err: unknown) => {
        throw new Error(`no ZONEMD verification by Knot:\n${knot.log()}\n${String(err)}`);
      });
      expect(knot.log()).not.toMatch(/ZONEMD, verification failed/);
      // A change: Knot refreshes (its refresh forced, no NOTIFY configured here) and verifies the new zone.
      await f.add('knot-change', 'A', '192.0.2.124');
      await srv.view.refresh(true);
      spawnSync('knotc', ['-c', knot.configFile, 'zone-refresh', Z], { encoding: 'utf8' });
      await eventually(async () => expect(knot.log().match(/ZONEMD, verification successful/g)?.length ?? 0).toBeGreaterThanOrEqual(2), 10_000).catch((err: unknown) => {
        throw new Error(`Knot did not verify the changed zone:\n${knot.log()}\n${String(err)}`);
      });
      expect(knot.log()).not.toMatch(/ZONEMD, verification failed/);
    } finally {
      await knot.stop();
    }
  }, 30_000);

  it.skipIf(!hasLdns)("the zone as AXFR'd verifies (-ZZ and our verifier), and a ZONEMD query gets the same record, signed", async () => {
    const rs = await axfr(srv.port, Z);
    expect(rs.filter((r) => r.type === ZONEMD)).toHaveLength(1);
    expect(verifyZonemd(Z, rs)).toMatchObject({ ok: true });
    const file = join(dir, 'axfr.zone');
    writeFileSync(file, rs.map(rrText).join('\n') + '\n');
    const ok = ldns(file, '-ZZ');
    expect(ok.out).toContain('Zone is verified and complete');
    expect(ok.status, ok.out).toBe(0);
    const asked = decode((await udpExchange(srv.port, query(Z, ZONEMD, { edns: 1232, do: true })))!);
    expect(asked.answers!.map((a) => a.type)).toEqual([ZONEMD, 'RRSIG']);
    expect((asked.answers![0] as unknown as { data: Buffer }).data).toEqual((rs.find((r) => r.type === ZONEMD) as unknown as { data: Buffer }).data);

    // A change to the zone moves the serial and the digest; the new transfer verifies again.
    await f.add('zonemd-change', 'A', '192.0.2.123');
    await srv.view.refresh(true);
    const after = await axfr(srv.port, Z);
    const zm = (a: Answer[]) => (a.find((r) => r.type === ZONEMD) as unknown as { data: Buffer }).data;
    expect(zm(after).equals(zm(rs))).toBe(false);
    writeFileSync(file, after.map(rrText).join('\n') + '\n');
    expect(ldns(file, '-ZZ').status).toBe(0);
    expect(readFileSync(file, 'utf8')).toContain('zonemd-change.imvu001.world.');
  });
});
