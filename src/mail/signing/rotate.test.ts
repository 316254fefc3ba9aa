import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testPlatform, type Actor, type TestPlatform } from '../../core/testing.ts';
import { DKIM_RETIRE_S, DKIM_TTL_S } from '../../core/policy/gates/platform-powers.ts';
import { startDnsServer, type DnsServer } from '../../domains/dns-authority/server.ts';
import { provisioner } from '../../imvu/provision.ts';
import { dkimSigner } from './dkim.ts';
import { selectorKeyPath } from './keys.ts';
import { ROTATIONS_UNDER_WAY, dkimRotateStep } from './rotate.ts';

// A DKIM rotation through the gates, watched with dig against our DNS server and checked with
// python3-dkim: both selectors published during the overlap, the new one signing only after the
// record TTL, the old one kept until its retention, then gone from the zone and from disk.

const VERIFY = join(import.meta.dirname, '..', '..', '..', 'test', 'support', 'dkimverify-dig.py');
let offset = 0;
let p: TestPlatform;
let alice: Actor;
let dns: DnsServer;

beforeAll(async () => {
  p = await testPlatform({ provision: provisioner, clock: () => new Date(Date.now() + offset) });
  alice = await p.register('alice', 'creator');
  expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
  dns = await startDnsServer({ store: p.store, address: '127.0.0.1', port: 0, rrl: false, refreshMs: 20 });
});
afterAll(async () => {
  await dns?.close();
  await p?.cleanup();
});

const txt = async (selector: string) =>
  (await promisify(execFile)('dig', ['@127.0.0.1', '-p', String(dns.port), '+short', 'TXT', `${selector}._domainkey.imvu001.world`])).stdout.trim();

function verify(message: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn('/usr/bin/python3', [VERIFY, '127.0.0.1', String(dns.port)], { timeout: 30_000 });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('error', reject);
    c.on('close', () => resolve(out.trim()));
    c.stdin.end(message);
  });
}

const sign = () => dkimSigner(p.dataDir, p.store)({ imvu: 'IMVU-001', identity: alice.id, raw: Buffer.from('From: <creator@imvu001.world>\r\nTo: <a@b.test>\r\nSubject: s\r\n\r\nx\r\n') });
const selectorOf = (m: Buffer) => /\bs=(nexus\d+);/.exec(m.toString().replace(/\s+/g, ''))![1];
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('nexus mail DKIM rotation', () => {
  it('publishes beside, activates after the TTL, removes after the retention; mail verifies throughout', { timeout: 60_000 }, async () => {
    const before = await sign();
    expect(selectorOf(before)).toBe('nexus1');

    const s1 = await dkimRotateStep(p, 'IMVU-001');
    expect(s1).toMatchObject({ step: 'published', selector: 'nexus2', receipt: { allowed: true } });
    await wait(100);
    expect(await txt('nexus1')).toMatch(/v=DKIM1/);
    expect(await txt('nexus2')).toMatch(/v=DKIM1/);
    // Not yet: the new selector does not sign before its record's TTL has passed.
    expect(selectorOf(await sign())).toBe('nexus1');
    expect(await dkimRotateStep(p, 'IMVU-001')).toMatchObject({ step: 'waiting', what: 'activate' });
    // Asked early all the same (a caller's clock ahead of the ledger): the gate refuses and records it.
    const early = await dkimRotateStep(p, 'IMVU-001', new Date(Date.now() + 2 * DKIM_TTL_S * 1000));
    expect(early).toMatchObject({ step: 'activated', receipt: { allowed: false } });

    offset += DKIM_TTL_S * 1000 + 1000;
    expect(await dkimRotateStep(p, 'IMVU-001', new Date(Date.now() + offset))).toMatchObject({ step: 'activated', selector: 'nexus2', receipt: { allowed: true } });
    const after = await sign();
    expect(selectorOf(after)).toBe('nexus2');
    expect(await verify(after)).toBe('signature ok');
    // Mail signed before the switch (still queued somewhere) verifies: nexus1 stays published.
    expect(await verify(before)).toBe('signature ok');

    expect(await dkimRotateStep(p, 'IMVU-001', new Date(Date.now() + offset))).toMatchObject({ step: 'waiting', what: 'remove', selector: 'nexus1' });
    offset += DKIM_RETIRE_S * 1000 + 1000;
    expect(await dkimRotateStep(p, 'IMVU-001', new Date(Date.now() + offset))).toMatchObject({ step: 'removed', selector: 'nexus1', receipt: { allowed: true } });
    await wait(100);
    expect(await txt('nexus1')).toBe('');
    expect(await txt('nexus2')).toMatch(/v=DKIM1/);
    expect(existsSync(selectorKeyPath(p.dataDir, 'IMVU-001', 'nexus1'))).toBe(false);
    expect(await verify(await sign())).toBe('signature ok');
  });

  it('finds the rotations under way through the state index, not by reading every IMVU\'s keys', async () => {
    const plan = (await p.store.all<{ detail: string }>(`EXPLAIN QUERY PLAN ${ROTATIONS_UNDER_WAY}`)).map((r) => r.detail).join('\n');
    expect(plan).toContain('INDEX dkim_keys_state');
    expect(plan).not.toMatch(/SCAN dkim_keys\b(?! USING)/);
  });
});
