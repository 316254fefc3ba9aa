// Maildir delivery (the qmail convention every IMAP server reads): write the message into tmp/
// under a name no other delivery can take (time.pid_random.host), fsync it, rename it into new/,
// fsync new/. Only then does the caller acknowledge (250): a crash before the rename leaves a file
// in tmp/ that no reader sees, never half a message in new/.
//
// Isolation (gate 16): the root comes from mailboxRoot() with the IMVU the projection names for the
// address, never from what a client sent; every directory from the data directory down is opened
// without following symlinks, so a link planted inside an IMVU's tree cannot point a delivery into
// another IMVU's.
import { constants, promises as fs } from 'node:fs';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { join, relative, sep } from 'node:path';
import type { Readable } from 'node:stream';
import type { SqlReader } from '../../core/store/index.ts';
import { restorePendingFile } from '../../imvu/import/paths.ts';
import { imvuDir, mailboxRoot } from './paths.ts';

const DIR_MODE = 0o700;
const FILE_MODE = 0o600;
// The host part may not hold '/' or ':' (the flags separator of cur/ names).
const HOST = hostname().replace(/[/:]/g, (c) => (c === '/' ? '\\057' : '\\072'));
let counter = 0;

export class MaildirError extends Error {
  override name = 'MaildirError';
}

/** A name unique on this host: seconds, then pid, a counter and random bytes, then the host (Maildir's time.pid_unique.host). */
export function uniqueName(now = Date.now()): string {
  counter = (counter + 1) % 1_000_000;
  return `${Math.floor(now / 1000)}.M${(now % 1000) * 1000}P${process.pid}Q${counter}R${randomBytes(8).toString('hex')}.${HOST}`;
}

/** Creates `dir` (0700) if missing and refuses it unless it is a real directory (not a symlink). */
async function realDir(dir: string): Promise<void> {
  try {
    await fs.mkdir(dir, { mode: DIR_MODE });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  const st = await fs.lstat(dir);
  if (!st.isDirectory()) throw new MaildirError(`${dir} is not a directory (a symlink?): refusing to deliver through it`);
}

/** Makes every directory from `base` (exclusive) down to `root` and its cur/new/tmp, none a symlink. */
export async function ensureMaildir(root: string, base?: string): Promise<void> {
  if (base) {
    const rel = relative(base, root);
    if (rel.startsWith('..') || rel === '') throw new MaildirError(`${root} is not below ${base}`);
    let at = base;
    for (const part of rel.split(sep)) await realDir((at = join(at, part)));
  } else await realDir(root);
  for (const sub of ['cur', 'new', 'tmp']) await realDir(join(root, sub));
}

async function fsyncDir(dir: string): Promise<void> {
  const fd = await fs.open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  try {
    await fd.sync();
  } finally {
    await fd.close();
  }
}

/**
 * Delivers `raw` into the Maildir at `root` (created if missing, symlinks refused) and resolves with
 * the path in new/ once the file and new/ are on disk. A stream is copied chunk by chunk; an error
 * from it (a size limit, a dropped client) removes the partial file and rejects.
 */
export async function deliverToMaildir(root: string, raw: Buffer | Readable, opts: { base?: string; checked?: boolean } = {}): Promise<string> {
  if (!opts.checked) await ensureMaildir(root, opts.base);
  const name = uniqueName();
  const tmp = join(root, 'tmp', name);
  // O_EXCL: a name collision (or a file planted at it) fails instead of being followed or overwritten.
  const fd = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, FILE_MODE);
  try {
    try {
      if (Buffer.isBuffer(raw)) await fd.write(raw);
      else for await (const chunk of raw) await fd.write(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string));
      await fd.sync();
    } finally {
      await fd.close();
    }
    const dest = join(root, 'new', name);
    await fs.rename(tmp, dest);
    await fsyncDir(join(root, 'new'));
    return dest;
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
}

/** The hosted mailbox `address` (lower-cased) and its IMVU from the projection, or undefined. */
export async function mailboxOf(store: SqlReader, address: string): Promise<{ address: string; imvu: string } | undefined> {
  const a = address.toLowerCase();
  const row = await store.get<{ imvu: string }>('SELECT imvu FROM mailboxes WHERE address = ?', [a]);
  return row ? { address: a, imvu: row.imvu } : undefined;
}

/**
 * Whether mail for `address` can be taken now, the one rule the MX, submission and the queue's
 * local delivery share: `receiving` (hosted, its IMVU neither exited nor importing); `importing`
 * (the mailbox exists and takes mail once its IMVU's import is whole and its mail restored: a
 * temporary refusal, so that nothing delivered meanwhile gets a lower UID than the restored
 * messages); `gone` (not hosted here, or its IMVU exited: its mailboxes left with it).
 */
export type MailboxState = { state: 'receiving'; imvu: string } | { state: 'importing'; imvu: string } | { state: 'gone' };

export async function mailboxState(store: SqlReader, dataDir: string, address: string): Promise<MailboxState> {
  const row = await store.get<{ imvu: string; status: string; archive: string | null }>(
    'SELECT m.imvu AS imvu, i.status AS status, x.archive_sha256 AS archive FROM mailboxes m JOIN imvus i ON i.id = m.imvu LEFT JOIN imports x ON x.imvu = m.imvu WHERE m.address = ?',
    [address.toLowerCase()],
  );
  if (!row || row.status === 'exited') return { state: 'gone' };
  // Made whole, but its archive's mail is still being written (resumed at start after a crash).
  const restoring = row.archive !== null && (await fs.access(restorePendingFile(dataDir, row.archive, row.imvu)).then(() => true, () => false));
  return { state: row.status === 'importing' || restoring ? 'importing' : 'receiving', imvu: row.imvu };
}

/**
 * Delivers into the hosted mailbox `address`: its IMVU comes from the projection, its Maildir is
 * DATA/imvus/<IMVU>/mail/<address>, created with no symlink on the way. Throws if not hosted.
 */
export async function deliverToMailbox(store: SqlReader, dataDir: string, address: string, raw: Buffer | Readable): Promise<{ imvu: string; path: string }> {
  const box = await mailboxOf(store, address);
  if (!box) throw new MaildirError(`${address} is not a hosted mailbox`);
  const root = mailboxRoot(dataDir, box.imvu, box.address);
  const checked = await intact(dataDir, root);
  if (!checked) {
    await realDir(join(dataDir, 'imvus'));
    await realDir(imvuDir(dataDir, box.imvu));
  }
  const path = await deliverToMaildir(root, raw, { base: imvuDir(dataDir, box.imvu), checked });
  return { imvu: box.imvu, path };
}

/**
 * The common case in three parallel look-ups instead of a dozen sequential ones: the Maildir's tmp/
 * and new/ exist and resolve to exactly where they should under the data directory, so no
 * component on the way is a symlink. Anything else (missing, or resolving elsewhere) goes the slow
 * way, which creates what is missing and refuses a symlink by name.
 */
async function intact(dataDir: string, root: string): Promise<boolean> {
  try {
    const [d, t, n] = await Promise.all([fs.realpath(dataDir), fs.realpath(join(root, 'tmp')), fs.realpath(join(root, 'new'))]);
    const rel = relative(dataDir, root);
    return t === join(d, rel, 'tmp') && n === join(d, rel, 'new');
  } catch {
    return false;
  }
}
