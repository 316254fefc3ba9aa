// The gateway looks for committed changes every pollMs, and reads the routing table only when a
// commit changed a projection the table is made of, and then only the rows of the IMVUs the new
// entries name (the whole table is every active IMVU's row: about a second at 100,000 IMVUs).
// Entries that change none (consents, usage reports) cost no read; a route change is still served
// at the next look, with nobody calling sync().
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testPlatform, type TestPlatform, type Actor } from '../../src/core/testing.ts';
import type { Store } from '../../src/core/store/index.ts';
import { Gateway } from '../../src/network/gateway/gateway.ts';
import { createImvu, freePort, haveHaproxy, waitFor } from './harness.ts';
import { openAsRoot } from '../support/root.ts';

const RANGE = `10.209.${process.pid % 256}.0/24`;

let p: TestPlatform;
let gw: Gateway;
let alice: Actor;
let A: { id: string; seq: number; host: string };
/** Reads of the whole table (table.ts loadParts's first query, without a list of IMVUs). */
let tableReads = 0;
/** Reads of some IMVUs' rows of it. */
let partReads = 0;

describe.skipIf(!haveHaproxy)('the gateway reads its table only when its sources changed', () => {
  beforeAll(async () => {
    p = await testPlatform();
    alice = await p.register('alice', 'creator');
    A = await createImvu(p, alice, 'pollshop');
    const policy = { public: [{ path: '/*', backend: 'web:8080' }], private: [], restricted: [] };
    expect((await p.as(alice, 'route.set', { imvu: A.id, policy })).allowed).toBe(true);
    const store = new Proxy(p.store, {
      get(target, prop, receiver) {
        const v = Reflect.get(target, prop, receiver) as unknown;
        if (typeof v !== 'function') return v;
        if (prop !== 'all') return v.bind(target);
        return (sql: string, params?: unknown[]) => {
          if (/FROM imvus i LEFT JOIN routes/.test(sql)) {
            if (/i\.id IN \(/.test(sql)) partReads++;
            else tableReads++;
          }
          return (v as Store['all']).call(target, sql, params as never);
        };
      },
    });
    const platform = new Proxy(p, { get: (t, k, r) => (k === 'store' ? store : Reflect.get(t, k, r)) as unknown });
    gw = new Gateway({ platform, httpsBind: `127.0.0.1:${await freePort()}`, range: RANGE, checkIntervalMs: 3_600_000, pollMs: 50 });
    await gw.start();
  }, 60_000);

  afterAll(async () => {
    await gw?.stop();
    await p?.cleanup();
  });

  it("consents grow the ledger without a read; a route change is served at the next look, reading that IMVU's rows only", async () => {
    const before = tableReads;
    const partsBefore = partReads;
    const size = p.chokepoint.ledger.size;
    for (const purpose of ['news', 'offers', 'research'])
      expect((await p.as(alice, 'consent.record', { imvu: A.id, subject: alice.id, purpose, granted: true })).allowed).toBe(true);
    expect(p.chokepoint.ledger.size).toBeGreaterThan(size);
    // Ten looks at least.
    await new Promise((r) => setTimeout(r, 600));
    expect(tableReads).toBe(before);
    expect(partReads).toBe(partsBefore);

    const policy = { public: [{ path: '/*', backend: 'web:8080' }, { path: '/fresh', backend: 'web:8081' }], private: [], restricted: [] };
    expect((await p.as(alice, 'route.set', { imvu: A.id, policy })).allowed).toBe(true);
    await waitFor(async () => (await gw.servedMaps()).exact.some(([k]) => k === `${A.id}/fresh`), 10_000, 'the new route served');
    expect(tableReads).toBe(before);
    expect(partReads).toBeGreaterThan(partsBefore);
    expect((await gw.served()).equal).toBe(true);
  }, 60_000);

  it("a new IMVU is served after reading its rows only; an exited one is no longer served, likewise", async () => {
    const before = tableReads;
    const partsBefore = partReads;
    const B = await createImvu(p, alice, 'pollnew');
    await waitFor(async () => (await gw.servedMaps()).hosts.some(([h, id]) => h === B.host && id === B.id), 20_000, 'the new IMVU served');
    expect(tableReads).toBe(before);
    expect(partReads).toBeGreaterThan(partsBefore);
    // Its certificate was issued, recorded in the ledger and is the one HAProxy serves.
    await waitFor(async () => (await gw.servedCertificates([B.id]))[0]?.equal === true, 10_000, "the new IMVU's certificate served");
    expect((await gw.verify()).equal).toBe(true);
    expect((await p.exitNow(alice, B.id)).allowed).toBe(true);
    await waitFor(async () => !(await gw.servedMaps()).hosts.some(([, id]) => id === B.id), 20_000, 'the exited IMVU no longer served');
    expect(tableReads).toBe(before);
    expect((await gw.verify()).equal).toBe(true);
    expect(gw.alarms).toEqual([]);
  }, 60_000);

  it('a route edited with SQL while it runs is not read by its checks; one read by sync() is replaced once the integrity check repairs it', async () => {
    const evil = JSON.stringify({ public: [{ path: '/evil', backend: 'web:9999' }], private: [], restricted: [] });
    const hasEvil = async () => (await gw.servedMaps()).exact.some(([k]) => k === `${A.id}/evil`);
    const root = openAsRoot(p.dataDir);
    try {
      expect(root.prepare('UPDATE routes SET policy = ? WHERE imvu = ?').run(evil, A.id).changes).toBe(1);
    } finally {
      root.close();
    }
    // The gateway's own check compares what HAProxy serves with the ledger's table; it does not
    // read the edited row, so it never serves it.
    expect((await gw.verify()).equal).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    expect(await hasEvil()).toBe(false);
    // sync() reads the projections as they are (edited): served until the repair...
    await gw.sync();
    expect(await hasEvil()).toBe(true);
    const alarm = await p.integrity.check();
    expect(alarm?.tables).toContain('routes');
    // Entries after the repair name no IMVU's routes: the repair alone makes the gateway read its table whole again.
    expect((await p.as(alice, 'consent.record', { imvu: A.id, subject: alice.id, purpose: 'after-repair', granted: true })).allowed).toBe(true);
    await gw.verify();
    expect(await hasEvil()).toBe(false);
    // ...whose restored digests equal those the gateway last read under: the repair count moves the key.
    await waitFor(async () => !(await hasEvil()), 10_000, 'the repaired route table served');
    expect((await gw.servedMaps()).exact.some(([k]) => k === `${A.id}/fresh`)).toBe(true);
  }, 60_000);
});
