// The warm-up of every zone (compiled in the background so that first queries do not pay for it)
// waits for `warmAfter`: the daemon passes "the API serves", so the warm-up does not compete with
// its start-up; a query meanwhile is answered by compiling its zone then.
import { afterEach, describe, expect, it } from 'vitest';
import { startDnsServer, type DnsServer } from './server.ts';
import { dnsFixture, query, udpAsk, type DnsFixture } from './testing.ts';

let f: DnsFixture | undefined;
let srv: DnsServer | undefined;
afterEach(async () => {
  await srv?.close();
  await f?.p.cleanup();
  srv = undefined;
  f = undefined;
});

const turns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

describe('DNS warm-up after start-up', () => {
  it('compiles no zone before `warmAfter` resolves (but answers), every zone after', async () => {
    f = await dnsFixture();
    let go!: () => void;
    srv = await startDnsServer({ store: f.p.store, rrl: false, warmAfter: new Promise<void>((r) => (go = r)) });
    await turns(50);
    expect(srv.view.stats.loads).toBe(0);
    // A query meanwhile compiles its own zone.
    const r = await udpAsk(srv.port, query('www.imvu001.world', 'A'));
    expect(r.rcode).toBe('NOERROR');
    expect(srv.view.stats.loads).toBe(1);
    go();
    await srv.warmed;
    // imvu002.world (and the platform's zone, if declared) compiled by the warm-up.
    expect(srv.view.stats.loads).toBeGreaterThanOrEqual(2);
  }, 60_000);
});
