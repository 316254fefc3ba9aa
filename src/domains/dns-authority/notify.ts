import dgram from 'node:dgram';
import { isIP } from 'node:net';
import { randomInt } from 'node:crypto';
import dnsPacket from 'dns-packet';
import { parseTsig, ResponseVerifier, signRequest, TSIG_TYPE, walk, type TsigKey } from './tsig.ts';

// NOTIFY (RFC 1996): when a zone's serial changes, tell the configured secondaries so they refresh
// now rather than at the SOA refresh interval. One UDP message per zone and secondary, signed with
// the TSIG key when there is one, retried with a doubling timeout until the secondary answers (any
// answer ends it: an error such as REFUSED will not change by repeating it) or the attempts run
// out. A newer serial for the same zone and secondary replaces the notification in flight.

export interface NotifyTarget {
  address: string;
  /** Default 53. */
  port?: number;
}

export interface NotifierOptions {
  targets: NotifyTarget[];
  tsig?: TsigKey;
  /** Local address to send from (the server's; wildcard when unset). */
  source?: string;
  /** Attempts per notification. Default 5. */
  retries?: number;
  /** Wait for the first answer; doubles with each retry. Default 1000 ms. */
  timeoutMs?: number;
  /** Called when a secondary answers (rcode as dns-packet names it) or gives up (rcode undefined). */
  onResult?: (r: NotifyResult) => void;
  onError?: (err: unknown) => void;
}

export interface NotifyResult {
  zone: string;
  serial: number;
  target: string;
  attempts: number;
  rcode?: string;
}

interface Pending {
  zone: string;
  serial: number;
  target: Required<NotifyTarget>;
  id: number;
  attempts: number;
  timer?: NodeJS.Timeout;
  mac?: Buffer;
}

const NOTIFY_OPCODE = 4;
const QR = 0x8000;

export class Notifier {
  readonly stats = { sent: 0, acknowledged: 0, gaveUp: 0, ignored: 0 };
  private readonly pending = new Map<string, Pending>();
  private readonly byId = new Map<number, Pending>();
  private readonly sockets = new Map<4 | 6, Promise<dgram.Socket>>();
  private readonly targets: Required<NotifyTarget>[];
  private readonly retries: number;
  private readonly timeoutMs: number;
  private closed = false;

  constructor(private readonly opts: NotifierOptions) {
    this.targets = opts.targets.map((t) => {
      if (!isIP(t.address)) throw new Error(`xfr.notify: ${t.address} is not an IP address`);
      return { address: t.address, port: t.port ?? 53 };
    });
    this.retries = Math.max(1, opts.retries ?? 5);
    this.timeoutMs = opts.timeoutMs ?? 1000;
  }

  /** Notifications still waiting for an answer. */
  get inFlight(): number {
    return this.pending.size;
  }

  /** Tells every secondary that `zone` now has `serial`. */
  notify(zone: string, serial: number): void {
    if (this.closed) return;
    for (const target of this.targets) {
      const key = `${zone} ${target.address} ${target.port}`;
      const old = this.pending.get(key);
      if (old) this.drop(key, old);
      const p: Pending = { zone, serial, target, id: 0, attempts: 0 };
      this.pending.set(key, p);
      void this.attempt(key, p);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const [key, p] of this.pending) this.drop(key, p);
    for (const s of this.sockets.values()) {
      const sock = await s.catch(() => undefined);
      if (sock) await new Promise<void>((resolve) => sock.close(() => resolve()));
    }
    this.sockets.clear();
  }

  private drop(key: string, p: Pending): void {
    if (p.timer) clearTimeout(p.timer);
    this.byId.delete(p.id);
    if (this.pending.get(key) === p) this.pending.delete(key);
  }

  private socket(family: 4 | 6): Promise<dgram.Socket> {
    let s = this.sockets.get(family);
    if (!s) {
      s = new Promise<dgram.Socket>((resolve, reject) => {
        const sock = dgram.createSocket(family === 6 ? 'udp6' : 'udp4');
        sock.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
        sock.on('error', (err) => this.opts.onError?.(err));
        const src = this.opts.source && isIP(this.opts.source) === family ? this.opts.source : undefined;
        sock.once('error', reject);
        sock.bind(0, src, () => {
          sock.off('error', reject);
          resolve(sock);
        });
      });
      this.sockets.set(family, s);
    }
    return s;
  }

  private async attempt(key: string, p: Pending): Promise<void> {
    if (this.closed || this.pending.get(key) !== p) return;
    if (p.attempts >= this.retries) {
      this.drop(key, p);
      this.stats.gaveUp++;
      this.opts.onResult?.({ zone: p.zone, serial: p.serial, target: `${p.target.address}:${p.target.port}`, attempts: p.attempts });
      return;
    }
    this.byId.delete(p.id);
    do p.id = randomInt(65536);
    while (this.byId.has(p.id));
    this.byId.set(p.id, p);
    p.attempts++;
    let msg = notifyMessage(p.id, p.zone);
    if (this.opts.tsig) {
      const signed = signRequest(msg, this.opts.tsig, Math.floor(Date.now() / 1000));
      msg = signed.message;
      p.mac = signed.mac;
    }
    const wait = this.timeoutMs * 2 ** (p.attempts - 1);
    try {
      const sock = await this.socket(isIP(p.target.address) === 6 ? 6 : 4);
      if (this.closed || this.pending.get(key) !== p) return;
      sock.send(msg, p.target.port, p.target.address, (err) => {
        if (err) this.opts.onError?.(err);
      });
      this.stats.sent++;
    } catch (err) {
      this.opts.onError?.(err);
    }
    // The wait runs from the send, not from before the socket was bound (the first attempt's).
    p.timer = setTimeout(() => void this.attempt(key, p), wait);
    p.timer.unref();
  }

  private onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (msg.length < 12) return void this.stats.ignored++;
    const p = this.byId.get(msg.readUInt16BE(0));
    const flags = msg.readUInt16BE(2);
    // An answer to one of ours: same id, from where we sent it, a NOTIFY response.
    if (!p || !(flags & QR) || ((flags >> 11) & 0xf) !== NOTIFY_OPCODE || !sameAddress(rinfo.address, p.target.address) || rinfo.port !== p.target.port)
      return void this.stats.ignored++;
    let rcode: string;
    try {
      const layout = walk(msg);
      const last = layout.lastAdditional;
      const tsig = last?.type === TSIG_TYPE ? parseTsig(msg, last.at) : undefined;
      rcode = (dnsPacket.decode(msg) as { rcode?: string }).rcode ?? 'NOERROR';
      // A signed request wants a signed answer. The exception is a TSIG error report (BADKEY,
      // BADSIG: unsigned, RFC 8945 5.3.2), which ends the retries just as well.
      if (this.opts.tsig && p.mac) {
        if (tsig && tsig.error !== 0 && tsig.mac.length === 0) rcode = `${rcode} (TSIG error ${tsig.error})`;
        else if (tsig) new ResponseVerifier(this.opts.tsig, p.mac).verify(msg);
        else if (rcode === 'NOERROR') throw new Error('unsigned NOERROR answer to a signed NOTIFY');
      }
    } catch (err) {
      // A forged or garbled answer does not stop the retries.
      this.stats.ignored++;
      this.opts.onError?.(err);
      return;
    }
    const key = `${p.zone} ${p.target.address} ${p.target.port}`;
    this.drop(key, p);
    this.stats.acknowledged++;
    this.opts.onResult?.({ zone: p.zone, serial: p.serial, target: `${p.target.address}:${p.target.port}`, attempts: p.attempts, rcode });
  }
}

/** A NOTIFY for `zone`: opcode 4, AA, one question (zone SOA IN), RFC 1996 3.1-3.6. */
export function notifyMessage(id: number, zone: string): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: (NOTIFY_OPCODE << 11) | dnsPacket.AUTHORITATIVE_ANSWER,
    questions: [{ name: zone, type: 'SOA', class: 'IN' }],
  });
}

function sameAddress(a: string, b: string): boolean {
  const norm = (x: string) => x.replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/i, '$1').toLowerCase();
  return norm(a) === norm(b);
}
