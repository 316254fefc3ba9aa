// A receiving MTA for tests, on `smtp-server` (not ours): STARTTLS offered (the package's own
// test certificate), every accepted message recorded with its envelope and whether TLS was on.
// Hooks answer RCPT / DATA with a reply of the test's choice, or hold a MAIL FROM.
import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import type { AddressInfo } from 'node:net';

export interface SinkMessage {
  from: string;
  to: string[];
  raw: Buffer;
  tls: boolean;
}

export interface SinkOptions {
  /** A reply for a recipient (`550 5.1.1 ...`, `450 ...`), or undefined to accept it. */
  rcpt?: (address: string) => string | undefined;
  /** A reply for the message instead of 250. */
  data?: (msg: SinkMessage) => string | undefined;
  /** Called at MAIL FROM; the transaction waits until the promise settles. */
  mailFrom?: (address: string, count: number) => Promise<void> | void;
  /** Offer STARTTLS. Default true. */
  starttls?: boolean;
}

export interface Sink {
  port: number;
  messages: SinkMessage[];
  close(): Promise<void>;
}

function smtpError(reply: string): Error & { responseCode: number } {
  const code = Number(reply.slice(0, 3));
  return Object.assign(new Error(reply.slice(4)), { responseCode: code });
}

export async function startSink(opts: SinkOptions = {}): Promise<Sink> {
  const messages: SinkMessage[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: opts.starttls === false ? ['AUTH', 'STARTTLS'] : ['AUTH'],
    logger: false,
    size: 50 * 1024 * 1024,
    async onMailFrom(address, _session, cb) {
      try {
        await opts.mailFrom?.(address.address, messages.length);
        cb();
      } catch (e) {
        cb(e as Error);
      }
    },
    onRcptTo(address, _session, cb) {
      const reply = opts.rcpt?.(address.address);
      cb(reply ? smtpError(reply) : undefined);
    },
    onData(stream, session: SMTPServerSession, cb) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        const msg: SinkMessage = {
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks),
          tls: session.secure,
        };
        const reply = opts.data?.(msg);
        if (reply) return cb(smtpError(reply));
        messages.push(msg);
        cb();
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  server.on('error', () => {});
  const port = ((server as unknown as { server: { address(): AddressInfo } }).server.address()).port;
  return { port, messages, close: () => new Promise<void>((r) => server.close(() => r())) };
}
