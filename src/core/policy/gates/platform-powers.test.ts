import { generateKeyPairSync } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { provisioner } from '../../../imvu/provision.ts';
import { decodeEntry } from '../../ledger/ledger.ts';
import { deniedBy, testPlatform, type TestPlatform } from '../../testing.ts';
import type { Json } from '../../types.ts';
import type { Receipt } from '../chokepoint.ts';
import { verifyStore } from '../verify.ts';
import { DKIM_RETIRE_S, DKIM_TTL_S, REFUSAL_NOTICE_INTERVAL_MS } from './platform-powers.ts';

// Attacks by the holder of the platform key (a hostile operator) on an IMVU, performed through the
// chokepoint: what the platform may sign about an IMVU is an enumerated list, timed by entry times.

let p: TestPlatform | undefined;
afterEach(async () => {
  await p?.cleanup();
  p = undefined;
});

/** A platform whose clock the test moves forward (entry times never go back). */
async function setup(provision = false) {
  let offset = 0;
  const clock = () => new Date(Date.now() + offset);
  p = await testPlatform({ clock, ...(provision ? { provision: provisioner } : {}) });
  const alice = await p.register('alice', 'creator');
  const created = await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' });
  expect(created.allowed).toBe(true);
  const t = p;
  return {
    p: t,
    alice,
    advance: (seconds: number) => (offset += seconds * 1000),
    /** A command signed with the platform key, as a hostile operator can sign anything. */
    platform: (type: Parameters<TestPlatform['chokepoint']['platformCommand']>[0], body: { [k: string]: Json }) => t.chokepoint.submit(t.chokepoint.platformCommand(type, body)),
  };
}

const dkimKey = () => generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'der' }).toString('base64');
const notices = (t: TestPlatform, imvu = 'IMVU-001') =>
  t.store.all<{ entry: number; about: number; gate: number; message: string; source: string | null; recipient: string }>(
    'SELECT entry, about, gate, message, source, recipient FROM notifications WHERE imvu = ? ORDER BY entry',
    [imvu],
  );
const txt = (t: TestPlatform, name: string) => t.store.all<{ value: string }>("SELECT value FROM records WHERE name = ? AND type = 'TXT'", [name]);
/** The notice the platform appended after `r` (its first follow-up), as a ledger entry. */
const noticeOf = async (t: TestPlatform, r: Receipt) => {
  const f = r.followUps.find(() => true);
  expect(f, 'a follow-up notice').toBeDefined();
  const e = decodeEntry((await t.store.readEntries(f!.index, f!.index + 1))[0]!);
  expect(e.command.command.type).toBe('notify.creator');
  return e.command.command.body;
};

describe("the platform's powers over an IMVU (gate 17)", () => {
  it('a backdoor DKIM key is refused: only the key provisioned at creation, then timed rotations to the next selector', async () => {
    const { p, alice, advance, platform } = await setup(true);
    const zone = 'imvu001.world';
    expect(await txt(p, `nexus1._domainkey.${zone}`)).toHaveLength(1);

    // The attack: an extra selector with the operator's key, published next to the IMVU's own.
    const attacker = dkimKey();
    const backdoor = await platform('dkim.publish', { imvu: 'IMVU-001', selector: 'backdoor', publicKey: attacker });
    expect(deniedBy(backdoor)).toEqual([17]);
    expect(backdoor.gates.find((g) => g.gate === 17)!.reason).toMatch(/publishes selector nexus2 beside nexus1, not backdoor/);
    expect(await txt(p, `backdoor._domainkey.${zone}`)).toEqual([]);
    // ... nor may the operator replace the key in place.
    expect(deniedBy(await platform('dkim.publish', { imvu: 'IMVU-001', selector: 'nexus1', publicKey: attacker }))).toEqual([17]);
    // The creator hears of the refused attempt.
    const refused = await noticeOf(p, backdoor);
    expect(refused).toMatchObject({ recipient: alice.id, gate: 17, source: p.platformId });

    // A rotation: nexus2 is published beside nexus1 (both in the zone), the creator is notified.
    const rotate = await platform('dkim.publish', { imvu: 'IMVU-001', selector: 'nexus2', publicKey: dkimKey() });
    expect(rotate.allowed).toBe(true);
    expect(await noticeOf(p, rotate)).toMatchObject({ recipient: alice.id, gate: 17, message: expect.stringMatching(/platform performed dkim.publish on IMVU-001/) });
    expect(await txt(p, `nexus1._domainkey.${zone}`)).toHaveLength(1);
    expect(await txt(p, `nexus2._domainkey.${zone}`)).toHaveLength(1);
    // One rotation at a time.
    expect(deniedBy(await platform('dkim.publish', { imvu: 'IMVU-001', selector: 'nexus3', publicKey: dkimKey() }))).toEqual([17]);

    // Timed by entry times: the new selector signs only after the record's TTL, the old one goes only after the overlap.
    expect(deniedBy(await platform('dkim.activate', { imvu: 'IMVU-001', selector: 'nexus2' }))).toEqual([17]);
    advance(DKIM_TTL_S);
    expect((await platform('dkim.activate', { imvu: 'IMVU-001', selector: 'nexus2' })).allowed).toBe(true);
    const keys = await p.store.all('SELECT selector, state FROM dkim_keys WHERE imvu = ? ORDER BY selector', ['IMVU-001']);
    expect(keys).toEqual([
      { selector: 'nexus1', state: 'retired' },
      { selector: 'nexus2', state: 'active' },
    ]);
    expect(deniedBy(await platform('dkim.remove', { imvu: 'IMVU-001', selector: 'nexus2' }))).toEqual([17]); // the active key never goes
    expect(deniedBy(await platform('dkim.remove', { imvu: 'IMVU-001', selector: 'nexus1' }))).toEqual([17]); // not before the overlap
    expect(await txt(p, `nexus1._domainkey.${zone}`)).toHaveLength(1);
    advance(DKIM_RETIRE_S);
    expect((await platform('dkim.remove', { imvu: 'IMVU-001', selector: 'nexus1' })).allowed).toBe(true);
    expect(await txt(p, `nexus1._domainkey.${zone}`)).toEqual([]);
    expect(await txt(p, `nexus2._domainkey.${zone}`)).toHaveLength(1);

    // The verifier reaches every decision again from the ledger alone.
    expect((await verifyStore(p.store)).problems).toEqual([]);
  });

  it("anything outside the list is refused: the platform cannot suspend, scale, reroute, edit DNS, add members or record revenue for an IMVU", async () => {
    const { p, alice, platform } = await setup();
    const stranger = await p.register('mallory', 'creator');
    const attempts: [Parameters<typeof platform>[0], { [k: string]: Json }][] = [
      ['imvu.suspend', { imvu: 'IMVU-001', reason: 'because' }],
      ['imvu.scale', { imvu: 'IMVU-001', cpu_cores: 4 }],
      ['route.set', { imvu: 'IMVU-001', policy: { public: [{ path: '/*', backend: 'evil' }], private: [], restricted: [] } }],
      ['dns.record.add', { zone: 'imvu001.world', name: 'www', type: 'A', value: '203.0.113.9' }],
      ['member.add', { imvu: 'IMVU-001', identity: stranger.id }],
      ['revenue.record', { imvu: 'IMVU-001', amount: '100', currency: 'USD' }],
      ['notify.creator', { imvu: 'IMVU-001', recipient: stranger.id, about: 0, gate: 17, message: 'a notice sent to someone else' }],
    ];
    for (const [type, body] of attempts) {
      const r = await platform(type, body);
      expect(r.allowed, type).toBe(false);
      expect(deniedBy(r), type).toContain(17);
    }
    expect(await p.store.get("SELECT status FROM imvus WHERE id = 'IMVU-001'")).toEqual({ status: 'active' });
    expect(await p.store.get("SELECT 1 AS x FROM members WHERE imvu = 'IMVU-001'")).toBeUndefined();
    // The creator heard of it (one aggregated notice for the source: the platform).
    const n = await notices(p);
    expect(n).toHaveLength(1);
    expect(n[0]).toMatchObject({ recipient: alice.id, source: p.platformId });
  });

  it('a stranger flooding refused attempts produces one notice per interval, which says how many; a verifier checks the rule', async () => {
    const { p, alice, advance, platform } = await setup();
    const mallory = await p.register('mallory', 'creator');
    const evil = { public: [{ path: '/*', backend: 'evil' }], private: [], restricted: [] };
    // The attack: 200 refused route changes at once (today: 200 notifications in a few seconds).
    const flood = await Promise.all(Array.from({ length: 200 }, () => p.as(mallory, 'route.set', { imvu: 'IMVU-001', policy: evil })));
    expect(flood.every((r) => !r.allowed && deniedBy(r).includes(14))).toBe(true);
    // Every attempt is recorded; the creator got one notice.
    expect(await p.store.ledgerSize()).toBeGreaterThanOrEqual(flood[199]!.index + 1);
    let n = await notices(p);
    expect(n).toHaveLength(1);
    expect(n[0]).toMatchObject({ recipient: alice.id, source: mallory.id, gate: 14, about: flood[0]!.index });

    // Another identity's refusals are notified on their own.
    const ops = await p.register('ops', 'admin');
    expect(deniedBy(await p.as(ops, 'imvu.scale', { imvu: 'IMVU-001', cpu_cores: 1 }))).toEqual([15]);
    n = await notices(p);
    expect(n.map((x) => x.source)).toEqual([mallory.id, ops.id]);

    // The platform itself cannot send a second notice for mallory inside the interval: the gate checks it from the ledger.
    const early = await platform('notify.creator', { imvu: 'IMVU-001', recipient: alice.id, about: flood[1]!.index, gate: 14, message: 'again', source: mallory.id, attempts: 1 });
    expect(deniedBy(early)).toEqual([17]);

    // After the interval, the next refusal brings one notice counting every attempt since the last notice.
    advance(REFUSAL_NOTICE_INTERVAL_MS / 1000);
    const next = await p.as(mallory, 'route.set', { imvu: 'IMVU-001', policy: evil });
    expect(next.allowed).toBe(false);
    const body = await noticeOf(p, next);
    expect(body).toMatchObject({ source: mallory.id, attempts: 200, about: next.index });
    expect(String(body.message)).toMatch(/200 refused attempts by mallory \(creator\)/);
    expect(await notices(p)).toHaveLength(3);

    expect((await verifyStore(p.store)).problems).toEqual([]);
  });
});
