// Threat model over the real HTTP API: a hostile creator (scenario 1.3, domain theft) and requests
// that are unsigned, forged, replayed or stale. Each is refused with the right status; an
// authenticated attempt leaves a ledger entry that names the gate that said no, an
// unauthenticated one is only counted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type Actor, type TestApi } from '../support/api.ts';
import { expectRecordedDenial, expectUnrecorded, imvuEntries } from '../support/ledger.ts';

let api: TestApi;
let alice: Actor;
let bob: Actor;
let a: { id: string; domain: string };
let b: { id: string; domain: string };

beforeAll(async () => {
  api = await startTestApi();
  alice = await api.register('alice', 'creator');
  bob = await api.register('bob', 'creator');
  const ra = await api.createImvu(alice, 'AliceWorld');
  const rb = await api.createImvu(bob, 'BobWorld');
  a = ra.body.imvu as typeof a;
  b = rb.body.imvu as typeof b;
});
afterAll(async () => api.close());

describe('scenario 1.3: DNS zone hijacking', () => {
  it("creator A adding a record to creator B's zone gets 403, recorded against B's zone, which is unchanged", async () => {
    const zoneBefore = (await api.get(`/v1/zones/${b.domain}/records`)).body;
    const cmd = api.sign(alice, 'dns.record.add', { zone: b.domain, name: '@', type: 'A', value: '1.2.3.4' });
    const r = await api.request('POST', `/v1/zones/${b.domain}/records`, cmd);
    await expectRecordedDenial(api, r, cmd, 403, 4, /alice is neither the creator nor a member of .*, which owns zone/);
    expect((await imvuEntries(api, b.id)).map((e) => e.index)).toContain(r.body.index);
    expect((await api.get(`/v1/zones/${b.domain}/records`)).body).toEqual(zoneBefore);

    // Removing B's records is refused the same way.
    const rm = api.sign(alice, 'dns.record.remove', { zone: b.domain, name: '@', type: 'MX' });
    await expectRecordedDenial(api, await api.request('DELETE', `/v1/zones/${b.domain}/records`, rm), rm, 403, 4, /neither the creator nor a member/);

    // The spec's literal request (a bare record, no signature) is a 401, counted but not recorded.
    const bare = { type: 'A', name: '@', value: '1.2.3.4' };
    await expectUnrecorded(api, () => api.request('POST', `/v1/zones/${b.domain}/records`, bare), 401, /^gate 1: not a signed command/);
    expect((await api.get(`/v1/zones/${b.domain}/records`)).body).toEqual(zoneBefore);

    // Control: A changes its own zone, and the serial moves.
    const own = await api.as(alice, 'POST', `/v1/zones/${a.domain}/records`, 'dns.record.add', { zone: a.domain, name: 'www', type: 'A', value: '192.0.2.7' });
    expect(own.status, own.text).toBe(201);
    const zone = (await api.get<{ serial: number; records: { name: string; value: string }[] }>(`/v1/zones/${a.domain}/records`)).body;
    expect(zone.serial).toBe(4); // 1 at creation, +1 DKIM, +1 DNSKEY, +1 this record
    expect(zone.records).toContainEqual({ name: `www.${a.domain}`, type: 'A', value: '192.0.2.7', ttl: 3600 });
  });
});

describe('domain theft', () => {
  it("creator A claiming B's domain, or claiming a domain for B's IMVU, gets 403 and is recorded", async () => {
    const steal = api.sign(alice, 'domain.claim', { imvu: a.id, domain: b.domain });
    await expectRecordedDenial(api, await api.request('POST', `/v1/imvus/${a.id}/domains`, steal), steal, 403, 3, new RegExp(`${b.domain.replace('.', '\\.')} is allocated by the registry`));
    const inside = api.sign(alice, 'domain.claim', { imvu: a.id, domain: `shop.${b.domain}` });
    await expectRecordedDenial(api, await api.request('POST', `/v1/imvus/${a.id}/domains`, inside), inside, 403, 3, /is allocated by the registry/);
    const forB = api.sign(alice, 'domain.claim', { imvu: b.id, domain: 'bob-shop.example' });
    await expectRecordedDenial(api, await api.request('POST', `/v1/imvus/${b.id}/domains`, forB), forB, 403, 3, /only the creator or a member/);
    expect(((await api.get(`/v1/imvus/${b.id}`)).body.domains as unknown[]).length).toBe(1);

    // Control: a free domain for A's own IMVU, claimed pending proof (src/api/domains.test.ts proves one).
    const mine = await api.as(alice, 'POST', `/v1/imvus/${a.id}/domains`, 'domain.claim', { imvu: a.id, domain: 'alice.example' });
    expect(mine.status, mine.text).toBe(201);
    // A pending claim takes nothing from anyone: not served, and B may claim it too; the first to prove it gets it.
    expect((await api.get('/v1/zones/alice.example/records')).status).toBe(404);
    const also = await api.as(bob, 'POST', `/v1/imvus/${b.id}/domains`, 'domain.claim', { imvu: b.id, domain: 'alice.example' });
    expect(also.status, also.text).toBe(201);
  });
});

describe('gate 1 over HTTP: unsigned, forged, replayed and stale requests', () => {
  it('an unsigned command is a 401, counted, not recorded', async () => {
    const { command } = api.sign(alice, 'imvu.scale', { imvu: a.id, cpu_cores: 3 });
    await expectUnrecorded(api, () => api.request('POST', `/v1/imvus/${a.id}/scale`, { command }), 401, /^gate 1: not a signed command: sig/);
  });

  it("a forged request (alice's command under bob's signature) is a 401, not recorded", async () => {
    const real = api.sign(alice, 'imvu.exit', { imvu: a.id });
    const forged = { command: real.command, sig: api.sign(bob, 'imvu.exit', { imvu: a.id }).sig };
    await expectUnrecorded(api, () => api.request('POST', `/v1/imvus/${a.id}/exit`, forged), 401, /^gate 1: signature does not verify for alice/);
    expect((await api.get(`/v1/imvus/${a.id}`)).body.status).toBe('active');
  });

  it('a replayed request is a 401, not recorded again, and changes nothing', async () => {
    const cmd = api.sign(alice, 'mailbox.add', { imvu: a.id, address: `info@${a.domain}` });
    const first = await api.request('POST', `/v1/imvus/${a.id}/mailboxes`, cmd);
    expect(first.status, first.text).toBe(201);
    await expectUnrecorded(api, () => api.request('POST', `/v1/imvus/${a.id}/mailboxes`, cmd), 401, /already used: replayed command/);
  });

  it('a request with a stale timestamp is a 401, recorded', async () => {
    const stale = api.sign(alice, 'imvu.scale', { imvu: a.id, cpu_cores: 3 }, { ts: new Date(Date.now() - 60 * 60 * 1000).toISOString() });
    await expectRecordedDenial(api, await api.request('POST', `/v1/imvus/${a.id}/scale`, stale), stale, 401, 1, /outside the allowed window/);
  });

  it('a creator reporting its own usage (under-metering) is a 403, recorded', async () => {
    const cmd = api.sign(alice, 'usage.report', {
      imvu: a.id,
      service: 'network',
      period: { start: '2026-11-01T00:00:00.000Z', end: '2026-11-01T01:00:00.000Z' },
      metrics: { 'network.bytes': '1' },
    });
    await expectRecordedDenial(api, await api.request('POST', '/v1/usage', cmd), cmd, 403, 6, /a creator identity cannot report usage/);
  });
});
