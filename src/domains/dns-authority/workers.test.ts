import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { provisioner } from '../../imvu/provision.ts';
import { onlineSigner } from '../dnssec/online.ts';
import { verifyRRset } from '../dnssec/sign.ts';
import { startDnsServer, type DnsServer } from './server.ts';
import { decode, dnsFixture, eventually, framed, query, tcpExchange, udpExchange, type DnsFixture } from './testing.ts';
import type { Answer, RrsigData } from 'dns-packet';

// Worker processes on the primary's sockets (workers.ts): real processes, real sockets. Both
// processes answer (each one's statistics show queries), every answer is signed with the zone's
// key, a committed change is served by every process within the view's refresh, the workers'
// answers are metered in the primary, and closing ends them.

const Z = 'imvu001.world';

/** A UDP exchange that tries again (a loaded machine may drop a datagram). */
async function ask(port: number, msg: Buffer): Promise<Buffer> {
  for (let i = 0; i < 5; i++) {
    const r = await udpExchange(port, msg, 3000);
    if (r) return r;
  }
  throw new Error('no answer');
}

describe('DNS workers', () => {
  let f: DnsFixture;
  let server: DnsServer;
  const metered = new Map<string, number>();

  beforeAll(async () => {
    f = await dnsFixture({ provision: provisioner });
    server = await startDnsServer({
      store: f.p.store,
      rrl: false,
      dnssec: onlineSigner(f.p.store, f.p.dataDir),
      refreshMs: 100,
      workers: { count: 1, dataDir: f.p.dataDir },
      onQuery: (_zone, imvu, n = 1) => metered.set(imvu, (metered.get(imvu) ?? 0) + n),
    });
  }, 120_000);
  afterAll(async () => {
    await server?.close();
    await f?.p.cleanup();
  });

  it('answers from both processes, signed, over UDP and TCP, and meters the workers’ answers in the primary', async () => {
    const N = 200;
    const answers = await Promise.all(Array.from({ length: N }, (_, i) => ask(server.port, query(`n${i}.${Z}`, 'A', { edns: 1232, do: true }))));
    const tcp = await tcpExchange(server.port, framed(query(`www.${Z}`, 'A', { edns: 1232, do: true })), 1);
    for (const a of [...answers, tcp[0]!]) expect(decode(a).rcode).toBe('NOERROR');
    // A denial from whichever process answered verifies with the zone's published key.
    const dnskey = decode(await ask(server.port, query(Z, 'DNSKEY', { edns: 1232, do: true }))).answers!.find((a) => a.type === 'DNSKEY')!;
    const denial = decode(answers[N - 1]!);
    const nsec = denial.authorities!.find((a) => a.type === 'NSEC')!;
    const sig = denial.authorities!.find((a) => a.type === 'RRSIG' && (a.data as RrsigData).typeCovered === 'NSEC')! as Answer & { data: RrsigData };
    expect(verifyRRset((dnskey.data as { key: Buffer }).key, sig.data, nsec.name, [nsec.data])).toBe(true);
    // The worker's counts arrive a few times a second.
    await eventually(async () => {
      const st = server.stats();
      expect(st.udpQueries).toBeGreaterThanOrEqual(N + 1);
      expect(metered.get('IMVU-001') ?? 0).toBeGreaterThanOrEqual(N + 2);
    }, 5000);
    // Both processes answered (the kernel hands each datagram to whichever reads first).
    const inWorker = server.workers!.stats().udpQueries ?? 0;
    expect(inWorker).toBeGreaterThan(0);
    expect(server.stats().udpQueries).toBeGreaterThan(inWorker);
  });

  it('serves a committed change from every process within a second', async () => {
    await f.add('fresh', 'A', '192.0.2.99');
    await new Promise((r) => setTimeout(r, 1000));
    const answers = await Promise.all(Array.from({ length: 200 }, () => ask(server.port, query(`fresh.${Z}`, 'A'))));
    for (const a of answers) expect(decode(a).answers!.map((x) => (x as { data: unknown }).data)).toEqual(['192.0.2.99']);
  });
});
