// Proof of control of a claimed domain, end to end over real sockets: the HTTP API records the
// creator's `domain.verify`, the daemon's own iterative resolver walks a loopback root → TLD
// hierarchy (test/support/dns-hierarchy.ts) to the TXT at `_nexus-challenge.<domain>`, the platform
// records `domain.verified`, and only then does the daemon's authoritative server serve the zone.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dnsPacket from 'dns-packet';
import type { LedgerEntry } from '../core/types.ts';
import { verifyStore } from '../core/policy/verify.ts';
import { eventually, query, udpAsk } from '../domains/dns-authority/testing.ts';
import { Cache, Iterator } from '../domains/resolvers/index.ts';
import { challengeResolver, type ChallengeLookup } from '../imvu/domain-proof.ts';
import { startHierarchy, type Hierarchy } from '../../test/support/dns-hierarchy.ts';
import { deniedGates, startTestApi, type Actor, type TestApi } from '../../test/support/api.ts';

const D = 'gallery.test';
const CHALLENGE = `_nexus-challenge.${D}`;
let api: TestApi;
let h: Hierarchy;
let lookup: ChallengeLookup | undefined;
let alice: Actor;
let bob: Actor;

type Body = Record<string, unknown> & { challenge?: { name: string; type: string; value: string; expires: string } };

const soa = (name: string) => udpAsk(api.server.dns!.server.port, query(name, 'SOA', { rd: false }));
const publish = (data: string) => h.tldRecords.test.push({ name: CHALLENGE, type: 'TXT', ttl: 60, data });
const verify = (who: Actor, imvu: string) => api.as(who, 'POST', `/v1/imvus/${imvu}/domains/verify`, 'domain.verify', { imvu, domain: D });
const served = async (): Promise<boolean> => {
  const r = await soa(D);
  return r.rcode === 'NOERROR' && !!((r.flags ?? 0) & dnsPacket.AUTHORITATIVE_ANSWER) && (r.answers ?? []).some((a) => a.type === 'SOA');
};

beforeAll(async () => {
  // The look-up is bound late: the hierarchy serves the daemon's own store, so it starts after it.
  api = await startTestApi({ dns: { port: 0, meterIntervalMs: 60_000 }, challenge: (name) => lookup!(name) });
  h = await startHierarchy(api.server.store);
  lookup = challengeResolver({ rootHints: h.rootHints, upstreamPort: h.port, limits: { timeoutMs: 500 } });
  alice = await api.register('alice', 'creator');
  bob = await api.register('bob', 'creator');
  expect((await api.createImvu(alice, 'Gallery')).status).toBe(201);
  expect((await api.createImvu(bob, 'Shop')).status).toBe(201);
}, 30_000);

afterAll(async () => {
  await h?.close();
  await api?.close();
});

describe('a claimed domain is served only once its claimant proves control', () => {
  let token = '';

  it('the claim answers with the TXT record to publish; the domain is pending and not served', async () => {
    const r = await api.as(alice, 'POST', '/v1/imvus/IMVU-001/domains', 'domain.claim', { imvu: 'IMVU-001', domain: D });
    expect(r.status).toBe(201);
    const c = (r.body as Body).challenge!;
    expect(c).toMatchObject({ name: CHALLENGE, type: 'TXT' });
    expect(c.value).toMatch(/^nexus-[a-z2-7]{52}$/);
    token = c.value;
    expect((await soa(D)).rcode).toBe('REFUSED');
    expect((await api.get(`/v1/zones/${D}/ds`)).status).toBe(404);
    const list = await api.get<{ domains: { name: string }[]; pending: { name: string; status: string; challenge: { value: string } }[] }>('/v1/imvus/IMVU-001/domains');
    expect(list.body.domains.map((d) => d.name)).toEqual(['imvu001.world']);
    expect(list.body.pending).toMatchObject([{ name: D, status: 'pending', challenge: { value: token } }]);
    // Not exclusive while pending: Bob may claim it too, with a token of his own.
    const other = await api.as(bob, 'POST', '/v1/imvus/IMVU-002/domains', 'domain.claim', { imvu: 'IMVU-002', domain: D });
    expect(other.status).toBe(201);
    expect((other.body as Body).challenge!.value).not.toBe(token);
  });

  it('no TXT record: 422, the request is recorded, the domain stays pending', async () => {
    const r = await verify(alice, 'IMVU-001');
    expect(r.status, r.text).toBe(422);
    expect(r.body).toMatchObject({ allowed: true, status: 'pending', challenge: { name: CHALLENGE, value: token }, found: [] });
    expect(String(r.body.error)).toMatch(/does not exist|no TXT record/);
    expect((await api.entry(Number(r.body.index))).command.command).toMatchObject({ type: 'domain.verify', body: { imvu: 'IMVU-001', domain: D } });
    expect(await api.server.store.get('SELECT 1 AS x FROM zones WHERE name = ?', [D])).toBeUndefined();
  });

  it('a TXT record with another token: 422, still pending, not served', async () => {
    publish('nexus-not-the-token');
    const r = await verify(alice, 'IMVU-001');
    expect(r.status, r.text).toBe(422);
    expect(r.body).toMatchObject({ status: 'pending', found: ['nexus-not-the-token'] });
    expect(String(r.body.error)).toContain(`no TXT record at ${CHALLENGE} is "${token}"`);
    expect((await soa(D)).rcode).toBe('REFUSED');
  });

  it('the right TXT: verified by the platform with the TXT answer as evidence, keyed, served; the other claim is gone', async () => {
    publish(token);
    const r = await verify(alice, 'IMVU-001');
    expect(r.status, r.text).toBe(200);
    const v = r.body.verified as { index: number; allowed: boolean; followUps: { index: number; allowed: boolean }[] };
    expect(r.body.status).toBe('verified');
    expect(v.allowed).toBe(true);
    const e = await api.entry(v.index);
    expect(e.command.command).toMatchObject({ type: 'domain.verified', actor: api.platformId, body: { imvu: 'IMVU-001', domain: D, evidence: { name: CHALLENGE } } });
    expect((e.command.command.body as { evidence: { txt: string[] } }).evidence.txt).toEqual([token, 'nexus-not-the-token']);
    // The zone's DNSSEC key comes with the proof, not with the claim.
    const follow = await Promise.all(v.followUps.map(async (f) => (await api.entry(f.index)).command.command));
    expect(follow.map((c) => c.type).sort()).toEqual(['dnssec.publish', 'notify.creator']);
    expect(follow.find((c) => c.type === 'dnssec.publish')).toMatchObject({ body: { zone: D } });
    expect((await api.get(`/v1/zones/${D}/ds`)).status).toBe(200);
    expect(await eventually(async () => (await served()) || Promise.reject(new Error('not served yet')), 5000)).toBe(true);
    const list = await api.get<{ domains: { name: string; status: string }[]; pending: unknown[] }>('/v1/imvus/IMVU-001/domains');
    expect(list.body.domains).toMatchObject([{ name: 'imvu001.world' }, { name: D, status: 'verified' }]);
    expect(list.body.pending).toEqual([]);
    // Bob lost the race: his claim ended with Alice's proof.
    const late = await verify(bob, 'IMVU-002');
    expect(late.status).toBe(400);
    expect(String(late.body.error)).toMatch(/belongs to IMVU-001, which proved control of it first/);
    expect(deniedGates(await api.as(bob, 'POST', '/v1/imvus/IMVU-002/domains', 'domain.claim', { imvu: 'IMVU-002', domain: D }).then((x) => x.body))).toEqual([3]);
  });

  it('once delegated, the zone resolves from the root through the TLD to the Nexus server', async () => {
    expect((await api.as(alice, 'POST', `/v1/zones/${D}/records`, 'dns.record.add', { zone: D, name: 'www', type: 'A', value: '192.0.2.80' })).status).toBe(201);
    h.tldRecords.test.push({ name: D, type: 'NS', data: 'ns1.world.' });
    const iter = new Iterator({ cache: new Cache(), rootHints: h.rootHints, upstreamPort: h.port, limits: { timeoutMs: 500 } });
    const r = await eventually(async () => {
      const x = await iter.resolve(`www.${D}`, 'A');
      if (x.rcode !== 'NOERROR' || x.answers.length === 0) throw new Error(`not yet: ${x.rcode} ${x.reason ?? ''}`);
      return x;
    }, 5000);
    expect(r.answers.map((a) => (a as { data: unknown }).data)).toEqual(['192.0.2.80']);
    expect(h.nexus.stats().udpQueries + h.nexus.stats().tcpQueries).toBeGreaterThan(0);
  });

  it('domain release frees it: zone, records and DNSSEC key go; it is no longer served; the ledger replays', async () => {
    const r = await api.as(alice, 'DELETE', '/v1/imvus/IMVU-001/domains', 'domain.release', { imvu: 'IMVU-001', domain: D });
    expect(r.status, r.text).toBe(200);
    await eventually(async () => expect((await soa(D)).rcode).toBe('REFUSED'), 5000);
    expect((await api.get(`/v1/zones/${D}/ds`)).status).toBe(404);
    expect((await api.get(`/v1/zones/${D}/records`)).status).toBe(404);
    const primary = await api.as(alice, 'DELETE', '/v1/imvus/IMVU-001/domains', 'domain.release', { imvu: 'IMVU-001', domain: 'imvu001.world' });
    expect(primary.status).toBe(403);
    const report = await verifyStore(api.server.store);
    expect(report.problems).toEqual([]);
    const entries = (await api.get<{ entries: LedgerEntry[] }>('/v1/ledger/entries')).body.entries;
    expect(entries.filter((e) => e.command.command?.type === 'domain.verified' && e.decision.allowed)).toHaveLength(1);
  });
});

describe('a daemon without root hints', () => {
  it('answers domain verify with 503 and records nothing', async () => {
    const bare = await startTestApi();
    try {
      const carol = await bare.register('carol', 'creator');
      expect((await bare.createImvu(carol, 'C')).status).toBe(201);
      expect((await bare.as(carol, 'POST', '/v1/imvus/IMVU-001/domains', 'domain.claim', { imvu: 'IMVU-001', domain: 'carol.example' })).status).toBe(201);
      const before = await bare.size();
      const r = await bare.as(carol, 'POST', '/v1/imvus/IMVU-001/domains/verify', 'domain.verify', { imvu: 'IMVU-001', domain: 'carol.example' });
      expect(r.status).toBe(503);
      expect(await bare.size()).toBe(before);
    } finally {
      await bare.close();
    }
  });
});
