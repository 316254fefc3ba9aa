// The read model over real HTTP (docs/API.md, "Reading: who can read what"): what anyone may read,
// what needs an RFC 9421 signed read, and what each identity then sees.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalBytes } from '../core/ledger/canonical.ts';
import { openCheckpoint } from '../core/ledger/checkpoint.ts';
import { leafHash, MemoryTree } from '../core/ledger/merkle.ts';
import type { LedgerEntry } from '../core/types.ts';
import { consentPseudonym } from '../cli/pseudonym.ts';
import { startTestApi, type Actor, type Res, type TestApi } from '../../test/support/api.ts';
import { isLoopback } from './server.ts';
import { MAX_PAGE_BYTES } from './schemas.ts';

type Served = LedgerEntry | { index: number; leafHash: string; withheld: true };

let api: TestApi;
let alice: Actor; // creator of IMVU A
let bob: Actor; // creator of IMVU B
let carol: Actor; // member of A
let dave: Actor; // a registered creator with no IMVU
let ops: Actor; // admin
let dns: Actor; // a service
let a: { id: string; domain: string };
let b: { id: string; domain: string };
let consentIndex: number;
let subject: { name: string; id: string; key: Actor['key'] };

beforeAll(async () => {
  api = await startTestApi();
  alice = await api.register('alice', 'creator');
  bob = await api.register('bob', 'creator');
  carol = await api.register('carol', 'member');
  dave = await api.register('dave', 'creator');
  ops = await api.register('ops', 'admin');
  dns = await api.register('meter', 'service');
  a = (await api.createImvu(alice, 'Alpha')).body.imvu as { id: string; domain: string };
  b = (await api.createImvu(bob, 'Beta')).body.imvu as { id: string; domain: string };
  expect((await api.as(alice, 'POST', `/v1/imvus/${a.id}/members`, 'member.add', { imvu: a.id, identity: carol.id })).status).toBe(201);
  expect((await api.as(bob, 'POST', `/v1/zones/${b.domain}/records`, 'dns.record.add', { zone: b.domain, name: 'secret-host', type: 'A', value: '192.0.2.9' })).status).toBe(201);
  // Dave consents to A's newsletter under his pseudonym for A (as the CLI does).
  const p = consentPseudonym(dave.key, api.platformOrigin, a.id);
  subject = { name: p.name, id: p.id, key: p.key };
  expect((await api.as(subject, 'POST', '/v1/identities', 'identity.register', { name: p.name, role: 'member', publicKey: p.publicKey })).status).toBe(201);
  const c = await api.as(subject, 'POST', '/v1/consents', 'consent.record', { imvu: a.id, subject: p.id, purpose: 'newsletter', granted: true });
  expect(c.status, c.text).toBe(200);
  consentIndex = c.body.index as number;
  // An admin's denied attempt on B (B's creator must see it).
  expect((await api.as(ops, 'POST', `/v1/imvus/${b.id}/scale`, 'imvu.scale', { imvu: b.id, cpu_cores: 1 })).status).toBe(403);
}, 60_000);
afterAll(async () => api.close());

describe('public reads: checkpoints, proofs and the platform key need no signature', () => {
  it('anyone reads them', async () => {
    const size = await api.size();
    for (const path of [
      '/health',
      '/openapi.json',
      '/v1/platform',
      '/v1/gates',
      '/v1/ledger/checkpoint',
      `/v1/ledger/proof/inclusion?index=0&size=${size}`,
      `/v1/ledger/proof/consistency?from=1&to=${size}`,
      '/v1/identities/alice',
      `/v1/zones/${a.domain}/ds`,
    ]) {
      const r = await api.getAs(null, path);
      expect(r.status, `${path}: ${r.text}`).toBe(200);
    }
  });

  it('/metrics: a loopback peer without a signature; a signed read is judged by its signer (admins only)', async () => {
    expect((await api.getAs(null, '/metrics')).status).toBe(200);
    expect((await api.getAs(ops, '/metrics')).status).toBe(200);
    const creator = await api.getAs(alice, '/metrics');
    expect(creator.status).toBe(403);
    expect(creator.body.error).toMatch(/loopback peers and to admins/);
    expect([isLoopback('127.0.0.1'), isLoopback('127.9.9.9'), isLoopback('::1'), isLoopback('::ffff:127.0.0.1')]).toEqual([true, true, true, true]);
    expect([isLoopback('192.0.2.1'), isLoopback('::ffff:192.0.2.1'), isLoopback('2001:db8::1'), isLoopback(undefined), isLoopback('1127.0.0.1')]).toEqual([false, false, false, false, false]);
  });
});

describe('private reads', () => {
  const privatePaths = () => [
    '/v1/ledger/entries',
    '/v1/identities',
    '/v1/imvus',
    `/v1/imvus/${a.id}`,
    `/v1/imvus/${a.id}/mailboxes`,
    `/v1/imvus/${a.id}/routes`,
    `/v1/imvus/${a.id}/notifications`,
    `/v1/zones/${a.domain}/records`,
    `/v1/zones/${a.domain}/export`,
    `/v1/consents?imvu=${a.id}`,
    `/v1/notifications?recipient=${alice.id}`,
    `/v1/statements/${a.id}/2026-11`,
  ];

  it('unsigned: 401 with an Accept-Signature that says how to sign, and no data', async () => {
    for (const path of privatePaths()) {
      const r = await api.getAs(null, path);
      expect(r.status, `${path}: ${r.text}`).toBe(401);
      expect(r.body.error).toMatch(/must be signed by a registered identity/);
      expect(r.headers.get('accept-signature')).toMatch(/^sig1=\("@method" "@authority" "@path" "@query"\);created;keyid;nonce;alg="ed25519"$/);
      expect(r.text).not.toContain('Alpha');
    }
  });

  it('a replayed signed read is refused (401)', async () => {
    const { signRead } = await import('./read-auth.ts');
    const headers = signRead(alice.key, alice.id, 'GET', `${api.url}/v1/imvus/${a.id}`);
    expect((await api.request('GET', `/v1/imvus/${a.id}`, undefined, { ...headers })).status).toBe(200);
    const again = await api.request('GET', `/v1/imvus/${a.id}`, undefined, { ...headers });
    expect(again.status).toBe(401);
    expect(again.body.error).toMatch(/already used/);
  });

  it("another creator, a creator without IMVUs and a service get 403 for A's private state", async () => {
    for (const who of [bob, dave, dns]) {
      for (const path of privatePaths().filter((p) => p.includes(a.id) || p.includes(a.domain) || p.includes(alice.id))) {
        const r = await api.getAs(who, path);
        expect(r.status, `${who.name} ${path}: ${r.text}`).toBe(403);
        expect(r.text).not.toMatch(/Alpha|creator@/);
      }
    }
    // No existence oracle: an IMVU that does not exist is 403 too for a non-admin, 404 for an admin.
    expect((await api.getAs(bob, '/v1/imvus/IMVU-999')).status).toBe(403);
    expect((await api.getAs(ops, '/v1/imvus/IMVU-999')).status).toBe(404);
    // Whether a zone is hosted is public anyway (DNS, /ds): an unknown zone is 404 for everyone.
    expect((await api.getAs(bob, '/v1/zones/nowhere.world/records')).status).toBe(404);
  });

  it("A's creator, A's member and an admin read A's private state", async () => {
    for (const who of [alice, carol, ops, api.platform]) {
      for (const path of privatePaths().filter((p) => p.includes(a.id) || p.includes(a.domain))) {
        const r = await api.getAs(who, path);
        expect(r.status, `${who.name} ${path}: ${r.text}`).toBe(200);
      }
    }
    expect((await api.getAs(alice, `/v1/imvus/${a.id}`)).body).toMatchObject({ id: a.id, name: 'Alpha' });
    expect((await api.getAs(alice, `/v1/notifications?recipient=${alice.id}`)).status).toBe(200);
    expect((await api.getAs(carol, `/v1/notifications?recipient=${alice.id}`)).status).toBe(403);
  });

  it('the IMVU list: an admin sees all; a creator or member its own; others none', async () => {
    const ids = async (who: Actor) => ((await api.getAs(who, '/v1/imvus')).body.imvus as { id: string }[]).map((i) => i.id).sort();
    expect(await ids(ops)).toEqual([a.id, b.id].sort());
    expect(await ids(alice)).toEqual([a.id]);
    expect(await ids(carol)).toEqual([a.id]);
    expect(await ids(bob)).toEqual([b.id]);
    expect(await ids(dave)).toEqual([]);
  });

  it('the identity list: an admin sees all; others the infrastructure identities and the people they share an IMVU with', async () => {
    const names = async (who: Actor) => ((await api.getAs(who, '/v1/identities')).body.identities as { name: string }[]).map((i) => i.name);
    expect(await names(ops)).toEqual(expect.arrayContaining(['alice', 'bob', 'carol', 'dave', subject.name]));
    const seenByAlice = await names(alice);
    expect(seenByAlice).toEqual(expect.arrayContaining(['platform', 'ops', 'meter', 'alice', 'carol']));
    expect(seenByAlice).not.toContain('bob');
    expect(seenByAlice).not.toContain('dave');
    expect(seenByAlice).not.toContain(subject.name);
  });
});

describe('ledger entries', () => {
  async function allPages(who: Actor): Promise<Served[]> {
    const out: Served[] = [];
    let from: number | undefined = 0;
    while (from !== undefined) {
      const r: Res<{ entries: Served[]; next?: number }> = await api.getAs<{ entries: Served[]; next?: number }>(who, `/v1/ledger/entries?from=${from}`);
      expect(r.status, r.text).toBe(200);
      out.push(...r.body.entries);
      from = r.body.next;
    }
    return out;
  }

  it("bob sees his own entries, the platform's and the attempts on his IMVU in full; the rest only as leaf hashes that rebuild the signed tree", async () => {
    const note = (await api.getAs(null, '/v1/ledger/checkpoint')).text;
    const platform = (await api.getAs(null, '/v1/platform')).body as { origin: string; publicKey: string };
    const { checkpoint } = openCheckpoint(note, [{ name: platform.origin, publicKeyRaw: Buffer.from(platform.publicKey, 'base64') }], platform.origin);
    const entries = (await allPages(bob)).filter((e) => e.index < checkpoint.size);
    expect(entries.map((e) => e.index)).toEqual(Array.from({ length: checkpoint.size }, (_, i) => i));
    const full = entries.filter((e): e is LedgerEntry => !('withheld' in e));
    const withheld = entries.filter((e) => 'withheld' in e);
    expect(withheld.length).toBeGreaterThan(0);
    const types = (es: LedgerEntry[]) => es.map((e) => `${e.command.command.type}${typeof e.command.command.body.imvu === 'string' ? ` ${e.command.command.body.imvu}` : ''}`);
    expect(types(full)).toEqual(expect.arrayContaining(['platform.genesis', 'imvu.create', `dns.record.add`, `imvu.scale ${b.id}`]));
    // Nothing about A, nor alice's, carol's, dave's or the pseudonym's registrations.
    for (const e of full) {
      expect(e.command.command.body.imvu).not.toBe(a.id);
      expect([alice.id, carol.id, dave.id, subject.id]).not.toContain(e.command.command.actor);
    }
    expect(JSON.stringify(full)).not.toContain(a.domain);
    // The admin's registration and the service's are public facts.
    const registrations = full.filter((e) => e.command.command.type === 'identity.register').map((e) => e.command.command.body.name);
    expect(registrations).toEqual(expect.arrayContaining(['bob', 'ops', 'meter']));
    // The tree rebuilt from bob's view is the tree the platform signed.
    const tree = new MemoryTree();
    for (const e of entries) tree.appendLeafHash('withheld' in e ? Buffer.from(e.leafHash, 'hex') : leafHash(canonicalBytes(e)));
    expect(tree.root().equals(checkpoint.rootHash)).toBe(true);
    // A withheld leaf hash is the one the public inclusion proof names.
    const w = withheld[0]!;
    expect((await api.getAs(null, `/v1/ledger/proof/inclusion?index=${w.index}`)).body.leafHash).toBe((w as { leafHash: string }).leafHash);
  });

  it("alice sees A's entries, her member's registration and the consent under its pseudonym; bob may not filter by A (403)", async () => {
    const entries = await allPages(alice);
    const full = entries.filter((e): e is LedgerEntry => !('withheld' in e));
    const consent = full.find((e) => e.index === consentIndex);
    expect(consent?.command.command.body).toMatchObject({ imvu: a.id, subject: subject.id, purpose: 'newsletter' });
    // The consent names the pseudonym, never dave's own identity.
    expect(consent?.command.command.actor).toBe(subject.id);
    expect(JSON.stringify(full)).not.toContain(dave.id);
    expect(full.some((e) => e.command.command.type === 'identity.register' && e.command.command.body.name === 'carol')).toBe(true);
    expect(full.some((e) => e.command.command.body.imvu === b.id)).toBe(false);
    expect((await api.getAs(bob, `/v1/ledger/entries?imvu=${a.id}`)).status).toBe(403);
    const mine = (await api.getAs<{ entries: Served[] }>(alice, `/v1/ledger/entries?imvu=${a.id}`)).body.entries;
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.every((e) => !('withheld' in e))).toBe(true);
  });

  it('the admin and the platform see every entry in full', async () => {
    for (const who of [ops, api.platform]) expect((await allPages(who)).some((e) => 'withheld' in e)).toBe(false);
  });

  it(`pages stop at about ${MAX_PAGE_BYTES} bytes and say where to go on`, async () => {
    // Thirty allowed route tables of ~44 KB each (under the 48 KiB body cap; a denied body that large would be stored as its hash).
    const first = await api.size();
    const routes = (i: number) => Array.from({ length: 200 }, (_, j) => ({ path: `/${i}/${j}/${'x'.repeat(180)}`, backend: 'web' }));
    for (let i = 0; i < 30; i++) {
      const r = await api.as(alice, 'PUT', `/v1/imvus/${a.id}/routes`, 'route.set', { imvu: a.id, policy: { public: routes(i), private: [], restricted: [] } });
      expect(r.status, r.text).toBe(200);
    }
    const pages: { entries: Served[]; from: number; to: number; next?: number }[] = [];
    let from: number | undefined = first;
    while (from !== undefined) {
      const r: Res<{ entries: Served[]; from: number; to: number; next?: number }> = await api.getAs<{ entries: Served[]; from: number; to: number; next?: number }>(alice, `/v1/ledger/entries?from=${from}`);
      expect(r.text.length).toBeLessThanOrEqual(MAX_PAGE_BYTES + 4096);
      pages.push(r.body);
      from = r.body.next;
    }
    expect(pages.length).toBeGreaterThan(1);
    expect(pages[0]!.next).toBe(pages[0]!.to);
    expect(pages.flatMap((p) => p.entries.map((e) => e.index))).toEqual(Array.from({ length: (await api.size()) - first }, (_, i) => first + i));
  });
});

describe('consents', () => {
  it("A's creator reads A's consents (subjects as pseudonyms); the subject reads its own; others get 403", async () => {
    const byImvu = await api.getAs<{ consents: { subject: string; purpose: string }[] }>(alice, `/v1/consents?imvu=${a.id}`);
    expect(byImvu.status).toBe(200);
    expect(byImvu.body.consents).toContainEqual(expect.objectContaining({ subject: subject.id, purpose: 'newsletter' }));
    expect(byImvu.body.consents.map((c) => c.subject)).not.toContain(dave.id);
    const own = await api.getAs<{ consents: unknown[] }>(subject, `/v1/consents?subject=${subject.id}&imvu=${a.id}`);
    expect(own.status).toBe(200);
    expect(own.body.consents).toHaveLength(1);
    expect((await api.getAs(subject, `/v1/consents?subject=${subject.id}`)).status).toBe(200);
    expect((await api.getAs(bob, `/v1/consents?subject=${subject.id}`)).status).toBe(403);
    expect((await api.getAs(bob, `/v1/consents?imvu=${a.id}`)).status).toBe(403);
    expect((await api.getAs(subject, `/v1/consents?imvu=${a.id}`)).status).toBe(403);
    expect((await api.getAs(ops, `/v1/consents?subject=${subject.id}`)).status).toBe(200);
  });

  it('the pseudonym is stable per subject and IMVU, different across IMVUs and subjects', () => {
    const p1 = consentPseudonym(dave.key, api.platformOrigin, a.id);
    expect(p1.id).toBe(subject.id);
    expect(consentPseudonym(dave.key, api.platformOrigin, b.id).id).not.toBe(p1.id);
    expect(consentPseudonym(bob.key, api.platformOrigin, a.id).id).not.toBe(p1.id);
    expect(consentPseudonym(dave.key, 'another.origin/log', a.id).id).not.toBe(p1.id);
    expect(p1.name).toMatch(/^c-[a-z2-7]{24}$/);
  });
});
