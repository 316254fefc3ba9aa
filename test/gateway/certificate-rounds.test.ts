// What the served-certificate check costs: one runtime API command per certificate read back. A
// creator's view of its IMVU asks about that IMVU's certificate only, and the periodic check reads
// back at most `certificateCheckBatch` certificates, the next ones in turn: at 100,000 IMVUs a
// check is not 100,000 commands every 30 s, and a certificate replaced by hand is still found
// within one round (IMVUs / batch checks), reverted and alarmed.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testPlatform, type TestPlatform } from '../../src/core/testing.ts';
import { Gateway } from '../../src/network/gateway/gateway.ts';
import { ensureLocalCa, issueLocal } from '../../src/network/gateway/certs.ts';
import { runtimeCommand } from '../../src/network/gateway/runtime.ts';
import { createImvu, freePort, haveHaproxy, recordCommands } from './harness.ts';

const RANGE = `10.209.${process.pid % 256}.0/24`;

let p: TestPlatform;
let gw: Gateway;
const ids: string[] = [];
/** The runtime API commands the gateway sent, as it sent them. */
const sent: string[] = [];
const certReads = () => sent.filter((c) => c.startsWith('show ssl cert '));

describe.skipIf(!haveHaproxy)('served certificates: read back per IMVU asked about, in turns on the timer', () => {
  beforeAll(async () => {
    p = await testPlatform();
    const alice = await p.register('alice', 'creator');
    for (const name of ['one', 'two', 'three']) ids.push((await createImvu(p, alice, name)).id);
    gw = new Gateway({ platform: p, httpsBind: `127.0.0.1:${await freePort()}`, range: RANGE, checkIntervalMs: 3_600_000, certificateCheckBatch: 1 });
    await gw.start();
    recordCommands(gw, sent);
  }, 60_000);

  afterAll(async () => {
    vi.restoreAllMocks();
    await gw?.stop();
    await p?.cleanup();
  });

  it("one IMVU's served certificate is read with one command, about its own file", async () => {
    sent.length = 0;
    const [c] = await gw.servedCertificates([ids[1]!]);
    expect(c).toMatchObject({ imvu: ids[1], equal: true, fileIsLedger: true });
    expect(certReads()).toEqual([`show ssl cert ${gw.certFile(ids[1]!)}`]);
  });

  it('each check reads back one certificate (the batch), the next in turn; one replaced by hand is found within a round', async () => {
    const victim = ids[2]!;
    const other = mkdtempSync(join(tmpdir(), 'nexus-other-ca-'));
    try {
      const names = (await gw.servedCertificates([victim]))[0]!.names;
      await issueLocal(ensureLocalCa(join(other, 'ca')), names, join(other, 'forged.pem'));
      const file = gw.certFile(victim);
      expect(await runtimeCommand(gw.layout.adminSocket, `set ssl cert ${file}`, { payload: readFileSync(join(other, 'forged.pem'), 'utf8') })).toMatch(/Transaction (created|updated)/);
      expect(await runtimeCommand(gw.layout.adminSocket, `commit ssl cert ${file}`)).toMatch(/Success/);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
    expect((await gw.servedCertificates([victim]))[0]!.equal).toBe(false);
    const alarmsBefore = gw.alarms.length;
    const seen: string[] = [];
    for (let check = 0; check < ids.length && gw.alarms.length === alarmsBefore; check++) {
      sent.length = 0;
      await gw.verify();
      const reads = certReads();
      // One read back of the turn's certificate, and one more after a revert.
      expect(reads.length).toBe(gw.alarms.length === alarmsBefore ? 1 : 2);
      seen.push(reads[0]!);
    }
    expect(gw.alarms.length).toBe(alarmsBefore + 1);
    expect(gw.alarms.at(-1)!.imvus).toEqual([victim]);
    expect(gw.alarms.at(-1)!.detail).toMatch(/reverted to the ledger's certificate/);
    // Turns never repeat within a round.
    expect(new Set(seen).size).toBe(seen.length);
    expect((await gw.servedCertificates([victim]))[0]!.equal).toBe(true);
    // A whole round later, nothing more to report.
    for (let check = 0; check < ids.length; check++) await gw.verify();
    expect(gw.alarms.length).toBe(alarmsBefore + 1);
  }, 60_000);

  it("a certificate file rewritten in place, its size and mtime kept, is not taken for the ledger's (the fingerprints are read again)", async () => {
    const id = ids[0]!;
    const file = gw.certFile(id);
    expect((await gw.servedCertificates([id]))[0]).toMatchObject({ fileIsLedger: true, equal: true });
    const original = readFileSync(file, 'utf8');
    const before = statSync(file, { bigint: true });
    const other = mkdtempSync(join(tmpdir(), 'nexus-other-ca-'));
    try {
      const names = (await gw.servedCertificates([id]))[0]!.names;
      // Another CA's certificate for the same names, padded to the same length (an ECDSA signature's length varies by a byte or two).
      let forged = '';
      for (let i = 0; i < 20 && forged.length !== original.length; i++) {
        await issueLocal(ensureLocalCa(join(other, 'ca')), names, join(other, 'forged.pem'));
        forged = readFileSync(join(other, 'forged.pem'), 'utf8');
        if (forged.length < original.length) forged += '\n'.repeat(original.length - forged.length);
      }
      expect(forged.length).toBe(original.length);
      writeFileSync(file, forged);
      // The mtime set back to the nanosecond (touch), as someone hiding the rewrite would.
      const ns = before.mtimeNs;
      execFileSync('touch', ['-m', '-d', `@${ns / 1_000_000_000n}.${String(ns % 1_000_000_000n).padStart(9, '0')}`, file]);
      const after = statSync(file, { bigint: true });
      expect([after.ino, after.size, after.mtimeNs]).toEqual([before.ino, before.size, before.mtimeNs]);
      expect((await gw.servedCertificates([id]))[0]!.fileIsLedger).toBe(false);
    } finally {
      writeFileSync(file, original);
      rmSync(other, { recursive: true, force: true });
    }
    expect((await gw.servedCertificates([id]))[0]).toMatchObject({ fileIsLedger: true, equal: true });
  });
});
