// The index beside each Maildir folder: UIDs, UIDVALIDITY, UIDNEXT and CONDSTORE mod-sequences,
// like Dovecot's dovecot-uidlist. Flags live where every Maildir tool expects them, in the file
// name's `:2,` info (D F P R S T; keywords as the letters a-z, named by the folder's keywords file).
//
// The index (`nexus-uidlist`) and the keywords file are rewritten whole, durably (temp, fsync,
// rename, fsync of the directory), so a UID once announced never changes, across restarts. The SMTP
// side only ever adds files to new/; a scan under the folder's lock assigns them the next UIDs. One
// process (the daemon) owns the index: the lock is in memory, one per folder path, shared by every
// session through `openFolder`. A file that vanished behind our back (another Maildir tool) is an
// expunge at the next scan.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  closeSync, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync,
  unlinkSync, writeSync, existsSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { fsyncDir } from '../../core/durable.ts';

export const SYSTEM_FLAGS = ['\\Draft', '\\Flagged', '\\Answered', '\\Seen', '\\Deleted'] as const;
// Maildir info letters, in the ASCII order the standard asks for.
const LETTER_OF: Record<string, string> = { '\\Draft': 'D', '\\Flagged': 'F', '\\Answered': 'R', '\\Seen': 'S', '\\Deleted': 'T' };
const FLAG_OF: Record<string, string> = { D: '\\Draft', F: '\\Flagged', R: '\\Answered', S: '\\Seen', T: '\\Deleted' };
const MAX_KEYWORDS = 26;
const INDEX = 'nexus-uidlist';
const KEYWORDS = 'nexus-keywords';
const KEYWORD_RE = /^[!#$&'+,\-.0-9:;<=>?@A-Z^_`a-z|~]{1,64}$/;

export interface Message {
  uid: number;
  modseq: bigint;
  /** The unique part of the file name, before `:2,`. */
  base: string;
  /** 'new' or 'cur'. */
  sub: 'new' | 'cur';
  /** Current file name (with info when in cur/). */
  file: string;
  /** System flags and keywords, as IMAP spells them. */
  flags: Set<string>;
  /** Size with CRLF line ends (what RFC822.SIZE reports). */
  size: number;
  /** Milliseconds since the epoch (the file's mtime when first indexed). */
  internalDate: number;
}

export interface FolderState {
  uidValidity: number;
  uidNext: number;
  highestModseq: bigint;
}

/** Atomically replace a file: temp, fsync, rename, fsync of the directory. */
export function writeFileDurable(path: string, data: string | Buffer, dir: string): void {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  fsyncDir(dir);
}

/** The size a message has with CRLF line ends (bare LF counts two). */
export function crlfSize(buf: Buffer): number {
  let extra = 0;
  for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) if (i === 0 || buf[i - 1] !== 13) extra++;
  return buf.length + extra;
}

/** The message with CRLF line ends (a Maildir may hold LF-only files). */
export function toCrlf(buf: Buffer): Buffer {
  if (crlfSize(buf) === buf.length) return buf;
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) {
    if (i === 0 || buf[i - 1] !== 13) {
      parts.push(buf.subarray(start, i), Buffer.from('\r\n'));
      start = i + 1;
    }
  }
  parts.push(buf.subarray(start));
  return Buffer.concat(parts);
}

let uniqueCounter = 0;
/** A Maildir unique name: time.M<usec>P<pid>Q<n>R<random>.host */
export function uniqueName(): string {
  const now = Date.now();
  const host = hostname().replace(/[/:]/g, '_') || 'localhost';
  return `${Math.floor(now / 1000)}.M${(now % 1000) * 1000}P${process.pid}Q${++uniqueCounter}R${randomBytes(4).toString('hex')}.${host}`;
}

function splitName(name: string): { base: string; info: string | null } {
  const i = name.indexOf(':2,');
  return i === -1 ? { base: name, info: null } : { base: name.slice(0, i), info: name.slice(i + 3) };
}

/** A serialising lock: one holder at a time, in arrival order. */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  run<T>(fn: () => T | Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.then(() => undefined, () => undefined);
    return result;
  }
}

/** Create the Maildir directories of a folder (idempotent). */
export function ensureMaildir(dir: string): void {
  for (const sub of ['', 'cur', 'new', 'tmp']) mkdirSync(join(dir, sub), { recursive: true, mode: 0o700 });
}

/**
 * One folder's messages, shared by every session that has it open. Emits 'change' after any change
 * (UIDs assigned, flags, expunges).
 */
export class Folder extends EventEmitter {
  readonly dir: string;
  private lock = new Mutex();
  state: FolderState = { uidValidity: 0, uidNext: 1, highestModseq: 1n };
  /** Ordered by UID. */
  messages: Message[] = [];
  private byUid = new Map<number, Message>();
  private byBase = new Map<string, Message>();
  keywords: string[] = [];
  private loaded = false;
  /** Bumped on every change; sessions compare it to skip work. */
  version = 0;

  constructor(dir: string) {
    super();
    this.setMaxListeners(0);
    this.dir = dir;
  }

  /** Serialise a change (or a consistent read) of the folder. */
  locked<T>(fn: () => T | Promise<T>): Promise<T> {
    return this.lock.run(fn);
  }

  get(uid: number): Message | undefined {
    return this.byUid.get(uid);
  }

  path(m: Message): string {
    return join(this.dir, m.sub, m.file);
  }

  private load(): void {
    ensureMaildir(this.dir);
    const kwPath = join(this.dir, KEYWORDS);
    this.keywords = existsSync(kwPath)
      ? readFileSync(kwPath, 'utf8').split('\n').filter((k) => KEYWORD_RE.test(k)).slice(0, MAX_KEYWORDS)
      : [];
    const idx = join(this.dir, INDEX);
    if (existsSync(idx)) {
      const lines = readFileSync(idx, 'utf8').split('\n');
      const head = /^V1 (\d+) (\d+) (\d+)$/.exec(lines[0] ?? '');
      if (!head) throw new Error(`corrupt index ${idx}`);
      this.state = { uidValidity: Number(head[1]), uidNext: Number(head[2]), highestModseq: BigInt(head[3]!) };
      for (const line of lines.slice(1)) {
        const m = /^(\d+) (\d+) (\d+) (\d+) (-|[A-Za-z]+) (\S+)$/.exec(line);
        if (!m) continue;
        const msg: Message = {
          uid: Number(m[1]), modseq: BigInt(m[2]!), size: Number(m[3]), internalDate: Number(m[4]), base: m[6]!,
          sub: 'new', file: m[6]!, flags: this.parseInfo(m[5] === '-' ? null : m[5]!),
        };
        this.messages.push(msg);
      }
      this.messages.sort((a, b) => a.uid - b.uid);
      for (const msg of this.messages) {
        this.byUid.set(msg.uid, msg);
        this.byBase.set(msg.base, msg);
      }
    } else {
      // Seconds since the epoch, as Dovecot does: a recreated folder gets a new, larger value.
      this.state = { uidValidity: Math.max(1, Math.floor(Date.now() / 1000)), uidNext: 1, highestModseq: 1n };
      this.writeIndex();
    }
    this.loaded = true;
  }

  private writeIndex(): void {
    const s = this.state;
    const lines = [`V1 ${s.uidValidity} ${s.uidNext} ${s.highestModseq}`];
    for (const m of this.messages) lines.push(`${m.uid} ${m.modseq} ${m.size} ${m.internalDate} ${this.infoOf(m.flags) || '-'} ${m.base}`);
    writeFileDurable(join(this.dir, INDEX), lines.join('\n') + '\n', this.dir);
  }

  private parseInfo(info: string | null): Set<string> {
    const flags = new Set<string>();
    if (!info) return flags;
    for (const c of info) {
      if (FLAG_OF[c]) flags.add(FLAG_OF[c]!);
      else if (c >= 'a' && c <= 'z') {
        const kw = this.keywords[c.charCodeAt(0) - 97];
        if (kw) flags.add(kw);
      }
    }
    return flags;
  }

  private infoOf(flags: Set<string>): string {
    let letters = '';
    for (const f of flags) {
      if (LETTER_OF[f]) letters += LETTER_OF[f];
      else {
        const i = this.keywords.indexOf(f);
        if (i >= 0) letters += String.fromCharCode(97 + i);
      }
    }
    return [...letters].sort().join('');
  }

  /**
   * Read the directories and bring the index up to date: files new to us get the next UIDs (in
   * delivery order), vanished files are expunged, flags are read from the names. With `claimNew`,
   * files in new/ move to cur/ (a session has seen them). Returns whether anything changed.
   */
  scan(claimNew: boolean): Promise<boolean> {
    return this.locked(() => this.scanLocked(claimNew));
  }

  private scanLocked(claimNew: boolean): boolean {
    if (!this.loaded) this.load();
    const seen = new Map<string, { sub: 'new' | 'cur'; file: string; info: string | null }>();
    for (const sub of ['cur', 'new'] as const) {
      let names: string[];
      try {
        names = readdirSync(join(this.dir, sub));
      } catch {
        names = [];
      }
      for (const file of names) {
        if (file.startsWith('.')) continue;
        const { base, info } = splitName(file);
        // A name the index cannot hold (whitespace) is left alone rather than mangled.
        if (!/^\S+$/.test(base) || base.length > 255) continue;
        if (!seen.has(base) || sub === 'cur') seen.set(base, { sub, file, info });
      }
    }
    let changed = false;
    let indexDirty = false;
    // Expunged behind our back.
    const kept: Message[] = [];
    for (const m of this.messages) {
      const f = seen.get(m.base);
      if (!f) {
        this.byUid.delete(m.uid);
        this.byBase.delete(m.base);
        changed = true;
        indexDirty = true;
        continue;
      }
      const flags = this.parseInfo(f.info);
      // A file in new/ has no info yet: its flags are what the index says.
      if (f.sub === 'cur' && !sameSet(flags, m.flags)) {
        // Flags changed by another Maildir tool (or while we were down): a new modseq.
        m.flags = flags;
        m.modseq = ++this.state.highestModseq;
        indexDirty = true;
        changed = true;
      }
      m.file = f.file;
      m.sub = f.sub;
      kept.push(m);
      seen.delete(m.base);
    }
    this.messages = kept;
    // New files, oldest first, so UIDs follow delivery order.
    const fresh = [...seen.entries()].map(([base, f]) => {
      let st;
      try {
        st = statSync(join(this.dir, f.sub, f.file));
      } catch {
        return null;
      }
      return { base, f, mtime: st.mtimeMs };
    }).filter((x): x is NonNullable<typeof x> => x !== null);
    fresh.sort((a, b) => a.mtime - b.mtime || (a.base < b.base ? -1 : 1));
    for (const { base, f, mtime } of fresh) {
      let size: number;
      try {
        size = crlfSize(readFileSync(join(this.dir, f.sub, f.file)));
      } catch {
        continue;
      }
      const m: Message = {
        uid: this.state.uidNext++, modseq: ++this.state.highestModseq, base, sub: f.sub, file: f.file,
        flags: this.parseInfo(f.info), size, internalDate: Math.floor(mtime),
      };
      this.messages.push(m);
      this.byUid.set(m.uid, m);
      this.byBase.set(base, m);
      changed = true;
      indexDirty = true;
    }
    if (indexDirty) this.writeIndex();
    if (claimNew) {
      let moved = false;
      for (const m of this.messages) {
        if (m.sub !== 'new') continue;
        const file = `${m.base}:2,${this.infoOf(m.flags)}`;
        try {
          renameSync(join(this.dir, 'new', m.file), join(this.dir, 'cur', file));
          m.sub = 'cur';
          m.file = file;
          moved = true;
        } catch {
          // Gone meanwhile: the next scan expunges it.
        }
      }
      if (moved) {
        fsyncDir(join(this.dir, 'new'));
        fsyncDir(join(this.dir, 'cur'));
      }
    }
    if (changed) this.bump();
    return changed;
  }

  private bump(): void {
    this.version++;
    this.emit('change');
  }

  private keywordIndex(kw: string): number {
    let i = this.keywords.indexOf(kw);
    if (i >= 0) return i;
    if (this.keywords.length >= MAX_KEYWORDS || !KEYWORD_RE.test(kw)) return -1;
    this.keywords.push(kw);
    writeFileDurable(join(this.dir, KEYWORDS), this.keywords.join('\n') + '\n', this.dir);
    i = this.keywords.length - 1;
    return i;
  }

  /** Keywords this folder can still take (PERMANENTFLAGS \*). */
  canCreateKeywords(): boolean {
    return this.keywords.length < MAX_KEYWORDS;
  }

  /**
   * Change flags of the given UIDs. `mode`: set, add or remove. With `unchangedSince`, messages
   * whose modseq is above it are left alone and returned in `modified` (CONDSTORE).
   */
  setFlags(uids: number[], mode: 'set' | 'add' | 'remove', flags: string[], unchangedSince?: bigint):
    Promise<{ changed: Message[]; modified: number[] }> {
    return this.locked(() => {
      if (!this.loaded) this.load();
      for (const f of flags) if (!LETTER_OF[f] && mode !== 'remove' && this.keywordIndex(f) < 0) {
        throw new Error(`cannot store keyword ${f}`);
      }
      const changed: Message[] = [];
      const modified: number[] = [];
      const touched = new Set<string>();
      for (const uid of uids) {
        const m = this.byUid.get(uid);
        if (!m) continue;
        if (unchangedSince !== undefined && m.modseq > unchangedSince) {
          modified.push(uid);
          continue;
        }
        const next = new Set(mode === 'set' ? [] : m.flags);
        if (mode === 'remove') for (const f of flags) next.delete(f);
        else for (const f of flags) next.add(f);
        if (sameSet(next, m.flags)) continue;
        const file = `${m.base}:2,${this.infoOf(next)}`;
        try {
          renameSync(join(this.dir, m.sub, m.file), join(this.dir, 'cur', file));
        } catch {
          continue;
        }
        touched.add(m.sub);
        touched.add('cur');
        m.sub = 'cur';
        m.file = file;
        m.flags = next;
        m.modseq = ++this.state.highestModseq;
        changed.push(m);
      }
      if (changed.length) {
        for (const sub of touched) fsyncDir(join(this.dir, sub));
        this.writeIndex();
        this.bump();
      }
      return { changed, modified };
    });
  }

  /** Remove the given UIDs (files and index entries). Returns the UIDs removed. */
  expunge(uids: number[]): Promise<number[]> {
    return this.locked(() => {
      if (!this.loaded) this.load();
      const gone = new Set<number>();
      const subs = new Set<string>();
      for (const uid of uids) {
        const m = this.byUid.get(uid);
        if (!m) continue;
        try {
          unlinkSync(join(this.dir, m.sub, m.file));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        subs.add(m.sub);
        gone.add(uid);
        this.byUid.delete(uid);
        this.byBase.delete(m.base);
      }
      if (gone.size) {
        this.messages = this.messages.filter((m) => !gone.has(m.uid));
        this.state.highestModseq++;
        for (const sub of subs) fsyncDir(join(this.dir, sub));
        this.writeIndex();
        this.bump();
      }
      return [...gone].sort((a, b) => a - b);
    });
  }

  /**
   * Add a message (APPEND, COPY, MOVE): written in tmp/, fsynced, linked into cur/ with its flags,
   * the directory fsynced, then given the next UID. Returns the new message.
   */
  add(content: Buffer | { linkFrom: string }, flags: string[], internalDate?: number): Promise<Message> {
    return this.locked(() => {
      if (!this.loaded) this.load();
      this.scanLocked(false);
      for (const f of flags) if (!LETTER_OF[f]) this.keywordIndex(f);
      const base = uniqueName();
      const tmp = join(this.dir, 'tmp', base);
      let size: number;
      if (Buffer.isBuffer(content)) {
        const fd = openSync(tmp, 'wx', 0o600);
        try {
          let off = 0;
          while (off < content.length) off += writeSync(fd, content, off, content.length - off);
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
        size = crlfSize(content);
      } else {
        // Messages are never rewritten in place, so a hard link is as good as a copy.
        linkSync(content.linkFrom, tmp);
        size = crlfSize(readFileSync(tmp));
      }
      const set = new Set(flags.filter((f) => LETTER_OF[f] || this.keywords.includes(f)));
      const file = `${base}:2,${this.infoOf(set)}`;
      renameSync(tmp, join(this.dir, 'cur', file));
      fsyncDir(join(this.dir, 'cur'));
      const date = internalDate ?? Date.now();
      const m: Message = {
        uid: this.state.uidNext++, modseq: ++this.state.highestModseq, base, sub: 'cur', file, flags: set, size,
        internalDate: date,
      };
      this.messages.push(m);
      this.byUid.set(m.uid, m);
      this.byBase.set(base, m);
      this.writeIndex();
      this.bump();
      return m;
    });
  }
}

function sameSet(a: Set<string>, b: Set<string>): boolean {
  if (a.size !== b.size) return false;
  for (const x of a) if (!b.has(x)) return false;
  return true;
}

const open = new Map<string, { folder: Folder; refs: number }>();

/** The shared Folder for a directory; release it with `closeFolder`. */
export function openFolder(dir: string): Folder {
  let e = open.get(dir);
  if (!e) {
    e = { folder: new Folder(dir), refs: 0 };
    open.set(dir, e);
  }
  e.refs++;
  return e.folder;
}

export function closeFolder(folder: Folder): void {
  const e = open.get(folder.dir);
  if (!e || e.folder !== folder) return;
  if (--e.refs <= 0) open.delete(folder.dir);
}

/** Forget a folder whose directory was deleted or renamed (the next open starts fresh). */
export function forgetFolder(dir: string): void {
  open.delete(dir);
}

/** UIDVALIDITY / UIDNEXT / counts without holding the folder open (STATUS). */
export async function folderStatus(dir: string): Promise<{ state: FolderState; messages: number; unseen: number; size: number }> {
  const f = openFolder(dir);
  try {
    await f.scan(false);
    let unseen = 0;
    let size = 0;
    for (const m of f.messages) {
      if (!m.flags.has('\\Seen')) unseen++;
      size += m.size;
    }
    return { state: { ...f.state }, messages: f.messages.length, unseen, size };
  } finally {
    closeFolder(f);
  }
}
