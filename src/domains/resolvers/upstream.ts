// One query to one authoritative server: UDP from a fresh socket (a random source port per query)
// with a random ID and EDNS0 (1232 bytes), retried over TCP when the answer is truncated. A reply
// is accepted only from the address and port asked, with the ID, and with the question asked
// (RFC 5452); anything else is ignored until the timeout. A server that answers FORMERR to EDNS
// is asked once more without it.
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import dnsPacket from 'dns-packet';
import type { DecodedPacket, Packet } from 'dns-packet';
import { norm } from './names.ts';

export interface Server {
  address: string;
  port: number;
}

export type Reply = DecodedPacket & { rcode: string };

export class UpstreamTimeout extends Error {
  override name = 'UpstreamTimeout';
}

const EDNS_SIZE = 1232;
const MAX_TCP_MESSAGE = 65535;

function encodeQuery(id: number, name: string, type: string, edns: boolean): Buffer {
  const packet: Packet = {
    type: 'query',
    id,
    flags: 0, // RD clear: we iterate
    questions: [{ name: name === '' ? '.' : name, type: type as never, class: 'IN' }],
  };
  if (edns) packet.additionals = [{ name: '.', type: 'OPT', udpPayloadSize: EDNS_SIZE, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }];
  return dnsPacket.encode(packet);
}

/** The reply to our question, or undefined if `buf` is not one (wrong ID, question, not a response, garbage). */
function match(buf: Buffer, id: number, name: string, type: string): Reply | undefined {
  if (buf.length < 12 || buf.readUInt16BE(0) !== id || !(buf.readUInt16BE(2) & 0x8000)) return undefined;
  let reply: Reply;
  try {
    reply = dnsPacket.decode(buf) as Reply;
  } catch {
    return undefined;
  }
  const q = reply.questions?.[0];
  if (!q || reply.questions!.length !== 1 || norm(q.name) !== name || q.type !== type || q.class !== 'IN') return undefined;
  return reply;
}

function udp(server: Server, msg: Buffer, id: number, name: string, type: string, timeoutMs: number): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const sock = dgram.createSocket(net.isIPv6(server.address) ? 'udp6' : 'udp4');
    let done = false;
    const finish = (err: Error | undefined, reply?: Reply) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(reply!);
    };
    const timer = setTimeout(() => finish(new UpstreamTimeout(`no answer from ${server.address}:${server.port} in ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => finish(err));
    sock.on('message', (buf, rinfo) => {
      if (rinfo.address !== server.address || rinfo.port !== server.port) return;
      const reply = match(buf, id, name, type);
      if (reply) finish(undefined, reply);
    });
    sock.send(msg, server.port, server.address, (err) => {
      if (err) finish(err);
    });
  });
}

function tcp(server: Server, msg: Buffer, id: number, name: string, type: string, timeoutMs: number): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: server.address, port: server.port });
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (err: Error | undefined, reply?: Reply) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(reply!);
    };
    const timer = setTimeout(() => finish(new UpstreamTimeout(`no TCP answer from ${server.address}:${server.port} in ${timeoutMs} ms`)), timeoutMs);
    sock.on('error', (err) => finish(err));
    sock.on('close', () => finish(new Error(`${server.address}:${server.port} closed the TCP connection without an answer`)));
    sock.on('connect', () => {
      const framed = Buffer.allocUnsafe(msg.length + 2);
      framed.writeUInt16BE(msg.length, 0);
      msg.copy(framed, 2);
      sock.write(framed);
    });
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (buf.length > MAX_TCP_MESSAGE + 2) return finish(new Error('TCP answer too long'));
      if (buf.length < 2) return;
      const len = buf.readUInt16BE(0);
      if (buf.length < len + 2) return;
      const reply = match(buf.subarray(2, 2 + len), id, name, type);
      if (reply) finish(undefined, reply);
      else finish(new Error(`${server.address}:${server.port} sent a TCP answer to another question`));
    });
  });
}

/** Asks `server` for (name, type). Rejects on timeout or transport failure. */
export async function queryServer(server: Server, name: string, type: string, timeoutMs: number): Promise<Reply> {
  const started = Date.now();
  const left = () => Math.max(1, timeoutMs - (Date.now() - started));
  let id = randomInt(0, 65536);
  let reply = await udp(server, encodeQuery(id, name, type, true), id, name, type, timeoutMs);
  if (reply.rcode === 'FORMERR' && !(reply.additionals ?? []).some((a) => a.type === 'OPT')) {
    // An old server that does not understand EDNS0 (RFC 6891 7).
    id = randomInt(0, 65536);
    reply = await udp(server, encodeQuery(id, name, type, false), id, name, type, left());
  }
  if (reply.flag_tc) {
    id = randomInt(0, 65536);
    reply = await tcp(server, encodeQuery(id, name, type, true), id, name, type, left());
  }
  return reply;
}
