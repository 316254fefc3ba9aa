import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import { provisioner } from '../../imvu/provision.ts';
import { onlineSigner } from '../dnssec/online.ts';
import { verifyRRset } from '../dnssec/sign.ts';
import { startDnsServer, type DnsServer } from './server.ts';
import { batchedUdp } from './udp-batch.ts';
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
      // Compact denial (one signature per new name, NOERROR): the workers must sign in the primary's mode, not the default.
      dnssec: onlineSigner(f.p.store, f.p.dataDir, { denial: 'compact' }),
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
    // Both processes idle (their start-up signing done), so either may read the next datagram.
    await server.warmed;
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
    // Which one reads first is the kernel's choice: more rounds until the worker has had one.
    let sent = N + 1;
    for (let round = 0; round < 10 && !(server.workers!.stats().udpQueries ?? 0); round++) {
      await Promise.all(Array.from({ length: N }, (_, i) => ask(server.port, query(`r${round}-${i}.${Z}`, 'A', { edns: 1232, do: true }))));
      sent += N;
      await eventually(async () => expect(server.stats().udpQueries).toBeGreaterThanOrEqual(sent), 5000);
    }
    const inWorker = server.workers!.stats().udpQueries ?? 0;
    expect(inWorker).toBeGreaterThan(0);
    expect(server.stats().udpQueries).toBeGreaterThan(inWorker);
    // Each process says how it reads UDP; batched wherever the addon is built, the worker included
    // (its socket arrived over IPC, and it reads a duplicate of that descriptor).
    if (batchedUdp().available) {
      expect(server.workers!.udp).toEqual([{ mode: 'batched' }]);
      expect(server.udp).toEqual({ mode: 'batched' });
      expect(server.workers!.stats().udpBatches ?? 0).toBeGreaterThan(0);
    }
  });

  it("says so when its processes read UDP through Node's dgram (udpBatch: false)", async () => {
    const plain = await startDnsServer({ store: f.p.store, rrl: false, workers: { count: 1, dataDir: f.p.dataDir }, udpBatch: false });
    try {
      expect(plain.udp).toEqual({ mode: 'dgram', reason: 'udpBatch is false' });
      expect(plain.workers!.udp).toEqual([{ mode: 'dgram', reason: 'udpBatch is false' }]);
      expect(decode(await ask(plain.port, query(`www.${Z}`, 'A'))).rcode).toBe('NOERROR');
    } finally {
      await plain.close();
    }
  });

  it('serves a committed change from every process within a second', async () => {
    await f.add('fresh', 'A', '192.0.2.99');
    await new Promise((r) => setTimeout(r, 1000));
    const answers = await Promise.all(Array.from({ length: 200 }, () => ask(server.port, query(`fresh.${Z}`, 'A'))));
    for (const a of answers) expect(decode(a).answers!.map((x) => (x as { data: unknown }).data)).toEqual(['192.0.2.99']);
  });

  it('during a random-name flood from one source, rate-limited in every process before signing, another source is answered', async () => {
    const RATE = 50;
    const limited = await startDnsServer({
      store: f.p.store,
      rrl: { responsesPerSecond: RATE, slip: 0, prefixV4: 32 },
      // Compact denial (one signature per new name, NOERROR): the workers must sign in the primary's mode, not the default.
      dnssec: onlineSigner(f.p.store, f.p.dataDir, { denial: 'compact' }),
      workers: { count: 1, dataDir: f.p.dataDir },
    });
    const flood = dgram.createSocket('udp4');
    try {
      await new Promise<void>((r) => flood.bind(0, '127.0.0.1', () => r()));
      let floodAnswers = 0;
      flood.on('message', () => floodAnswers++);
      const t0 = Date.now();
      const others: Promise<Buffer>[] = [];
      for (let b = 0; b < 20; b++) {
        for (let j = 0; j < 100; j++) flood.send(query(`f${b}-${j}.${Z}`, 'A', { edns: 1232, do: true }), limited.port, '127.0.0.1');
        // The other source asks while the flood goes on.
        if (b % 2 === 0) others.push(udpExchange(limited.port, query(`o${b}.${Z}`, 'A', { edns: 1232, do: true }), 5000, '127.0.0.2').then((r) => r ?? Promise.reject(new Error('no answer'))));
        await new Promise((r) => setTimeout(r, 20));
      }
      for (const r of await Promise.all(others)) {
        const d = decode(r);
        expect(d).toMatchObject({ rcode: 'NOERROR', flag_tc: false });
        expect(d.authorities!.map((a) => a.type)).toEqual(['SOA', 'RRSIG', 'NSEC', 'RRSIG']);
      }
      await new Promise((r) => setTimeout(r, 500));
      // Each process allows a burst of RATE and RATE a second for that source, not 2,000.
      const seconds = (Date.now() - t0) / 1000;
      expect(floodAnswers).toBeLessThanOrEqual(2 * Math.ceil(RATE * (1 + seconds)));
      await eventually(async () => expect(limited.stats().rrlDropped).toBeGreaterThan(1000), 5000);
    } finally {
      flood.close();
      await limited.close();
    }
  }, 60_000);
});
