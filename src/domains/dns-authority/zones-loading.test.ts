import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Store } from '../../core/store/index.ts';
import { provisioner } from '../../imvu/provision.ts';
import { startDnsServer } from './server.ts';
import { dnsFixture, query, tcpAsk, udpAsk, type DnsFixture } from './testing.ts';
import { ZoneView } from './zone-view.ts';

// The daemon starts its DNS server before the zone list is read (at 100,000 zones that read was
// most of what DNS added to a start). A query that arrives meanwhile waits for the list and is
// answered from it: never REFUSED for a zone that is hosted, never answered from part of the list.
// Here every page of the zone list takes 30 ms, one zone per page, as 100,000 zones take hundreds.

let f: DnsFixture;

beforeAll(async () => {
  f = await dnsFixture({ provision: provisioner });
});
afterAll(async () => f?.p.cleanup());

/** The store, with every read of the zone list `ms` late; `seen` resolves once a read returned the zone `name`. */
function slowZones(store: Store, ms = 30, name = 'imvu001.world'): Store & { seen: Promise<void> } {
  let saw!: () => void;
  const seen = new Promise<void>((r) => (saw = r));
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'seen') return seen;
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      if (prop !== 'values' && prop !== 'all') return v.bind(target);
      return async (...args: unknown[]) => {
        if (!/FROM zones\b/.test(String(args[0]))) return (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        await new Promise((r) => setTimeout(r, ms));
        const rows = (await (v as (...a: unknown[]) => Promise<unknown[]>).apply(target, args));
        if (JSON.stringify(rows).includes(`"${name}"`)) saw();
        return rows;
      };
    },
  }) as Store & { seen: Promise<void> };
}

describe('zone list read in the background', () => {
  it('the view is open before its list is read; settle() during the read is covered by `loading`', async () => {
    const store = slowZones(f.p.store);
    const view = await ZoneView.open(store, { refreshMs: 3_600_000, resyncMs: 3_600_000, pageSize: 1, background: true });
    try {
      expect(view.loading).toBeInstanceOf(Promise);
      expect(view.enclosing('imvu001.world')).toBeUndefined();
      // A change committed after the read passed the zone's row: only settle() brings it in.
      await store.seen;
      const before = (await f.p.store.get<{ serial: number }>('SELECT serial FROM zones WHERE name = ?', ['imvu001.world']))!.serial;
      await f.add('during', 'A', '192.0.2.44');
      await view.settle(await f.p.store.ledgerSize());
      expect(view.loading).toBeInstanceOf(Promise);
      await view.loading;
      expect(view.loading).toBeUndefined();
      expect(view.serialOf('imvu001.world')).toBe(before + 1);
      expect(view.enclosing('www.imvu001.world')?.name).toBe('imvu001.world');
      // Loaded: settle() is caughtUp().
      await f.add('after', 'A', '192.0.2.45');
      await view.settle(await f.p.store.ledgerSize());
      expect(view.serialOf('imvu001.world')).toBe(before + 2);
    } finally {
      view.close();
    }
  });

  it('a query that arrives while the list is read waits for it and is answered (UDP and TCP), not REFUSED', async () => {
    const server = await startDnsServer({ store: slowZones(f.p.store), address: '127.0.0.1', port: 0, rrl: false, zonesInBackground: true });
    try {
      expect(server.view.loading).toBeInstanceOf(Promise);
      const [udp, tcp, elsewhere] = await Promise.all([
        udpAsk(server.port, query('www.imvu001.world', 'A')),
        tcpAsk(server.port, query('imvu002.world', 'SOA')),
        udpAsk(server.port, query('www.not-hosted.example', 'A')),
      ]);
      expect(udp.rcode).toBe('NOERROR');
      expect(udp.answers?.map((a) => String((a as { data: unknown }).data))).toContain('192.0.2.7');
      expect(tcp.rcode).toBe('NOERROR');
      expect(tcp.answers?.[0]?.type).toBe('SOA');
      expect(elsewhere.rcode).toBe('REFUSED');
      expect(server.view.loading).toBeUndefined();
    } finally {
      await server.close();
    }
  });
});
