import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LedgerEntry } from '../core/types.ts';
import { eventually, query, udpAsk } from './dns-authority/testing.ts';
import { startTestApi, type Actor, type TestApi } from '../../test/support/api.ts';

// The daemon re-signs a signed zone nobody edits (resign.ts): with `resignAfterMs` in milliseconds,
// the SOA serial the DNS server answers moves without any record change, through platform-signed
// `dnssec.resign` entries in the ledger.

const Z = 'imvu001.world';
let api: TestApi;
let alice: Actor;

beforeAll(async () => {
  api = await startTestApi({ dns: { port: 0, meterIntervalMs: 60_000, resignCheckMs: 100, resignAfterMs: 1000 } });
  alice = await api.register('alice', 'creator');
  expect((await api.createImvu(alice, 'Gallery')).status).toBe(201);
});
afterAll(async () => api?.close());

const soaSerial = async (): Promise<number> => {
  const r = await udpAsk(api.server.dns!.server.port, query(Z, 'SOA', { edns: 1232, do: true, rd: false }));
  expect(r.rcode).toBe('NOERROR');
  const soa = r.answers!.find((a) => a.type === 'SOA') as { data: { serial: number } } | undefined;
  expect(soa).toBeDefined();
  // Signed online: the SOA comes with its RRSIG.
  expect(r.answers!.some((a) => a.type === 'RRSIG')).toBe(true);
  return soa!.data.serial;
};

describe('re-signing unchanged signed zones (nexus serve)', () => {
  it('the served SOA serial moves without a record change, by dnssec.resign entries signed by the platform', async () => {
    const first = await eventually(soaSerial, 5000);
    const later = await eventually(async () => {
      const s = await soaSerial();
      expect(s).toBeGreaterThan(first);
      return s;
    }, 10_000);
    expect(later).toBeGreaterThan(first);
    const entries = (await api.get<{ entries: LedgerEntry[] }>('/v1/ledger/entries')).body.entries;
    const resigns = entries.filter((e) => e.command.command?.type === 'dnssec.resign');
    expect(resigns.length).toBeGreaterThan(0);
    for (const e of resigns) {
      expect(e.command.command).toMatchObject({ actor: api.platformId, body: { zone: Z } });
      expect(e.decision.allowed).toBe(true);
    }
    // Nothing else touched the zone's records.
    expect(entries.filter((e) => e.command.command?.type?.startsWith('dns.record.'))).toEqual([]);
    // Not before its time: every re-signature at least resignAfterMs after the previous change.
    const times = entries.filter((e) => ['dnssec.publish', 'dnssec.resign'].includes(e.command.command?.type)).map((e) => Date.parse(e.at));
    for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeGreaterThanOrEqual(1000);
  });

  it('stops with the service', async () => {
    await api.server.dns!.close();
    const n = await api.size();
    await new Promise((r) => setTimeout(r, 1300));
    expect(await api.size()).toBe(n);
  });
});
