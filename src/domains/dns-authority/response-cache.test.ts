import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import dnsPacket from 'dns-packet';
import type { Answer } from 'dns-packet';
import { provisioner } from '../../imvu/provision.ts';
import { onlineSigner, type OnlineSigner } from '../dnssec/online.ts';
import { cacheKey, MAX_SPARED, ResponseCache } from './response-cache.ts';
import { startDnsServer, type DnsServer } from './server.ts';
import { MAX_UDP_PAYLOAD, type Handled } from './responder.ts';
import { decode, dnsFixture, eventually, framed, query, tcpExchange, udpExchange, type DnsFixture } from './testing.ts';
import type { ZoneView } from './zone-view.ts';

// The response cache (response-cache.ts): what it keys on, when an entry stops being used, and,
// on real sockets against a signed zone, that a cached answer is byte for byte the answer the
// responder gives without the cache (but for the ID), whatever the case, EDNS size, DO bit or
// transport of the query; and that RRL and metering still see every query.

const Z = 'imvu001.world';

describe('cacheKey: only plain queries are cached', () => {
  it('keys on the transport and every byte after the ID', () => {
    const a = query(`www.${Z}`, 'A', { id: 1, edns: 1232, do: true });
    const b = query(`www.${Z}`, 'A', { id: 2, edns: 1232, do: true });
    expect(cacheKey(a, 'udp')).toBeDefined();
    expect(cacheKey(a, 'udp')).toBe(cacheKey(b, 'udp'));
    expect(cacheKey(a, 'tcp')).not.toBe(cacheKey(a, 'udp'));
    // The name's case aside: every spelling shares one entry (the asker's is copied into the answer).
    expect(cacheKey(query(`WwW.${Z.toUpperCase()}`, 'A', { id: 3, edns: 1232, do: true }), 'udp')).toBe(cacheKey(a, 'udp'));
    const variants = [
      query(`www.${Z}`, 'A', { id: 1, edns: 1232 }),
      query(`www.${Z}`, 'A', { id: 1, edns: 700, do: true }),
      query(`www.${Z}`, 'A', { id: 1 }),
      query(`www.${Z}`, 'A', { id: 1, edns: 1232, do: true, rd: false }),
      query(`www.${Z}`, 'AAAA', { id: 1, edns: 1232, do: true }),
    ];
    const keys = new Set([a, ...variants].map((m) => cacheKey(m, 'udp')));
    expect(keys.size).toBe(variants.length + 1);
    expect([...keys].every((k) => k !== undefined)).toBe(true);
  });

  it('leaves responses, other opcodes, transfers, compressed names, extra records and trailing bytes to the responder', () => {
    const plain = query(`www.${Z}`, 'A', { id: 7 });
    const response = Buffer.from(plain);
    response[2]! |= 0x80;
    const notify = Buffer.from(plain);
    notify[2]! |= 4 << 3;
    const compressed = Buffer.concat([plain.subarray(0, 12), Buffer.from([0xc0, 12]), plain.subarray(plain.length - 4)]);
    const tsigLike = dnsPacket.encode({
      type: 'query',
      id: 1,
      questions: [{ name: Z, type: 'SOA' }],
      additionals: [{ name: 'key.', type: 'TXT', data: 'x' }],
    });
    const twoOpts = query(`www.${Z}`, 'A', { edns: 1232 });
    twoOpts.writeUInt16BE(2, 10);
    for (const msg of [
      response,
      notify,
      query(Z, 'AXFR'),
      query(Z, 'IXFR'),
      compressed,
      tsigLike,
      twoOpts,
      Buffer.concat([plain, Buffer.from([0])]),
      plain.subarray(0, plain.length - 1),
      Buffer.alloc(600),
    ])
      expect(cacheKey(msg, 'udp')).toBeUndefined();
  });
});

describe('ResponseCache (fake zone view and clock)', () => {
  const fakeView = () => ({ generation: 0, serials: new Map([['a.test', 1]]), serialOf(n: string) { return this.serials.get(n); } });
  // A response of `bytes` bytes whose question (as every cached answer's) is the query's.
  const handled = (bytes: number, serial = 1): Handled => {
    const q = query('a.test', 'A', { id: 0 });
    const response = Buffer.alloc(bytes, 0xaa);
    q.copy(response);
    return { response, rcode: 0, zone: { name: 'a.test', imvu: 'IMVU-001', serial }, truncated: () => Buffer.from(q) };
  };
  const msg = (id: number) => query('a.test', 'A', { id });

  it('patches the ID into a copy, in the answer and in the RRL slip', () => {
    const view = fakeView();
    const cache = new ResponseCache(view as unknown as ZoneView);
    cache.set('k', handled(40), 0);
    const h = cache.get('k', msg(0xbeef))!;
    expect(h.response!.readUInt16BE(0)).toBe(0xbeef);
    expect(h.truncated!().readUInt16BE(0)).toBe(0xbeef);
    expect(cache.get('k', msg(7))!.response!.readUInt16BE(0)).toBe(7);
    expect(h.response!.readUInt16BE(0)).toBe(0xbeef); // copies, not the cached buffer
    expect(h.zone).toMatchObject({ name: 'a.test', imvu: 'IMVU-001' });
    expect(cache.stats()).toMatchObject({ hits: 2, misses: 0, entries: 1 });
  });

  it('stops using an entry when its zone serial moves, the zone set changes, or it ages out', () => {
    let now = 1_000_000;
    const view = fakeView();
    const cache = new ResponseCache(view as unknown as ZoneView, { maxAgeMs: 60_000, now: () => now });
    cache.set('k', handled(40), 0);
    expect(cache.get('k', msg(1))).toBeDefined();
    view.serials.set('a.test', 2);
    expect(cache.get('k', msg(1))).toBeUndefined();
    expect(cache.stats().entries).toBe(0);

    cache.set('k', handled(40, 2), 0);
    expect(cache.get('k', msg(1))).toBeDefined();
    view.generation++;
    expect(cache.get('k', msg(1))).toBeUndefined();

    cache.set('k', handled(40, 2), 1);
    now += 59_999;
    expect(cache.get('k', msg(1))).toBeDefined();
    now += 1;
    expect(cache.get('k', msg(1))).toBeUndefined();
    expect(cache.stats().stale).toBe(3);
  });

  it('keeps nothing answered from another serial or zone set, for no zone, or too large', () => {
    const view = fakeView();
    const cache = new ResponseCache(view as unknown as ZoneView, { maxResponseBytes: 100 });
    cache.set('old-serial', handled(40, 0), 0);
    cache.set('old-set', handled(40), 5);
    cache.set('refused', { response: Buffer.alloc(20), rcode: 5 }, 0);
    cache.set('nothing', {}, 0);
    cache.set('big', handled(101), 0);
    expect(cache.stats().entries).toBe(0);
  });

  it('is bounded by entries and bytes, and spares entries that are hit over ones asked once', () => {
    const view = fakeView();
    const cache = new ResponseCache(view as unknown as ZoneView, { maxEntries: 100, maxBytes: 1_000_000 });
    cache.set('hot', handled(40), 0);
    for (let i = 0; i < 1000; i++) {
      expect(cache.get('hot', msg(i))).toBeDefined();
      cache.set(`once-${i}`, handled(40), 0);
    }
    expect(cache.stats().entries).toBe(100);
    expect(cache.get('once-999', msg(1))).toBeDefined();
    expect(cache.get('once-0', msg(1))).toBeUndefined();
    const bytes = new ResponseCache(view as unknown as ZoneView, { maxEntries: 1000, maxBytes: 20_000 });
    for (let i = 0; i < 1000; i++) bytes.set(`k${i}`, handled(1000), 0);
    expect(bytes.stats().bytes).toBeLessThanOrEqual(20_000);
    expect(bytes.stats().entries).toBeGreaterThan(10);
  });

  it('makes room in bounded work: a full cache whose every entry was hit passes over at most MAX_SPARED per answer kept', () => {
    const view = fakeView();
    const cache = new ResponseCache(view as unknown as ZoneView, { maxEntries: 5000, maxBytes: 100_000_000 });
    for (let i = 0; i < 5000; i++) cache.set(`k${i}`, handled(40), 0);
    // A hot set as large as the cache: every entry hit since it was last considered.
    for (let i = 0; i < 5000; i++) expect(cache.get(`k${i}`, msg(1))).toBeDefined();
    for (let n = 1; n <= 200; n++) {
      const before = cache.stats();
      cache.set(`new-${n}`, handled(40), 0);
      const after = cache.stats();
      // One answer kept, one entry dropped, and no more than MAX_SPARED moved to make room.
      expect(after.entries).toBe(5000);
      expect(after.evicted - before.evicted).toBe(1);
      expect(after.spared - before.spared).toBeLessThanOrEqual(MAX_SPARED);
    }
    expect(cache.get('new-200', msg(1))).toBeDefined();
  });

  it('holds only the bytes it keeps, not the larger buffers the answers were cut from', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const view = fakeView();
    const cache = new ResponseCache(view as unknown as ZoneView);
    const q = query('a.test', 'A', { id: 0 });
    // Answers of 100 bytes, each cut from a block of 8 KiB, as Node's allocation pool gives them
    // (in a function of its own: an async function's suspended frame would keep the last block).
    const keep = () => {
      const blocks: WeakRef<ArrayBuffer>[] = [];
      for (let i = 0; i < 2000; i++) {
        const block = new ArrayBuffer(8192);
        const response = Buffer.from(block, 4096, 100);
        q.copy(response);
        cache.set(`k${i}`, { response, rcode: 0, zone: { name: 'a.test', imvu: 'IMVU-001', serial: 1 }, truncated: () => Buffer.from(q) }, 0);
        blocks.push(new WeakRef(block));
      }
      return blocks;
    };
    const blocks = keep();
    expect(cache.stats().entries).toBe(2000);
    // WeakRef targets are kept to the end of the current job: collect in a later one.
    await new Promise((r) => setImmediate(r));
    gc();
    const held = blocks.filter((w) => w.deref() !== undefined).length;
    expect(held).toBe(0);
    // And what it answers is still the answer it was given (the ID patched in).
    const expected = Buffer.concat([q, Buffer.alloc(100 - q.length)]);
    expected.writeUInt16BE(9, 0);
    expect(cache.get('k1999', msg(9))!.response).toEqual(expected);
  });

  it('keeps the answer for a name that does not exist only when its question comes again: a flood of names asked once pushes nothing out', () => {
    const view = fakeView();
    const cache = new ResponseCache(view as unknown as ZoneView, { maxEntries: 1000 });
    // Names that exist, asked again and again.
    for (let i = 0; i < 100; i++) cache.set(`exists-${i}`, handled(40), 0);
    for (let i = 0; i < 100; i++) cache.get(`exists-${i}`, msg(1));
    const nx = (): Handled => ({ ...handled(40), rcode: 3, nxname: true });
    // A flood of names asked once, the names that exist still asked among them.
    for (let i = 0; i < 10_000; i++) {
      cache.set(`random-${i}`, nx(), 0);
      cache.get(`exists-${i % 100}`, msg(1));
    }
    // The doorkeeper is a Bloom filter: a few false positives get in.
    expect(cache.stats().deferred).toBeGreaterThan(9_950);
    expect(cache.stats().entries).toBeLessThan(150);
    for (let i = 0; i < 100; i++) expect(cache.get(`exists-${i}`, msg(1)), `exists-${i}`).toBeDefined();
    // Asked a second time: kept, and answered from the cache the third.
    cache.set('random-7', nx(), 0);
    expect(cache.get('random-7', msg(1))).toBeDefined();
    // Once is once, also after many others (the doorkeeper forgets, it never blocks a repeated name for good).
    for (let i = 0; i < 300_000; i++) cache.set(`later-${i}`, nx(), 0);
    cache.set('again', nx(), 0);
    expect(cache.get('again', msg(1))).toBeUndefined();
    cache.set('again', nx(), 0);
    expect(cache.get('again', msg(1))).toBeDefined();
  });
});

describe('the server with its response cache, on a signed zone', () => {
  let f: DnsFixture;
  let signer: OnlineSigner;
  let cached: DnsServer;
  let uncached: DnsServer;
  const metered: string[] = [];
  const cookies = { secret: Buffer.alloc(16, 7), now: () => 1_700_000_000_000 };

  beforeAll(async () => {
    f = await dnsFixture({ provision: provisioner });
    // One signer for both servers: the same signatures (ECDSA signatures differ each time they are
    // made); one cookie secret and clock: the same server cookies.
    signer = onlineSigner(f.p.store, f.p.dataDir);
    cached = await startDnsServer({ store: f.p.store, rrl: false, dnssec: signer, refreshMs: 100, cookies, onQuery: (z) => metered.push(z) });
    uncached = await startDnsServer({ store: f.p.store, rrl: false, dnssec: signer, refreshMs: 100, cookies, responseCache: false });
  });
  afterAll(async () => {
    await cached?.close();
    await uncached?.close();
    await f?.p.cleanup();
  });

  const udp = async (port: number, msg: Buffer) => {
    const r = await udpExchange(port, msg, 2000);
    if (!r) throw new Error('no UDP reply');
    return r;
  };
  const tcp = async (port: number, msg: Buffer) => (await tcpExchange(port, framed(msg), 1))[0]!;
  const ask = (t: 'udp' | 'tcp', port: number, msg: Buffer) => (t === 'udp' ? udp(port, msg) : tcp(port, msg));
  const types = (rrs: Answer[] | undefined) => (rrs ?? []).map((a) => `${a.name} ${a.type}`);

  it('answers a repeated query from the cache with the bytes the responder gives, but for the ID', async () => {
    const names: [string, string][] = [
      [`www.${Z}`, 'A'], [`WwW.ImVu001.WORLD`, 'A'], [`www.${Z}`, 'AAAA'], [Z, 'MX'], [Z, 'DNSKEY'], [Z, 'SOA'], [Z, 'NS'],
      [`chain.${Z}`, 'A'], [`Foo.Wild.${Z}`, 'TXT'], [`nope.${Z}`, 'A'], [`NoPe.${Z}`, 'A'], [`www.${Z}`, 'MX'], [`ent.wild.${Z}`, 'A'],
      [`sub.${Z}`, 'A'], [`x.sub.${Z}`, 'AAAA'], [`big.${Z}`, 'TXT'], [`huge.${Z}`, 'TXT'], [`long.${Z}`, 'TXT'], [`_sip._tcp.${Z}`, 'SRV'], [Z, 'ANY'],
    ];
    const shapes: { t: 'udp' | 'tcp'; edns?: number; do?: boolean }[] = [
      { t: 'udp' }, { t: 'udp', edns: 512, do: true }, { t: 'udp', edns: 700, do: true }, { t: 'udp', edns: 1232 },
      { t: 'udp', edns: 4096, do: true }, { t: 'tcp' }, { t: 'tcp', edns: 1232, do: true },
    ];
    const before = cached.stats().cacheHits;
    let asked = 0;
    for (const [name, type] of names)
      for (const s of shapes) {
        const opts = { edns: s.edns ?? false, do: s.do } as const;
        const first = await ask(s.t, cached.port, query(name, type, { ...opts, id: 100 }));
        const again = await ask(s.t, cached.port, query(name, type, { ...opts, id: 200 }));
        const plain = await ask(s.t, uncached.port, query(name, type, { ...opts, id: 300 }));
        asked++;
        const label = `${name} ${type} ${JSON.stringify(s)}`;
        expect([first.readUInt16BE(0), again.readUInt16BE(0), plain.readUInt16BE(0)], label).toEqual([100, 200, 300]);
        expect(again.subarray(2).equals(plain.subarray(2)), label).toBe(true);
        expect(first.subarray(2).equals(plain.subarray(2)), label).toBe(true);
      }
    // Every second query was a hit.
    expect(cached.stats().cacheHits - before).toBeGreaterThanOrEqual(asked);
  });

  it('keeps no FORMERR, REFUSED or BADVERS, and caches a query with EDNS options apart', async () => {
    const withOption = (rdata: Buffer, id: number, version = 0) => {
      const q = query(`www.${Z}`, 'A', { id, edns: 1232, do: true });
      // OPT: root, type 41, class 1232, ttl (extended rcode, version, DO), rdlength, rdata.
      const opt = Buffer.from([0, 0, 41, 1232 >> 8, 1232 & 0xff, 0, version, 0x80, 0, rdata.length >> 8, rdata.length & 0xff]);
      return Buffer.concat([q.subarray(0, q.length - 11), opt, rdata]);
    };
    const cookie = Buffer.from([0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
    const broken = Buffer.from([0, 10, 0, 40, 1, 2]); // an option longer than the record
    const entries = () => cached.stats().cacheEntries;
    const n = entries();
    for (let i = 0; i < 3; i++) {
      expect(decode(await udp(cached.port, withOption(broken, i)))).toMatchObject({ rcode: 'FORMERR' });
      expect(decode(await udp(cached.port, withOption(Buffer.alloc(0), i, 1))).additionals).toMatchObject([{ type: 'OPT', extendedRcode: 1 }]);
      expect(decode(await udp(cached.port, query('example.com', 'A', { edns: 1232, do: true })))).toMatchObject({ rcode: 'REFUSED' });
    }
    expect(entries()).toBe(n);
    const first = await udp(cached.port, withOption(cookie, 1));
    const again = await udp(cached.port, withOption(cookie, 2));
    const plain = await udp(uncached.port, withOption(cookie, 3));
    expect(again.subarray(2).equals(plain.subarray(2))).toBe(true);
    expect(first.subarray(2).equals(plain.subarray(2))).toBe(true);
    expect(types(decode(again).answers)).toEqual([`www.${Z} A`, `www.${Z} RRSIG`]);
    expect(entries()).toBe(n + 1);
  });

  it('echoes the question as spelled, and patches the ID', async () => {
    for (const [i, name] of [`www.${Z}`, 'WWW.IMVU001.WORLD', 'wWw.iMvU001.wOrLd', `www.${Z}`].entries()) {
      const r = decode(await udp(cached.port, query(name, 'A', { id: 0xfff0 + i, edns: 1232, do: true })));
      expect(r.id).toBe(0xfff0 + i);
      expect(r.questions).toEqual([{ name, type: 'A', class: 'IN' }]);
      expect(types(r.answers)).toEqual([`${name} A`, `${name} RRSIG`]);
    }
  });

  it('keeps DO and non-DO answers apart', async () => {
    for (let i = 0; i < 2; i++) {
      const signed = decode(await udp(cached.port, query(`www.${Z}`, 'AAAA', { edns: 1232, do: true })));
      const unsigned = decode(await udp(cached.port, query(`www.${Z}`, 'AAAA', { edns: 1232 })));
      expect(types(signed.answers)).toEqual([`www.${Z} AAAA`, `www.${Z} RRSIG`]);
      expect(types(unsigned.answers)).toEqual([`www.${Z} AAAA`]);
      expect(signed.additionals).toMatchObject([{ type: 'OPT', flag_do: true }]);
      expect(unsigned.additionals).toMatchObject([{ type: 'OPT', flag_do: false }]);
    }
  });

  it('caches NXDOMAIN as NXDOMAIN (and the NSEC chain denial with DO)', async () => {
    let first: string[] | undefined;
    for (let i = 0; i < 3; i++) {
      const nx = decode(await udp(cached.port, query(`gone.${Z}`, 'A')));
      expect(nx).toMatchObject({ rcode: 'NXDOMAIN', flag_aa: true, answers: [] });
      expect(types(nx.authorities)).toEqual([`${Z} SOA`]);
      const denial = decode(await udp(cached.port, query(`gone.${Z}`, 'A', { edns: 1232, do: true })));
      expect(denial).toMatchObject({ rcode: 'NXDOMAIN', answers: [] });
      const t = types(denial.authorities);
      expect(t.slice(0, 2)).toEqual([`${Z} SOA`, `${Z} RRSIG`]);
      // Covering NSECs of the chain, each signed; none owned by the name that does not exist.
      expect(t.filter((x) => x.endsWith(' NSEC')).length).toBeGreaterThan(0);
      expect(t).not.toContain(`gone.${Z} NSEC`);
      first ??= t;
      expect(t).toEqual(first);
    }
  });

  it('keeps the answer for a name that does not exist from its second asking on, signed or not', async () => {
    for (const opts of [{ edns: 1232, do: true }, {}]) {
      const entries = cached.stats().cacheEntries;
      for (let i = 0; i < 20; i++) expect(decode(await udp(cached.port, query(`once-${i}.${Z}`, 'A', opts)))).toMatchObject({ rcode: 'NXDOMAIN' });
      expect(cached.stats().cacheEntries).toBe(entries);
      const twice = query(`twice.${Z}`, 'A', opts);
      await udp(cached.port, twice);
      await udp(cached.port, twice);
      expect(cached.stats().cacheEntries).toBe(entries + 1);
      const hits = cached.stats().cacheHits;
      expect(decode(await udp(cached.port, twice))).toMatchObject({ rcode: 'NXDOMAIN' });
      expect(cached.stats().cacheHits).toBe(hits + 1);
      // A name that exists is kept the first time.
      await udp(cached.port, query(`www.${Z}`, 'AAAA', { ...opts, edns: 1400 }));
      expect(cached.stats().cacheEntries).toBe(entries + 2);
    }
  });

  it('keeps the EDNS size limits and TC: truncated over small UDP, whole over TCP, from the cache too', async () => {
    for (let i = 0; i < 2; i++) {
      const classic = decode(await udp(cached.port, query(`big.${Z}`, 'TXT')));
      expect(classic).toMatchObject({ flag_tc: true, answers: [] });
      expect(classic.size).toBeLessThanOrEqual(512);
      const fits = decode(await udp(cached.port, query(`big.${Z}`, 'TXT', { edns: 1232 })));
      expect(fits).toMatchObject({ flag_tc: false });
      expect(fits.answers).toHaveLength(4);
      const small = decode(await udp(cached.port, query(`big.${Z}`, 'TXT', { edns: 700 })));
      expect(small).toMatchObject({ flag_tc: true, answers: [] });
      const greedy = decode(await udp(cached.port, query(`huge.${Z}`, 'TXT', { edns: 65000, do: true })));
      expect(greedy.flag_tc).toBe(true);
      expect(greedy.size).toBeLessThanOrEqual(MAX_UDP_PAYLOAD);
      const whole = decode(await tcp(cached.port, query(`huge.${Z}`, 'TXT', { edns: 1232, do: true })));
      expect(whole).toMatchObject({ flag_tc: false });
      expect(types(whole.answers)).toEqual([...Array(8).fill(`huge.${Z} TXT`), `huge.${Z} RRSIG`]);
    }
  });

  it('serves a committed change within one second though the old answer was cached, signed and unsigned', async () => {
    const ask = async (doBit: boolean) => decode(await udp(cached.port, query(`fresh.${Z}`, 'A', doBit ? { edns: 1232, do: true } : {})));
    for (let i = 0; i < 2; i++) {
      expect(await ask(false)).toMatchObject({ rcode: 'NXDOMAIN' });
      expect(await ask(true)).toMatchObject({ rcode: 'NXDOMAIN' });
    }
    const t0 = Date.now();
    await f.add('fresh', 'A', '192.0.2.99');
    await eventually(async () => expect((await ask(false)).answers).toMatchObject([{ type: 'A', data: '192.0.2.99' }]), 1000);
    await eventually(async () => expect(types((await ask(true)).answers)).toEqual([`fresh.${Z} A`, `fresh.${Z} RRSIG`]), 1000);
    expect(Date.now() - t0).toBeLessThan(1500);
    // The new answer is cached in turn, and its removal is seen as quickly.
    await ask(true);
    await f.remove('fresh', 'A');
    await eventually(async () => expect(await ask(false)).toMatchObject({ rcode: 'NXDOMAIN' }), 1000);
    await eventually(async () => expect(await ask(true)).toMatchObject({ rcode: 'NXDOMAIN' }), 1000);
  });

  it('meters every answer it sends from the cache', async () => {
    const before = metered.length;
    const hits = cached.stats().cacheHits;
    for (let i = 0; i < 25; i++) await udp(cached.port, query(`www.${Z}`, 'TXT', { edns: 1232, do: true }));
    await tcp(cached.port, query(`www.${Z}`, 'TXT', { edns: 1232, do: true }));
    await udp(cached.port, query('example.com', 'A'));
    expect(metered.slice(before)).toEqual(Array(26).fill(Z));
    expect(cached.stats().cacheHits - hits).toBeGreaterThanOrEqual(24);
  });

  it('rate-limits answers from the cache like any other, with slips that carry the query ID', async () => {
    const counted: string[] = [];
    const limited = await startDnsServer({ store: f.p.store, dnssec: signer, rrl: { responsesPerSecond: 10, slip: 2 }, onQuery: (z) => counted.push(z) });
    const sock = dgram.createSocket('udp4');
    try {
      await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
      const replies: Buffer[] = [];
      sock.on('message', (m) => replies.push(m));
      const sent = 200;
      for (let i = 0; i < sent; i++) sock.send(query(`www.${Z}`, 'A', { id: i, edns: 1232, do: true }), limited.port, '127.0.0.1');
      await eventually(async () => expect(limited.stats().udpQueries).toBe(sent), 2000);
      await new Promise((r) => setTimeout(r, 100));
      const st = limited.stats();
      expect(st.cacheHits).toBeGreaterThan(sent / 2);
      expect(st.rrlDropped).toBeGreaterThan(sent / 4);
      expect(st.rrlSlipped).toBeGreaterThan(0);
      const decoded = replies.map((m) => decode(m));
      const slips = decoded.filter((r) => r.flag_tc);
      const full = decoded.filter((r) => !r.flag_tc);
      expect(full.length).toBeLessThanOrEqual(10 + 5);
      for (const s of slips) expect(s.answers).toEqual([]);
      // Every reply carries the ID of a query sent, and no ID twice.
      expect(new Set(decoded.map((r) => r.id)).size).toBe(decoded.length);
      expect(decoded.every((r) => (r.id ?? sent) < sent)).toBe(true);
      // Metering counts the full answers only.
      expect(counted.length).toBe(st.responses - st.rrlSlipped);
    } finally {
      sock.close();
      await limited.close();
    }
  });
});
