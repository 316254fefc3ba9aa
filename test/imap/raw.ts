// A bare socket that speaks IMAP line by line: for the attacks no real client would send.
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export class Raw {
  private buf = '';
  private waiters: (() => void)[] = [];
  closed = false;
  private constructor(readonly sock: Socket) {
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      this.buf += d;
      for (const w of this.waiters.splice(0)) w();
    });
    const end = (): void => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    };
    sock.on('close', end);
    sock.on('error', end);
  }

  /** `tls`: implicit TLS (IMAPS), any certificate. */
  static async open(port: number, tls = false): Promise<Raw> {
    const sock = tls ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false }) : connect(port, '127.0.0.1');
    await new Promise<void>((r, j) => sock.once(tls ? 'secureConnect' : 'connect', () => r()).once('error', j));
    const raw = new Raw(sock);
    await raw.until((s) => s.includes('\r\n'));
    raw.take();
    return raw;
  }

  /** Wait until the received text satisfies `pred` (or the socket closes, or the timeout). */
  async until(pred: (s: string) => boolean, ms = 10_000): Promise<string> {
    const deadline = Date.now() + ms;
    while (!pred(this.buf)) {
      if (this.closed || Date.now() > deadline) return this.buf;
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.buf;
  }

  take(): string {
    const s = this.buf;
    this.buf = '';
    return s;
  }

  write(s: string | Buffer): void {
    this.sock.write(s);
  }

  /** Send a tagged command and return everything up to its tagged response. */
  async cmd(tag: string, text: string): Promise<string> {
    this.write(`${tag} ${text}\r\n`);
    const re = new RegExp(`(^|\\r\\n)${tag} (OK|NO|BAD)`);
    await this.until((s) => re.test(s));
    return this.take();
  }

  close(): void {
    this.sock.destroy();
  }
}
