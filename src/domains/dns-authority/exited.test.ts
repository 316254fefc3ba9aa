import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDnsServer, type DnsServer } from './server.ts';
import { dnsFixture, eventually, query, udpAsk, type DnsFixture } from './testing.ts';

// An exited IMVU is no longer served: once its exit is in the ledger, the server stops answering
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
    const exit = await f.p.as(f.bob, 'imvu.exit', { imvu: 'IMVU-002' });
    expect(exit.allowed).toBe(true);
    await eventually(async () => {
      expect(await udpAsk(srv.port, query(shop, 'A'))).toMatchObject({ rcode: 'REFUSED', answers: [] });
    }, 5000);
    expect(await udpAsk(srv.port, query(`www.${shop}`, 'A'))).toMatchObject({ rcode: 'REFUSED' });
    expect(await udpAsk(srv.port, query(shop, 'SOA'))).toMatchObject({ rcode: 'REFUSED' });
    expect(await udpAsk(srv.port, query('www.imvu001.world', 'A'))).toMatchObject({ rcode: 'NOERROR', flag_aa: true });
  });
});
