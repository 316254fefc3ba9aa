// A small DNS client over TCP for the monitor: one connection, queries one after another, each
// answer matched by its id; zone transfers read until the closing SOA. Everything it receives is
// the platform's word and bounded: message count, total bytes and time.
import net from 'node:net';
import dnsPacket from 'dns-packet';
import type { Answer, DecodedPacket, Packet } from 'dns-packet';

/** A decoded message with the fields dns-packet decodes but its types omit, and its bytes (evidence). */
export type Message = DecodedPacket & { rcode: string; raw: Buffer };

export interface DnsClientOptions {
  host: string;
  port: number;
  /** Per exchange (default 5 s). */
  timeoutMs?: number;
  /** Bytes read on the connection at most (default 64 MiB). */
  maxBytes?: number;
}

const MAX_TRANSFER_MESSAGES = 100_000;

export class DnsTcpClient {
  private sock: net.Socket | undefined;
  private buf = Buffer.alloc(0);
  private total = 0;
  private waiting: ((msg: Buffer | Error) => void) | undefined;
  private queue: Buffer[] = [];
  private failed: Error | undefined;

  constructor(private readonly opts: DnsClientOptions) {}

  private connect(): Promise<net.Socket> {
    if (this.sock && !this.sock.destroyed) return Promise.resolve(this.sock);
    this.failed = undefined;
    this.buf = Buffer.alloc(0);
    this.queue = [];
    return new Promise((resolve, reject) => {
      const sock = net.connect({ host: this.opts.host, port: this.opts.port });
      sock.setNoDelay(true);
      // Events of a connection closed and replaced already concern nobody.
      const fail = (err: Error) => {
        if (this.sock !== sock) return;
        this.failed = err;
        const w = this.waiting;
        this.waiting = undefined;
        w?.(err);
      };
      sock.once('connect', () => resolve(sock));
      sock.on('error', (err) => {
        reject(err);
        fail(err);
      });
      sock.on('close', () => fail(new Error(`the DNS server at ${this.opts.host}:${this.opts.port} closed the connection`)));
      sock.on('data', (chunk: Buffer) => {
        if (this.sock !== sock) return;
        this.total += chunk.length;
        if (this.total > (this.opts.maxBytes ?? 64 * 1024 * 1024)) {
          sock.destroy();
          fail(new Error('the DNS server sent more than the monitor reads'));
          return;
        }
        this.buf = Buffer.concat([this.buf, chunk]);
        while (this.buf.length >= 2 && this.buf.length >= 2 + this.buf.readUInt16BE(0)) {
          const len = this.buf.readUInt16BE(0);
          const msg = this.buf.subarray(2, 2 + len);
          this.buf = this.buf.subarray(2 + len);
          const w = this.waiting;
          if (w) {
            this.waiting = undefined;
            w(msg);
          } else this.queue.push(msg);
        }
      });
      this.sock = sock;
    });
  }

  private next(): Promise<Buffer> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting = undefined;
        this.sock?.destroy();
        reject(new Error(`no answer from the DNS server at ${this.opts.host}:${this.opts.port} within ${this.opts.timeoutMs ?? 5000} ms`));
      }, this.opts.timeoutMs ?? 5000);
      this.waiting = (m) => {
        clearTimeout(timer);
        if (m instanceof Error) reject(m);
        else resolve(m);
      };
    });
  }

  private async send(packet: Packet): Promise<void> {
    const sock = await this.connect();
    const wire = dnsPacket.encode(packet);
    sock.write(Buffer.concat([Buffer.from([wire.length >> 8, wire.length & 0xff]), wire]));
  }

  private async receive(id: number): Promise<Message> {
    for (let i = 0; i < 16; i++) {
      const raw = await this.next();
      let decoded: DecodedPacket & { rcode: string };
      try {
        decoded = dnsPacket.decode(raw) as DecodedPacket & { rcode: string };
      } catch (err) {
        throw new Error(`the DNS server sent a message that does not parse: ${(err as Error).message}`);
      }
      if (decoded.id === id) return { ...decoded, raw: Buffer.from(raw) };
    }
    throw new Error('the DNS server answered with messages for other queries');
  }

  /** One query with EDNS and the DO bit (RFC 3225): the answer as served, with its signatures. */
  async query(name: string, type: string): Promise<Message> {
    const id = Math.floor(Math.random() * 65536);
    await this.send({
      type: 'query',
      id,
      flags: 0,
      questions: [{ name, type: type as never, class: 'IN' }],
      additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 65535, extendedRcode: 0, ednsVersion: 0, flags: dnsPacket.DNSSEC_OK, flag_do: true, options: [] } as never],
    });
    return this.receive(id);
  }

  /**
   * AXFR (RFC 5936): every message up to the one that ends with the closing SOA. `refused` when the
   * server will not transfer the zone to us (REFUSED or NOTAUTH in the first message).
   */
  async axfr(zone: string): Promise<{ refused: string } | { records: Answer[]; messages: Buffer[] }> {
    const id = Math.floor(Math.random() * 65536);
    await this.send({ type: 'query', id, flags: 0, questions: [{ name: zone, type: 'AXFR', class: 'IN' }] });
    const records: Answer[] = [];
    const messages: Buffer[] = [];
    for (let i = 0; i < MAX_TRANSFER_MESSAGES; i++) {
      const msg = await this.receive(id);
      if (i === 0 && msg.rcode !== 'NOERROR') {
        // The server may close the connection after a refusal; start afresh for what follows.
        this.close();
        return { refused: msg.rcode };
      }
      if (msg.rcode !== 'NOERROR') throw new Error(`the zone transfer of ${zone} failed in message ${i + 1}: ${msg.rcode}`);
      messages.push(msg.raw);
      for (const a of msg.answers ?? []) records.push(a);
      const first = records[0];
      if (!first || first.type !== 'SOA') throw new Error(`the zone transfer of ${zone} does not start with its SOA`);
      if (records.length > 1 && records.at(-1)!.type === 'SOA') return { records, messages };
    }
    throw new Error(`the zone transfer of ${zone} did not end`);
  }

  close(): void {
    this.sock?.destroy();
    this.sock = undefined;
  }
}
