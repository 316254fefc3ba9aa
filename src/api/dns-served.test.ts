// A command's reply comes after the DNS server answers from it: a record just added is in the very
// next answer, one just removed is gone, an exited IMVU's zone is no longer answered. The zone
// view's own poll is set to ten minutes here, so only the reply path can have brought it up to date.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { query, udpAsk } from '../domains/dns-authority/testing.ts';
import { startTestApi, type Actor, type TestApi } from '../../test/support/api.ts';

let api: TestApi;
let alice: Actor;
const ask = (name: string, type: 'A' | 'SOA') => udpAsk(api.server.dns!.server.port, query(name, type, { rd: false }));
const addresses = (r: Awaited<ReturnType<typeof ask>>) => (r.answers ?? []).filter((a) => a.type === 'A').map((a) => (a as { data: string }).data);

beforeAll(async () => {
  api = await startTestApi({ dns: { port: 0, meterIntervalMs: 600_000, server: { refreshMs: 600_000 } } });
  alice = await api.register('alice', 'creator');
}, 60_000);
afterAll(async () => api?.close());

describe('served when the reply says so', () => {
  it('a record added or removed is answered so as soon as the command is answered', async () => {
    const { body } = await api.createImvu(alice, 'Served');
    const zone = (body.imvu as { domain: string }).domain;
    expect((await ask(zone, 'SOA')).rcode).toBe('NOERROR');
    const add = await api.as(alice, 'POST', `/v1/zones/${zone}/records`, 'dns.record.add', { zone, name: 'now', type: 'A', value: '10.1.2.3' });
    expect(add.status, add.text).toBe(201);
    const got = await ask(`now.${zone}`, 'A');
    expect(addresses(got)).toEqual(['10.1.2.3']);
    const del = await api.as(alice, 'DELETE', `/v1/zones/${zone}/records`, 'dns.record.remove', { zone, name: 'now', type: 'A' });
    expect(del.status, del.text).toBe(200);
    expect(addresses(await ask(`now.${zone}`, 'A'))).toEqual([]);
  });
});
