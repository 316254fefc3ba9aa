// DNS queries metered into the ledger (gate 6): the daemon's DNS service counts the answers it
// sends per IMVU and reports them as usage.report entries signed by its own service identity.
// A known number of queries goes in over real sockets; exactly that number comes out of the ledger.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { promises as dns } from 'node:dns';
import { statSync } from 'node:fs';
import { startServer } from '../../src/api/server.ts';
import { serviceKeyPath } from '../../src/core/service-identity.ts';
import { openStore } from '../../src/core/store/index.ts';
import { decodeEntry } from '../../src/core/ledger/ledger.ts';
import type { LedgerEntry } from '../../src/core/types.ts';
import { startTestApi, type Actor, type TestApi } from '../support/api.ts';
import { expectRecordedDenial, imvuEntries } from '../support/ledger.ts';

let api: TestApi;
let alice: Actor;
let bob: Actor;

type Usage = { imvu: string; service: string; period: { start: string; end: string }; metrics: Record<string, string> };
const usageOf = (entries: LedgerEntry[], imvu: string) =>
  entries.filter((e) => e.command.command?.type === 'usage.report' && e.decision.allowed && (e.command.command.body as Usage).imvu === imvu);
const queriesIn = (entries: LedgerEntry[], imvu: string) => usageOf(entries, imvu).reduce((n, e) => n + BigInt((e.command.command.body as Usage).metrics['dns.queries'] ?? '0'), 0n);

function resolverFor(port: number): dns.Resolver {
  // One try: a retransmitted query would be answered (and counted) twice.
  const r = new dns.Resolver({ timeout: 3000, tries: 1 });
  r.setServers([`127.0.0.1:${port}`]);
  return r;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  api = await startTestApi({ dns: { port: 0, meterIntervalMs: 200 } });
  alice = await api.register('alice', 'creator');
  bob = await api.register('bob', 'creator');
  expect((await api.createImvu(alice, 'Gallery')).status).toBe(201);
  expect((await api.createImvu(bob, 'Shop')).status).toBe(201);
});
afterAll(async () => api?.close());

describe('DNS usage in the ledger', () => {
  it('the DNS service identity: registered by the platform at start, key in keys/services/dns.key (0600)', async () => {
    const health = (await api.get<{ dns: { address: string; port: number } }>('/health')).body;
    expect(health.dns).toEqual({ address: '127.0.0.1', port: api.server.dns!.server.port, xfr: { allow: [], tsig: null, notify: [] }, zones: 'ready' });
    const svc = (await api.get<{ id: string; name: string; role: string }>('/v1/identities/dns')).body;
    expect(svc).toMatchObject({ name: 'dns', role: 'service', id: api.server.dns!.identity.id });
    expect(statSync(serviceKeyPath(api.dir, 'dns')).mode & 0o777).toBe(0o600);
    const registration = (await api.get<{ entries: LedgerEntry[] }>('/v1/ledger/entries?from=0&to=10')).body.entries.find(
      (e) => e.command.command?.type === 'identity.register' && (e.command.command.body as { name: string }).name === 'dns',
    );
    expect(registration?.command.command.actor).toBe(api.platformId);
    expect(registration?.decision.allowed).toBe(true);
  });

  it('137 queries to IMVU-001 and 5 to IMVU-002 over UDP are 137 and 5 dns.queries in the ledger, signed by the dns service', async () => {
    const r = resolverFor(api.server.dns!.server.port);
    // The server picks up new zones within its refresh interval (200 ms); wait without querying.
    const view = api.server.dns!.server.view;
    // (The platform's own zone encloses every name under the suffix: wait for the IMVU zones themselves.)
    await until('the zones to be served', async () => (view.enclosing('imvu001.world')?.name === 'imvu001.world' && view.enclosing('imvu002.world')?.name === 'imvu002.world' ? true : undefined));
    for (let i = 0; i < 100; i++) expect(await r.resolve4('imvu001.world')).toEqual(['127.0.0.1']);
    // Negative answers are answers too (NXDOMAIN with the SOA): the zone served them.
    for (let i = 0; i < 37; i++) await expect(r.resolve4(`nope${i}.imvu001.world`)).rejects.toMatchObject({ code: 'ENOTFOUND' });
    for (let i = 0; i < 5; i++) await r.resolveMx('imvu002.world');
    // Not ours: REFUSED, never metered.
    await expect(r.resolve4('example.com')).rejects.toMatchObject({ code: 'EREFUSED' });

    const entries = await until('the usage reports', async () => {
      const all = (await api.get<{ entries: LedgerEntry[] }>('/v1/ledger/entries')).body.entries;
      return queriesIn(all, 'IMVU-001') === 137n && queriesIn(all, 'IMVU-002') === 5n ? all : undefined;
    });
    // Two more intervals: nothing is counted twice.
    await new Promise((res) => setTimeout(res, 500));
    const later = (await api.get<{ entries: LedgerEntry[] }>('/v1/ledger/entries')).body.entries;
    expect(queriesIn(later, 'IMVU-001')).toBe(137n);
    expect(queriesIn(later, 'IMVU-002')).toBe(5n);

    // Through the IMVU filter, as a creator would read it.
    const mine = await imvuEntries(api, 'IMVU-001');
    expect(queriesIn(mine, 'IMVU-001')).toBe(137n);
    for (const e of usageOf(entries, 'IMVU-001')) {
      const body = e.command.command.body as Usage;
      expect(e.command.command.actor).toBe(api.server.dns!.identity.id);
      expect(body.service).toBe('dns');
      expect(Object.keys(body.metrics)).toEqual(['dns.queries']);
      expect(Date.parse(body.period.end)).toBeGreaterThan(Date.parse(body.period.start));
      expect(e.decision.gates.find((g) => g.gate === 6)).toMatchObject({ status: 'pass', reason: 'metered by service dns' });
    }
    // Batched per interval: far fewer entries than queries.
    expect(usageOf(later, 'IMVU-001').length).toBeLessThan(20);
    const metrics = (await api.get('/metrics')).text;
    expect(metrics).toMatch(/^nexus_dns_answered_total 142$/m);
    expect(metrics).toMatch(/^nexus_dns_queries_total\{transport="udp"\} 143$/m);
    // The repeated questions were answered from the response cache, and metered all the same (a
    // change of the zone set while they run, such as the platform zone's declaration, costs a miss).
    expect(Number(/^nexus_dns_response_cache_total\{result="hit"\} (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(99 + 4 - 2);
    expect(metrics).toMatch(/^nexus_usage_reports_total\{service="dns",outcome="allowed"\} \d+$/m);
  });

  it('an IMVU creator cannot report usage: 403, denied by gate 6, and recorded', async () => {
    const body = { imvu: 'IMVU-001', service: 'dns', period: { start: '2026-11-01T00:00:00.000Z', end: '2026-11-01T01:00:00.000Z' }, metrics: { 'dns.queries': '1' } };
    const sent = api.sign(alice, 'usage.report', body);
    const res = await api.request('POST', '/v1/usage', sent);
    await expectRecordedDenial(api, res, sent, 403, 6, /usage is metered by the infrastructure: a creator identity cannot report usage/);
    // Nor the creator of another IMVU, on its behalf.
    const other = api.sign(bob, 'usage.report', body);
    await expectRecordedDenial(api, await api.request('POST', '/v1/usage', other), other, 403, 6, /a creator identity cannot report usage/);
  });

  it('graceful shutdown flushes what was counted; a restart reuses the identity', async () => {
    // Restart the daemon on the same data directory with a long interval: only close() can flush.
    await api.server.close();
    const second = await startServer({ dataDir: api.dir, port: 0, logger: false, dns: { port: 0, meterIntervalMs: 3_600_000 } });
    try {
      expect(second.dns!.identity.registeredAt).toBeUndefined();
      const r = resolverFor(second.dns!.server.port);
      for (let i = 0; i < 11; i++) await r.resolveTxt('imvu001.world');
      expect(second.dns!.meter.stats().pendingUnits).toBe(11n);
    } finally {
      await second.close();
    }
    const store = openStore(api.dir);
    try {
      const entries = (await store.readEntries(0, await store.ledgerSize())).map(decodeEntry);
      expect(queriesIn(entries, 'IMVU-001')).toBe(148n);
      expect(entries.filter((e) => e.command.command?.type === 'identity.register' && (e.command.command.body as { name: string }).name === 'dns').length).toBe(1);
    } finally {
      await store.close();
    }
  });
});
