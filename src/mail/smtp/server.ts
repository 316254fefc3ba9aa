// The two SMTP listeners, on the `smtp-server` package for the protocol:
//
// - the MX (port 25): mail for hosted mailboxes only (projection `mailboxes`; 550 5.1.1 for an
//   unknown mailbox at a hosted domain or one of an exited IMVU, 450 4.2.1 for a mailbox of an IMVU
//   still importing (it takes mail once whole), 550 5.7.1 for any other domain: never a relay, threat 3.3),
//   SPF/DKIM/DMARC/ARC through mailauth over the project's resolver, verdicts prepended as
//   Authentication-Results, DMARC p=reject failures refused at SMTP time, and 250 only once every
//   recipient's Maildir copy is fsynced;
// - submission (587 STARTTLS, 465 implicit TLS): AUTH PLAIN/LOGIN over TLS only with an app
//   password; the envelope sender and the From header must be mailboxes of the IMVU of the identity
//   that logged in (gate 5), anything else is refused with 550 and recorded as a denied `mail.send`;
//   an accepted message is handed to `enqueue`, and 250 waits until that is durable.
//
// Messages are streamed to a spool file (bounded by SIZE, never buffered whole in memory), then
// checked and delivered from there. Every session has an absolute deadline a trickle cannot extend.
import { createReadStream, createWriteStream, mkdirSync, promises as fs } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Socket } from 'node:net';
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerOptions, type SMTPServerSession } from 'smtp-server';
import addressparser from 'nodemailer/lib/addressparser';
import type { SqlReader } from '../../core/store/index.ts';
import { deliverToMailbox, mailboxState, uniqueName } from '../maildir/deliver.ts';
import { verifyAppPassword, type MailLogin } from '../auth/app-password.ts';
import { MessageGuard } from './guard.ts';
import { AUTH_LIMIT_DEFAULTS, FailureLimiter, sourcePrefix, type FailureLimitOptions } from './limits.ts';
import type { MailResolver } from './dns.ts';
import { DEFAULT_GREETING_DELAY_MS, installGreetingDelay } from './greeting.ts';

// mailauth (and what it requires) took a tenth of the daemon's start: loaded at the first message.
let mailauth: Promise<typeof import('mailauth')> | undefined;

installGreetingDelay();

export const DEFAULT_MAX_MESSAGE_BYTES = 25 * 1024 * 1024;

/** What the outbound queue takes; resolves once the message is durable (src/mail/queue). `raw` is read once. */
export interface OutboundMessage {
  imvu: string;
  identity: string;
  mailFrom: string;
  rcptTo: string[];
  raw: Readable;
}
export type Enqueue = (msg: OutboundMessage) => Promise<void>;

/** A refused submission, for the ledger (a `mail.send` the `mail` service signs; gate 5 denies it). */
export interface RefusedSend {
  imvu: string;
  identity: string;
  login: string;
  mailFrom: string;
  from: string[];
}

export interface SmtpCommonOptions {
  store: SqlReader;
  dataDir: string;
  tls: { cert: string | Buffer; key: string | Buffer };
  /** The name in the greeting and in Authentication-Results. */
  hostname: string;
  address?: string;
  /** 0 picks a free port. */
  port: number;
  maxMessageBytes?: number;
  /** Recipients per message (default 100). */
  maxRecipients?: number;
  /** Idle time per command (default 60 s). */
  idleTimeoutMs?: number;
  /** Whole session, however active (default 10 min): a trickle cannot extend it. */
  sessionTimeoutMs?: number;
  /** Wait before the 220 greeting; a client talking earlier is refused (default 10 ms; smtp-server's own: 100). */
  greetingDelayMs?: number;
  /** Connections at once (default 500) and per source address (default 20). */
  maxClients?: number;
  maxPerSource?: number;
  /** Counts usage per IMVU (metrics mail.messages, mail.bytes_in, mail.bytes_out). */
  count?: (imvu: string, metric: string, n: number) => void;
  /**
   * Anonymous refusals (failed AUTH, relay attempts), summarised into the ledger by the daemon
   * (`noise.summary`: source up to 64 characters, reason in a-z and '-').
   */
  noise?: { add(source: string, reason: string): void };
  onError?: (err: unknown) => void;
}

export interface MxOptions extends SmtpCommonOptions {
  /** DNS for SPF/DKIM/DMARC/ARC; the project's resolver (dns.ts). */
  resolver: MailResolver;
}

export interface SubmissionOptions extends SmtpCommonOptions {
  /** true: TLS from the first byte (465); false: STARTTLS (587). */
  implicitTls: boolean;
  /** The outbound queue; without it, hosted recipients are delivered here and others refused (451). */
  enqueue?: Enqueue;
  /** Records a refused submission (gate 5). */
  refuse?: (r: RefusedSend) => Promise<void>;
  authLimits?: { perSource?: FailureLimitOptions; perAccount?: FailureLimitOptions };
}

export interface SmtpListener {
  server: SMTPServer;
  address: string;
  port: number;
  close(): Promise<void>;
}

class SmtpError extends Error {
  constructor(
    readonly responseCode: number,
    message: string,
  ) {
    super(message);
  }
}
const smtpError = (code: number, message: string) => new SmtpError(code, message);

const M = { messages: 'mail.messages', bytesIn: 'mail.bytes_in', bytesOut: 'mail.bytes_out' } as const;

interface Runtime {
  spool: string;
  active: Map<string, SMTPServerDataStream>;
  perSource: Map<string, number>;
}

/** The options both listeners share: limits, TLS, deadlines, per-source connection caps. */
function baseOptions(o: SmtpCommonOptions, rt: Runtime): SMTPServerOptions {
  const maxPerSource = o.maxPerSource ?? 20;
  return {
    name: o.hostname,
    banner: 'ESMTP',
    key: o.tls.key,
    cert: o.tls.cert,
    size: o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES,
    maxRecipients: o.maxRecipients ?? 100,
    maxClients: o.maxClients ?? 500,
    socketTimeout: o.idleTimeoutMs ?? 60_000,
    closeTimeout: 5_000,
    maxCommandLength: 4096,
    // Our replies carry their own enhanced codes (5.1.1, 5.7.1, ...).
    hideENHANCEDSTATUSCODES: true,
    disableReverseLookup: true,
    logger: false,
    // Read by greeting.ts.
    ...({ greetingDelayMs: o.greetingDelayMs ?? DEFAULT_GREETING_DELAY_MS } as object),
    onConnect(session, cb) {
      const ip = session.remoteAddress;
      const n = (rt.perSource.get(ip) ?? 0) + 1;
      if (n > maxPerSource) return cb(smtpError(421, `4.7.0 too many connections from ${ip}`));
      rt.perSource.set(ip, n);
      (session as SMTPServerSession & { counted?: boolean }).counted = true;
      cb();
    },
    onClose(session) {
      if ((session as SMTPServerSession & { counted?: boolean }).counted) {
        const n = (rt.perSource.get(session.remoteAddress) ?? 1) - 1;
        if (n <= 0) rt.perSource.delete(session.remoteAddress);
        else rt.perSource.set(session.remoteAddress, n);
      }
      // A client gone mid-DATA: end its message stream so the spool write stops.
      const stream = rt.active.get(session.id);
      if (stream) stream.destroy(new Error('the client went away'));
      rt.active.delete(session.id);
    },
  };
}

async function listen(server: SMTPServer, o: SmtpCommonOptions, rt: Runtime): Promise<SmtpListener> {
  const sessionMs = o.sessionTimeoutMs ?? 600_000;
  const inner = (server as unknown as { server: import('node:net').Server }).server;
  inner.on('connection', (socket: Socket) => {
    const t = setTimeout(() => socket.destroy(), sessionMs);
    t.unref();
    socket.once('close', () => clearTimeout(t));
  });
  server.on('error', (err) => o.onError?.(err));
  const address = o.address ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    const onErr = (err: Error) => reject(err);
    inner.once('error', onErr);
    server.listen(o.port, address, () => {
      inner.removeListener('error', onErr);
      resolve();
    });
  });
  const port = (inner.address() as import('node:net').AddressInfo).port;
  let closing: Promise<void> | undefined;
  return {
    server,
    address,
    port,
    close: () =>
      (closing ??= new Promise<void>((resolve) => {
        for (const s of rt.active.values()) s.destroy(new Error('server closing'));
        server.close(() => resolve());
      })),
  };
}

function runtime(dataDir: string, name: string): Runtime {
  const spool = join(dataDir, 'spool', name);
  mkdirSync(spool, { recursive: true, mode: 0o700 });
  return { spool, active: new Map(), perSource: new Map() };
}

/** Streams DATA through the guard into a spool file. The caller removes the file. */
async function spoolMessage(stream: SMTPServerDataStream, session: SMTPServerSession, rt: Runtime, max: number): Promise<{ file: string; guard: MessageGuard }> {
  rt.active.set(session.id, stream);
  const guard = new MessageGuard(max);
  const file = join(rt.spool, uniqueName());
  try {
    await pipeline(stream, guard, createWriteStream(file, { flags: 'wx', mode: 0o600 }));
  } catch (err) {
    await fs.rm(file, { force: true });
    throw err;
  } finally {
    rt.active.delete(session.id);
  }
  return { file, guard };
}

/** Refuses what the guard saw (too large, bare CR/LF), or undefined when the message may go on. */
function guardRefusal(guard: MessageGuard, stream: SMTPServerDataStream, max: number): SmtpError | undefined {
  if (guard.oversized || stream.sizeExceeded) return smtpError(552, `5.3.4 message larger than ${max} bytes`);
  if (guard.bareAt >= 0) return smtpError(550, `5.5.2 bare CR or LF at byte ${guard.bareAt}: lines must end in CRLF`);
  return undefined;
}

function fileThen(prefix: Buffer, file: string): Readable {
  return Readable.from(
    (async function* () {
      yield prefix;
      yield* createReadStream(file);
    })(),
  );
}

/** Calls `cb` with the outcome of `work` (an SmtpError keeps its code; anything else is 451). */
function answer(work: Promise<string>, cb: (err?: Error | null, message?: string) => void, o: SmtpCommonOptions): void {
  work.then(
    (msg) => cb(null, msg),
    (err: unknown) => {
      if (err instanceof SmtpError) return cb(err);
      o.onError?.(err);
      cb(smtpError(451, '4.3.0 temporary failure storing the message; try again later'));
    },
  );
}

const lower = (a: SMTPServerAddress | false | undefined) => (a ? a.address.toLowerCase() : '');

/** The mailbox's IMVU when it may receive now (mailboxState), else undefined. */
async function receiving(store: SqlReader, dataDir: string, address: string): Promise<string | undefined> {
  const box = await mailboxState(store, dataDir, address);
  return box.state === 'receiving' ? box.imvu : undefined;
}

/**
 * The refusal for a mailbox of an IMVU whose import is not finished (parts missing, or its archive's mail not restored yet): temporary, since the mailbox
 * exists and takes mail once the last part is recorded (a 5xx would make the sender drop it).
 */
const importingRefusal = (rcpt: string, imvu: string) =>
  smtpError(450, `4.2.1 <${rcpt}>: this mailbox is being imported (${imvu}'s import is not finished yet); try again later`);

async function hostedDomain(store: SqlReader, address: string): Promise<boolean> {
  const domain = address.slice(address.lastIndexOf('@') + 1);
  return !!(await store.get('SELECT 1 AS x FROM domains WHERE name = ?', [domain]));
}

export async function startMx(o: MxOptions): Promise<SmtpListener> {
  const rt = runtime(o.dataDir, 'mx');
  const max = o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const server = new SMTPServer({
    ...baseOptions(o, rt),
    disabledCommands: ['AUTH'],
    onRcptTo(address, session, cb) {
      const rcpt = lower(address);
      mailboxState(o.store, o.dataDir, rcpt).then(
        async (box) => {
          if (box.state === 'receiving') return cb();
          if (box.state === 'importing') return cb(importingRefusal(rcpt, box.imvu));
          if (rcpt.includes('@') && (await hostedDomain(o.store, rcpt))) return cb(smtpError(550, `5.1.1 <${rcpt}>: no such mailbox here`));
          o.noise?.add(sourcePrefix(session.remoteAddress), 'smtp-relay-refused');
          cb(smtpError(550, `5.7.1 <${rcpt}>: relay access denied: this server accepts mail only for its hosted mailboxes`));
        },
        (err: unknown) => {
          o.onError?.(err);
          cb(smtpError(451, '4.3.0 temporary failure; try again later'));
        },
      );
    },
    onData(stream, session, cb) {
      answer(
        (async () => {
          const { file, guard } = await spoolMessage(stream, session, rt, max);
          try {
            const refused = guardRefusal(guard, stream, max);
            if (refused) throw refused;
            const mailFrom = lower(session.envelope.mailFrom);
            const { authenticate } = await (mailauth ??= import('mailauth'));
            const auth = await authenticate(createReadStream(file), {
              ip: session.remoteAddress.replace(/^::ffff:/, ''),
              helo: session.hostNameAppearsAs || session.clientHostname,
              sender: mailFrom,
              mta: o.hostname,
              resolver: o.resolver as never,
              disableBimi: true,
            });
            const dmarc = auth.dmarc as false | { status?: { result?: string }; policy?: string; domain?: string };
            if (dmarc && dmarc.status?.result === 'fail' && dmarc.policy === 'reject')
              throw smtpError(550, `5.7.1 rejected by the DMARC policy of ${dmarc.domain ?? 'the sender domain'} (p=reject)`);
            const prefix = Buffer.from(`Return-Path: <${mailFrom}>\r\n${received(session, o.hostname)}${auth.headers as string}`, 'utf8');
            const rcpts = [...new Set(session.envelope.rcptTo.map((r) => r.address.toLowerCase()))];
            for (const rcpt of rcpts) {
              const { imvu } = await deliverToMailbox(o.store, o.dataDir, rcpt, fileThen(prefix, file));
              o.count?.(imvu, M.messages, 1);
              o.count?.(imvu, M.bytesIn, guard.bytes + prefix.length);
            }
            return `2.0.0 delivered to ${rcpts.length} mailbox${rcpts.length === 1 ? '' : 'es'}`;
          } finally {
            // unlink, not rm: one call, no directory walk (a missing file is fine).
            await fs.unlink(file).catch(() => undefined);
          }
        })(),
        cb,
        o,
      );
    },
  });
  return listen(server, o, rt);
}

/**
 * The trace field every receiving SMTP server adds (RFC 5321 4.4): who connected, from where, and
 * how (RFC 3848: ESMTPS when the session was upgraded to TLS, with the protocol and cipher).
 */
export function received(session: SMTPServerSession, hostname: string, now = new Date()): string {
  const clean = (v: string) => v.replace(/[^\x21-\x7e]/g, '').replace(/[()\\]/g, '').slice(0, 255);
  const ip = session.remoteAddress.replace(/^::ffff:/, '');
  const tls = session.secure && session.tlsOptions ? ` (using ${clean(session.tlsOptions.version ?? 'TLS')} with cipher ${clean(session.tlsOptions.name)})` : '';
  const date = now.toUTCString().replace('GMT', '+0000');
  return `Received: from ${clean(session.hostNameAppearsAs || 'unknown')} ([${ip}])\r\n\tby ${hostname} with ${clean(session.transmissionType || 'ESMTP')}${tls}\r\n\tid ${clean(session.id)}; ${date}\r\n`;
}

/** Unfolds the header block and returns the values of the headers named `name` (lower case). */
export function headerValues(block: Buffer, name: string): string[] {
  const text = block.toString('latin1').replace(/\r\n(?=[ \t])/g, '');
  const out: string[] = [];
  for (const line of text.split('\r\n')) {
    const colon = line.indexOf(':');
    if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === name) out.push(line.slice(colon + 1).trim());
  }
  return out;
}

interface Parsed {
  address?: string;
  group?: Parsed[];
}
function addresses(value: string): string[] {
  const flat = (list: Parsed[]): string[] => list.flatMap((a) => (a.group ? flat(a.group) : a.address ? [a.address.toLowerCase()] : []));
  return flat(addressparser(value) as Parsed[]);
}

/** The senders a message claims (From, and Sender when present), or why they cannot be read. */
export function claimedSenders(block: Buffer | undefined): string[] | string {
  if (!block) return 'the header block is too large';
  const from = headerValues(block, 'from');
  if (from.length !== 1) return `the message must have exactly one From header (it has ${from.length})`;
  const list = addresses(from[0]!);
  if (list.length === 0) return 'the From header names no address';
  const sender = headerValues(block, 'sender');
  if (sender.length > 1) return 'the message has more than one Sender header';
  return [...list, ...(sender.length ? addresses(sender[0]!) : [])].slice(0, 16);
}

export async function startSubmission(o: SubmissionOptions): Promise<SmtpListener> {
  const rt = runtime(o.dataDir, o.implicitTls ? 'smtps' : 'submission');
  const max = o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
  const bySource = new FailureLimiter(o.authLimits?.perSource ?? AUTH_LIMIT_DEFAULTS.perSource);
  const byAccount = new FailureLimiter(o.authLimits?.perAccount ?? AUTH_LIMIT_DEFAULTS.perAccount);
  // Refusals recorded per login and minute at most: an authenticated client cannot grow the log at will.
  const recorded = new FailureLimiter({ burst: 20, rate: 1 / 6 });
  const loginOf = (s: SMTPServerSession) => s.user as MailLogin;
  const refuse = async (login: MailLogin, mailFrom: string, from: string[], why: string): Promise<SmtpError> => {
    if (!recorded.blocked(login.address)) {
      recorded.fail(login.address);
      try {
        await o.refuse?.({ imvu: login.imvu, identity: login.identity, login: login.address, mailFrom, from });
      } catch (err) {
        o.onError?.(err);
      }
    } else o.noise?.add(login.imvu, 'smtp-send-refused');
    return smtpError(550, `5.7.1 ${why}`);
  };
  const server = new SMTPServer({
    ...baseOptions(o, rt),
    secure: o.implicitTls,
    authMethods: ['PLAIN', 'LOGIN'],
    allowInsecureAuth: false,
    authOptional: false,
    onAuth(auth, session, cb) {
      const source = sourcePrefix(session.remoteAddress);
      const account = String(auth.username ?? '').toLowerCase().slice(0, 320);
      if (!session.secure) return cb(smtpError(538, '5.7.11 encryption required: use STARTTLS first'));
      if (bySource.blocked(source) || byAccount.blocked(account)) {
        o.noise?.add(source, 'smtp-auth-rate-limited');
        return cb(smtpError(454, '4.7.0 too many failed logins; try again later'));
      }
      verifyAppPassword(o.store, account, String(auth.password ?? '')).then(
        (login) => {
          if (login) return cb(null, { user: login });
          bySource.fail(source);
          byAccount.fail(account);
          o.noise?.add(source, 'smtp-auth-failed');
          cb(smtpError(535, '5.7.8 authentication failed'));
        },
        (err: unknown) => {
          o.onError?.(err);
          cb(smtpError(454, '4.7.0 temporary authentication failure'));
        },
      );
    },
    onMailFrom(address, session, cb) {
      const login = loginOf(session);
      const from = lower(address);
      receiving(o.store, o.dataDir, from).then(
        async (imvu) => {
          if (imvu === login.imvu) return cb();
          cb(await refuse(login, from, [], `<${from}> is not a mailbox of ${login.imvu}: you may send only as your own IMVU's mailboxes`));
        },
        (err: unknown) => {
          o.onError?.(err);
          cb(smtpError(451, '4.3.0 temporary failure; try again later'));
        },
      );
    },
    onRcptTo(address, _session, cb) {
      if (o.enqueue) return cb();
      // Without the outbound queue only hosted mailboxes can be reached.
      mailboxState(o.store, o.dataDir, lower(address)).then(
        (box) => {
          if (box.state === 'receiving') return cb();
          if (box.state === 'importing') return cb(importingRefusal(lower(address), box.imvu));
          cb(smtpError(451, `4.4.0 <${lower(address)}>: delivery outside this platform is not available yet`));
        },
        (err: unknown) => {
          o.onError?.(err);
          cb(smtpError(451, '4.3.0 temporary failure; try again later'));
        },
      );
    },
    onData(stream, session, cb) {
      answer(
        (async () => {
          const login = loginOf(session);
          const { file, guard } = await spoolMessage(stream, session, rt, max);
          try {
            const refused = guardRefusal(guard, stream, max);
            if (refused) throw refused;
            const mailFrom = lower(session.envelope.mailFrom);
            const senders = claimedSenders(guard.headerBlock());
            if (typeof senders === 'string') throw smtpError(550, `5.6.0 ${senders}`);
            for (const s of senders) {
              if ((await receiving(o.store, o.dataDir, s)) !== login.imvu)
                throw await refuse(login, mailFrom, senders, `From/Sender <${s}> is not a mailbox of ${login.imvu}: you may send only as your own IMVU's mailboxes`);
            }
            const rcptTo = session.envelope.rcptTo.map((r) => r.address.toLowerCase());
            const msg = { imvu: login.imvu, identity: login.identity, mailFrom, rcptTo, raw: createReadStream(file) };
            if (o.enqueue) await o.enqueue(msg);
            else await deliverLocally(o, msg, file, guard.bytes);
            o.count?.(login.imvu, M.messages, 1);
            o.count?.(login.imvu, M.bytesOut, guard.bytes * rcptTo.length);
            return '2.0.0 queued';
          } finally {
            // unlink, not rm: one call, no directory walk (a missing file is fine).
            await fs.unlink(file).catch(() => undefined);
          }
        })(),
        cb,
        o,
      );
    },
  });
  return listen(server, o, rt);
}

/** Until the outbound queue is wired: every recipient is a hosted mailbox (onRcptTo made sure). */
async function deliverLocally(o: SubmissionOptions, msg: OutboundMessage, file: string, bytes: number): Promise<void> {
  msg.raw.destroy();
  const prefix = Buffer.from(`Return-Path: <${msg.mailFrom}>\r\n`, 'utf8');
  for (const rcpt of new Set(msg.rcptTo)) {
    const { imvu } = await deliverToMailbox(o.store, o.dataDir, rcpt, fileThen(prefix, file));
    o.count?.(imvu, M.messages, 1);
    o.count?.(imvu, M.bytesIn, bytes + prefix.length);
  }
}
