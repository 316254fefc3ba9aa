// Whatever sequence of changes comes, applying them by IMVU (the poll's path) leaves HAProxy serving
// exactly the table a whole read of the ledger's projections gives: random route policies (exact
// and prefix paths, allow-lists, roles), envelope changes, suspensions and resumptions, and new
// IMVUs, in random order and batches (several commits between two looks).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { testPlatform, type TestPlatform, type Actor } from '../../src/core/testing.ts';
import { Gateway } from '../../src/network/gateway/gateway.ts';
import { loadTable, MAP_NAMES } from '../../src/network/gateway/table.ts';
import { createImvu, freePort, haveHaproxy } from './harness.ts';

const RANGE = `10.209.${process.pid % 256}.0/24`;

let p: TestPlatform;
let gw: Gateway;
let alice: Actor;
let admin: Actor;
const ids: string[] = [];

const PATHS = ['/', '/api', '/api/v2', '/static/*', '/static/img/*', '/*', '/internal/*', '/x;y'];
const routeArb = fc.record({
  path: fc.constantFrom(...PATHS),
  port: fc.integer({ min: 80, max: 90 }),
  cls: fc.constantFrom('public', 'private', 'restricted'),
  allow: fc.subarray(['10.0.0.0/8', '192.168.1.7', '2001:db8::/32'], { maxLength: 2 }),
});
const policyArb = fc.uniqueArray(routeArb, { selector: (r) => r.path, maxLength: 5 }).map((routes) => {
  const policy: Record<string, object[]> = { public: [], private: [], restricted: [] };
  for (const r of routes)
    policy[r.cls]!.push({
      path: r.path,
      backend: `web:${r.port}`,
      ...(r.allow.length ? { ip_whitelist: r.allow } : {}),
      ...(r.cls === 'private' ? { require_identity: true } : {}),
      ...(r.cls === 'restricted' ? { require_roles: ['admin'] } : {}),
    });
  return policy;
});
const stepArb = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('route' as const), imvu: fc.nat(), policy: policyArb }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('scale' as const), imvu: fc.nat(), cores: fc.integer({ min: 1, max: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('suspend' as const), imvu: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('resume' as const), imvu: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('create' as const) }) },
);

/** Every served map as a sorted list of lines. */
async function served(): Promise<Record<string, string[]>> {
  const maps = await gw.servedMaps();
  return Object.fromEntries(MAP_NAMES.map((m) => [m, maps[m].map(([k, v]) => `${k} ${v}`).sort()]));
}

async function ledgerTable(): Promise<Record<string, string[]>> {
  const t = await loadTable(p.store, RANGE);
  return Object.fromEntries(MAP_NAMES.map((m) => [m, t.maps[m].map(([k, v]) => `${k} ${v}`).sort()]));
}

describe.skipIf(!haveHaproxy)('changes applied by IMVU serve what a whole read gives (property)', () => {
  beforeAll(async () => {
    p = await testPlatform();
    alice = await p.register('alice', 'creator');
    admin = await p.register('root-admin', 'admin');
    for (const name of ['propone', 'proptwo']) ids.push((await createImvu(p, alice, name)).id);
    gw = new Gateway({ platform: p, httpsBind: `127.0.0.1:${await freePort()}`, range: RANGE, checkIntervalMs: 3_600_000, pollMs: 3_600_000 });
    await gw.start();
  }, 60_000);

  afterAll(async () => {
    await gw?.stop();
    await p?.cleanup();
  });

  it('after every batch of commits, the served maps equal the ledger table, with no alarm', async () => {
    const g = gw as unknown as { apply(whole: boolean): Promise<void>; serialize<T>(fn: () => Promise<T>): Promise<T> };
    let created = 0;
    const allowed: Record<string, number> = {};
    const count = (kind: string, r: { allowed: boolean }) => {
      if (r.allowed) allowed[kind] = (allowed[kind] ?? 0) + 1;
    };
    await fc.assert(
      fc.asyncProperty(fc.array(fc.array(stepArb, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 4 }), async (batches) => {
        for (const batch of batches) {
          for (const s of batch) {
            const imvu = 'imvu' in s ? ids[s.imvu % ids.length]! : '';
            if (s.kind === 'route') count(s.kind, await p.as(alice, 'route.set', { imvu, policy: s.policy as never }));
            else if (s.kind === 'scale') count(s.kind, await p.as(alice, 'imvu.scale', { imvu, cpu_cores: s.cores }));
            else if (s.kind === 'suspend') count(s.kind, await p.as(admin, 'imvu.suspend', { imvu, reason: 'property test' }));
            else if (s.kind === 'resume') count(s.kind, await p.as(admin, 'imvu.resume', { imvu }));
            else if (ids.length < 5) {
              ids.push((await createImvu(p, alice, `propnew${created++}`)).id);
              count('create', { allowed: true });
            }
          }
          // The poll's look: by IMVU whenever it can.
          await g.serialize(() => g.apply(false));
          expect(await served()).toEqual(await ledgerTable());
        }
      }),
      // A fixed seed: the same sequences in every run (the counts below hold for them).
      { numRuns: 12, seed: 20261203 },
    );
    console.log(`property: allowed ${JSON.stringify(allowed)}`);
    // The sequences did change the table, in every way the steps name.
    for (const kind of ['route', 'scale', 'suspend', 'resume', 'create']) expect(allowed[kind] ?? 0, kind).toBeGreaterThan(0);
    expect(gw.alarms).toEqual([]);
    expect((await gw.verify()).equal).toBe(true);
  }, 240_000);
});
