import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testPlatform, type Actor, type TestPlatform } from '../../core/testing.ts';
import { startDnsServer, type DnsServer } from '../../domains/dns-authority/server.ts';
import { provisioner } from '../../imvu/provision.ts';
import { ATTRIBUTION_HEADER, dkimSigner, prepare, splitMessage } from './dkim.ts';

// Signatures checked by a verifier we did not write (python3-dkim), whose key look-ups go to our
// own authoritative server on loopback serving the IMVU's zone from the projections.

const VERIFY = join(import.meta.dirname, '..', '..', '..', 'test', 'support', 'dkimverify-dig.py');
let p: TestPlatform;
let alice: Actor;
let dns: DnsServer;

beforeAll(async () => {
  p = await testPlatform({ provision: provisioner });
  alice = await p.register('alice', 'creator');
  expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
  dns = await startDnsServer({ store: p.store, address: '127.0.0.1', port: 0, rrl: false });
});
afterAll(async () => {
  await dns?.close();
  await p?.cleanup();
});

// Asynchronous: the DNS server answering the verifier runs in this process.
function dkimverify(message: Buffer): Promise<{ ok: boolean; out: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn('/usr/bin/python3', [VERIFY, '127.0.0.1', String(dns.port)], { timeout: 30_000 });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('error', reject);
    c.on('close', (code) => resolve({ ok: code === 0, out }));
    c.stdin.end(message);
  });
}

const original = Buffer.from(
  [
    'From: Creator <creator@imvu001.world>',
    'To: someone@outside.test',
    'Subject: a signed message',
    'X-Nexus-Attribution: identity=nx1forged; imvu=IMVU-999',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'Hello,',
    'a line with trailing spaces   ',
    '',
  ].join('\n'),
);

describe('DKIM signing of outbound mail', () => {
  let signed: Buffer;
  beforeAll(async () => {
    signed = await dkimSigner(p.dataDir, p.store)({ imvu: 'IMVU-001', identity: alice.id, raw: original });
  });

  it('is verified by python3-dkim against our DNS server: d= the IMVU domain, s= its active selector', async () => {
    const dig = await promisify(execFile)('dig', ['@127.0.0.1', '-p', String(dns.port), '+short', 'TXT', 'nexus1._domainkey.imvu001.world']);
    expect(dig.stdout).toMatch(/v=DKIM1; k=rsa; p=/);
    const r = await dkimverify(signed);
    expect(r.out).toContain('signature ok');
    expect(r.ok).toBe(true);
    const sig = splitMessage(signed).fields[0]!;
    expect(sig).toMatch(/^DKIM-Signature:/);
    expect(sig.replace(/\s+/g, '')).toMatch(/d=imvu001.world;/);
    expect(sig.replace(/\s+/g, '')).toMatch(/s=nexus1;/);
  });

  it('covers the attribution header (ours, the forged one dropped), From, To, Subject, Date and Message-ID', () => {
    const { fields } = splitMessage(signed);
    const h = /\bh=([^;]+)/.exec(fields[0]!.replace(/\s+/g, ''))![1]!.toLowerCase().split(':');
    for (const name of ['from', 'to', 'subject', 'date', 'message-id', 'x-nexus-attribution']) expect(h).toContain(name);
    const attribution = fields.filter((f) => f.toLowerCase().startsWith(`${ATTRIBUTION_HEADER.toLowerCase()}:`));
    expect(attribution).toEqual([`${ATTRIBUTION_HEADER}: identity=${alice.id}; imvu=IMVU-001`]);
    expect(fields.some((f) => /^Date: /.test(f))).toBe(true);
    expect(fields.some((f) => /^Message-ID: <[^@>]+@imvu001\.world>$/.test(f))).toBe(true);
  });

  it('fails verification when the attribution, the subject or the body is changed in transit', async () => {
    const text = signed.toString('latin1');
    const cases = [
      text.replace(`identity=${alice.id}`, 'identity=nx1someoneelse'),
      text.replace('Subject: a signed message', 'Subject: a changed message'),
      text.replace('Hello,', 'Hullo,'),
      // A second attribution header below ours (the one verifiers check) breaks it too.
      text.replace('\r\n\r\nHello,', `\r\n${ATTRIBUTION_HEADER}: identity=nx1evil; imvu=IMVU-001\r\n\r\nHello,`),
    ];
    for (const c of cases) {
      const r = await dkimverify(Buffer.from(c, 'latin1'));
      // The key was found: the signature itself failed.
      expect(r.out).toContain('signature verification failed');
      expect(r.out).toContain('key found');
      expect(r.ok).toBe(false);
    }
  });

  it('refuses to sign for an IMVU without an active key rather than send unsigned mail', async () => {
    await expect(dkimSigner(p.dataDir, p.store)({ imvu: 'IMVU-404', identity: alice.id, raw: original })).rejects.toThrow(/no active DKIM key/);
  });

  it('prepare() keeps the sender headers, normalises line ends to CRLF and bounds the header section', () => {
    const out = prepare(original, alice.id, 'IMVU-001', 'imvu001.world').toString('latin1');
    expect(out).not.toMatch(/[^\r]\n/);
    expect(out).toContain('Subject: a signed message\r\n');
    expect(() => prepare(Buffer.from(`X: ${'a'.repeat(300 * 1024)}\r\n\r\nbody`), alice.id, 'IMVU-001', 'imvu001.world')).toThrow(/too large/);
  });
});
