// Names are allocated, proven and reserved (gates 0, 1, 3 and 4): the registry's names under the
// platform suffix cannot be claimed, public suffixes cannot be claimed, a claimed domain is pending
// (not exclusive, not a zone) until the platform records the proof, a pending claim lapses, a domain
// can be released, service identity names are the platform's, and no name has an empty label.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeEntry } from '../ledger/ledger.ts';
import { deniedBy, testPlatform, type Actor, type TestPlatform } from '../testing.ts';
import type { Json } from '../types.ts';
import { BODY_SCHEMAS } from './commands.ts';
import { challengeToken, CLAIM_TTL_MS, registryRefusal, RESERVED_IDENTITY_NAMES } from './naming.ts';
import { verifyStore } from './verify.ts';

let p: TestPlatform;
let alice: Actor;
let bob: Actor;
let carol: Actor;
/** Added to the real time: the platform clock, moved forward to let claims lapse. */
let offset = 0;
const now = () => new Date(Date.now() + offset);

beforeEach(async () => {
  offset = 0;
  p = await testPlatform({ clock: now });
  alice = await p.register('alice', 'creator');
  bob = await p.register('bob', 'creator');
  carol = await p.register('carol', 'creator');
});
afterEach(async () => p.cleanup());

const as = (actor: Actor, type: Parameters<TestPlatform['as']>[1], body: { [k: string]: Json }) => p.as(actor, type, body, { ts: now().toISOString() });
const create = (actor: Actor, name: string) => as(actor, 'imvu.create', { name, owner: actor.id, jurisdiction: 'US-CCPA' });
const reasons = (r: { gates: { status: string; reason?: string }[] }) => r.gates.filter((g) => g.status === 'deny').map((g) => g.reason ?? '');
const claimRow = (domain: string, imvu: string) =>
  p.store.get<{ token: string; expires_at: string; entry: number }>('SELECT token, expires_at, entry FROM domain_claims WHERE name = ? AND imvu = ?', [domain, imvu]);

/** What the platform records once its own look-up found `txt` at the challenge name. */
function verified(imvu: string, domain: string, txt: string[], name = `_nexus-challenge.${domain}`) {
  return p.chokepoint.submit(p.chokepoint.platformCommand('domain.verified', { imvu, domain, evidence: { name, txt } }));
}

async function prove(imvu: string, domain: string) {
  const claim = await claimRow(domain, imvu);
  if (!claim) throw new Error(`no claim of ${domain} by ${imvu}`);
  return verified(imvu, domain, ['v=spf1 -all', claim.token]);
}

describe('names under the platform suffix belong to the registry', () => {
  it('the attack: a creator claims imvu003.world before IMVU-003 exists; the claim is refused and imvu.create keeps working', async () => {
    await create(alice, 'A');
    await create(bob, 'B');
    const attack = await as(bob, 'domain.claim', { imvu: 'IMVU-002', domain: 'imvu003.world' });
    expect(deniedBy(attack)).toEqual([3]);
    expect(reasons(attack)[0]).toMatch(/imvu003\.world is allocated by the registry/);
    // The next creations get imvu003.world and imvu004.world, as allocated.
    for (const [who, name, id] of [[carol, 'C', 'IMVU-003'], [alice, 'A2', 'IMVU-004']] as const) {
      const r = await create(who, name);
      expect(r.allowed, JSON.stringify(r.gates)).toBe(true);
      const domain = `imvu${id.slice(5)}.world`;
      expect(await p.store.get('SELECT imvu, kind FROM domains WHERE name = ?', [domain])).toEqual({ imvu: id, kind: 'primary' });
    }
    expect(await p.store.get('SELECT COUNT(*) AS n FROM domain_claims')).toEqual({ n: 0 });
  });

  it('the suffix, ns*, platform names, _* and every other name under it are refused, with a reason that says which', async () => {
    await create(alice, 'A');
    const cases: [string, RegExp][] = [
      ['imvu001.world', /allocated by the registry to an IMVU/],
      ['shop.imvu001.world', /allocated by the registry to an IMVU/],
      ['imvu77.world', /allocated by the registry to an IMVU/],
      ['ns1.world', /reserved platform name/],
      ['ns.world', /reserved platform name/],
      ['www.world', /reserved platform name/],
      ['mail.world', /reserved platform name/],
      ['api.world', /reserved platform name/],
      ['gallery.world', /names under world are allocated by the registry/],
      ['deep.gallery.world', /names under world are allocated by the registry/],
    ];
    for (const [domain, why] of cases) {
      const r = await as(alice, 'domain.claim', { imvu: 'IMVU-001', domain });
      expect(deniedBy(r), domain).toEqual([3]);
      expect(reasons(r)[0], domain).toMatch(why);
    }
    // The suffix itself is one label here, which no claim can name (gate 0); a longer suffix is refused by rule.
    expect(deniedBy(await as(alice, 'domain.claim', { imvu: 'IMVU-001', domain: 'world' }))).toEqual([0]);
    expect(registryRefusal('nexus.example.com', 'nexus.example.com')).toMatch(/is the platform suffix/);
    expect(registryRefusal('example.com', 'nexus.example.com')).toMatch(/contains the platform suffix/);
    expect(registryRefusal('example.org', 'nexus.example.com')).toBeUndefined();
    // Underscore labels never pass the domain schema; the rule holds on its own all the same.
    expect(registryRefusal('_dmarc.world', 'world')).toMatch(/reserved platform name/);
    // Inside its own domain an IMVU adds records; it does not claim.
    const inside = await as(alice, 'dns.record.add', { zone: 'imvu001.world', name: 'shop', type: 'A', value: '192.0.2.1' });
    expect(inside.allowed).toBe(true);
  });
});

describe('public suffixes (Public Suffix List) cannot be claimed', () => {
  it('refuses co.uk, github.io, blogspot.com and gov.uk; a registrable domain under them is claimed pending proof', async () => {
    await create(alice, 'A');
    for (const domain of ['co.uk', 'github.io', 'blogspot.com', 'gov.uk', 's3.amazonaws.com']) {
      const r = await as(alice, 'domain.claim', { imvu: 'IMVU-001', domain });
      expect(deniedBy(r), domain).toEqual([3]);
      expect(reasons(r)[0], domain).toMatch(/public suffix/);
    }
    // A single label (com) is not even a domain name here.
    expect(deniedBy(await as(alice, 'domain.claim', { imvu: 'IMVU-001', domain: 'com' }))).toEqual([0]);
    for (const domain of ['gallery.co.uk', 'alice.github.io', 'shop.example.com']) expect((await as(alice, 'domain.claim', { imvu: 'IMVU-001', domain })).allowed, domain).toBe(true);
  });
});

describe('a claimed domain is pending until proven', () => {
  beforeEach(async () => {
    await create(alice, 'A');
    await create(bob, 'B');
  });

  it('pending: no domain, no zone, no records; the token is derived from the claim entry; not exclusive; the first to prove wins', async () => {
    const a = await as(alice, 'domain.claim', { imvu: 'IMVU-001', domain: 'gallery.example' });
    expect(a.allowed).toBe(true);
    expect(a.followUps).toEqual([]); // no DNSSEC key for an unproven zone
    const claimA = (await claimRow('gallery.example', 'IMVU-001'))!;
    expect(claimA.token).toBe(challengeToken(p.config.origin, a.index, 'IMVU-001', 'gallery.example'));
    expect(Date.parse(claimA.expires_at) - Date.parse(decodeEntry((await p.store.readEntries(a.index, a.index + 1))[0]!).at)).toBe(CLAIM_TTL_MS);
    expect(await p.store.get('SELECT 1 AS x FROM domains WHERE name = ?', ['gallery.example'])).toBeUndefined();
    expect(await p.store.get('SELECT 1 AS x FROM zones WHERE name = ?', ['gallery.example'])).toBeUndefined();
    const early = await as(alice, 'dns.record.add', { zone: 'gallery.example', name: 'www', type: 'A', value: '192.0.2.1' });
    expect(deniedBy(early)).toEqual([4]);
    expect(reasons(early)[0]).toMatch(/claimed but not proven/);
    // The same IMVU cannot claim it twice; another IMVU can, with a token of its own.
    expect(deniedBy(await as(alice, 'domain.claim', { imvu: 'IMVU-001', domain: 'gallery.example' }))).toEqual([0]);
    expect((await as(bob, 'domain.claim', { imvu: 'IMVU-002', domain: 'gallery.example' })).allowed).toBe(true);
    const claimB = (await claimRow('gallery.example', 'IMVU-002'))!;
    expect(claimB.token).not.toBe(claimA.token);

    // Bob's token does not prove Alice's claim, nor does evidence for another name, nor a creator's own say-so.
    expect(deniedBy(await verified('IMVU-001', 'gallery.example', [claimB.token]))).toEqual([3]);
    expect(deniedBy(await verified('IMVU-001', 'gallery.example', [claimA.token], '_nexus-challenge.other.example'))).toEqual([3]);
    expect(deniedBy(await verified('IMVU-001', 'gallery.example', []))).toEqual([3]);
    const self = await as(alice, 'domain.verified', { imvu: 'IMVU-001', domain: 'gallery.example', evidence: { name: '_nexus-challenge.gallery.example', txt: [claimA.token] } });
    expect(deniedBy(self)).toEqual([3]);
    expect(reasons(self)[0]).toMatch(/recorded by the platform/);

    // Bob proves first: the domain and its zone are his; Alice's claim is gone and cannot be proven.
    const won = await prove('IMVU-002', 'gallery.example');
    expect(won.allowed, JSON.stringify(won.gates)).toBe(true);
    expect(await p.store.get('SELECT imvu, kind FROM domains WHERE name = ?', ['gallery.example'])).toEqual({ imvu: 'IMVU-002', kind: 'custom' });
    expect(await p.store.get('SELECT imvu, serial FROM zones WHERE name = ?', ['gallery.example'])).toEqual({ imvu: 'IMVU-002', serial: won.index });
    expect(await p.store.get('SELECT COUNT(*) AS n FROM domain_claims WHERE name = ?', ['gallery.example'])).toEqual({ n: 0 });
    const lost = await verified('IMVU-001', 'gallery.example', [claimA.token]);
    expect(deniedBy(lost)).toContain(0);
    expect(reasons(lost).join(' ')).toMatch(/belongs to IMVU-002, which proved control of it first/);
    expect(deniedBy(await as(alice, 'domain.claim', { imvu: 'IMVU-001', domain: 'gallery.example' }))).toEqual([3]);
    expect((await as(bob, 'dns.record.add', { zone: 'gallery.example', name: 'www', type: 'A', value: '192.0.2.1' })).allowed).toBe(true);
    // The verifier replays the proofs from the recorded evidence alone.
    const report = await verifyStore(p.store);
    expect(report.problems).toEqual([]);
  });

  it('domain.verify is asked by the creator or a member of the claiming IMVU, for a claim that exists', async () => {
    await as(alice, 'domain.claim', { imvu: 'IMVU-001', domain: 'gallery.example' });
    expect((await as(alice, 'domain.verify', { imvu: 'IMVU-001', domain: 'gallery.example' })).allowed).toBe(true);
    expect(deniedBy(await as(bob, 'domain.verify', { imvu: 'IMVU-001', domain: 'gallery.example' }))).toEqual([3]);
    expect(deniedBy(await as(alice, 'domain.verify', { imvu: 'IMVU-001', domain: 'other.example' }))).toEqual([0]);
  });

  it('a claim lapses after CLAIM_TTL_MS: it can no longer be proven, and a new claim gets a new token', async () => {
    const first = await as(alice, 'domain.claim', { imvu: 'IMVU-001', domain: 'late.example' });
    const old = (await claimRow('late.example', 'IMVU-001'))!;
    offset = CLAIM_TTL_MS + 1000;
    const lapsed = await verified('IMVU-001', 'late.example', [old.token]);
    expect(deniedBy(lapsed)).toEqual([0, 3]);
    expect(reasons(lapsed)[0]).toMatch(/lapsed at/);
    const again = await as(alice, 'domain.claim', { imvu: 'IMVU-001', domain: 'late.example' });
    expect(again.allowed).toBe(true);
    const fresh = (await claimRow('late.example', 'IMVU-001'))!;
    expect(fresh.entry).toBe(again.index);
    expect(fresh.entry).not.toBe(first.index);
    expect(deniedBy(await verified('IMVU-001', 'late.example', [old.token]))).toEqual([3]);
    expect((await verified('IMVU-001', 'late.example', [fresh.token])).allowed).toBe(true);
    expect((await verifyStore(p.store)).problems).toEqual([]);
  });

  it('an IMVU holds at most MAX_PENDING_CLAIMS unproven claims', async () => {
    for (let i = 0; i < 16; i++) expect((await as(alice, 'domain.claim', { imvu: 'IMVU-001', domain: `d${i}.example` })).allowed).toBe(true);
    const more = await as(alice, 'domain.claim', { imvu: 'IMVU-001', domain: 'd16.example' });
    expect(deniedBy(more)).toEqual([3]);
    expect(reasons(more)[0]).toMatch(/16 claims pending proof/);
  });
});

describe('domain.release', () => {
  beforeEach(async () => {
    await create(alice, 'A');
    await create(bob, 'B');
    await as(alice, 'domain.claim', { imvu: 'IMVU-001', domain: 'gallery.example' });
    await prove('IMVU-001', 'gallery.example');
    await as(alice, 'dns.record.add', { zone: 'gallery.example', name: 'www', type: 'A', value: '192.0.2.1' });
  });

  it('frees a domain of one\'s own IMVU (creator or member): its zone and records go, and another IMVU may claim it', async () => {
    const member = await p.register('dora', 'member');
    expect((await as(alice, 'member.add', { imvu: 'IMVU-001', identity: member.id })).allowed).toBe(true);
    const before = (await p.store.get<{ serial: number }>('SELECT serial FROM zones WHERE name = ?', ['gallery.example']))!.serial;
    expect(deniedBy(await as(bob, 'domain.release', { imvu: 'IMVU-001', domain: 'gallery.example' }))).toEqual([3]);
    expect(deniedBy(await as(bob, 'domain.release', { imvu: 'IMVU-002', domain: 'gallery.example' }))).toEqual([0]);
    const r = await as(member, 'domain.release', { imvu: 'IMVU-001', domain: 'gallery.example' });
    expect(r.allowed, JSON.stringify(r.gates)).toBe(true);
    for (const [table, col] of [['domains', 'name'], ['zones', 'name'], ['records', 'zone'], ['dnssec_keys', 'zone']])
      expect(await p.store.get(`SELECT COUNT(*) AS n FROM ${table} WHERE ${col} = ?`, ['gallery.example']), table).toEqual({ n: 0 });
    // Bob claims and proves it; its first serial is above any the old zone reached.
    expect((await as(bob, 'domain.claim', { imvu: 'IMVU-002', domain: 'gallery.example' })).allowed).toBe(true);
    expect((await prove('IMVU-002', 'gallery.example')).allowed).toBe(true);
    expect((await p.store.get<{ serial: number }>('SELECT serial FROM zones WHERE name = ?', ['gallery.example']))!.serial).toBeGreaterThan(before);
    expect((await verifyStore(p.store)).problems).toEqual([]);
  });

  it('never the primary domain; not while mailboxes live on it; a pending claim can be released too', async () => {
    const primary = await as(alice, 'domain.release', { imvu: 'IMVU-001', domain: 'imvu001.world' });
    expect(deniedBy(primary)).toEqual([3]);
    expect(reasons(primary)[0]).toMatch(/primary domain of IMVU-001/);
    expect((await as(alice, 'mailbox.add', { imvu: 'IMVU-001', address: 'shop@gallery.example' })).allowed).toBe(true);
    const busy = await as(alice, 'domain.release', { imvu: 'IMVU-001', domain: 'gallery.example' });
    expect(deniedBy(busy)).toEqual([0]);
    expect(reasons(busy)[0]).toMatch(/still has mailboxes \(such as shop@gallery\.example\)/);
    expect((await as(alice, 'mailbox.remove', { imvu: 'IMVU-001', address: 'shop@gallery.example' })).allowed).toBe(true);
    expect((await as(alice, 'domain.release', { imvu: 'IMVU-001', domain: 'gallery.example' })).allowed).toBe(true);

    await as(bob, 'domain.claim', { imvu: 'IMVU-002', domain: 'pending.example' });
    expect((await as(bob, 'domain.release', { imvu: 'IMVU-002', domain: 'pending.example' })).allowed).toBe(true);
    expect(await claimRow('pending.example', 'IMVU-002')).toBeUndefined();
  });
});

describe('identity names of platform services are reserved', () => {
  it('a creator or member cannot take dns, admin, billing, ...; the platform registers them as services only', async () => {
    for (const name of ['dns', 'mail', 'gateway', 'admin', 'root', 'billing', 'witness', 'nexus', 'system', 'service']) {
      await expect(p.register(name, 'creator'), name).rejects.toThrow(/reserved for a platform service/);
    }
    await expect(p.register('platform', 'member')).rejects.toThrow(/reserved for a platform service/);
    await expect(p.register('dns', 'admin')).rejects.toThrow(/reserved for a platform service/);
    expect((await p.register('dns', 'service')).name).toBe('dns');
    expect(RESERVED_IDENTITY_NAMES).toEqual(expect.arrayContaining(['dns', 'mail', 'gateway', 'compute', 'network', 'platform', 'admin', 'root', 'billing', 'witness', 'nexus', 'system', 'service']));
  });
});

describe('no name has an empty label, and names are canonical', () => {
  beforeEach(async () => {
    await create(alice, 'A');
  });

  it('refuses x..y in domains, mailbox addresses and record names (gate 0), and upper case instead of rewriting it', async () => {
    const denied = async (type: Parameters<TestPlatform['as']>[1], body: { [k: string]: Json }) => {
      const r = await as(alice, type, body);
      expect(deniedBy(r), JSON.stringify(body)).toEqual([0]);
      return reasons(r)[0]!;
    };
    await denied('domain.claim', { imvu: 'IMVU-001', domain: 'x..example' });
    await denied('domain.claim', { imvu: 'IMVU-001', domain: '.example.com' });
    await denied('mailbox.add', { imvu: 'IMVU-001', address: 'info@imvu001..world' });
    await denied('mailbox.add', { imvu: 'IMVU-001', address: 'a..b@imvu001.world' });
    await denied('mailbox.add', { imvu: 'IMVU-001', address: '.a@imvu001.world' });
    await denied('mailbox.add', { imvu: 'IMVU-001', address: 'a.@imvu001.world' });
    await denied('mailbox.remove', { imvu: 'IMVU-001', address: 'a..b@imvu001.world' });
    await denied('dns.record.add', { zone: 'imvu001.world', name: 'a..b', type: 'A', value: '192.0.2.1' });
    expect(await denied('domain.claim', { imvu: 'IMVU-001', domain: 'Gallery.Example' })).toMatch(/canonical form: lower case/);
    expect(await denied('mailbox.add', { imvu: 'IMVU-001', address: 'Info@imvu001.world' })).toMatch(/canonical form: lower case/);
    expect((await as(alice, 'mailbox.add', { imvu: 'IMVU-001', address: 'first.last+tag@imvu001.world' })).allowed).toBe(true);
  });

  it('property: any name with an empty label is refused by the domain and address schemas', () => {
    const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?$/);
    const withEmpty = fc
      .tuple(fc.array(label, { minLength: 2, maxLength: 5 }), fc.nat())
      .map(([labels, at]) => {
        const i = at % (labels.length + 1);
        return [...labels.slice(0, i), '', ...labels.slice(i)].join('.');
      });
    fc.assert(
      fc.property(withEmpty, label, (name, local) => {
        expect(BODY_SCHEMAS['domain.claim'].safeParse({ imvu: 'IMVU-001', domain: name }).success).toBe(false);
        expect(BODY_SCHEMAS['mailbox.add'].safeParse({ imvu: 'IMVU-001', address: `${local}@${name}` }).success).toBe(false);
        expect(BODY_SCHEMAS['mailbox.add'].safeParse({ imvu: 'IMVU-001', address: `${name}@example.com` }).success).toBe(false);
      }),
    );
    fc.assert(
      fc.property(fc.array(label, { minLength: 2, maxLength: 5 }), label, (labels, local) => {
        expect(BODY_SCHEMAS['domain.claim'].safeParse({ imvu: 'IMVU-001', domain: labels.join('.') }).success).toBe(true);
        expect(BODY_SCHEMAS['mailbox.add'].safeParse({ imvu: 'IMVU-001', address: `${local}@${labels.join('.')}` }).success).toBe(true);
      }),
    );
  });
});
