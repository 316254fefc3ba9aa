// A loopback DNS hierarchy for resolver tests, since there is no Internet here:
//
//   127.0.53.1  root  (fixed zones)                  . → world., test.
//   127.0.53.2  TLDs  (fixed zones)                  world. → imvu001.world. (glue), imvu002.world. (glueless: ns.other.test.),
//                                                    loop.world. ⇄ loop.test. (glueless cycle), dead.world. (no answer)
//   127.0.53.3  the real Nexus authoritative server  the IMVU zones of `store`, from the projections
//
// All three share one port, as real name servers share port 53. Records pushed into `tldRecords`
// are served from then on (a domain's TXT challenge, a delegation made later).
import type { Store } from '../../src/core/store/index.ts';
import { startDnsServer, type DnsServer } from '../../src/domains/dns-authority/server.ts';
import { soa, startFixedZoneServer, type FixedRecord, type FixedZoneServer } from './fixed-zone-server.ts';

export const ROOT = '127.0.53.1';
export const TLD = '127.0.53.2';
export const NEXUS = '127.0.53.3';
export const DEAD = '127.0.53.9';

export interface Hierarchy {
  port: number;
  root: FixedZoneServer;
  tld: FixedZoneServer;
  nexus: DnsServer;
  rootHints: { name: string; address: string; port: number }[];
  /** The records of the TLD zones as served: a record pushed here is answered from then on. */
  tldRecords: { world: FixedRecord[]; test: FixedRecord[] };
  close(): Promise<void>;
}

export async function startHierarchy(store: Store): Promise<Hierarchy> {
  for (let attempt = 0; ; attempt++) {
    const root = await startFixedZoneServer({
      address: ROOT,
      port: 0,
      zones: [
        {
          origin: '',
          records: [
            soa('', 300),
            { name: '', type: 'NS', data: 'a.root.' },
            { name: 'a.root', type: 'A', data: ROOT },
            { name: 'world', type: 'NS', data: 'ns.nic.world.' },
            { name: 'ns.nic.world', type: 'A', data: TLD },
            { name: 'test', type: 'NS', data: 'ns.nic.test.' },
            { name: 'ns.nic.test', type: 'A', data: TLD },
          ],
        },
      ],
    });
    const port = root.port;
    let tld: FixedZoneServer | undefined;
    try {
      const world: FixedRecord[] = [
        soa('world', 300),
        { name: 'world', type: 'NS', data: 'ns.nic.world.' },
        { name: 'ns.nic.world', type: 'A', data: TLD },
        { name: 'imvu001.world', type: 'NS', data: 'ns1.world.' },
        { name: 'ns1.world', type: 'A', data: NEXUS },
        { name: 'imvu002.world', type: 'NS', data: 'ns.other.test.' },
        // Two glueless delegations that need each other: a resolution that cannot end.
        { name: 'loop.world', type: 'NS', data: 'ns.loop.test.' },
        // A delegation to a server that does not answer.
        { name: 'dead.world', type: 'NS', data: 'ns.dead.world.' },
        { name: 'ns.dead.world', type: 'A', data: DEAD },
      ];
      const test: FixedRecord[] = [
        soa('test', 300),
        { name: 'test', type: 'NS', data: 'ns.nic.test.' },
        { name: 'ns.nic.test', type: 'A', data: TLD },
        { name: 'ns.other.test', type: 'A', data: NEXUS },
        { name: 'loop.test', type: 'NS', data: 'ns.loop.world.' },
      ];
      tld = await startFixedZoneServer({
        address: TLD,
        port,
        zones: [
          { origin: 'world', records: world },
          { origin: 'test', records: test },
        ],
      });
      const nexus = await startDnsServer({ store, address: NEXUS, port, rrl: false });
      const t = tld;
      return {
        port,
        root,
        tld: t,
        nexus,
        rootHints: [{ name: 'a.root', address: ROOT, port }],
        tldRecords: { world, test },
        async close() {
          await nexus.close();
          await t.close();
          await root.close();
        },
      };
    } catch (err) {
      await root.close();
      await tld?.close().catch(() => undefined);
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt > 10) throw err;
    }
  }
}
