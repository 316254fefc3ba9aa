// The periodic check of a large table (beyond `wholeCheckLines`) costs a batch of IMVUs, not every
// served line: each map's line count from one `show map` listing, and the next IMVUs' lines looked
// up by key. A line added or removed by hand moves a count and is found at the next check; a value
// changed by hand is found when its IMVU's turn comes. Either way the maps are then read whole, the
// ledger's table is served again and an `integrity.alarm` names the IMVU.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { testPlatform, type TestPlatform } from '../../src/core/testing.ts';
import { Gateway } from '../../src/network/gateway/gateway.ts';
import { runtimeCommand } from '../../src/network/gateway/runtime.ts';
import { createImvu, freePort, haveHaproxy, recordCommands } from './harness.ts';

const RANGE = `10.209.${process.pid % 256}.0/24`;

let p: TestPlatform;
let gw: Gateway;
const ids: string[] = [];
const sent: string[] = [];

describe.skipIf(!haveHaproxy)('the periodic check of a large table, by counts and IMVUs in turn', () => {
  beforeAll(async () => {
    p = await testPlatform();
    const alice = await p.register('alice', 'creator');
    for (const name of ['turnone', 'turntwo', 'turnthree']) {
      const imvu = await createImvu(p, alice, name);
      ids.push(imvu.id);
      const policy = { public: [{ path: '/api', backend: 'web:8080' }, { path: '/static/*', backend: 'web:8081' }], private: [], restricted: [] };
      expect((await p.as(alice, 'route.set', { imvu: imvu.id, policy })).allowed).toBe(true);
    }
    // Every table is "large" here, and a check looks up one IMVU's lines.
    gw = new Gateway({ platform: p, httpsBind: `127.0.0.1:${await freePort()}`, range: RANGE, checkIntervalMs: 3_600_000, wholeCheckLines: 0, lineCheckBatch: 1 });
    await gw.start();
    recordCommands(gw, sent);
  }, 60_000);

  afterAll(async () => {
    vi.restoreAllMocks();
    await gw?.stop();
    await p?.cleanup();
  });

  it('a check with nothing wrong lists the counts once and looks up one IMVU, the next one each time; no map is read whole', async () => {
    const turns: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      sent.length = 0;
      expect((await gw.verify()).equal).toBe(true);
      expect(sent.filter((c) => c.startsWith('show map'))).toEqual(['show map']);
      const looked = new Set(sent.filter((c) => c.startsWith('get map ')).map((c) => /(IMVU-\d+)/.exec(c)?.[1] ?? 'host'));
      looked.delete('host');
      expect(looked.size).toBe(1);
      turns.push([...looked][0]!);
    }
    expect(turns.sort()).toEqual([...ids].sort());
  });

  it('a line added by hand moves a count: found at the next check, the maps read whole, reverted and alarmed', async () => {
    const exact = gw.layout.maps.exact;
    expect((await runtimeCommand(gw.layout.adminSocket, `add map ${exact} ${ids[0]}/evil public|9999|0|${ids[0]}.9|0|0|0`)).trim()).toBe('');
    const alarms = gw.alarms.length;
    sent.length = 0;
    const report = await gw.verify();
    expect(report.equal).toBe(false);
    expect(report.differences).toEqual([{ map: 'exact', extra: [`${ids[0]}/evil public|9999|0|${ids[0]}.9|0|0|0`], missing: [] }]);
    expect(sent).toContain(`show map ${exact}`);
    expect(gw.alarms.length).toBe(alarms + 1);
    expect(gw.alarms.at(-1)!.imvus).toEqual([ids[0]]);
    expect((await gw.servedMaps()).exact.some(([k]) => k === `${ids[0]}/evil`)).toBe(false);
    expect((await gw.verify()).equal).toBe(true);
  });

  it("a value changed by hand keeps the counts: found when its IMVU's turn comes, within a round", async () => {
    const exact = gw.layout.maps.exact;
    const victim = ids[1]!;
    expect((await runtimeCommand(gw.layout.adminSocket, `set map ${exact} ${victim}/api public|9999|0|${victim}.1|0|0|0`)).trim()).toBe('');
    const alarms = gw.alarms.length;
    let checks = 0;
    while (gw.alarms.length === alarms && checks < ids.length) {
      checks++;
      await gw.verify();
    }
    expect(gw.alarms.length).toBe(alarms + 1);
    expect(gw.alarms.at(-1)!.imvus).toEqual([victim]);
    expect((await gw.servedMaps()).exact.find(([k]) => k === `${victim}/api`)?.[1]).toMatch(/^public\|8080\|/);
  });
});
