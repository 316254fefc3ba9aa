import dgram from 'node:dgram';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { batchedUdp, listenUdp, type UdpListener, type UdpSend } from './udp-batch.ts';
import { startDnsServer, type DnsServer } from './server.ts';
import { dnsFixture, query, queryCode, udpExchange, type DnsFixture } from './testing.ts';

// The batched UDP path (native/udp_batch.c) against real sockets on loopback, and Node's dgram path
// beside it: every answer reaches the sender of its query, whatever else arrived in between.

const open: { sock: dgram.Socket; listener?: UdpListener }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) {
    o.listener?.close();
    await new Promise<void>((r) => o.sock.close(() => r()));
  }
});

async function bound(): Promise<dgram.Socket> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  sock.setRecvBufferSize(4 * 1024 * 1024);
  open.push({ sock });
  return sock;
}

async function serve(handler: Parameters<typeof listenUdp>[1], batched: boolean): Promise<{ port: number; listener: UdpListener; errors: unknown[] }> {
  const sock = await bound();
  const errors: unknown[] = [];
  const listener = listenUdp(sock, handler, { batched, onError: (e) => errors.push(e) });
  open.at(-1)!.listener = listener;
  return { port: sock.address().port, listener, errors };
}

const settle = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Elsewhere the server falls back to dgram and says why (DnsServer.udp); in CI (.ci/run sets the
// variable) a build that lost the addon must fail.
it.runIf(!!process.env.NEXUS_REQUIRE_BATCHED_UDP)('the addon is built and loads', () => {
  expect(batchedUdp()).toEqual({ available: true });
});

describe.each([
  ['batched', true],
  ['dgram', false],
] as const)('UDP through %s', (mode, batched) => {
  it.runIf(batched ? batchedUdp().available : true)('answers each datagram to its own sender, now or after a wait, in one burst from several clients', async () => {
    // Even ids are answered at once, odd ones after a timer (as a cache miss answers after a lookup).
    const { port, listener, errors } = await serve(<T,>(msg: Buffer, _a: string, _p: number, send: UdpSend<T>, to: T) => {
      const out = Buffer.concat([Buffer.from('re:'), msg]);
      if (msg.readUInt16BE(0) % 2 === 0) send(out, to);
      else setTimeout(() => send(out, to), 5);
    }, batched);
    expect(listener.mode).toBe(mode);
    const clients = await Promise.all([bound(), bound(), bound()]);
    const got = clients.map(() => [] as string[]);
    clients.forEach((c, k) => c.on('message', (m) => got[k]!.push(m.toString('latin1'))));
    const PER = 300;
    for (let i = 0; i < PER; i++) {
      clients.forEach((c, k) => {
        const msg = Buffer.alloc(8);
        msg.writeUInt16BE(i, 0);
        msg.write(`c${k}`, 2, 'latin1');
        c.send(msg, port, '127.0.0.1');
      });
      if (i % 50 === 49) await settle(5);
    }
    await settle(300);
    for (let k = 0; k < clients.length; k++) {
      expect(got[k]).toHaveLength(PER);
      // Nothing of another client's, and every one of its own once.
      expect(got[k]!.every((m) => m.slice(5, 7) === `c${k}`)).toBe(true);
      expect(new Set(got[k]!.map((m) => m.charCodeAt(3) * 256 + m.charCodeAt(4))).size).toBe(PER);
    }
    expect(errors).toEqual([]);
    if (batched) expect(listener.stats()).toMatchObject({ stale: 0, dropped: 0, truncated: 0 });
  });
});

describe.runIf(batchedUdp().available)('batched UDP bounds', () => {
  it('a datagram longer than a slot (4,096 bytes) is counted and not answered; the next one is', async () => {
    const { port, listener } = await serve(<T,>(msg: Buffer, _a: string, _p: number, send: UdpSend<T>, to: T) => send(msg.subarray(0, 4), to), true);
    const c = await bound();
    const got: Buffer[] = [];
    c.on('message', (m) => got.push(m));
    c.send(Buffer.alloc(5000, 1), port, '127.0.0.1');
    c.send(Buffer.from('ping'), port, '127.0.0.1');
    await settle(200);
    expect(got.map((m) => m.toString())).toEqual(['ping']);
    expect(listener.stats().truncated).toBe(1);
  });

  it('an answer sent after the listener closed goes nowhere and breaks nothing', async () => {
    let held: (() => void) | undefined;
    const { port, listener } = await serve(<T,>(msg: Buffer, _a: string, _p: number, send: UdpSend<T>, to: T) => {
      held = () => send(msg, to);
    }, true);
    const c = await bound();
    const got: Buffer[] = [];
    c.on('message', (m) => got.push(m));
    c.send(Buffer.from('hello'), port, '127.0.0.1');
    await settle(100);
    listener.close();
    held!();
    listener.close();
    await settle(100);
    expect(got).toEqual([]);
    expect(listener.stats()).toMatchObject({ truncated: 0 });
  });

  it('an answer held while more than 65,536 other datagrams arrived is not sent anywhere (its sender has left the ring)', async () => {
    let held: (() => void) | undefined;
    let seen = 0;
    const { port, listener } = await serve(<T,>(msg: Buffer, _a: string, _p: number, send: UdpSend<T>, to: T) => {
      seen++;
      if (msg.toString() === 'first') held = () => send(Buffer.from('late answer'), to);
    }, true);
    const first = await bound();
    const firstGot: Buffer[] = [];
    first.on('message', (m) => firstGot.push(m));
    first.send(Buffer.from('first'), port, '127.0.0.1');
    // Another client, whose datagrams take the ring's slots (and would get a misdirected answer).
    const other = await bound();
    const otherGot: Buffer[] = [];
    other.on('message', (m) => otherGot.push(m));
    const payload = Buffer.from('x');
    while (seen <= 65_536) {
      for (let i = 0; i < 2000; i++) other.send(payload, port, '127.0.0.1');
      await settle(20);
    }
    held!();
    await settle(200);
    expect(firstGot).toEqual([]);
    expect(otherGot).toEqual([]);
    expect(listener.stats().stale).toBe(1);
  }, 60_000);
});

// The whole server both ways: the same bytes for the same questions.
describe('the DNS server answers the same in both modes', () => {
  let f: DnsFixture;
  const servers: DnsServer[] = [];
  beforeAll(async () => {
    f = await dnsFixture();
    for (const udpBatch of [true, false]) servers.push(await startDnsServer({ store: f.p.store, rrl: false, cookies: false, udpBatch }));
  });
  afterAll(async () => {
    for (const s of servers) await s.close();
    await f?.p.cleanup();
  });

  it.runIf(batchedUdp().available)('batched and dgram servers give byte-identical answers (answers, NXDOMAIN, truncation, FORMERR)', async () => {
    expect(servers.map((s) => s.udp.mode)).toEqual(['batched', 'dgram']);
    const Z = 'imvu001.world';
    const questions = [
      query(Z, 'A', { id: 1 }),
      query(`www.${Z}`, 'AAAA', { id: 2 }),
      query(`nope.${Z}`, 'A', { id: 3 }),
      query(`long.${Z}`, 'TXT', { id: 4, edns: false }),
      query(Z, 'ANY', { id: 5, edns: 512 }),
      query(`huge.${Z}`, 'TXT', { id: 9, edns: 1232 }),
      queryCode(Z, 255, { id: 6 }),
      query('example.org', 'A', { id: 7 }),
      Buffer.from([0, 8, 1, 0, 0, 9]),
    ];
    let answered = 0;
    for (const q of questions) {
      const [a, b] = await Promise.all(servers.map((s) => udpExchange(s.port, q)));
      expect(a?.toString('hex')).toEqual(b?.toString('hex'));
      if (a) answered++;
    }
    expect(answered).toBeGreaterThanOrEqual(questions.length - 1);
    expect(servers[0]!.stats().udpBatches).toBeGreaterThan(0);
    expect(servers[1]!.stats().udpBatches).toBe(0);
  });
});
