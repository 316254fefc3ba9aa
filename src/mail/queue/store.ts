// The outbound queue on disk, DATA/mail-queue/: per message `<id>.eml` (the signed message, as it
// goes on the wire) and `<id>.json` (envelope and per-recipient state). A message is accepted once
// its .json exists: the .eml is written and fsynced first, then the .json through a temp file,
// fsync and rename, then the directory is fsynced. Every state change is the same atomic rewrite.
// A .eml without its .json (a crash before acceptance) was never acknowledged and is swept.
//
// A recipient is marked `inflight` (durably) before its SMTP transaction and `delivered` (durably)
// right after the remote's 250. After a crash, `inflight` recipients are tried again: the
// at-least-once window is a crash between the remote's 250 and our fsync of the mark, where the
// remote has the message and we deliver it again.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fsyncDir } from '../../core/durable.ts';

export type RcptState = 'queued' | 'inflight' | 'delivered' | 'failed';

export interface RcptEntry {
  to: string;
  state: RcptState;
  attempts: number;
  /** When the next attempt is due (ms since the epoch). */
  next: number;
  /** The last error (remote reply or local reason). */
  error?: string;
  /** The remote MTA that gave it, when one answered (`host [address]:port`). */
  remote?: string;
}

export interface QueueEntry {
  v: 1;
  id: string;
  imvu: string;
  identity: string;
  /** Envelope sender; '' for the null sender (a DSN), which never gets a DSN back. */
  mailFrom: string;
  created: number;
  bytes: number;
  rcpts: RcptEntry[];
  /** A DSN for the failed recipients has been handed on (so a crash never sends it twice). */
  dsn?: boolean;
}

const ID = /^[0-9a-z]{8,12}-[0-9a-f]{12}$/;
const MAX_META_BYTES = 1 << 20;

function writeDurable(path: string, data: string | Buffer): void {
  const fd = openSync(path, 'w', 0o600);
  try {
    let off = 0;
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export class QueueStore {
  readonly dir: string;

  constructor(dataDir: string) {
    this.dir = join(dataDir, 'mail-queue');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  static newId(now = Date.now()): string {
    return `${now.toString(36)}-${randomBytes(6).toString('hex')}`;
  }

  private meta(id: string): string {
    if (!ID.test(id)) throw new Error(`not a queue id: ${id}`);
    return join(this.dir, `${id}.json`);
  }

  emlPath(id: string): string {
    if (!ID.test(id)) throw new Error(`not a queue id: ${id}`);
    return join(this.dir, `${id}.eml`);
  }

  /** Writes message and envelope durably; the entry is accepted when this returns. */
  add(entry: QueueEntry, raw: Buffer): void {
    writeDurable(this.emlPath(entry.id), raw);
    this.save(entry);
  }

  /** Atomic, durable rewrite of an entry's state. */
  save(entry: QueueEntry): void {
    const path = this.meta(entry.id);
    const tmp = `${path}.tmp`;
    writeDurable(tmp, JSON.stringify(entry));
    renameSync(tmp, path);
    fsyncDir(this.dir);
  }

  readRaw(id: string): Buffer {
    return readFileSync(this.emlPath(id));
  }

  /** Removes an entry: the .json first (then it is gone even if the .eml stays behind), then the .eml. */
  remove(id: string): void {
    rmSync(this.meta(id), { force: true });
    fsyncDir(this.dir);
    rmSync(this.emlPath(id), { force: true });
  }

  /**
   * Every accepted entry, for a restart. Sweeps what was never accepted (a .eml without .json,
   * temp files); an unreadable .json is set aside as `.bad` rather than crashing the queue.
   */
  load(): { entries: QueueEntry[]; swept: number; bad: string[] } {
    const names = readdirSync(this.dir);
    const metas = new Set(names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -5)));
    const entries: QueueEntry[] = [];
    const bad: string[] = [];
    let swept = 0;
    for (const n of names) {
      if (n.endsWith('.tmp') || (n.endsWith('.eml') && !metas.has(n.slice(0, -4)))) {
        rmSync(join(this.dir, n), { force: true });
        swept++;
      }
    }
    for (const id of metas) {
      try {
        if (!ID.test(id)) throw new Error('bad id');
        const text = readFileSync(this.meta(id), 'utf8');
        if (text.length > MAX_META_BYTES) throw new Error('too large');
        const e = JSON.parse(text) as QueueEntry;
        if (e.v !== 1 || e.id !== id || !Array.isArray(e.rcpts)) throw new Error('bad entry');
        entries.push(e);
      } catch {
        renameSync(this.meta(id), join(this.dir, `${id}.bad`));
        bad.push(id);
      }
    }
    if (swept > 0 || bad.length > 0) fsyncDir(this.dir);
    entries.sort((a, b) => a.created - b.created || (a.id < b.id ? -1 : 1));
    return { entries, swept, bad };
  }
}
