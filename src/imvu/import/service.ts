// The daemon's side of a re-import (`nexus imvu import FILE`): the creator uploads the exit archive
// of another platform (a signed PUT of its bytes, named by their SHA-256), the daemon verifies it
// offline exactly as `nexus export verify` does and keeps the verified extraction under
// DATA/imports/<sha256>/; the creator then signs `imvu.import`, which must match that archive
// (manifest digest, source platform key, checkpoint, IMVU id and owner). Once the chokepoint has
// recorded it, the mailboxes (mbox + folders.json) are written through the Maildir store with
// their flags and dates, and the data volume is unpacked. Mail is checked message by message
// against the digests folders.json carries before anything is recorded.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fsyncDir, writeFileAtomic } from '../../core/durable.ts';
import type { OpenPlatform } from '../../core/platform.ts';
import { mailboxRoot } from '../../mail/maildir/paths.ts';
import { MANIFEST_FILE, RESTORE_FILE, type SignedManifest } from '../exit/manifest.ts';
import { ArchiveInvalid, verifyExitArchive } from '../exit/verify.ts';
import { restorePendingFile, stagingDir } from './paths.ts';

export { stagingDir };

/** Largest archive a creator may upload (bytes). */
export const MAX_IMPORT_BYTES = 64 * 1024 ** 3;

export class ImportRefused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface StagedArchive {
  sha256: string;
  size: number;
  /** The verified extraction: the folder holding MANIFEST.json. */
  root: string;
  manifest: SignedManifest;
  manifestSha256: string;
  report: string[];
}

const stagedRoot = (dataDir: string, sha256: string) => join(stagingDir(dataDir, sha256), 'verified');

/** The archive of `sha256` as staged and verified here, if it is. */
export function stagedArchive(dataDir: string, sha256: string): StagedArchive | undefined {
  const meta = join(stagingDir(dataDir, sha256), 'staged.json');
  if (!existsSync(meta)) return undefined;
  return JSON.parse(readFileSync(meta, 'utf8')) as StagedArchive;
}

/**
 * Receives an archive's bytes, checks they are the SHA-256 the creator named, verifies the archive
 * offline and keeps the extraction. Anything short of a verified archive leaves nothing behind.
 */
export async function stageArchive(dataDir: string, sha256: string, body: Readable, maxBytes = MAX_IMPORT_BYTES): Promise<StagedArchive> {
  const dir = stagingDir(dataDir, sha256);
  const known = stagedArchive(dataDir, sha256);
  if (known) {
    // Read the upload to its end before answering: an answer mid-upload aborts the client's request.
    for await (const chunk of body) void chunk;
    return known;
  }
  mkdirSync(join(dataDir, 'imports'), { recursive: true, mode: 0o700 });
  const partial = `${dir}.upload-${process.pid}-${Date.now()}`;
  const hash = createHash('sha256');
  let size = 0;
  try {
    await pipeline(
      body,
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          size += chunk.length;
          if (size > maxBytes) throw new ImportRefused(413, `the archive is larger than ${maxBytes} bytes`);
          hash.update(chunk);
          yield chunk;
        }
      },
      createWriteStream(partial, { mode: 0o600 }),
    );
    const got = hash.digest('hex');
    if (got !== sha256) throw new ImportRefused(409, `the bytes received have SHA-256 ${got}, not ${sha256}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(join(dir, 'verified'), { recursive: true, mode: 0o700 });
    const file = join(dir, 'archive.tar.gz');
    renameSync(partial, file);
    let report;
    try {
      report = await verifyExitArchive(file, { keepIn: stagedRoot(dataDir, sha256) });
    } catch (err) {
      if (err instanceof ArchiveInvalid) throw new ImportRefused(422, `the archive does not verify: ${err.message}`);
      throw err;
    }
    const manifestBytes = readFileSync(join(report.root, MANIFEST_FILE));
    const staged: StagedArchive = {
      sha256,
      size,
      root: report.root,
      manifest: report.manifest,
      manifestSha256: createHash('sha256').update(manifestBytes).digest('hex'),
      report: report.lines,
    };
    writeFileSync(join(dir, 'staged.json'), JSON.stringify(staged));
    fsyncDir(dir);
    return staged;
  } catch (err) {
    rmSync(partial, { force: true });
    if (!stagedArchive(dataDir, sha256)) rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** What the `imvu.import` body must say about the archive it names. */
export function checkImportAgainst(staged: StagedArchive, body: Record<string, unknown>): string | undefined {
  const m = staged.manifest.manifest;
  const source = body.source as Record<string, unknown> | undefined;
  if (!source) return 'the command has no source';
  const note = readFileSync(join(staged.root, 'ledger', 'checkpoint.note'), 'utf8');
  const checks: [unknown, unknown, string][] = [
    [body.id, m.imvu, 'IMVU id'],
    [body.owner, m.owner, 'owner'],
    [source.origin, m.origin, 'source origin'],
    [source.platformKey, m.platformKey, 'source platform key'],
    [source.treeSize, m.treeSize, 'source tree size'],
    [source.manifest, staged.manifestSha256, 'manifest digest'],
    [source.checkpoint, note, 'source checkpoint'],
  ];
  for (const [got, want, what] of checks) if (got !== want) return `the command's ${what} (${String(got).slice(0, 80)}) is not the archive's (${String(want).slice(0, 80)})`;
  return undefined;
}

interface FolderMeta {
  name: string;
  file: string;
  messages: { n: number; flags: string; internalDate: string; sha256?: string }[];
}
type FoldersJson = Record<string, { folders: FolderMeta[]; subscriptions: string[] }>;

const FLAG_OF: Record<string, string> = { S: '\\Seen', R: '\\Answered', F: '\\Flagged', D: '\\Draft', T: '\\Deleted' };

/** The messages of an mboxrd file as nexus writes it (src/mail/export/mbox.ts), back in their stored form. */
export function* mboxMessages(text: string): Generator<Buffer> {
  if (!text) return;
  const lines = text.split('\n');
  let cur: string[] | undefined;
  const finish = (msg: string[]) => {
    // The writer ends every entry with one empty line of its own: the line end before the next
    // "From " line (or the file's last one, popped below) is that line's.
    const quoted = msg.join('\n');
    const split = quoted.indexOf('\n\n');
    const head = split === -1 ? quoted : quoted.slice(0, split + 1);
    const rest = split === -1 ? '' : quoted.slice(split + 1);
    // The Status / X-Status lines are the writer's (the message's own were replaced by them).
    const text = (head.replace(/^(Status|X-Status): [A-Z]*\n/gm, '') + rest).replace(/^>(>*From )/gm, '$1');
    return Buffer.from(text, 'latin1');
  };
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.startsWith('From ') && (i === 0 || lines[i - 1] === '')) {
      if (cur) yield finish(cur);
      cur = [];
    } else if (cur) cur.push(l);
  }
  if (cur) {
    // The file's final newline leaves one empty string after the split.
    if (cur.at(-1) === '') cur.pop();
    yield finish(cur);
  }
}

const crlf = (b: Buffer) => Buffer.from(b.toString('latin1').replace(/\r?\n/g, '\r\n'), 'latin1');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Each message of each folder, as IMAP will serve it, checked against folders.json; throws on the first that differs. */
export function readArchiveMail(root: string): { address: string; folder: string; subscriptions: string[]; messages: { content: Buffer; flags: string[]; internalDate: number }[] }[] {
  const meta = join(root, 'mail', 'metadata', 'folders.json');
  if (!existsSync(meta)) return [];
  const folders = JSON.parse(readFileSync(meta, 'utf8')) as FoldersJson;
  const out = [];
  for (const [address, box] of Object.entries(folders)) {
    for (const f of box.folders) {
      const path = join(root, 'mail', f.file);
      const texts = existsSync(path) ? [...mboxMessages(readFileSync(path, 'latin1'))] : [];
      if (texts.length !== f.messages.length) throw new ImportRefused(422, `${f.file} holds ${texts.length} messages, folders.json lists ${f.messages.length}`);
      const messages = f.messages.map((m, i) => {
        let content = crlf(texts[i]!);
        // A message that did not end with a line end gets one in mbox: the digest says which.
        if (m.sha256 && sha(content) !== m.sha256 && content.subarray(-2).toString() === '\r\n' && sha(content.subarray(0, -2)) === m.sha256) content = content.subarray(0, -2);
        if (m.sha256 && sha(content) !== m.sha256) throw new ImportRefused(422, `${f.file}: message ${m.n} is not the message the platform exported (its SHA-256 differs)`);
        return { content, flags: [...m.flags].map((c) => FLAG_OF[c]).filter((x): x is string => !!x), internalDate: Date.parse(m.internalDate) };
      });
      out.push({ address, folder: f.name, subscriptions: box.subscriptions, messages });
    }
  }
  return out;
}

/** Writes the imported mail into the IMVU's Maildirs, through the Maildir store (UIDs, flags, dates). */
export async function restoreMail(p: OpenPlatform, imvu: string, root: string): Promise<{ mailboxes: number; messages: number }> {
  const { openFolder, closeFolder } = await import('../../mail/maildir/store.ts');
  const { createMailbox, writeSubscriptions } = await import('../../mail/imap/mailboxes.ts');
  const { ensureMaildir } = await import('../../mail/maildir/deliver.ts');
  const boxes = new Set<string>();
  let messages = 0;
  for (const f of readArchiveMail(root)) {
    const box = mailboxRoot(p.dataDir, imvu, f.address);
    await ensureMaildir(box, p.dataDir);
    const dir = f.folder === 'INBOX' ? box : join(box, `.${f.folder}`);
    if (f.folder !== 'INBOX') createMailbox(box, dir);
    if (!boxes.has(f.address) && f.subscriptions.length) writeSubscriptions(box, new Set(f.subscriptions));
    boxes.add(f.address);
    const folder = openFolder(dir);
    try {
      // A restore resumed after a crash finds some messages there already (stored byte for byte):
      // each is added once, however often the restore runs. Counted, since a folder may hold the
      // same message twice.
      await folder.scan(false);
      const there = new Map<string, number>();
      for (const m of folder.messages) {
        const h = sha(readFileSync(folder.path(m)));
        there.set(h, (there.get(h) ?? 0) + 1);
      }
      for (const m of f.messages) {
        const h = sha(m.content);
        const n = there.get(h) ?? 0;
        if (n > 0) there.set(h, n - 1);
        else await folder.add(m.content, m.flags, m.internalDate);
        messages++;
      }
    } finally {
      closeFolder(folder);
    }
  }
  return { mailboxes: boxes.size, messages };
}

/** Unpacks the archive's data volume (compute/data-volume.tar) as the IMVU's data volume. */
export async function restoreVolume(p: OpenPlatform, imvu: string, root: string): Promise<{ entries: number; bytes: number } | undefined> {
  const tarFile = join(root, 'compute', 'data-volume.tar');
  if (!existsSync(tarFile)) return undefined;
  const { dataVolume } = await import('../../compute/snapshots/index.ts');
  const { unpackTree } = await import('../../compute/snapshots/tree.ts');
  const dest = dataVolume(p.dataDir, imvu);
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true, mode: 0o700 });
  return unpackTree(createReadStream(tarFile), dest);
}

// The mail and the data volume are restored after the entry that makes the import whole is
// recorded, outside its transaction (they are files). A marker written durably before that entry
// is submitted says a restore is owed; it goes only once the restore is done, so a daemon that dies
// in between finishes the restore at its next start (`resumeRestores`), before mail is accepted.
/** Notes, durably, that `imvu`'s restore from `sha256` is owed. False if it was noted already. */
export function markRestorePending(dataDir: string, sha256: string, imvu: string): boolean {
  const file = restorePendingFile(dataDir, sha256, imvu);
  if (existsSync(file)) return false;
  writeFileAtomic(file, `${imvu}\n`);
  fsyncDir(stagingDir(dataDir, sha256));
  return true;
}

export function clearRestorePending(dataDir: string, sha256: string, imvu: string): void {
  rmSync(restorePendingFile(dataDir, sha256, imvu), { force: true });
  fsyncDir(stagingDir(dataDir, sha256));
}

export interface Restored {
  mailboxes: number;
  messages: number;
  volume: { entries: number; bytes: number } | null;
}

/** Restores an imported IMVU's mail and data volume from its staged archive; then the restore is no longer owed. */
export async function restoreImported(p: OpenPlatform, imvu: string, staged: StagedArchive): Promise<Restored> {
  const mail = await restoreMail(p, imvu, staged.root);
  const volume = await restoreVolume(p, imvu, staged.root);
  clearRestorePending(p.dataDir, staged.sha256, imvu);
  return { ...mail, volume: volume ?? null };
}

/**
 * At start: finishes every restore owed (an import made whole whose restore did not complete).
 * A marker whose import was never recorded, or is still waiting for parts, is left or dropped
 * as the ledger says. Returns the IMVUs restored.
 */
export async function resumeRestores(p: OpenPlatform): Promise<string[]> {
  const base = join(p.dataDir, 'imports');
  if (!existsSync(base)) return [];
  const done: string[] = [];
  for (const sha256 of readdirSync(base)) {
    if (!/^[0-9a-f]{64}$/.test(sha256)) continue;
    for (const f of readdirSync(stagingDir(p.dataDir, sha256))) {
      const imvu = /^restore-(.+)\.pending$/.exec(f)?.[1];
      if (!imvu) continue;
      const row = await p.store.get<{ status: string; archive_sha256: string }>(
        'SELECT i.status AS status, m.archive_sha256 AS archive_sha256 FROM imvus i JOIN imports m ON m.imvu = i.id WHERE i.id = ?',
        [imvu],
      );
      const staged = stagedArchive(p.dataDir, sha256);
      if (row?.status === 'importing' && row.archive_sha256 === sha256) continue;
      if (row?.status !== 'active' || row.archive_sha256 !== sha256 || !staged) {
        clearRestorePending(p.dataDir, sha256, imvu);
        continue;
      }
      await restoreImported(p, imvu, staged);
      done.push(imvu);
    }
  }
  return done;
}

/** The IMVU.json of a staged archive. */
export function restorePlan(staged: StagedArchive): unknown {
  return JSON.parse(readFileSync(join(staged.root, RESTORE_FILE), 'utf8'));
}
