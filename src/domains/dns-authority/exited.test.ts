import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type DnsServer } from './server.ts';
import { dnsFixture, eventually, query, udpAsk, type DnsFixture } from './testing.ts';

// An exited IMVU is no longer served: once its exit has ended in the ledger, the server stops answering
// for its zones (REFUSED, as for any name not hosted here), while other IMVUs' zones are unaffected.

let f: DnsFixture;
let srv: DnsServer;

beforeAll(async () => {
  f = await dnsFixture();
  srv = await startDnsServer({ store: f.p.store, rrl: false });
});
afterAll(async () => {
  await srv?.close();
  await f?.p.cleanup();
});

describe('the zones of an exited IMVU', () => {
  it('answer REFUSED after the exit; other zones still answer', async () => {
    const shop = 'imvu002.world';
    expect(await udpAsk(srv.port, query(shop, 'A'))).toMatchObject({ rcode: 'NOERROR', flag_aa: true });
    // While exiting, it is served exactly as before (threat 4.3); once the exit ends, no longer.
    expect((await f.p.as(f.bob, 'imvu.exit', { imvu: 'IMVU-002' })).allowed).toBe(true);
    await new Promise((r) => setTimeout(r, 400));
    expect(await udpAsk(srv.port, query(shop, 'A'))).toMatchObject({ rcode: 'NOERROR', flag_aa: true });
    const digest = '0'.repeat(64);
    const ready = await f.p.chokepoint.submit(
      f.p.chokepoint.platformCommand('imvu.exit.ready', { imvu: 'IMVU-002', archive: { sha256: digest, size: 1 }, manifest: digest, treeSize: f.p.chokepoint.ledger.size }),
    );
    expect(ready.allowed).toBe(true);
    expect((await f.p.as(f.bob, 'imvu.exit.confirm', { imvu: 'IMVU-002', archive: digest })).allowed).toBe(true);
    await eventually(async () => {
      expect(await udpAsk(srv.port, query(shop, 'A'))).toMatchObject({ rcode: 'REFUSED', answers: [] });
    }, 5000);
    expect(await udpAsk(srv.port, query(`www.${shop}`, 'A'))).toMatchObject({ rcode: 'REFUSED' });
    expect(await udpAsk(srv.port, query(shop, 'SOA'))).toMatchObject({ rcode: 'REFUSED' });
    expect(await udpAsk(srv.port, query('www.imvu001.world', 'A'))).toMatchObject({ rcode: 'NOERROR', flag_aa: true });
  });
});
