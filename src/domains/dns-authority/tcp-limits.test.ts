import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { startDnsServer, type DnsServer } from './server.ts';
import { prefixKey } from './rrl.ts';
import { decode, dnsFixture, eventually, framed, query, tcpExchange, type DnsFixture } from './testing.ts';

// Slow-read attacks on TCP: connections that hold a slot by trickling bytes (a message that never
// completes), by saying nothing, or by keeping a connection forever. Other sources (other loopback
// addresses, bound as the client's local address) must still be answered, and the attacker's
// connections must be closed although bytes keep arriving on them.

const Z = 'imvu001.world';
let f: DnsFixture;
const servers: DnsServer[] = [];
const sockets: net.Socket[] = [];

beforeAll(async () => {
  f = await dnsFixture();
});
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
});
afterAll(async () => {
  for (const s of servers) await s.close();
  await f?.p.cleanup();
});

async function server(tcp: NonNullable<Parameters<typeof startDnsServer>[0]['tcp']>): Promise<DnsServer> {
  const srv = await startDnsServer({ store: f.p.store, rrl: false, tcp });
  servers.push(srv);
  return srv;
}

/** A connection from `from` that announces a 500-byte message and sends it one byte every `everyMs`, never finishing. */
function trickle(port: number, from: string, everyMs: number): { closed: Promise<number> } {
  const sock = net.connect({ port, host: '127.0.0.1', localAddress: from });
  sockets.push(sock);
  let sent = 0;
  let timer: NodeJS.Timeout | undefined;
  sock.on('error', () => undefined);
  sock.on('connect', () => {
    sock.write(Buffer.from([500 >> 8, 500 & 0xff]));
    timer = setInterval(() => {
      if (sent < 400 && !sock.destroyed) {
        sock.write(Buffer.from([0]));
        sent++;
      }
    }, everyMs);
  });
  const closed = new Promise<number>((resolve) =>
    sock.on('close', () => {
      clearInterval(timer);
      resolve(sent);
    }),
  );
  return { closed };
}

const ask = async (port: number, from: string, name = `www.${Z}`) => decode((await tcpExchange(port, framed(query(name, 'A')), 1, 3000, from))[0]!);

describe('TCP slots against slow clients', () => {
  it('one source trickling bytes on many connections neither locks out another source nor keeps its connections', async () => {
    const srv = await server({ maxConnections: 8, perSource: 4, messageTimeoutMs: 400, idleTimeoutMs: 1500 });
    // Twenty connections from 127.0.0.1, each a byte every 100 ms: more often than any deadline.
    const attack = Array.from({ length: 20 }, () => trickle(srv.port, '127.0.0.1', 100));
    await eventually(async () => expect(srv.stats().tcpRefused).toBeGreaterThanOrEqual(16), 3000);
    // Another source is answered while the trickles go on.
    expect(await ask(srv.port, '127.0.0.2')).toMatchObject({ rcode: 'NOERROR', answers: [{ data: '192.0.2.7' }] });
    // Every trickling connection is closed although its bytes keep coming: the four accepted ones by
    // the message deadline (from the message's first byte, not moved by later ones).
    const sent = await Promise.all(attack.map((a) => a.closed));
    expect(sent.every((n) => n < 400)).toBe(true);
    const st = srv.stats();
    expect(st.tcpConnections).toBe(5);
    expect(st.tcpTimeouts).toBeGreaterThanOrEqual(4);
    await eventually(async () => expect(srv.stats().openConnections).toBe(0), 2000);
    // And the source itself is served again once its connections are gone.
    expect(await ask(srv.port, '127.0.0.1')).toMatchObject({ rcode: 'NOERROR' });
  });

  it('closes a connection whose complete queries stop, even if bytes of an unfinished one trickle in (idle is not reset by bytes)', async () => {
    const srv = await server({ maxConnections: 8, perSource: 4, messageTimeoutMs: 60_000, idleTimeoutMs: 600 });
    const a = trickle(srv.port, '127.0.0.3', 50);
    const sent = await a.closed;
    expect(sent).toBeGreaterThan(0);
    expect(srv.stats().tcpTimeouts).toBe(1);
  });

  it('ends a connection at its lifetime, after answering what it had asked', async () => {
    const srv = await server({ lifetimeMs: 800, idleTimeoutMs: 60_000 });
    const sock = net.connect({ port: srv.port, host: '127.0.0.1', localAddress: '127.0.0.4' });
    sockets.push(sock);
    let answers = 0;
    let buf = Buffer.alloc(0);
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        expect(decode(buf.subarray(2, 2 + buf.readUInt16BE(0)))).toMatchObject({ rcode: 'NOERROR' });
        buf = buf.subarray(2 + buf.readUInt16BE(0));
        answers++;
      }
    });
    sock.on('error', () => undefined);
    // A well-behaved-looking client that asks a question every 100 ms forever.
    let asked = 0;
    const timer = setInterval(() => {
      if (!sock.destroyed && sock.writable) {
        sock.write(framed(query(`www.${Z}`, 'A', { id: asked })));
        asked++;
      }
    }, 100);
    await new Promise<void>((resolve) => sock.on('close', () => resolve()));
    clearInterval(timer);
    expect(answers).toBeGreaterThan(0);
    expect(answers).toBeLessThanOrEqual(asked);
  });

  it('when every slot holds an idle connection, a new client takes the slot of the one idle longest', async () => {
    const srv = await server({ maxConnections: 4, perSource: 1, idleTimeoutMs: 60_000, messageTimeoutMs: 60_000 });
    // Four sources each hold one silent connection.
    let closed = 0;
    for (const from of ['127.0.0.10', '127.0.0.11', '127.0.0.12', '127.0.0.13']) {
      const s = net.connect({ port: srv.port, host: '127.0.0.1', localAddress: from });
      s.on('error', () => undefined);
      s.on('close', () => closed++);
      sockets.push(s);
      await new Promise((resolve) => s.on('connect', resolve));
    }
    await eventually(async () => expect(srv.stats().openConnections).toBe(4), 2000);
    expect(await ask(srv.port, '127.0.0.20')).toMatchObject({ rcode: 'NOERROR' });
    expect(srv.stats().tcpEvicted).toBe(1);
    // One silent connection was closed for it (the oldest: the first one).
    await eventually(async () => expect(closed).toBe(1), 2000);
    expect(sockets[0]!.destroyed).toBe(true);
    // A second connection from a source already holding its one slot is refused.
    const before = srv.stats().tcpRefused;
    await expect(ask(srv.port, '127.0.0.11')).rejects.toThrow();
    expect(srv.stats().tcpRefused).toBe(before + 1);
  });

  it('counts IPv6 sources per /64 by default', () => {
    expect(prefixKey('2001:db8:1:2:aaaa::1', 32, 64)).toBe(prefixKey('2001:db8:1:2:bbbb::9', 32, 64));
    expect(prefixKey('2001:db8:1:2::1', 32, 64)).not.toBe(prefixKey('2001:db8:1:3::1', 32, 64));
    expect(prefixKey('192.0.2.1', 32, 64)).not.toBe(prefixKey('192.0.2.2', 32, 64));
  });
});
