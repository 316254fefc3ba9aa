import { afterEach, describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { testPlatform, type Actor, type TestPlatform } from '../../core/testing.ts';
import { diff, servedRecords, serialGt, ZoneJournal, type ServedRR } from './journal.ts';
import { readZone } from './xfr.ts';

// IXFR differences derived from the ledger: for every serial, the difference the journal gives
// must be exactly the difference between the zone as served before and after (read from the
// projections at each step). TTL changes of an RRset, removals by value and by type, DKIM keys and refused commands are covered.

const Z = 'imvu001.world';
let p: TestPlatform | undefined;

afterEach(async () => {
  await p?.cleanup();
  p = undefined;
});

/** A platform whose IMVUs get a DKIM key as in production (a platform-signed dkim.publish follow-up). */
async function platform(extra: (imvu: { id: string; domain: string }) => { type: 'dnssec.publish'; body: Record<string, string | number> }[] = () => []) {
  p = await testPlatform({
    provision: () => async (command, index, db) => {
      if (command.type !== 'imvu.create') return [];
      const row = (await db.get<{ id: string; domain: string }>('SELECT id, domain FROM imvus WHERE entry = ?', [index]))!;
      return [{ type: 'dkim.publish', body: { imvu: row.id, selector: 'nexus1', publicKey: randomBytes(40).toString('base64') } }, ...extra(row)];
    },
  });
  const alice = await p.register('alice', 'creator');
  const bob = await p.register('bob', 'creator');
  for (const [who, name] of [[alice, 'Gallery'], [bob, 'Shop']] as const) {
    const r = await p.as(who, 'imvu.create', { name, owner: who.id, jurisdiction: 'US-CCPA' });
    expect(r.allowed).toBe(true);
  }
  return { p, alice, bob };
}

function sortKey(r: ServedRR) {
  return `${r.owner} ${r.type} ${r.ttl} ${JSON.stringify(r.data)}`;
}
const sorted = (rs: ServedRR[]) => [...rs].sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : 1));

describe('zone history from the ledger (IXFR journal)', () => {
  it('gives, for every serial, exactly the difference between the zone before and after', async () => {
    const { p, alice, bob } = await platform();
    const snaps = new Map<number, ServedRR[]>();
    const snap = async () => {
      const s = (await readZone(p.store, Z))!;
      snaps.set(s.serial, s.records);
      return s.serial;
    };
    const first = await snap();
    const add = async (name: string, type: string, value: string, ttl?: number, as: Actor = alice) => {
      const body: Record<string, string | number> = { zone: Z, name, type, value };
      if (ttl !== undefined) body.ttl = ttl;
      return (await p.as(as, 'dns.record.add', body)).allowed;
    };
    const remove = async (name: string, type: string, value?: string) => {
      const body: Record<string, string> = { zone: Z, name, type };
      if (value !== undefined) body.value = value;
      return (await p.as(alice, 'dns.record.remove', body)).allowed;
    };
    expect(await add('www', 'A', '192.0.2.1')).toBe(true);
    await snap();
    expect(await add('www', 'A', '192.0.2.2')).toBe(true);
    await snap();
    expect(await add('www', 'A', '192.0.2.1')).toBe(false); // a duplicate is refused (gate 0): no serial
    expect(await add('www', 'A', '192.0.2.3', 60)).toBe(true); // a smaller TTL: the whole RRset changes
    await snap();
    expect(await add('www', 'TXT', 'hello world')).toBe(true);
    await snap();
    expect(await remove('www', 'A', '192.0.2.3')).toBe(true); // the TTL goes back up
    await snap();
    expect(await remove('nothing', 'A')).toBe(false); // refused (nothing to remove): no serial
    expect(await remove('www', 'A')).toBe(true); // every A
    await snap();
    expect(await add('mail', 'A', '192.0.2.25')).toBe(true);
    await snap();
    expect(await add('www', 'A', '192.0.2.9', undefined, bob)).toBe(false); // refused: not bob's zone
    const last = await snap();
    expect(last - first).toBe(7);

    const j = new ZoneJournal(p.store);
    await j.catchUp();
    expect(j.serialOf(Z)).toBe(last);
    const deltas = j.deltas(Z).filter((d) => d.from >= first);
    expect(deltas.map((d) => d.from)).toEqual([...Array(7).keys()].map((i) => first + i));
    for (const d of deltas) {
      const expected = diff(snaps.get(d.from)!, snaps.get(d.to)!);
      expect(sorted(d.deleted)).toEqual(sorted(expected.deleted));
      expect(sorted(d.added)).toEqual(sorted(expected.added));
    }
    // Spot checks of the shapes.
    const at = (from: number) => deltas.find((d) => d.from === from)!;
    expect(at(first + 2).deleted).toHaveLength(2); // both A records, at TTL 3600
    expect(at(first + 2).added.map((r) => r.ttl)).toEqual([60, 60, 60]);
    expect(at(first + 3).added).toEqual([{ owner: `www.${Z}`, type: 'TXT', ttl: 3600, data: [Buffer.from('hello world')] }]);
    expect(at(first + 4).added.map((r) => r.ttl)).toEqual([3600, 3600]);
    expect(at(first + 5).deleted.map((r) => r.data).sort()).toEqual(['192.0.2.1', '192.0.2.2']);
    expect(at(first + 5).added).toEqual([]);

    // Bob's zone has its own history: creation and the DKIM key only.
    expect(j.serialOf('imvu002.world')).toBe(2);
    expect(j.deltas('imvu002.world')).toHaveLength(1);
    expect(j.deltas('imvu002.world')[0]!.added[0]).toMatchObject({ owner: 'nexus1._domainkey.imvu002.world', type: 'TXT' });
  });

  it('plans: up to date, differences from a known serial, the full zone from an unknown, too old or newer one', async () => {
    const { p, alice } = await platform();
    for (let i = 0; i < 6; i++) expect((await p.as(alice, 'dns.record.add', { zone: Z, name: `h${i}`, type: 'A', value: `192.0.2.${i}` })).allowed).toBe(true);
    const now = (await readZone(p.store, Z))!;
    const cur = { serial: now.serial, records: now.records };
    const j = new ZoneJournal(p.store, { depth: 3 });
    expect(await j.plan(Z, now.serial, cur)).toEqual({ kind: 'uptodate', serial: now.serial });
    // A client ahead of us (RFC 1982) is told our SOA too; it will not go backwards.
    expect((await j.plan(Z, now.serial + 5, cur)).kind).toBe('uptodate');
    const two = await j.plan(Z, now.serial - 2, cur);
    expect(two.kind).toBe('deltas');
    if (two.kind === 'deltas') expect(two.deltas.map((d) => [d.from, d.to])).toEqual([[now.serial - 2, now.serial - 1], [now.serial - 1, now.serial]]);
    expect(await j.plan(Z, now.serial - 4, cur)).toMatchObject({ kind: 'full', reason: expect.stringMatching(/no history/) });
    expect(await j.plan(Z, 0, cur)).toMatchObject({ kind: 'full' });
    // The journal vouches for a zone only if its replay equals what the projection serves.
    const missing = { serial: now.serial, records: now.records.slice(1) };
    expect(await new ZoneJournal(p.store).plan(Z, now.serial - 1, missing)).toMatchObject({ kind: 'full', reason: expect.stringMatching(/differs/) });
    // And keeps up with later commits on the next plan.
    expect((await p.as(alice, 'dns.record.add', { zone: Z, name: 'later', type: 'A', value: '192.0.2.99' })).allowed).toBe(true);
    const next = (await readZone(p.store, Z))!;
    const plan = await j.plan(Z, now.serial, { serial: next.serial, records: next.records });
    expect(plan.kind).toBe('deltas');
    if (plan.kind === 'deltas') expect(plan.deltas[0]!.added).toEqual([{ owner: `later.${Z}`, type: 'A', ttl: 3600, data: '192.0.2.99' }]);
  });

  it('a signed zone (dnssec.publish) gets full transfers: no difference describes its signatures', async () => {
    const fakeKey = Buffer.alloc(64, 7).toString('base64');
    const { p, alice } = await platform((imvu) => [{ type: 'dnssec.publish', body: { imvu: imvu.id, zone: imvu.domain, algorithm: 13, flags: 257, publicKey: fakeKey } }]);
    expect((await p.as(alice, 'dns.record.add', { zone: Z, name: 'x', type: 'A', value: '192.0.2.1' })).allowed).toBe(true);
    const now = (await readZone(p.store, Z))!;
    const j = new ZoneJournal(p.store);
    expect(await j.plan(Z, now.serial - 1, { serial: now.serial, records: now.records })).toMatchObject({ kind: 'full', reason: 'signed zone' });
    // Its serials still line up with the projection's (the key's publication moved it once).
    expect(j.serialOf(Z)).toBe(now.serial);
    expect(now.serial).toBe(4);
  });

  it('served form: parse, in-zone only, no apex CNAME, duplicates once, one TTL per RRset, canonical order', () => {
    const rows = [
      { name: `b.${Z}`, type: 'A', value: '192.0.2.2', ttl: 300 },
      { name: `B.${Z}`, type: 'A', value: '192.0.2.2', ttl: 60 },
      { name: `a.${Z}`, type: 'A', value: 'not an address', ttl: 300 },
      { name: Z, type: 'CNAME', value: 'elsewhere.example.', ttl: 300 },
      { name: 'elsewhere.example', type: 'A', value: '192.0.2.3', ttl: 300 },
      { name: Z, type: 'MX', value: `10 mail.${Z}.`, ttl: 300 },
    ];
    expect(servedRecords(Z, rows)).toEqual([
      { owner: Z, type: 'MX', ttl: 300, data: { preference: 10, exchange: `mail.${Z}` } },
      { owner: `b.${Z}`, type: 'A', ttl: 60, data: '192.0.2.2' },
    ]);
    expect(serialGt(1, 0xffffffff)).toBe(true);
    expect(serialGt(0xffffffff, 1)).toBe(false);
    expect(serialGt(5, 5)).toBe(false);
  });
});
