// The newest signed checkpoint, kept also outside the database: DATA/checkpoint.note, rewritten
// after every commit and before any caller is answered (write, fsync, rename, fsync of the
// directory). A database that lost acknowledged entries (a WAL dropped after a crash, a copy
// without its -wal file, rows deleted) then holds fewer entries than this file, or another root
// at its size, and the platform refuses to start (src/core/policy/integrity.ts).
//
// The file is a C2SP signed note whose text is a tlog-checkpoint (origin, size, root) with one
// extension line per projection table: `nexus-projection <table> <rows> <sum, 64 hex>`, the
// projection digests at that size (src/core/store/digest.ts). It is signed by the platform key
// under its own key name (`<origin>/checkpoint-file`), so it can never pass for one of the log's
// public checkpoints.
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { formatCheckpoint, openNote, parseCheckpoint, signNote } from './checkpoint.ts';
import { DIGEST_TABLES, digestHex, type ProjectionDigests } from '../store/digest.ts';

export const CHECKPOINT_FILE = 'checkpoint.note';
export const MAX_CHECKPOINT_FILE_BYTES = 64 * 1024;

export function checkpointFileKeyName(origin: string): string {
  return `${origin}/checkpoint-file`;
}

export interface CheckpointFileContents {
  size: number;
  rootHash: Buffer;
  /** Per table: rows and the sum as 64 hex digits. */
  digests: Map<string, { rows: number; sum: string }>;
}

export function formatCheckpointFile(origin: string, size: number, rootHash: Buffer, digests: ProjectionDigests, key: KeyObject): string {
  const extensions = DIGEST_TABLES.map((t) => {
    const d = digests.get(t) ?? { rows: 0, sum: 0n };
    return `nexus-projection ${t} ${d.rows} ${digestHex(d)}`;
  });
  return signNote(formatCheckpoint({ origin, size, rootHash, extensions }), checkpointFileKeyName(origin), key);
}

const EXTENSION = /^nexus-projection ([a-z_]{1,64}) (0|[1-9][0-9]{0,14}) ([0-9a-f]{64})$/;

/** Opens the file's note with the platform's public key; throws, saying what is wrong, on anything else. */
export function parseCheckpointFile(text: string, origin: string, publicKeyRaw: Uint8Array): CheckpointFileContents {
  if (Buffer.byteLength(text, 'utf8') > MAX_CHECKPOINT_FILE_BYTES) throw new Error(`larger than ${MAX_CHECKPOINT_FILE_BYTES} bytes`);
  const opened = openNote(text, [{ name: checkpointFileKeyName(origin), publicKeyRaw }]);
  const cp = parseCheckpoint(opened.text);
  if (cp.origin !== origin) throw new Error(`it is for log ${JSON.stringify(cp.origin.slice(0, 100))}, not ${JSON.stringify(origin)}`);
  const digests = new Map<string, { rows: number; sum: string }>();
  for (const line of cp.extensions ?? []) {
    const m = EXTENSION.exec(line);
    if (!m) throw new Error(`unexpected line ${JSON.stringify(line.slice(0, 100))}`);
    if (!DIGEST_TABLES.includes(m[1]!) || digests.has(m[1]!)) throw new Error(`unexpected or repeated table ${m[1]}`);
    digests.set(m[1]!, { rows: Number(m[2]), sum: m[3]! });
  }
  return { size: cp.size, rootHash: cp.rootHash, digests };
}

/** The file's text, or undefined if there is none. Reads at most MAX_CHECKPOINT_FILE_BYTES + 1 bytes. */
export function readCheckpointFile(dataDir: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(join(dataDir, CHECKPOINT_FILE), constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    if (!fstatSync(fd).isFile()) throw new Error(`${CHECKPOINT_FILE} is not a regular file`);
    const buf = Buffer.alloc(MAX_CHECKPOINT_FILE_BYTES + 1);
    let n = 0;
    for (;;) {
      const r = readSync(fd, buf, n, buf.length - n, null);
      if (r === 0 || (n += r) >= buf.length) break;
    }
    if (n > MAX_CHECKPOINT_FILE_BYTES) throw new Error(`${CHECKPOINT_FILE} is larger than ${MAX_CHECKPOINT_FILE_BYTES} bytes`);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes the file durably: a temporary file, fsynced, renamed over the old one, then the
 * directory fsynced so that the rename itself survives a crash. Writes are queued, so a newer
 * checkpoint is never overtaken by an older one.
 */
export class CheckpointFileWriter {
  private queue: Promise<void> = Promise.resolve();

  constructor(readonly dataDir: string) {}

  write(text: string): Promise<void> {
    const run = () => this.writeNow(text);
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private async writeNow(text: string): Promise<void> {
    const file = join(this.dataDir, CHECKPOINT_FILE);
    const tmp = `${file}.tmp`;
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC, 0o600);
    try {
      await fh.writeFile(text, 'utf8');
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, file);
    const dir = await open(this.dataDir, constants.O_RDONLY);
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  /** Waits for the writes queued so far. */
  async flush(): Promise<void> {
    await this.queue;
  }
}
