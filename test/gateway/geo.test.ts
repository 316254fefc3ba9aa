// Geo and policy routing (issue 13, item 7): two gateway nodes, each its own HAProxy data plane,
// on loopback in different regions (eu-west, us-east), plus one with no region, all serving the
// same ledger. An EU-GDPR IMVU's private and restricted routes are served only by the EU node;
// the US node refuses them with 451 and a body that says why; public routes and IMVUs without a
// residency rule are served by both.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { testPlatform, type TestPlatform, type Actor } from '../../src/core/testing.ts';
import { Gateway } from '../../src/network/gateway/gateway.ts';
import { issueToken } from '../../src/network/gateway/tokens.ts';
import { regionPermits } from '../../src/network/gateway/geo.ts';
import { resolveConfig } from '../../src/api/config.ts';
import { startWorkload, type Workload } from './workloads.ts';
import { createImvu, curl, freePort, haveHaproxy, refusalCounts, waitFor } from './harness.ts';

const RANGE = `10.203.${process.pid % 256}.0/24`;

describe('regions', () => {
  it('EU-GDPR admits only eu gateways; UK-GDPR uk and eu; no region admits none of them; others anywhere', () => {
    expect(regionPermits('EU-GDPR', 'eu-west')).toEqual({ ok: true, areas: ['eu'] });
    expect(regionPermits('EU-GDPR', 'us-east').ok).toBe(false);
    expect(regionPermits('EU-GDPR', undefined).ok).toBe(false);
    expect(regionPermits('UK-GDPR', 'eu-central-1').ok).toBe(true);
    expect(regionPermits('US-CCPA', 'ap-south').ok).toBe(true);
    expect(regionPermits('US-CCPA', undefined).ok).toBe(true);
  });

  it('--region is validated: a two-letter area and optional labels', () => {
    expect(resolveConfig({ dataDir: '/tmp/nexus-geo-cfg', gatewayRegion: 'eu-west', env: {} }).gatewayRegion).toBe('eu-west');
    expect(resolveConfig({ dataDir: '/tmp/nexus-geo-cfg', env: { NEXUS_GATEWAY_REGION: 'us-east-1' } }).gatewayRegion).toBe('us-east-1');
    expect(resolveConfig({ dataDir: '/tmp/nexus-geo-cfg', env: {} }).gatewayRegion).toBe('');
    expect(() => resolveConfig({ dataDir: '/tmp/nexus-geo-cfg', gatewayRegion: 'Europe', env: {} })).toThrow(/--region/);
  });
});

describe.skipIf(!haveHaproxy)('two gateway nodes in different regions', () => {
  let p: TestPlatform;
  let alice: Actor;
  let E: { id: string; seq: number; host: string };
  let U: { id: string; seq: number; host: string };
  const nodes: { region: string | undefined; gw: Gateway; port: number }[] = [];
  const workloads: Workload[] = [];
  const routes = {
    public: [{ path: '/*', backend: 'web:8080' }],
    private: [{ path: '/p/*', backend: 'web:8080', require_identity: true }],
    restricted: [{ path: '/r/*', backend: 'web:8080', require_roles: ['admin'] }],
  };
  const node = (region: string | undefined) => nodes.find((n) => n.region === region)!;
  const via = (region: string | undefined, host: string, path: string, extra: string[] = []) => curl(node(region).gw, node(region).port, host, path, extra);
  const auth = (imvu: string, roles: string[] = []) => ['-H', `Authorization: Bearer ${issueToken(nodes[0]!.gw.tokenKey, { imvu, identity: alice.id, roles })}`];

  beforeAll(async () => {
    p = await testPlatform();
    alice = await p.register('alice', 'creator');
    E = await createImvu(p, alice, 'eushop', 'EU-GDPR');
    U = await createImvu(p, alice, 'usshop', 'US-CCPA');
    for (const i of [E, U]) expect((await p.as(alice, 'route.set', { imvu: i.id, policy: routes })).allowed).toBe(true);
    workloads.push(await startWorkload('ge', E.seq, RANGE, 'eushop', [8080]));
    workloads.push(await startWorkload('gu', U.seq, RANGE, 'usshop', [8080]));
    // The nodes share the platform's token key (one key signs route tokens for every node).
    const first = join(p.dataDir, 'gw-eu-west');
    for (const region of ['eu-west', 'us-east', undefined]) {
      const dir = join(p.dataDir, `gw-${region ?? 'none'}`);
      if (dir !== first) {
        mkdirSync(dir, { recursive: true });
        cpSync(join(first, 'keys'), join(dir, 'keys'), { recursive: true });
      }
      const port = await freePort();
      const gw = new Gateway({ platform: p, dir, httpsBind: `127.0.0.1:${port}`, range: RANGE, checkIntervalMs: 3_600_000, refusalIntervalMs: 3_600_000, ...(region ? { region } : {}), log: (l) => console.log(`[${region}] ${l}`) });
      await gw.start();
      nodes.push({ region, gw, port });
    }
  }, 120_000);

  afterAll(async () => {
    for (const n of nodes) await n.gw.stop();
    for (const w of workloads) w.stop();
    await p?.cleanup();
  });

  it("the EU node serves the EU-GDPR IMVU's private and restricted routes", () => {
    expect(via('eu-west', E.host, '/p/data', auth(E.id)).body).toBe('eushop /p/data 0\n');
    expect(via('eu-west', E.host, '/r/admin', auth(E.id, ['admin'])).body).toBe('eushop /r/admin 0\n');
    // The usual checks still apply there.
    expect(via('eu-west', E.host, '/p/data').code).toBe(401);
    expect(via('eu-west', E.host, '/r/admin', auth(E.id)).code).toBe(403);
  });

  it('the US node refuses them with 451 and says why, token or not', () => {
    for (const [path, extra] of [['/p/data', auth(E.id)], ['/r/admin', auth(E.id, ['admin'])], ['/p/data', []]] as const) {
      const r = via('us-east', E.host, path, [...extra]);
      expect(r.code, path).toBe(451);
      expect(r.body).toBe(`${E.id} is under EU-GDPR: its private and restricted routes are served only by gateways in the eu area(s); this gateway is in region us-east\n`);
    }
    // A node with no region set serves them nowhere either.
    const none = via(undefined, E.host, '/p/data', auth(E.id));
    expect(none.code).toBe(451);
    expect(none.body).toContain('this gateway is in region (none set)');
  });

  it('public routes, and IMVUs without a residency rule, are served by every node', () => {
    for (const region of ['eu-west', 'us-east', undefined]) {
      expect(via(region, E.host, '/hello').body).toBe('eushop /hello 0\n');
      expect(via(region, U.host, '/p/data', auth(U.id)).body).toBe('usshop /p/data 0\n');
      expect(via(region, U.host, '/r/admin', auth(U.id, ['admin'])).body).toBe('usshop /r/admin 0\n');
    }
  });

  it('the 451s are recorded as refusals of the node that refused, reason region', async () => {
    const us = node('us-east').gw;
    // Three refused on the US node (the log lines arrive over UDP, a moment after the answers).
    await waitFor(() => us.refusalsSeen >= 3, 30_000, 'the log lines of the 451s');
    expect((await us.summariseRefusals()).length).toBeGreaterThan(0);
    const counts = await refusalCounts(p);
    expect(counts).toContainEqual({ imvu: E.id, route: `${E.id}.2`, status: 451, reason: 'region', count: 2 });
    expect(counts).toContainEqual({ imvu: E.id, route: `${E.id}.3`, status: 451, reason: 'region', count: 1 });
    expect(counts.filter((c) => c.imvu === U.id || c.reason === 'region').length).toBe(2);
    // The EU node refused nothing for its region.
    expect([...node('eu-west').gw.refusals.keys()].some((k) => k.includes(' 451 '))).toBe(false);
  });

  it("each node's served table says whether it may serve the EU IMVU, and equals its ledger table", async () => {
    const { runtimeCommand } = await import('../../src/network/gateway/runtime.ts');
    for (const n of nodes) {
      const map = await runtimeCommand(n.gw.layout.adminSocket, `show map ${n.gw.layout.maps.imvus}`);
      expect(map, String(n.region)).toMatch(new RegExp(`${E.id} ${n.region === 'eu-west' ? 1 : 0}\\|EU-GDPR\\|eu$`, 'm'));
      expect(map).toMatch(new RegExp(`${U.id} 1\\|US-CCPA\\|\\*$`, 'm'));
      expect((await n.gw.verify()).equal).toBe(true);
    }
  });
});
