// Restricted routes (issue 13, item 2): a role listed on the route AND, when the route sets one,
// the client address in its ip_whitelist, both enforced by HAProxy. Clients are curl bound to
// different loopback sources (127.0.0.1, .2, .3). Refusals reach nexus through HAProxy's log
// stream and land in the ledger as `gateway.refusals` entries, aggregated per interval, per IMVU,
// route and reason.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { testPlatform, type TestPlatform, type Actor } from '../../src/core/testing.ts';
import type { Json } from '../../src/core/types.ts';
import { Gateway } from '../../src/network/gateway/gateway.ts';
import { issueToken } from '../../src/network/gateway/tokens.ts';
import { startWorkload, type Workload } from './workloads.ts';
import { createImvu, curl as curlVia, freePort, haveHaproxy, refusalCounts, waitFor } from './harness.ts';

const RANGE = `10.202.${process.pid % 256}.0/24`;

describe.skipIf(!haveHaproxy)('restricted routes: role and IP allow-list, enforced by HAProxy', () => {
  let p: TestPlatform;
  let gw: Gateway;
  let alice: Actor;
  let bob: Actor;
  let A: { id: string; seq: number; host: string };
  let B: { id: string; seq: number; host: string };
  let port: number;
  const workloads: Workload[] = [];
  const curl = (host: string, path: string, from: string, extra: string[] = []) => curlVia(gw, port, host, path, ['--interface', from, ...extra]);
  const bearer = (roles: string[], imvu = A.id) => ['-H', `Authorization: Bearer ${issueToken(gw.tokenKey, { imvu, identity: alice.id, roles })}`];
  // Route numbers follow the policy's order: public, then private, then restricted.
  const policy = (adminAllow: string[]): { [k: string]: Json } => ({
    public: [{ path: '/*', backend: 'web:8080' }],
    private: [{ path: '/team/*', backend: 'web:8080', require_identity: true, ip_whitelist: ['127.0.0.3'] }],
    restricted: [
      { path: '/admin/*', backend: 'web:8080', require_roles: ['admin'], ip_whitelist: adminAllow },
      { path: '/ops/*', backend: 'web:8080', require_roles: ['ops'] },
    ],
  });

  beforeAll(async () => {
    p = await testPlatform();
    alice = await p.register('alice', 'creator');
    bob = await p.register('bob', 'creator');
    A = await createImvu(p, alice, 'vault');
    B = await createImvu(p, bob, 'open');
    expect((await p.as(alice, 'route.set', { imvu: A.id, policy: policy(['127.0.0.2/32', '10.9.0.0/16', '2001:db8::/32']) })).allowed).toBe(true);
    expect((await p.as(bob, 'route.set', { imvu: B.id, policy: { public: [{ path: '/*', backend: 'web:8080' }], private: [], restricted: [] } })).allowed).toBe(true);
    workloads.push(await startWorkload('ra', A.seq, RANGE, 'vault', [8080]));
    workloads.push(await startWorkload('rb', B.seq, RANGE, 'open', [8080]));
    port = await freePort();
    gw = new Gateway({ platform: p, httpsBind: `127.0.0.1:${port}`, range: RANGE, checkIntervalMs: 3_600_000, refusalIntervalMs: 1500, log: (l) => console.log(l) });
    await gw.start();
  }, 90_000);

  afterAll(async () => {
    await gw?.stop();
    for (const w of workloads) w.stop();
    await p?.cleanup();
  });

  it('a listed role from an allowed address passes; a listed role from elsewhere is refused 403', () => {
    const admin = bearer(['viewer', 'admin']);
    const ok = curl(A.host, '/admin/panel', '127.0.0.2', admin);
    expect([ok.code, ok.body]).toEqual([200, 'vault /admin/panel 0\n']);
    const elsewhere = curl(A.host, '/admin/panel', '127.0.0.1', admin);
    expect([elsewhere.code, elsewhere.body]).toEqual([403, 'address not allowed\n']);
    expect(curl(A.host, '/admin/panel', '127.0.0.3', admin).code).toBe(403);
  });

  it('an allowed address without the role, or without a token, is still refused', () => {
    const viewer = curl(A.host, '/admin/panel', '127.0.0.2', bearer(['viewer']));
    expect([viewer.code, viewer.body]).toEqual([403, 'role required\n']);
    expect(curl(A.host, '/admin/panel', '127.0.0.2').code).toBe(401);
    // A token for another IMVU with the right role name: 401 (audience).
    expect(curl(A.host, '/admin/panel', '127.0.0.2', bearer(['admin'], B.id)).code).toBe(401);
  });

  it('a route without an allow-list admits its role from any address; an allow-list on a private route applies too', () => {
    expect(curl(A.host, '/ops/x', '127.0.0.1', bearer(['ops'])).code).toBe(200);
    expect(curl(A.host, '/ops/x', '127.0.0.7', bearer(['ops'])).code).toBe(200);
    expect(curl(A.host, '/ops/x', '127.0.0.1', bearer(['admin'])).code).toBe(403);
    expect(curl(A.host, '/team/x', '127.0.0.3', bearer([])).code).toBe(200);
    expect(curl(A.host, '/team/x', '127.0.0.1', bearer([])).code).toBe(403);
    // The public route and the other IMVU are untouched by A's lists.
    expect(curl(A.host, '/', '127.0.0.9').code).toBe(200);
    expect(curl(B.host, '/admin/panel', '127.0.0.1').body).toBe('open /admin/panel 0\n');
  });

  it('an allow-list changed through the chokepoint is served without a reload; a hand edit of the allow map is reverted and alarmed', async () => {
    const pid = (await gw.readCounters()).process;
    expect((await p.as(alice, 'route.set', { imvu: A.id, policy: policy(['127.0.0.0/30']) })).allowed).toBe(true);
    await gw.sync();
    const admin = bearer(['admin']);
    expect(curl(A.host, '/admin/x', '127.0.0.1', admin).code).toBe(200);
    expect(curl(A.host, '/admin/x', '127.0.0.3', admin).code).toBe(200);
    expect(curl(A.host, '/admin/x', '127.0.0.4', admin).code).toBe(403);
    expect((await gw.readCounters()).process).toBe(pid);
    // Someone widens the list by hand over the runtime socket: it works until the check reverts it.
    execFileSync('socat', ['-', `UNIX-CONNECT:${gw.layout.adminSocket}`], { input: `add map ${gw.layout.maps.allow} 127.0.0.4/32@${A.id}.3 1\n` });
    expect(curl(A.host, '/admin/x', '127.0.0.4', admin).code).toBe(200);
    const report = await gw.verify();
    expect(report.differences.map((d) => d.map)).toEqual(['allow']);
    expect(report.differences[0]!.extra).toEqual([`127.0.0.4/32@${A.id}.3 1`]);
    expect(gw.alarms.at(-1)!.imvus).toEqual([A.id]);
    expect(curl(A.host, '/admin/x', '127.0.0.4', admin).code).toBe(403);
    expect((await gw.served()).equal).toBe(true);
  }, 60_000);

  it('refusals reach the ledger through the log stream, per IMVU, route and reason, aggregated per interval', async () => {
    // Everything refused so far has been summarised by the timer; count what this test adds.
    const settled = () => gw.refusalsSeen > 0 && gw.refusalsSeen === gw.refusalsRecorded;
    await waitFor(settled, 30_000, 'the refusals so far to be recorded');
    const before = await refusalCounts(p);
    const key = (c: { imvu: string; route: string; status: number; reason: string }) => `${c.imvu} ${c.route} ${c.status} ${c.reason}`;
    const sum = (list: typeof before) => {
      const m = new Map<string, number>();
      for (const c of list) m.set(key(c), (m.get(key(c)) ?? 0) + c.count);
      return m;
    };
    const seen0 = gw.refusalsSeen;
    const admin = bearer(['admin']);
    for (let i = 0; i < 4; i++) expect(curl(A.host, '/admin/y', '127.0.0.9', admin).code).toBe(403);
    for (let i = 0; i < 3; i++) expect(curl(A.host, '/admin/y', '127.0.0.1', bearer(['viewer'])).code).toBe(403);
    for (let i = 0; i < 2; i++) expect(curl(A.host, '/team/y', '127.0.0.3').code).toBe(401);
    const want = new Map([
      [`${A.id} ${A.id}.3 403 ip-not-allowed`, 4],
      [`${A.id} ${A.id}.3 403 missing-role`, 3],
      [`${A.id} ${A.id}.2 401 no-token`, 2],
    ]);
    const added = async () => {
      const b = sum(before);
      const a = sum(await refusalCounts(p));
      return new Map([...a].map(([k, v]) => [k, v - (b.get(k) ?? 0)]).filter(([, v]) => (v as number) > 0) as [string, number][]);
    };
    await waitFor(async () => gw.refusalsSeen >= seen0 + 9 && settled(), 30_000, 'the refusals in the ledger');
    expect(await added()).toEqual(want);
    // Each entry counts a key once (aggregated), and nothing of B's was refused.
    const rows = await p.store.all<{ data: Buffer }>('SELECT data FROM ledger_entries ORDER BY idx');
    for (const r of rows) {
      const e = JSON.parse(Buffer.from(r.data).toString('utf8')) as { command: { command: { type: string; body: { from: string; to: string; counts: { imvu: string }[] } } } };
      if (e.command.command.type !== 'gateway.refusals') continue;
      const keys = e.command.command.body.counts.map((c) => key(c as never));
      expect(new Set(keys).size).toBe(keys.length);
      expect(e.command.command.body.from < e.command.command.body.to).toBe(true);
      expect(keys.some((k) => k.startsWith(B.id))).toBe(false);
    }
  }, 60_000);
});
