import { afterEach, describe, expect, it } from 'vitest';
import { decodeEntry } from '../core/ledger/ledger.ts';
import { verifyDataDir } from '../core/policy/verify.ts';
import { deniedBy, testPlatform, type TestPlatform } from '../core/testing.ts';
import { provisioner } from '../imvu/provision.ts';
import { ZoneJournal } from './dns-authority/journal.ts';
import { readZone } from './dns-authority/xfr.ts';
import { ResignScheduler } from './resign.ts';

// `dnssec.resign`: platform only (gate 17), for a hosted zone with a DNSSEC key (gate 4); it moves
// the zone's serial and nothing else. The scheduler submits it for signed zones left unchanged.

const Z = 'imvu001.world';
let p: TestPlatform | undefined;

afterEach(async () => {
  await p?.cleanup();
  p = undefined;
});

/** A platform whose IMVUs get DKIM and DNSSEC keys as in production, with two IMVUs. */
async function signedPlatform() {
  p = await testPlatform({ provision: provisioner });
  const alice = await p.register('alice', 'creator');
  const bob = await p.register('bob', 'creator');
  expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
  expect((await p.as(bob, 'imvu.create', { name: 'Shop', owner: bob.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
  return { p, alice, bob };
}

const resign = (q: TestPlatform, zone: string) => q.chokepoint.submit(q.chokepoint.platformCommand('dnssec.resign', { zone }));

async function entries(q: TestPlatform) {
  return (await q.store.readEntries(0, await q.store.ledgerSize())).map((b) => decodeEntry(b));
}

describe('dnssec.resign through the chokepoint', () => {
  it('is refused from anyone but the platform (gate 17) and for an unknown zone (gate 4); allowed, it bumps the serial only and the data directory verifies', async () => {
    const { p, alice } = await signedPlatform();
    const admin = await p.register('ops', 'admin');
    const before = (await readZone(p.store, Z))!;
    expect(deniedBy(await p.as(alice, 'dnssec.resign', { zone: Z }))).toEqual([17]);
    expect(deniedBy(await p.as(admin, 'dnssec.resign', { zone: Z }))).toEqual([17]);
    expect(deniedBy(await resign(p, 'nowhere.example'))).toEqual([4]);
    expect(deniedBy(await p.as(admin, 'dnssec.resign', { zone: Z, extra: 1 }))).toEqual([0]);
    expect((await readZone(p.store, Z))!.serial).toBe(before.serial);

    const r = await resign(p, Z);
    expect(r.allowed, JSON.stringify(r.gates)).toBe(true);
    const after = (await readZone(p.store, Z))!;
    expect(after.serial).toBe(before.serial + 1);
    expect(after.records).toEqual(before.records);
    expect((await readZone(p.store, 'imvu002.world'))!.serial).toBe(before.serial);
    const e = (await entries(p))[r.index]!;
    expect(e.command.command).toMatchObject({ type: 'dnssec.resign', actor: p.platformId, body: { zone: Z } });

    // IXFR: the journal follows the serial (an empty difference); a signed zone still goes out whole.
    const j = new ZoneJournal(p.store);
    expect(await j.plan(Z, before.serial, { serial: after.serial, records: after.records })).toMatchObject({ kind: 'full', reason: 'signed zone' });
    expect(j.serialOf(Z)).toBe(after.serial);
    expect(j.deltas(Z).at(-1)).toEqual({ from: before.serial, to: after.serial, deleted: [], added: [] });

    await p.close();
    const v = await verifyDataDir(p.dataDir);
    expect(v.problems).toEqual([]);
    expect(v.ok).toBe(true);
  });

  it('is refused for a hosted zone without a DNSSEC key (gate 4)', async () => {
    p = await testPlatform();
    const alice = await p.register('alice', 'creator');
    expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    const r = await resign(p, Z);
    expect(deniedBy(r)).toEqual([4]);
    expect(r.gates.find((g) => g.gate === 4)!.reason).toMatch(/no DNSSEC key/);
  });
});

describe('ResignScheduler', () => {
  it('re-signs the signed zones whose serial has not moved for afterMs, once, as the platform', async () => {
    const { p, alice } = await signedPlatform();
    let now = Date.now();
    const errors: unknown[] = [];
    const s = new ResignScheduler({ store: p.store, submit: (zone) => resign(p, zone), afterMs: 60_000, now: () => now, onError: (e) => errors.push(e) });
    // Everything just changed.
    expect(await s.check()).toEqual([]);
    // A minute later both zones are due, and are re-signed once.
    now = Date.now() + 65_000;
    expect(await s.check()).toEqual([Z, 'imvu002.world']);
    const serial = (await readZone(p.store, Z))!.serial;
    expect((await p.as(alice, 'dns.record.add', { zone: Z, name: 'www', type: 'A', value: '192.0.2.7' })).allowed).toBe(true);
    // Half a minute later neither is: one was re-signed, the other re-signed and changed.
    now = Date.now() + 30_000;
    expect(await s.check()).toEqual([]);
    expect((await readZone(p.store, Z))!.serial).toBe(serial + 1);
    const resigns = (await entries(p)).filter((e) => e.command.command.type === 'dnssec.resign');
    expect(resigns.map((e) => [e.command.command.body.zone, e.command.command.actor, e.decision.allowed])).toEqual([
      [Z, p.platformId, true],
      ['imvu002.world', p.platformId, true],
    ]);
    // A new scheduler (a restarted daemon) reads the window from the ledger: nothing is due.
    const fresh = new ResignScheduler({ store: p.store, submit: (zone) => resign(p, zone), afterMs: 60_000, now: () => now });
    expect(await fresh.check()).toEqual([]);
    await s.close();
    expect(await s.check()).toEqual([]);
    expect(errors).toEqual([]);
  });
});
