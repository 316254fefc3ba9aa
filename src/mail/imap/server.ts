// IMAP4rev1 (RFC 3501) over each IMVU's Maildir, with IDLE, UIDPLUS, MOVE, LITERAL+, NAMESPACE,
// SPECIAL-USE, ID, ENABLE, CONDSTORE and QUOTA. One session per connection; a session resolves
// mailbox names only inside the Maildir++ root its credentials map to (gate 16), and every attempt
// to name something outside it is refused and reported through `onRefusal`.
//
// Bounds: the framer caps lines, literals and literal counts; a command must arrive whole within
// `commandMs` of its first byte (a trickle cannot extend it); a silent connection is logged out
// after `preAuthMs` / `autologoutMs`; commands run one at a time and the socket is paused while
// one runs, so a pipelined flood waits in the kernel, not in our memory.
import { createServer, type Server, type Socket } from 'node:net';
import { createSecureContext, TLSSocket, createServer as createTlsServer, type SecureContext, type SecureContextOptions } from 'node:tls';
import { closeSync, openSync, readFileSync, readSync, watch, type FSWatcher } from 'node:fs';
import { join } from 'node:path';
import { mailboxRoot } from '../maildir/paths.ts';
import { closeFolder, ensureMaildir, folderStatus, forgetFolder, openFolder, toCrlf, type Folder, type Message } from '../maildir/store.ts';
import {
  createMailbox, DEFAULT_FOLDERS, deleteMailbox, DELIMITER, listMailboxes, mailboxExists, patternRegex, readSubscriptions,
  renameMailbox, resolveMailbox, SPECIAL_USE, writeSubscriptions,
} from './mailboxes.ts';
import { DEFAULT_FRAMER_LIMITS, Framer, type FramerLimits, ParseError, Reader } from './parser.ts';
import { bodyStructure, envelope, istring, needsStructure, quote, sectionBytes, type Chunk, type Section } from './fetch.ts';
import { parseMessage, type Part } from './mime.ts';
import { matches, needsContent, parseSearch, usesModseq } from './search.ts';
import { sampleMailStorage } from '../storage.ts';

export interface ImapAccount {
  imvu: string;
  address: string;
}

export interface RefusalEvent {
  imvu: string;
  address: string;
  command: string;
  mailbox: string;
  reason: string;
  remote: string;
  /** A LIST / LSUB pattern (not a mailbox name) reached outside the account. */
  pattern?: boolean;
}

export interface ImapServerOptions {
  dataDir: string;
  host?: string;
  /** Plain port with STARTTLS (0: a free port). Omit to not listen. */
  port?: number;
  /** Implicit TLS port (0: a free port). Needs `tls`. */
  tlsPort?: number;
  tls?: SecureContextOptions;
  authenticate: (user: string, pass: string) => Promise<ImapAccount | null>;
  onRefusal?: (e: RefusalEvent) => void;
  /** A LOGIN / AUTHENTICATE refused (anonymous: nobody is logged in), with the peer's address. */
  onLoginFailure?: (remoteAddress: string) => void;
  /** The IMVU's storage quota in bytes (QUOTA); null when there is none. */
  quotaBytes?: (imvu: string) => bigint | null | Promise<bigint | null>;
  /** Allow LOGIN / AUTHENTICATE without TLS (tests on loopback). Default false. */
  plaintextAuth?: boolean;
  limits?: Partial<FramerLimits>;
  preAuthMs?: number;
  autologoutMs?: number;
  commandMs?: number;
  /** How often an IDLE session looks for changes when fs.watch says nothing. */
  idlePollMs?: number;
  maxConnections?: number;
}

export interface ImapServer {
  port: number | null;
  tlsPort: number | null;
  connections(): number;
  close(): Promise<void>;
}

const CAPS_BASE = ['IMAP4rev1', 'LITERAL+', 'SASL-IR', 'IDLE', 'UIDPLUS', 'MOVE', 'NAMESPACE', 'SPECIAL-USE', 'ID', 'ENABLE',
  'CONDSTORE', 'QUOTA', 'UNSELECT', 'CHILDREN'];

export async function startImapServer(opts: ImapServerOptions): Promise<ImapServer> {
  const host = opts.host ?? '127.0.0.1';
  const sessions = new Set<Session>();
  const ctx = opts.tls ? createSecureContext(opts.tls) : null;
  const max = opts.maxConnections ?? 1000;
  const accept = (sock: Socket, secure: boolean): void => {
    if (sessions.size >= max) {
      sock.end('* BYE too many connections\r\n');
      return;
    }
    const s = new Session(sock, secure, opts, ctx, () => sessions.delete(s));
    sessions.add(s);
    s.start();
  };
  let plain: Server | null = null;
  let tls: Server | null = null;
  if (opts.port !== undefined) {
    plain = createServer((sock) => accept(sock, false));
    await listen(plain, opts.port, host);
  }
  if (opts.tlsPort !== undefined) {
    if (!opts.tls) throw new Error('imaps needs a certificate and key');
    tls = createTlsServer({ ...opts.tls }, (sock) => accept(sock, true));
    await listen(tls, opts.tlsPort, host);
  }
  const portOf = (s: Server | null): number | null => {
    const a = s?.address();
    return a && typeof a === 'object' ? a.port : null;
  };
  return {
    port: portOf(plain),
    tlsPort: portOf(tls),
    connections: () => sessions.size,
    close: async () => {
      for (const s of sessions) s.shutdown('server shutting down');
      await Promise.all([plain, tls].filter((s): s is Server => s !== null).map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}

function listen(s: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    s.listen(port, host, () => {
      s.off('error', reject);
      resolve();
    });
  });
}

class No extends Error {
  constructor(readonly code: string | null, message: string, readonly bad = false) {
    super(message);
  }
}

interface Selected {
  name: string;
  folder: Folder;
  readOnly: boolean;
  /** Sequence number - 1 -> UID: the session's view. */
  uids: number[];
  /** UID -> modseq last reported to this session. */
  reported: Map<number, bigint>;
  version: number;
}

type FetchAtt =
  | { a: 'FLAGS' | 'INTERNALDATE' | 'RFC822.SIZE' | 'ENVELOPE' | 'BODYSTRUCTURE' | 'BODY' | 'UID' | 'MODSEQ' | 'RFC822' | 'RFC822.HEADER' | 'RFC822.TEXT' }
  | { a: 'SECTION'; peek: boolean; section: Section; raw: string; partial: [number, number] | null };

const SYSTEM = ['\\Answered', '\\Flagged', '\\Deleted', '\\Seen', '\\Draft'];

class Session {
  private framer: Framer;
  private account: ImapAccount | null = null;
  private root = '';
  private sel: Selected | null = null;
  private condstore = false;
  private busy = false;
  private closed = false;
  private idle: { tag: string; watchers: FSWatcher[]; timer: NodeJS.Timeout; listener: () => void } | null = null;
  private pendingAuth: { tag: string } | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private cmdTimer: NodeJS.Timeout | null = null;
  private remote: string;

  constructor(
    private sock: Socket,
    private secure: boolean,
    private readonly opts: ImapServerOptions,
    private readonly tlsCtx: SecureContext | null,
    private readonly onClose: () => void,
  ) {
    this.framer = new Framer({ ...DEFAULT_FRAMER_LIMITS, ...opts.limits });
    this.remote = `${sock.remoteAddress}:${sock.remotePort}`;
  }

  start(): void {
    this.attach(this.sock);
    this.write(`* OK [CAPABILITY ${this.caps().join(' ')}] Nexus IMAP ready\r\n`);
    this.armIdle();
  }

  private attach(sock: Socket): void {
    sock.setNoDelay(true);
    sock.on('data', (c: Buffer) => this.onData(c));
    sock.on('error', () => this.finish());
    sock.on('close', () => this.finish());
  }

  shutdown(text: string): void {
    if (this.closed) return;
    this.write(`* BYE ${text}\r\n`);
    this.sock.end();
    this.finish();
  }

  private finish(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopIdle();
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.cmdTimer) clearTimeout(this.cmdTimer);
    this.deselect();
    this.sock.destroy();
    this.onClose();
  }

  private caps(): string[] {
    const caps = [...CAPS_BASE];
    if (!this.secure && this.tlsCtx && !this.account) caps.push('STARTTLS');
    if (!this.account) {
      if (this.secure || this.opts.plaintextAuth) caps.push('AUTH=PLAIN');
      else caps.push('LOGINDISABLED');
    }
    return caps;
  }

  private armIdle(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const ms = this.account ? this.opts.autologoutMs ?? 30 * 60_000 : this.opts.preAuthMs ?? 60_000;
    this.idleTimer = setTimeout(() => this.shutdown('autologout; idle for too long'), ms);
    this.idleTimer.unref();
  }

  private write(s: string | Buffer): boolean {
    if (this.closed) return false;
    return this.sock.write(s);
  }

  /** Write response chunks (literals as {n}CRLF bytes), waiting for the socket to drain. */
  private async send(chunks: Chunk[]): Promise<void> {
    this.queue(chunks);
    await this.flushOut();
  }

  /** Responses waiting to go out in one write (FETCH of many messages: one write per ~64 KiB, not per message). */
  private out: Buffer[] = [];
  private outLen = 0;

  private queue(chunks: Chunk[]): void {
    let text = '';
    for (const c of chunks) {
      if (typeof c === 'string') text += c;
      else {
        text += `{${c.literal.length}}\r\n`;
        this.out.push(Buffer.from(text, 'latin1'), c.literal);
        this.outLen += text.length + c.literal.length;
        text = '';
      }
    }
    if (text) {
      this.out.push(Buffer.from(text, 'latin1'));
      this.outLen += text.length;
    }
  }

  private async flushOut(): Promise<void> {
    if (this.out.length === 0) return;
    const buf = this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out, this.outLen);
    this.out = [];
    this.outLen = 0;
    const ok = this.write(buf);
    if (!ok && !this.closed) await new Promise<void>((r) => {
      const done = (): void => {
        this.sock.off('drain', done);
        this.sock.off('close', done);
        r();
      };
      this.sock.once('drain', done);
      this.sock.once('close', done);
    });
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.framer.push(chunk);
    if (this.framer.started && !this.cmdTimer && !this.idle) {
      this.cmdTimer = setTimeout(() => this.shutdown('command not received in time'), this.opts.commandMs ?? 120_000);
      this.cmdTimer.unref();
    }
    if (this.busy) {
      // Backpressure: a pipelined flood stays in the kernel's buffers, not ours.
      this.sock.pause();
      return;
    }
    void this.pump();
  }

  private async pump(): Promise<void> {
    this.busy = true;
    try {
      for (;;) {
        if (this.closed) return;
        const ev = this.framer.next();
        if (!ev) break;
        if (ev.kind === 'continue') {
          this.write('+ go ahead\r\n');
          continue;
        }
        if (this.cmdTimer) {
          clearTimeout(this.cmdTimer);
          this.cmdTimer = null;
        }
        if (ev.kind === 'error') {
          const tag = ev.tag ?? '*';
          this.write(`${tag} BAD ${ev.tooBig ? '[TOOBIG] ' : ''}${ev.text}\r\n`);
          if (ev.fatal) {
            this.shutdown('cannot continue after that');
            return;
          }
          continue;
        }
        this.armIdle();
        await this.handle(ev.buf);
        if (this.framer.started && !this.cmdTimer && !this.idle) {
          this.cmdTimer = setTimeout(() => this.shutdown('command not received in time'), this.opts.commandMs ?? 120_000);
          this.cmdTimer.unref();
        }
      }
    } catch (err) {
      this.shutdown(`internal error: ${(err as Error).message}`);
    } finally {
      this.busy = false;
      if (!this.closed) this.sock.resume();
    }
  }

  private async handle(buf: Buffer): Promise<void> {
    if (this.idle) {
      const line = buf.toString('latin1').trim().toUpperCase();
      const tag = this.idle.tag;
      this.stopIdle();
      if (line === 'DONE') this.write(`${tag} OK IDLE terminated\r\n`);
      else this.write(`${tag} BAD expected DONE\r\n`);
      return;
    }
    if (this.pendingAuth) {
      const { tag } = this.pendingAuth;
      this.pendingAuth = null;
      const line = buf.toString('latin1').trim();
      if (line === '*') {
        this.write(`${tag} BAD authentication cancelled\r\n`);
        return;
      }
      await this.authPlain(tag, line);
      return;
    }
    const r = new Reader(buf);
    let tag = '*';
    let name = '';
    try {
      tag = r.atom('+');
      r.sp();
      name = r.atom().toUpperCase();
      let uid = false;
      if (name === 'UID') {
        r.sp();
        uid = true;
        name = r.atom().toUpperCase();
      }
      await this.dispatch(tag, name, uid, r);
    } catch (err) {
      if (err instanceof ParseError) this.write(`${tag} BAD ${err.message}\r\n`);
      else if (err instanceof No) this.write(`${tag} ${err.bad ? 'BAD' : 'NO'} ${err.code ? `[${err.code}] ` : ''}${err.message}\r\n`);
      else this.write(`${tag} NO [SERVERBUG] ${(err as Error).message}\r\n`);
    }
  }

  private need(state: 'auth' | 'selected'): void {
    if (!this.account) throw new No(null, 'log in first', true);
    if (state === 'selected' && !this.sel) throw new No(null, 'select a mailbox first', true);
  }

  private async dispatch(tag: string, cmd: string, uid: boolean, r: Reader): Promise<void> {
    if (uid && !['FETCH', 'STORE', 'SEARCH', 'COPY', 'MOVE', 'EXPUNGE'].includes(cmd)) throw new No(null, `UID ${cmd} unknown`, true);
    switch (cmd) {
      case 'CAPABILITY':
        r.end();
        this.write(`* CAPABILITY ${this.caps().join(' ')}\r\n${tag} OK CAPABILITY completed\r\n`);
        return;
      case 'NOOP':
      case 'CHECK':
        r.end();
        if (cmd === 'CHECK') this.need('selected');
        await this.refresh(true);
        this.write(`${tag} OK ${cmd} completed\r\n`);
        return;
      case 'LOGOUT':
        r.end();
        this.write(`* BYE logging out\r\n${tag} OK LOGOUT completed\r\n`);
        this.sock.end();
        this.finish();
        return;
      case 'ID':
        this.write(`* ID ("name" "Nexus IMAP")\r\n${tag} OK ID completed\r\n`);
        return;
      case 'STARTTLS':
        r.end();
        return this.starttls(tag);
      case 'LOGIN': {
        if (this.account) throw new No(null, 'already logged in', true);
        r.sp();
        const user = r.astring();
        r.sp();
        const pass = r.astring();
        r.end();
        if (!this.secure && !this.opts.plaintextAuth) throw new No('PRIVACYREQUIRED', 'use STARTTLS first');
        return this.login(tag, user, pass);
      }
      case 'AUTHENTICATE': {
        if (this.account) throw new No(null, 'already logged in', true);
        r.sp();
        const mech = r.atom().toUpperCase();
        if (mech !== 'PLAIN') throw new No(null, 'only PLAIN is supported');
        if (!this.secure && !this.opts.plaintextAuth) throw new No('PRIVACYREQUIRED', 'use STARTTLS first');
        if (r.maybeSp()) {
          const ir = r.atom();
          r.end();
          return this.authPlain(tag, ir === '=' ? '' : ir);
        }
        this.pendingAuth = { tag };
        this.write('+ \r\n');
        return;
      }
    }
    this.need('auth');
    switch (cmd) {
      case 'ENABLE': {
        const enabled: string[] = [];
        while (r.maybeSp()) {
          const c = r.atom().toUpperCase();
          if (c === 'CONDSTORE' && !enabled.includes(c)) {
            this.condstore = true;
            enabled.push(c);
          }
        }
        this.write(`* ENABLED${enabled.map((e) => ' ' + e).join('')}\r\n${tag} OK ENABLE completed\r\n`);
        return;
      }
      case 'NAMESPACE':
        r.end();
        this.write(`* NAMESPACE (("" "${DELIMITER}")) NIL NIL\r\n${tag} OK NAMESPACE completed\r\n`);
        return;
      case 'SELECT':
      case 'EXAMINE':
        return this.select(tag, cmd, r);
      case 'CREATE': {
        r.sp();
        const mb = this.mailbox(cmd, r.astring());
        r.end();
        if (mb.inbox || mailboxExists(mb)) throw new No('ALREADYEXISTS', 'mailbox exists');
        createMailbox(this.root, mb.dir);
        return this.ok(tag, 'CREATE completed');
      }
      case 'DELETE': {
        r.sp();
        const mb = this.mailbox(cmd, r.astring());
        r.end();
        if (mb.inbox) throw new No('CANNOT', 'INBOX cannot be deleted');
        if (!mailboxExists(mb)) throw new No('NONEXISTENT', 'no such mailbox');
        if (this.sel?.name === mb.name) this.deselect();
        deleteMailbox(this.root, mb.dir);
        forgetFolder(mb.dir);
        return this.ok(tag, 'DELETE completed');
      }
      case 'RENAME': {
        r.sp();
        const from = this.mailbox(cmd, r.astring());
        r.sp();
        const to = this.mailbox(cmd, r.astring());
        r.end();
        if (from.inbox || to.inbox) throw new No('CANNOT', 'INBOX cannot be renamed here');
        if (!mailboxExists(from)) throw new No('NONEXISTENT', 'no such mailbox');
        if (mailboxExists(to)) throw new No('ALREADYEXISTS', 'target exists');
        if (this.sel && (this.sel.name === from.name || this.sel.name.startsWith(from.name + DELIMITER))) this.deselect();
        renameMailbox(this.root, from.name, to.name);
        forgetFolder(from.dir);
        return this.ok(tag, 'RENAME completed');
      }
      case 'SUBSCRIBE':
      case 'UNSUBSCRIBE': {
        r.sp();
        const mb = this.mailbox(cmd, r.astring());
        r.end();
        const subs = readSubscriptions(this.root);
        if (cmd === 'SUBSCRIBE') subs.add(mb.name);
        else subs.delete(mb.name);
        writeSubscriptions(this.root, subs);
        return this.ok(tag, `${cmd} completed`);
      }
      case 'LIST':
      case 'LSUB':
        return this.list(tag, cmd, r);
      case 'STATUS':
        return this.status(tag, r);
      case 'APPEND':
        return this.append(tag, r);
      case 'GETQUOTAROOT':
      case 'GETQUOTA': {
        r.sp();
        const arg = r.astring();
        r.end();
        if (cmd === 'GETQUOTAROOT') {
          this.mailbox(cmd, arg);
          this.write(`* QUOTAROOT ${quote(arg)} ""\r\n`);
        } else if (arg !== '') throw new No('NONEXISTENT', 'no such quota root');
        const limit = (await this.opts.quotaBytes?.(this.account!.imvu)) ?? null;
        if (limit !== null) {
          const used = sampleMailStorage(this.opts.dataDir, this.account!.imvu);
          this.write(`* QUOTA "" (STORAGE ${(used + 1023n) / 1024n} ${limit / 1024n})\r\n`);
        }
        return this.ok(tag, `${cmd} completed`);
      }
      case 'SETQUOTA':
        throw new No('NOPERM', 'the quota is set by the IMVU envelope');
    }
    this.need('selected');
    const sel = this.sel!;
    switch (cmd) {
      case 'CLOSE':
      case 'UNSELECT':
        r.end();
        if (cmd === 'CLOSE' && !sel.readOnly) {
          const del = sel.folder.messages.filter((m) => m.flags.has('\\Deleted')).map((m) => m.uid);
          await sel.folder.expunge(del);
        }
        this.deselect();
        return this.ok(tag, `${cmd} completed`);
      case 'EXPUNGE': {
        let set: [number, number][] | null = null;
        if (uid) {
          r.sp();
          set = r.seqSet();
        }
        r.end();
        if (sel.readOnly) throw new No('READ-ONLY', 'mailbox is read-only');
        const inView = new Set(this.resolveSet(set ?? [[1, 0]], uid || set === null ? true : false, !set));
        const del = sel.folder.messages.filter((m) => m.flags.has('\\Deleted') && (set === null || inView.has(m.uid))).map((m) => m.uid);
        await sel.folder.expunge(del);
        await this.sync(true);
        return this.ok(tag, 'EXPUNGE completed');
      }
      case 'SEARCH':
        return this.search(tag, uid, r);
      case 'FETCH':
        return this.fetch(tag, uid, r);
      case 'STORE':
        return this.store(tag, uid, r);
      case 'COPY':
      case 'MOVE':
        return this.copy(tag, cmd, uid, r);
      case 'IDLE':
        r.end();
        return this.startIdle(tag);
    }
    throw new No(null, `unknown command ${cmd}`, true);
  }

  private ok(tag: string, text: string): void {
    this.write(`${tag} OK ${text}\r\n`);
  }

  /** A mailbox name resolved inside this account's root, or a refusal (recorded) / NO. */
  private mailbox(command: string, raw: string): { name: string; dir: string; inbox: boolean } {
    const r = resolveMailbox(this.root, raw);
    if (!r.ok) {
      if (r.escape) {
        this.opts.onRefusal?.({ imvu: this.account!.imvu, address: this.account!.address, command, mailbox: raw.slice(0, 300), reason: r.reason, remote: this.remote });
        throw new No('NOPERM', r.reason);
      }
      throw new No('CANNOT', r.reason);
    }
    return r;
  }

  private async starttls(tag: string): Promise<void> {
    if (this.secure || !this.tlsCtx) throw new No(null, 'STARTTLS not available', true);
    this.write(`${tag} OK begin TLS\r\n`);
    // Anything pipelined after STARTTLS in plaintext is discarded (it could be an injection).
    this.framer = new Framer({ ...DEFAULT_FRAMER_LIMITS, ...this.opts.limits });
    const raw = this.sock;
    raw.removeAllListeners('data');
    raw.removeAllListeners('close');
    raw.removeAllListeners('error');
    const tls = new TLSSocket(raw, { isServer: true, secureContext: this.tlsCtx });
    this.sock = tls;
    this.secure = true;
    this.attach(tls);
  }

  private async login(tag: string, user: string, pass: string): Promise<void> {
    const acct = await this.opts.authenticate(user, pass).catch(() => null);
    if (!acct) {
      this.opts.onLoginFailure?.(this.sock.remoteAddress ?? '');
      // A little delay slows guessing without holding anything.
      await new Promise((r) => setTimeout(r, 200));
      throw new No('AUTHENTICATIONFAILED', 'invalid credentials');
    }
    this.account = acct;
    this.root = mailboxRoot(this.opts.dataDir, acct.imvu, acct.address);
    ensureMaildir(this.root);
    for (const f of DEFAULT_FOLDERS) {
      const mb = resolveMailbox(this.root, f);
      if (mb.ok && !mailboxExists(mb)) createMailbox(this.root, mb.dir);
    }
    this.armIdle();
    this.write(`${tag} OK [CAPABILITY ${this.caps().join(' ')}] logged in\r\n`);
  }

  private async authPlain(tag: string, b64: string): Promise<void> {
    const raw = Buffer.from(b64, 'base64').toString('utf8');
    const parts = raw.split('\0');
    if (parts.length !== 3) throw new No(null, 'malformed PLAIN response', true);
    const [authz, user, pass] = parts as [string, string, string];
    if (authz && authz !== user) throw new No('AUTHORIZATIONFAILED', 'cannot act as another user');
    try {
      await this.login(tag, user, pass);
    } catch (err) {
      if (err instanceof No) this.write(`${tag} NO ${err.code ? `[${err.code}] ` : ''}${err.message}\r\n`);
      else throw err;
    }
  }

  private deselect(): void {
    if (!this.sel) return;
    closeFolder(this.sel.folder);
    this.sel = null;
  }

  private async select(tag: string, cmd: string, r: Reader): Promise<void> {
    r.sp();
    const mb = this.mailbox(cmd, r.astring());
    if (r.maybeSp()) {
      r.expect('(');
      const p = r.atom().toUpperCase();
      if (p === 'CONDSTORE') this.condstore = true;
      r.expect(')');
    }
    r.end();
    this.deselect();
    if (!mailboxExists(mb)) throw new No('NONEXISTENT', 'no such mailbox');
    const folder = openFolder(mb.dir);
    const readOnly = cmd === 'EXAMINE';
    try {
      await folder.scan(!readOnly);
    } catch (err) {
      closeFolder(folder);
      throw err;
    }
    const sel: Selected = { name: mb.name, folder, readOnly, uids: [], reported: new Map(), version: folder.version };
    for (const m of folder.messages) {
      sel.uids.push(m.uid);
      sel.reported.set(m.uid, m.modseq);
    }
    this.sel = sel;
    const kws = folder.keywords.join(' ');
    const firstUnseen = folder.messages.findIndex((m) => !m.flags.has('\\Seen'));
    const lines = [
      `* FLAGS (${SYSTEM.join(' ')}${kws ? ' ' + kws : ''})`,
      `* OK [PERMANENTFLAGS (${readOnly ? '' : SYSTEM.join(' ') + (kws ? ' ' + kws : '') + (folder.canCreateKeywords() ? ' \\*' : '')})] flags`,
      `* ${sel.uids.length} EXISTS`,
      '* 0 RECENT',
      ...(firstUnseen >= 0 ? [`* OK [UNSEEN ${firstUnseen + 1}] first unseen`] : []),
      `* OK [UIDVALIDITY ${folder.state.uidValidity}] UIDs valid`,
      `* OK [UIDNEXT ${folder.state.uidNext}] next UID`,
      `* OK [HIGHESTMODSEQ ${folder.state.highestModseq}] modseq`,
      `${tag} OK [${readOnly ? 'READ-ONLY' : 'READ-WRITE'}] ${cmd} completed`,
    ];
    this.write(lines.join('\r\n') + '\r\n');
  }

  /** Look at the disk again and tell this session what changed. */
  private async refresh(allowExpunge: boolean): Promise<void> {
    if (!this.sel) return;
    await this.sel.folder.scan(!this.sel.readOnly);
    await this.sync(allowExpunge);
  }

  /** Send this session what changed in its folder: EXPUNGE, EXISTS, FETCH FLAGS. */
  private async sync(allowExpunge: boolean): Promise<void> {
    const sel = this.sel;
    if (!sel || sel.version === sel.folder.version) return;
    const out: string[] = [];
    const folder = sel.folder;
    if (allowExpunge) {
      for (let i = sel.uids.length - 1; i >= 0; i--) {
        const u = sel.uids[i]!;
        if (!folder.get(u)) {
          out.push(`* ${i + 1} EXPUNGE`);
          sel.uids.splice(i, 1);
          sel.reported.delete(u);
        }
      }
    }
    const last = sel.uids.length ? sel.uids[sel.uids.length - 1]! : 0;
    let added = false;
    for (const m of folder.messages) {
      if (m.uid > last) {
        sel.uids.push(m.uid);
        sel.reported.set(m.uid, m.modseq);
        added = true;
      }
    }
    if (added) out.push(`* ${sel.uids.length} EXISTS`);
    sel.uids.forEach((u, i) => {
      const m = folder.get(u);
      if (!m) return;
      const seen = sel.reported.get(u);
      if (seen !== undefined && m.modseq > seen) {
        sel.reported.set(u, m.modseq);
        out.push(`* ${i + 1} FETCH (UID ${u} FLAGS (${[...m.flags].join(' ')})${this.condstore ? ` MODSEQ (${m.modseq})` : ''})`);
      }
    });
    if (allowExpunge) sel.version = folder.version;
    if (out.length) await this.send([out.join('\r\n') + '\r\n']);
  }

  /** Sequence set to UIDs in this session's view (`*` is the last). */
  private resolveSet(set: [number, number][], byUid: boolean, all = false): number[] {
    const sel = this.sel!;
    if (all) return [...sel.uids];
    if (set.length === 1 && set[0]![0] === -1) return [];
    const out = new Set<number>();
    if (byUid) {
      const maxUid = sel.uids.length ? sel.uids[sel.uids.length - 1]! : 0;
      const ranges = set.map(([a, b]) => {
        const x = a === 0 ? maxUid : a;
        const y = b === 0 ? maxUid : b;
        return [Math.min(x, y), Math.max(x, y)] as const;
      });
      for (const u of sel.uids) if (ranges.some(([a, b]) => u >= a && u <= b)) out.add(u);
    } else {
      const n = sel.uids.length;
      for (const [a0, b0] of set) {
        const a = a0 === 0 ? n : a0;
        const b = b0 === 0 ? n : b0;
        if (Math.max(a, b) > n) throw new No(null, 'invalid message sequence number', true);
        for (let i = Math.min(a, b); i <= Math.max(a, b); i++) out.add(sel.uids[i - 1]!);
      }
    }
    return [...out].sort((a, b) => a - b);
  }

  private async list(tag: string, cmd: string, r: Reader): Promise<void> {
    r.sp();
    let subscribedOnly = cmd === 'LSUB';
    let specialOnly = false;
    let returnSubscribed = false;
    if (r.tryExpect('(')) {
      // LIST-EXTENDED selection options (RFC 5258), as far as we serve them.
      while (!r.tryExpect(')')) {
        const o = r.atom().toUpperCase();
        if (o === 'SUBSCRIBED') subscribedOnly = true;
        if (o === 'SPECIAL-USE') specialOnly = true;
        r.maybeSp();
      }
      r.sp();
    }
    const ref = r.astring();
    r.sp();
    const pat = r.listMailbox();
    if (r.maybeSp()) {
      r.expect('RETURN');
      r.sp();
      r.expect('(');
      while (!r.tryExpect(')')) {
        const o = r.atom().toUpperCase();
        if (o === 'SUBSCRIBED') returnSubscribed = true;
        r.maybeSp();
      }
    }
    r.end();
    if (/[/\\]|\.\./.test(ref + pat) || /^[~.]/.test(ref + pat)) {
      this.opts.onRefusal?.({ imvu: this.account!.imvu, address: this.account!.address, command: cmd, mailbox: (ref + pat).slice(0, 300), reason: 'pattern outside this account', remote: this.remote, pattern: true });
      throw new No('NOPERM', 'pattern outside this account');
    }
    if (pat === '' && cmd === 'LIST') {
      this.write(`* LIST (\\Noselect) "${DELIMITER}" ""\r\n${tag} OK LIST completed\r\n`);
      return;
    }
    const re = patternRegex(ref, pat);
    const all = listMailboxes(this.root);
    const subs = readSubscriptions(this.root);
    const out: Chunk[] = [];
    for (const name of all) {
      if (!re.test(name)) continue;
      if (subscribedOnly && !subs.has(name)) continue;
      const attrs: string[] = [];
      attrs.push(all.some((o) => o.startsWith(name + DELIMITER)) ? '\\HasChildren' : '\\HasNoChildren');
      const su = SPECIAL_USE[name];
      if (su) attrs.push(su);
      else if (specialOnly) continue;
      if ((returnSubscribed || subscribedOnly) && subs.has(name)) attrs.push('\\Subscribed');
      out.push(`* ${cmd} (${attrs.join(' ')}) "${DELIMITER}" `, istring(name), '\r\n');
    }
    out.push(`${tag} OK ${cmd} completed\r\n`);
    await this.send(out);
  }

  private async status(tag: string, r: Reader): Promise<void> {
    r.sp();
    const mb = this.mailbox('STATUS', r.astring());
    r.sp();
    r.expect('(');
    const items: string[] = [];
    while (!r.tryExpect(')')) {
      items.push(r.atom().toUpperCase());
      r.maybeSp();
      if (items.length > 20) throw new ParseError('too many items');
    }
    r.end();
    if (!mailboxExists(mb)) throw new No('NONEXISTENT', 'no such mailbox');
    const st = await folderStatus(mb.dir);
    const vals: string[] = [];
    for (const it of items) {
      const v = ({
        MESSAGES: st.messages, RECENT: 0, UIDNEXT: st.state.uidNext, UIDVALIDITY: st.state.uidValidity, UNSEEN: st.unseen,
        HIGHESTMODSEQ: st.state.highestModseq, SIZE: st.size,
      } as Record<string, number | bigint>)[it];
      if (v === undefined) throw new ParseError(`unknown status item ${it}`);
      vals.push(`${it} ${v}`);
    }
    await this.send(['* STATUS ', istring(mb.name), ` (${vals.join(' ')})\r\n`]);
    await this.refresh(true);
    this.ok(tag, 'STATUS completed');
  }

  private async append(tag: string, r: Reader): Promise<void> {
    r.sp();
    const mb = this.mailbox('APPEND', r.astring());
    r.sp();
    let flags: string[] = [];
    let date: number | undefined;
    if (r.peek() === '(') {
      flags = r.flagList();
      r.sp();
    }
    if (r.peek() === '"') {
      const d = r.string().toString('latin1');
      const t = Date.parse(d.replace(/^(\s?\d{1,2})-(\w{3})-(\d{4})/, '$1 $2 $3'));
      if (Number.isNaN(t)) throw new ParseError('bad date-time');
      date = t;
      r.sp();
    }
    const content = r.string();
    r.end();
    if (!mailboxExists(mb)) throw new No('TRYCREATE', 'no such mailbox');
    await this.checkQuota(content.length);
    const folder = openFolder(mb.dir);
    try {
      const m = await folder.add(toCrlf(content), flags.filter((f) => f !== '\\Recent'), date);
      await this.sync(true);
      this.ok(tag, `[APPENDUID ${folder.state.uidValidity} ${m.uid}] APPEND completed`);
    } finally {
      closeFolder(folder);
    }
  }

  private async checkQuota(adding: number): Promise<void> {
    const limit = (await this.opts.quotaBytes?.(this.account!.imvu)) ?? null;
    if (limit === null) return;
    if (sampleMailStorage(this.opts.dataDir, this.account!.imvu) + BigInt(adding) > limit) throw new No('OVERQUOTA', 'storage quota exceeded');
  }

  private async search(tag: string, uid: boolean, r: Reader): Promise<void> {
    r.sp();
    if (r.tryExpect('CHARSET ')) {
      const cs = r.astring().toUpperCase();
      if (cs !== 'UTF-8' && cs !== 'US-ASCII') throw new No('BADCHARSET', 'UTF-8 and US-ASCII only');
      r.sp();
    }
    const key = parseSearch(r);
    r.end();
    const sel = this.sel!;
    const content = needsContent(key);
    const out: number[] = [];
    let maxModseq = 0n;
    const maxUid = sel.uids.length ? sel.uids[sel.uids.length - 1]! : 0;
    for (let i = 0; i < sel.uids.length; i++) {
      const m = sel.folder.get(sel.uids[i]!);
      if (!m) continue;
      let buf: Buffer | undefined;
      if (content) buf = this.read(m) ?? undefined;
      if (matches(key, { seq: i + 1, msg: m, maxSeq: sel.uids.length, maxUid, content: buf })) {
        out.push(uid ? m.uid : i + 1);
        if (m.modseq > maxModseq) maxModseq = m.modseq;
      }
    }
    const mod = usesModseq(key) && out.length ? ` (MODSEQ ${maxModseq})` : '';
    await this.send([`* SEARCH${out.map((n) => ' ' + n).join('')}${mod}\r\n`]);
    await this.sync(false);
    this.ok(tag, 'SEARCH completed');
  }

  private read(m: Message): Buffer | null {
    try {
      return toCrlf(readFileSync(this.sel!.folder.path(m)));
    } catch {
      return null;
    }
  }

  /** The header block only (through the blank line), for fetches that need nothing else; else the whole message. */
  private readHead(m: Message): Buffer | null {
    let fd: number;
    try {
      fd = openSync(this.sel!.folder.path(m), 'r');
    } catch {
      return null;
    }
    try {
      const chunks: Buffer[] = [];
      let len = 0;
      for (;;) {
        const chunk = Buffer.allocUnsafe(len === 0 ? 8192 : 65536);
        const n = readSync(fd, chunk, 0, chunk.length, len);
        if (n === 0) break;
        chunks.push(chunk.subarray(0, n));
        len += n;
        const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, len);
        // Searched from a little before the new bytes, so a blank line split across reads is found.
        const from = Math.max(0, len - n - 3);
        const lf = all.indexOf('\n\n', from);
        const crlf = all.indexOf('\n\r\n', from);
        // A message that starts with its blank line has an empty header.
        const start = all[0] === 10 ? 1 : all[0] === 13 && all[1] === 10 ? 2 : -1;
        const end = start !== -1 ? start : lf === -1 ? (crlf === -1 ? -1 : crlf + 3) : crlf === -1 || lf < crlf ? lf + 2 : crlf + 3;
        if (end !== -1) return toCrlf(all.subarray(0, end));
        if (len > 1 << 20) return this.read(m);
        chunks.length = 0;
        chunks.push(all);
      }
      return toCrlf(chunks.length ? chunks[0]! : Buffer.alloc(0));
    } catch {
      return null;
    } finally {
      closeSync(fd);
    }
  }

  private parseFetchAtts(r: Reader): FetchAtt[] {
    const one = (): FetchAtt[] => {
      const start = r.pos;
      const name = r.atom('[<)').toUpperCase();
      switch (name) {
        case 'ALL': return [{ a: 'FLAGS' }, { a: 'INTERNALDATE' }, { a: 'RFC822.SIZE' }, { a: 'ENVELOPE' }];
        case 'FAST': return [{ a: 'FLAGS' }, { a: 'INTERNALDATE' }, { a: 'RFC822.SIZE' }];
        case 'FULL': return [{ a: 'FLAGS' }, { a: 'INTERNALDATE' }, { a: 'RFC822.SIZE' }, { a: 'ENVELOPE' }, { a: 'BODY' }];
        case 'FLAGS': case 'INTERNALDATE': case 'RFC822.SIZE': case 'ENVELOPE': case 'BODYSTRUCTURE': case 'UID': case 'MODSEQ':
        case 'RFC822': case 'RFC822.HEADER': case 'RFC822.TEXT':
          return [{ a: name }];
        case 'BODY': case 'BODY.PEEK': {
          if (r.peek() !== '[') {
            if (name === 'BODY') return [{ a: 'BODY' }];
            throw new ParseError('BODY.PEEK needs a section');
          }
          r.expect('[');
          const section = this.parseSection(r);
          const rawEnd = r.pos;
          r.expect(']');
          let partial: [number, number] | null = null;
          if (r.tryExpect('<')) {
            const o = r.number();
            r.expect('.');
            const n = r.number();
            if (n === 0) throw new ParseError('partial length 0');
            r.expect('>');
            partial = [o, n];
          }
          const raw = r.buf.toString('latin1', start + name.length + 1, rawEnd);
          return [{ a: 'SECTION', peek: name === 'BODY.PEEK', section, raw: raw.replace(/^BODY(\.PEEK)?\[/i, ''), partial }];
        }
        default: throw new ParseError(`unknown fetch item ${name}`);
      }
    };
    if (r.tryExpect('(')) {
      const out: FetchAtt[] = [];
      for (;;) {
        out.push(...one());
        if (out.length > 100) throw new ParseError('too many fetch items');
        if (r.tryExpect(')')) return out;
        r.sp();
      }
    }
    return one();
  }

  private parseSection(r: Reader): Section {
    const path: number[] = [];
    while (/[0-9]/.test(r.peek())) {
      path.push(r.number());
      if (path.length > 32) throw new ParseError('section too deep');
      if (!r.tryExpect('.')) break;
    }
    if (r.peek() === ']') return { path, spec: '', fields: [] };
    const word = r.atom('[]').toUpperCase();
    if (word === 'HEADER' || word === 'TEXT' || (word === 'MIME' && path.length > 0)) return { path, spec: word, fields: [] };
    if (word === 'HEADER.FIELDS' || word === 'HEADER.FIELDS.NOT') {
      r.sp();
      r.expect('(');
      const fields: string[] = [];
      while (!r.tryExpect(')')) {
        fields.push(r.astring());
        r.maybeSp();
        if (fields.length > 200) throw new ParseError('too many header fields');
      }
      return { path, spec: word, fields };
    }
    throw new ParseError(`bad section ${word}`);
  }

  private async fetch(tag: string, uid: boolean, r: Reader): Promise<void> {
    r.sp();
    const set = r.seqSet();
    r.sp();
    const atts = this.parseFetchAtts(r);
    let changedSince: bigint | null = null;
    if (r.maybeSp()) {
      r.expect('(');
      r.expect('CHANGEDSINCE ');
      changedSince = r.bigNumber();
      r.expect(')');
      this.condstore = true;
    }
    r.end();
    if (uid && !atts.some((a) => a.a === 'UID')) atts.unshift({ a: 'UID' });
    if ((changedSince !== null || this.condstore) && !atts.some((a) => a.a === 'MODSEQ')) atts.push({ a: 'MODSEQ' });
    const sel = this.sel!;
    const uids = this.resolveSet(set, uid);
    const setsSeen = !sel.readOnly && atts.some((a) => (a.a === 'SECTION' && !a.peek) || a.a === 'RFC822' || a.a === 'RFC822.TEXT');
    if (setsSeen) {
      const unseen = uids.filter((u) => sel.folder.get(u) && !sel.folder.get(u)!.flags.has('\\Seen'));
      if (unseen.length) {
        const { changed } = await sel.folder.setFlags(unseen, 'add', ['\\Seen']);
        // FLAGS go out with this FETCH; keep them from being sent twice.
        for (const m of changed) sel.reported.set(m.uid, m.modseq);
        if (!atts.some((a) => a.a === 'FLAGS')) atts.push({ a: 'FLAGS' });
      }
    }
    const seqOf = new Map<number, number>();
    sel.uids.forEach((u, i) => seqOf.set(u, i + 1));
    const needContent = atts.some((a) => a.a !== 'FLAGS' && a.a !== 'UID' && a.a !== 'MODSEQ' && a.a !== 'INTERNALDATE' && a.a !== 'RFC822.SIZE');
    // Headers alone (a client's header sync): read up to the blank line, not the whole file.
    const headOnly = atts.every(
      (a) =>
        a.a === 'FLAGS' || a.a === 'UID' || a.a === 'MODSEQ' || a.a === 'INTERNALDATE' || a.a === 'RFC822.SIZE' || a.a === 'ENVELOPE' || a.a === 'RFC822.HEADER' ||
        (a.a === 'SECTION' && a.section.path.length === 0 && a.section.spec.startsWith('HEADER')),
    );
    for (const u of uids) {
      const m = sel.folder.get(u);
      if (!m) continue;
      if (changedSince !== null && m.modseq <= changedSince) continue;
      let buf: Buffer | null = null;
      if (needContent) {
        buf = headOnly ? this.readHead(m) : this.read(m);
        if (!buf) continue;
      }
      let tree: Part | null = null;
      const structure = (): Part => (tree ??= parseMessage(buf!));
      const items: Chunk[] = [];
      for (const a of atts) {
        if (items.length) items.push(' ');
        switch (a.a) {
          case 'UID': items.push(`UID ${m.uid}`); break;
          case 'FLAGS': items.push(`FLAGS (${[...m.flags].join(' ')})`); break;
          case 'MODSEQ': items.push(`MODSEQ (${m.modseq})`); break;
          case 'INTERNALDATE': items.push(`INTERNALDATE "${imapDate(m.internalDate)}"`); break;
          case 'RFC822.SIZE': items.push(`RFC822.SIZE ${m.size}`); break;
          case 'ENVELOPE': items.push('ENVELOPE ', ...envelope(structure().headers)); break;
          case 'BODYSTRUCTURE': items.push('BODYSTRUCTURE ', ...bodyStructure(buf!, structure(), true)); break;
          case 'BODY': items.push('BODY ', ...bodyStructure(buf!, structure(), false)); break;
          case 'RFC822': items.push('RFC822 ', { literal: buf! }); break;
          case 'RFC822.HEADER': items.push('RFC822.HEADER ', { literal: sectionBytes(buf!, structure(), { path: [], spec: 'HEADER', fields: [] }) }); break;
          case 'RFC822.TEXT': items.push('RFC822.TEXT ', { literal: sectionBytes(buf!, structure(), { path: [], spec: 'TEXT', fields: [] }) }); break;
          case 'SECTION': {
            let data = sectionBytes(buf!, needsStructure(a.section) ? structure() : null, a.section);
            let name = `BODY[${a.raw}]`;
            if (a.partial) {
              const [o, n] = a.partial;
              data = o >= data.length ? Buffer.alloc(0) : data.subarray(o, o + n);
              name += `<${o}>`;
            }
            items.push(`${name} `, { literal: data });
            break;
          }
        }
      }
      sel.reported.set(m.uid, m.modseq);
      this.queue([`* ${seqOf.get(u)} FETCH (`, ...items, ')\r\n']);
      if (this.outLen >= 65536) await this.flushOut();
    }
    await this.flushOut();
    await this.sync(false);
    this.ok(tag, 'FETCH completed');
  }

  private async store(tag: string, uid: boolean, r: Reader): Promise<void> {
    r.sp();
    const set = r.seqSet();
    r.sp();
    let unchangedSince: bigint | undefined;
    if (r.tryExpect('(')) {
      r.expect('UNCHANGEDSINCE ');
      unchangedSince = r.bigNumber();
      r.expect(')');
      r.sp();
      this.condstore = true;
    }
    const op = r.atom().toUpperCase();
    const m = /^([+-]?)FLAGS(\.SILENT)?$/.exec(op);
    if (!m) throw new ParseError(`bad STORE item ${op}`);
    r.sp();
    const flags = r.flagList().filter((f) => f !== '\\Recent');
    r.end();
    const sel = this.sel!;
    if (sel.readOnly) throw new No('READ-ONLY', 'mailbox is read-only');
    for (const f of flags) if (f.startsWith('\\') && !SYSTEM.includes(f)) throw new ParseError(`unknown system flag ${f}`);
    const uids = this.resolveSet(set, uid);
    const mode = m[1] === '+' ? 'add' : m[1] === '-' ? 'remove' : 'set';
    const { changed, modified } = await sel.folder.setFlags(uids, mode, flags, unchangedSince);
    const silent = !!m[2];
    const out: string[] = [];
    const seqOf = new Map<number, number>();
    sel.uids.forEach((u, i) => seqOf.set(u, i + 1));
    const report = new Set(silent ? [] : uids);
    if (silent && this.condstore) for (const c of changed) report.add(c.uid);
    for (const u of report) {
      const msg = sel.folder.get(u);
      if (!msg || modified.includes(u)) continue;
      sel.reported.set(u, msg.modseq);
      const items = [uid ? `UID ${u}` : '', silent ? '' : `FLAGS (${[...msg.flags].join(' ')})`, this.condstore ? `MODSEQ (${msg.modseq})` : '']
        .filter(Boolean).join(' ');
      out.push(`* ${seqOf.get(u)} FETCH (${items})`);
    }
    if (out.length) await this.send([out.join('\r\n') + '\r\n']);
    await this.sync(false);
    const mod = modified.length ? `[MODIFIED ${compressSet(uid ? modified : modified.map((u) => seqOf.get(u)!))}] ` : '';
    this.ok(tag, `${mod}STORE completed`);
  }

  private async copy(tag: string, cmd: string, uid: boolean, r: Reader): Promise<void> {
    r.sp();
    const set = r.seqSet();
    r.sp();
    const mb = this.mailbox(cmd, r.astring());
    r.end();
    const sel = this.sel!;
    if (!mailboxExists(mb)) throw new No('TRYCREATE', 'no such mailbox');
    if (cmd === 'MOVE' && sel.readOnly) throw new No('READ-ONLY', 'mailbox is read-only');
    const uids = this.resolveSet(set, uid);
    const msgs = uids.map((u) => sel.folder.get(u)).filter((m): m is Message => !!m);
    await this.checkQuota(cmd === 'COPY' ? msgs.reduce((n, m) => n + m.size, 0) : 0);
    const dest = openFolder(mb.dir);
    const src: number[] = [];
    const dst: number[] = [];
    try {
      for (const m of msgs) {
        const added = await dest.add({ linkFrom: sel.folder.path(m) }, [...m.flags], m.internalDate);
        src.push(m.uid);
        dst.push(added.uid);
      }
    } finally {
      closeFolder(dest);
    }
    const copyuid = src.length ? `[COPYUID ${dest.state.uidValidity} ${compressSet(src)} ${compressSet(dst)}] ` : '';
    if (cmd === 'MOVE') {
      if (copyuid) this.write(`* OK ${copyuid}moved\r\n`);
      await sel.folder.expunge(src);
      await this.sync(true);
      this.ok(tag, 'MOVE completed');
    } else {
      await this.sync(false);
      this.ok(tag, `${copyuid}COPY completed`);
    }
  }

  private startIdle(tag: string): void {
    const sel = this.sel!;
    const check = (): void => {
      void sel.folder.scan(!sel.readOnly).catch(() => undefined);
    };
    const listener = (): void => {
      if (this.idle) void this.sync(true).catch(() => undefined);
    };
    sel.folder.on('change', listener);
    const watchers: FSWatcher[] = [];
    for (const sub of ['new', 'cur']) {
      try {
        const w = watch(join(sel.folder.dir, sub), { persistent: false }, check);
        w.on('error', () => undefined);
        watchers.push(w);
      } catch {
        // The poll below still finds changes.
      }
    }
    const timer = setInterval(check, this.opts.idlePollMs ?? 500);
    timer.unref();
    this.idle = { tag, watchers, timer, listener };
    this.write('+ idling\r\n');
    void this.sync(true);
  }

  private stopIdle(): void {
    if (!this.idle) return;
    clearInterval(this.idle.timer);
    for (const w of this.idle.watchers) w.close();
    this.sel?.folder.off('change', this.idle.listener);
    this.idle = null;
  }
}

const MON = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

export function imapDate(ms: number): string {
  const d = new Date(ms);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${p(d.getUTCDate())}-${MON[d.getUTCMonth()]}-${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

export function compressSet(nums: number[]): string {
  const out: string[] = [];
  let i = 0;
  while (i < nums.length) {
    let j = i;
    while (j + 1 < nums.length && nums[j + 1] === nums[j]! + 1) j++;
    out.push(i === j ? `${nums[i]}` : `${nums[i]}:${nums[j]}`);
    i = j + 1;
  }
  return out.join(',');
}
