// The log's own record of the cosignatures its witnesses returned: one append-only file per
// witness under DATA/cosignatures/, one JSON line per cosigned checkpoint, appended and fsynced
// before the cosignature is served. It is not ledger data (not in the tree, not in the projection
// digests): losing it loses only cosignatures, which the witnesses can be asked for again on the
// next checkpoint.
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir } from '../durable.ts';
import { parseCosignerVerifierKey } from './cosignature.ts';

export const COSIGNATURE_DIR = 'cosignatures';
/** Cosigned checkpoints kept in memory per witness (the newest ones); the file keeps a few more. */
const KEEP = 4096;
/** Above this many lines the file is rewritten with the newest KEEP at the next start. */
const COMPACT_AT = 4 * KEEP;
const MAX_LINE = 4096;

export interface StoredCosignature {
  /** Tree size of the checkpoint cosigned. */
  size: number;
  /** Its root hash, base64 (the checkpoint text's third line). */
  root: string;
  /** The cosignature line (`— <name> <base64>`), without its newline. */
  line: string;
  /** The cosignature's own timestamp (seconds since the epoch). */
  time: number;
}

function parseLine(text: string): StoredCosignature | undefined {
  if (text.length > MAX_LINE) return undefined;
  try {
    const o = JSON.parse(text) as Partial<StoredCosignature>;
    if (!Number.isSafeInteger(o.size) || (o.size as number) < 0) return undefined;
    if (typeof o.root !== 'string' || !/^[A-Za-z0-9+/]{43}=$/.test(o.root)) return undefined;
    if (typeof o.line !== 'string' || !o.line.startsWith('\u2014 ') || o.line.includes('\n')) return undefined;
    if (!Number.isSafeInteger(o.time)) return undefined;
    return { size: o.size as number, root: o.root, line: o.line, time: o.time as number };
  } catch {
    return undefined;
  }
}

function fileName(vkey: string): string {
  const { name } = parseCosignerVerifierKey(vkey);
  const keyId = vkey.split('+')[1]!;
  return `${name.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 100)}-${keyId}.jsonl`;
}

export class CosignatureLog {
  /** Newest last; at most one per size (the later cosignature of a size replaces the earlier). */
  private readonly bySize = new Map<number, StoredCosignature>();
  private handle: Promise<FileHandle> | undefined;
  private newest_: StoredCosignature | undefined;

  private constructor(readonly file: string) {}

  /** Reads the witness's file under `dataDir` (a torn last line from a crash is ignored). */
  static open(dataDir: string, vkey: string): CosignatureLog {
    const dir = join(dataDir, COSIGNATURE_DIR);
    if (!existsSync(dir)) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      fsyncDir(dataDir);
    }
    const log = new CosignatureLog(join(dir, fileName(vkey)));
    if (!existsSync(log.file)) return log;
    const lines = readFileSync(log.file, 'utf8').split('\n');
    let count = 0;
    for (const l of lines) {
      const c = l ? parseLine(l) : undefined;
      if (!c) continue;
      count++;
      log.remember(c);
    }
    if (count > COMPACT_AT) log.compact();
    return log;
  }

  private remember(c: StoredCosignature): void {
    this.bySize.delete(c.size);
    this.bySize.set(c.size, c);
    if (!this.newest_ || c.size >= this.newest_.size) this.newest_ = c;
    while (this.bySize.size > KEEP) this.bySize.delete(this.bySize.keys().next().value as number);
  }

  private compact(): void {
    const tmp = `${this.file}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, [...this.bySize.values()].map((c) => JSON.stringify(c) + '\n').join(''));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.file);
    fsyncDir(join(this.file, '..'));
  }

  /** The cosignature of the largest tree size recorded. */
  get newest(): StoredCosignature | undefined {
    return this.newest_;
  }

  /** The cosignature line on the checkpoint of `size` with root `root` (base64), if any. */
  at(size: number, root: string): string | undefined {
    const c = this.bySize.get(size);
    return c && c.root === root ? c.line : undefined;
  }

  /** Sizes with a cosignature in memory, newest first. */
  sizes(): number[] {
    return [...this.bySize.keys()].sort((a, b) => b - a);
  }

  /** Appends and fsyncs (off the event loop); resolves once the cosignature is durable. */
  async append(c: StoredCosignature): Promise<void> {
    const created = !existsSync(this.file);
    this.handle ??= open(this.file, 'a', 0o600);
    const fh = await this.handle;
    await fh.appendFile(JSON.stringify(c) + '\n');
    await fh.datasync();
    if (created) fsyncDir(join(this.file, '..'));
    this.remember(c);
  }

  async close(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    if (h) await (await h).close();
  }
}
