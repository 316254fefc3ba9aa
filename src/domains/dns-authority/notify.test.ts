import { afterEach, describe, expect, it } from 'vitest';
import dgram from 'node:dgram';
import dnsPacket from 'dns-packet';
import { Notifier, type NotifyResult } from './notify.ts';
import { ResponseSigner, tsigKey, verifyRequest, walk } from './tsig.ts';
import { startDnsServer } from './server.ts';
import { dnsFixture, eventually } from './testing.ts';

// NOTIFY out (RFC 1996) to a fake secondary on loopback: retries with a doubling timeout until it
// answers, TSIG on the message and on the answer, forged answers ignored, newer serials replacing
// older ones, and the server sending one when a zone changes through the chokepoint.

interface Received {
  msg: Buffer;
  from: dgram.RemoteInfo;
  at: number;
}

const sockets: dgram.Socket[] = [];
const closers: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const c of closers.splice(0)) await c();
  for (const s of sockets.splice(0)) s.close();
});

/** A secondary that records every message and answers the ones `answer` returns a reply for. */
async function secondary(answer: (r: Received, n: number) => Buffer | undefined = () => undefined) {
  const sock = dgram.createSocket('udp4');
  sockets.push(sock);
  const got: Received[] = [];
  sock.on('message', (msg, from) => {
    const r = { msg, from, at: Date.now() };
    got.push(r);
    const reply = answer(r, got.length);
    if (reply) sock.send(reply, from.port, from.address);
  });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', () => resolve()));
  return { port: sock.address().port, got, sock };
}

/** The plain acknowledgement: the NOTIFY echoed with QR set. */
function ack(msg: Buffer): Buffer {
  const q = dnsPacket.decode(msg);
  return dnsPacket.encode({ type: 'response', id: q.id, flags: (4 << 11) | dnsPacket.AUTHORITATIVE_ANSWER, questions: q.questions });
}

function notifier(port: number, extra: Partial<ConstructorParameters<typeof Notifier>[0]> = {}) {
  const results: NotifyResult[] = [];
  const n = new Notifier({ targets: [{ address: '127.0.0.1', port }], source: '127.0.0.1', timeoutMs: 50, retries: 4, onResult: (r) => results.push(r), ...extra });
  closers.push(() => n.close());
  return { n, results };
}

describe('NOTIFY', () => {
  it('retries with a doubling wait until the secondary answers, then stops', async () => {
    const s = await secondary((r, n) => (n === 3 ? ack(r.msg) : undefined));
    // Waits of 200 then 400 ms: long enough that the receiving side's own scheduling delay under
    // a loaded machine (tens of ms, seen in CI) cannot hide the doubling.
    const { n, results } = notifier(s.port, { timeoutMs: 200 });
    n.notify('imvu001.world', 42);
    await eventually(async () => expect(results).toHaveLength(1), 5000);
    expect(results[0]).toEqual({ zone: 'imvu001.world', serial: 42, target: `127.0.0.1:${s.port}`, attempts: 3, rcode: 'NOERROR' });
    await new Promise((r) => setTimeout(r, 300));
    expect(s.got).toHaveLength(3);
    const gaps = [s.got[1]!.at - s.got[0]!.at, s.got[2]!.at - s.got[1]!.at];
    expect(gaps[0]).toBeGreaterThanOrEqual(100);
    expect(gaps[1]).toBeGreaterThanOrEqual(250);
    for (const r of s.got) {
      const d = dnsPacket.decode(r.msg) as ReturnType<typeof dnsPacket.decode> & { opcode: string };
      expect(d).toMatchObject({ type: 'query', opcode: 'NOTIFY', flag_aa: true, questions: [{ name: 'imvu001.world', type: 'SOA', class: 'IN' }] });
      expect(r.from.address).toBe('127.0.0.1');
    }
    expect(new Set(s.got.map((r) => r.msg.readUInt16BE(0))).size).toBe(3); // a fresh id per attempt
    expect(n.stats).toMatchObject({ sent: 3, acknowledged: 1, gaveUp: 0 });
    expect(n.inFlight).toBe(0);
  });

  it('gives up after the configured attempts when nobody answers', async () => {
    const s = await secondary();
    const { n, results } = notifier(s.port, { retries: 3, timeoutMs: 20 });
    n.notify('imvu001.world', 7);
    await eventually(async () => expect(results).toHaveLength(1), 3000);
    expect(results[0]).toMatchObject({ attempts: 3 });
    expect(results[0]!.rcode).toBeUndefined();
    expect(s.got).toHaveLength(3);
    expect(n.stats.gaveUp).toBe(1);
  });

  it('with TSIG: the NOTIFY is signed, only a correctly signed answer ends it, forged and misdirected ones do not', async () => {
    const key = tsigKey({ name: 'notify-key', secret: Buffer.from('thirty-two bytes of notify key!!').toString('base64') });
    const s = await secondary((r, n) => {
      const check = verifyRequest(r.msg, walk(r.msg), [key], Math.floor(Date.now() / 1000));
      if (!check.ok) throw new Error('the NOTIFY is not signed right');
      const answer = ack(check.stripped);
      if (n === 1) return answer; // unsigned NOERROR: a forgery as far as the primary can tell
      if (n === 2) {
        const forged = Buffer.from(new ResponseSigner(key, check.tsig.mac, check.tsig.originalId).sign(answer));
        forged.writeUInt8(forged.readUInt8(forged.length - 20) ^ 1, forged.length - 20);
        return forged;
      }
      return new ResponseSigner(key, check.tsig.mac, check.tsig.originalId).sign(answer);
    });
    const { n, results } = notifier(s.port, { tsig: key });
    // A reply from somewhere else with a plausible id changes nothing either.
    const stranger = dgram.createSocket('udp4');
    sockets.push(stranger);
    n.notify('imvu001.world', 9);
    await eventually(async () => expect(s.got.length).toBeGreaterThan(0), 1000);
    const target = s.got[0]!.from;
    const unsigned = Buffer.from(s.got[0]!.msg.subarray(0, walk(s.got[0]!.msg).lastAdditional!.at));
    unsigned.writeUInt16BE(0, 10);
    stranger.send(ack(unsigned), target.port, '127.0.0.1');
    await eventually(async () => expect(results).toHaveLength(1), 3000);
    expect(results[0]).toMatchObject({ attempts: 3, rcode: 'NOERROR' });
    expect(n.stats.ignored).toBeGreaterThanOrEqual(2);
  });

  it('a newer serial replaces the notification in flight', async () => {
    const s = await secondary((r, n) => (n >= 3 ? ack(r.msg) : undefined));
    const { n, results } = notifier(s.port);
    n.notify('imvu001.world', 10);
    n.notify('imvu001.world', 11);
    expect(n.inFlight).toBe(1);
    await eventually(async () => expect(results).toHaveLength(1), 3000);
    expect(results[0]!.serial).toBe(11);
  });

  it('the server notifies its secondaries when a zone changes through the chokepoint', async () => {
    const f = await dnsFixture();
    closers.push(() => f.p.cleanup());
    const s = await secondary((r) => ack(r.msg));
    const srv = await startDnsServer({ store: f.p.store, rrl: false, refreshMs: 50, xfr: { notify: [{ address: '127.0.0.1', port: s.port }] } });
    closers.unshift(() => srv.close());
    await new Promise((r) => setTimeout(r, 200));
    expect(s.got).toHaveLength(0); // nothing changed yet
    await f.add('notified', 'A', '192.0.2.77');
    await eventually(async () => expect(s.got).toHaveLength(1), 2000);
    expect(dnsPacket.decode(s.got[0]!.msg).questions).toEqual([{ name: 'imvu001.world', type: 'SOA', class: 'IN' }]);
    expect(s.got[0]!.from.address).toBe('127.0.0.1');
    await eventually(async () => expect(srv.notifier!.stats.acknowledged).toBe(1), 2000);
    // Bob's zone did not change: no NOTIFY for it.
    await new Promise((r) => setTimeout(r, 200));
    expect(s.got.map((r) => dnsPacket.decode(r.msg).questions![0]!.name)).toEqual(['imvu001.world']);
  });
});
