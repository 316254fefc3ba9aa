// `nexus export verify FILE`: checks an exit archive with no daemon and no network (threat 4.1).
// The manifest's signature and every file's SHA-256 and size; that nothing is missing or added;
// the checkpoint's signature (and the creator's witness quorum when it has a policy); every
// exported ledger entry's inclusion proof; every monthly statement recomputed from those entries
// (the 55/45 split included); every zone and mbox parsed; the domain certificates. The first
// altered or missing byte names its file.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGunzip } from 'node:zlib';
import tarStream from 'tar-stream';
import { badEntryName } from '../../compute/snapshots/tree.ts';
import { openCheckpoint } from '../../core/ledger/checkpoint.ts';
import { encodeEntry } from '../../core/ledger/ledger.ts';
import { leafHash, verifyInclusion } from '../../core/ledger/merkle.ts';
import type { LedgerEntry } from '../../core/types.ts';
import { policyQuorum } from '../../cli/witness.ts';
import type { WitnessPolicy } from '../../cli/home.ts';
import { ParallelHash } from './hash-worker.ts';
import { MANIFEST_FILE, EXIT_FORMAT, PART_NAMES, RESTORE_FILE, hashFile, manifestSignatureValid, type SignedManifest } from './manifest.ts';
import { statementCsv, statementPdf, statementsOf } from './statements.ts';
import { openTransferCode, ownershipCertificateValid, type OwnershipCertificate } from './certificates.ts';
import { describeIncomplete, incompleteZones, sameIncomplete } from './incomplete.ts';

const run = promisify(execFile);
const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

export class ArchiveInvalid extends Error {
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`${file}: ${reason}`);
  }
}

export interface VerifyOptions {
  /** The platform key the creator pinned (base64): a manifest signed by another key fails. */
  platformKey?: string;
  /** The creator's witness policy: the checkpoint must carry its quorum. */
  witnesses?: WitnessPolicy;
}

export interface VerifyReport {
  imvu: string;
  lines: string[];
  sha256: string;
  size: number;
  manifest: SignedManifest;
}

function listFiles(root: string, dir = root): string[] {
  const out: string[] = [];
  for (const d of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, d.name);
    if (d.isDirectory()) out.push(...listFiles(root, path));
    else out.push(relative(root, path));
  }
  return out.sort();
}

const plural = (n: number, one: string, many = `${one}s`) => `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;

function mboxMessages(text: string, file: string): number {
  if (text.length === 0) return 0;
  if (!text.startsWith('From ')) throw new ArchiveInvalid(file, 'an mbox must start with a "From " line');
  return text.split('\n').filter((l, i, a) => l.startsWith('From ') && (i === 0 || a[i - 1] === '')).length;
}

async function checkZone(path: string, zone: string, file: string): Promise<void> {
  try {
    await run('named-checkzone', ['-q', zone, path]);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stdout?: string };
    if (e.code === 'ENOENT') {
      // Without BIND's checker: at least the SOA must be there.
      if (!/\sIN\s+SOA\s/.test(readFileSync(path, 'utf8'))) throw new ArchiveInvalid(file, 'the zone has no SOA record');
      return;
    }
    throw new ArchiveInvalid(file, `named-checkzone refused it: ${String(e.stdout ?? e.message).trim().split('\n')[0]}`);
  }
}

/** Verifies an extracted archive directory (the folder holding MANIFEST.json). */
export async function verifyExitDir(root: string, archive: { sha256: string; size: number }, opts: VerifyOptions = {}, digests?: FileDigests): Promise<VerifyReport> {
  const manifestPath = join(root, MANIFEST_FILE);
  if (!existsSync(manifestPath)) throw new ArchiveInvalid(MANIFEST_FILE, 'missing');
  if (lstatSync(manifestPath).size > MAX_MANIFEST_BYTES) throw new ArchiveInvalid(MANIFEST_FILE, 'larger than 64 MiB');
  let signed: SignedManifest;
  try {
    signed = JSON.parse(readFileSync(manifestPath, 'utf8')) as SignedManifest;
  } catch {
    throw new ArchiveInvalid(MANIFEST_FILE, 'not JSON');
  }
  const m = signed.manifest;
  if (!m || m.format !== EXIT_FORMAT || !Array.isArray(m.files)) throw new ArchiveInvalid(MANIFEST_FILE, `not a ${EXIT_FORMAT} manifest`);
  if (!manifestSignatureValid(signed)) throw new ArchiveInvalid(MANIFEST_FILE, 'the platform signature does not verify');
  if (opts.platformKey && opts.platformKey !== m.platformKey) throw new ArchiveInvalid(MANIFEST_FILE, `signed by ${m.platformKey}, not by the platform key you pinned (${opts.platformKey})`);
  const lines: string[] = [];

  // Files: exactly the listed ones, each with its digest.
  const listed = new Map(m.files.map((f) => [f.path, f]));
  // The digests taken while unpacking, or (a folder already on disk) read here.
  const onDisk = (digests ? [...digests.keys()].sort() : listFiles(root)).filter((f) => f !== MANIFEST_FILE);
  for (const f of onDisk) if (!listed.has(f)) throw new ArchiveInvalid(f, 'not listed in the manifest');
  for (const f of m.files) {
    const path = join(root, f.path);
    let got = digests?.get(f.path);
    if (!digests) {
      if (!existsSync(path)) throw new ArchiveInvalid(f.path, 'listed in the manifest but missing');
      if (!lstatSync(path).isFile()) throw new ArchiveInvalid(f.path, 'not a regular file');
      got = await hashFile(path);
    }
    if (!got) throw new ArchiveInvalid(f.path, 'listed in the manifest but missing');
    if (got.size !== f.size || got.sha256 !== f.sha256) throw new ArchiveInvalid(f.path, `SHA-256 ${got.sha256} (${got.size} bytes) differs from the manifest's ${f.sha256} (${f.size} bytes)`);
  }
  const total = m.files.reduce((n, f) => n + f.size, 0);
  lines.push(`✅ Manifest: ${plural(m.files.length, 'file')}, every SHA-256 matches, signed by the platform key of ${m.origin}`);

  // Ledger: the checkpoint, then every entry's inclusion proof against it.
  const notePath = join(root, 'ledger', 'checkpoint.note');
  const note = readFileSync(notePath, 'utf8');
  let root32: Buffer;
  try {
    const { checkpoint } = openCheckpoint(note, [{ name: m.origin, publicKeyRaw: Buffer.from(m.platformKey, 'base64') }], m.origin);
    if (checkpoint.size !== m.treeSize) throw new Error(`it is of size ${checkpoint.size}, the manifest says ${m.treeSize}`);
    root32 = checkpoint.rootHash;
  } catch (err) {
    throw new ArchiveInvalid('ledger/checkpoint.note', (err as Error).message);
  }
  if (opts.witnesses && opts.witnesses.require > 0) {
    const q = policyQuorum(note, opts.witnesses);
    if (!q.ok) throw new ArchiveInvalid('ledger/checkpoint.note', `cosigned by ${q.cosigned.length} of your witnesses (${q.cosigned.join(', ') || 'none'}); your policy requires ${opts.witnesses.require}`);
    lines.push(`✅ Checkpoint: tree size ${m.treeSize}, cosigned by ${q.cosigned.join(', ')}`);
  } else lines.push(`✅ Checkpoint: tree size ${m.treeSize}, signed by the platform`);
  const entries: LedgerEntry[] = [];
  const text = readFileSync(join(root, 'ledger', 'events.jsonl'), 'utf8');
  let n = 0;
  for (const line of text.split('\n')) {
    if (!line) continue;
    n++;
    let row: { index: number; entry: LedgerEntry; inclusionProof: string[] };
    try {
      row = JSON.parse(line) as typeof row;
    } catch {
      throw new ArchiveInvalid('ledger/events.jsonl', `line ${n} is not JSON`);
    }
    const proof = (row.inclusionProof ?? []).map((h) => Buffer.from(h, 'base64'));
    if (row.entry?.index !== row.index || !verifyInclusion(leafHash(encodeEntry(row.entry)), row.index, m.treeSize, proof, root32))
      throw new ArchiveInvalid('ledger/events.jsonl', `entry ${row.index} (line ${n}) is not in the tree of the checkpoint`);
    entries.push(row.entry);
  }
  lines.push(`✅ Ledger: ${plural(entries.length, 'event')}, each proved against the checkpoint`);

  // Statements: recomputed from the proved entries alone; the files must be exactly those.
  const statements = statementsOf(entries, m.imvu);
  const want = new Set(statements.flatMap((s) => [`ledger/revenue/${s.period}.csv`, `ledger/revenue/${s.period}.pdf`]));
  for (const f of m.files.filter((x) => x.path.startsWith('ledger/revenue/'))) if (!want.has(f.path)) throw new ArchiveInvalid(f.path, 'no statement of the ledger belongs to this month');
  for (const s of statements) {
    for (const [ext, bytes] of [
      ['csv', Buffer.from(statementCsv(s))],
      ['pdf', statementPdf(s)],
    ] as const) {
      const f = `ledger/revenue/${s.period}.${ext}`;
      if (!existsSync(join(root, f))) throw new ArchiveInvalid(f, 'missing: the ledger bills this month');
      if (!readFileSync(join(root, f)).equals(bytes)) throw new ArchiveInvalid(f, 'differs from the statement recomputed from the ledger');
    }
    if (s.creator + s.platform !== s.total) throw new ArchiveInvalid(`ledger/revenue/${s.period}.csv`, 'the split does not add up');
  }
  lines.push(`✅ Revenue: ${plural(statements.length, 'monthly statement')} recomputed from the ledger (55/45 split)`);
  const audit = readFileSync(join(root, 'ledger', 'audit', 'policy-checks.jsonl'), 'utf8').split('\n').filter(Boolean).length;
  lines.push(`✅ Audit logs: ${plural(audit, 'entry', 'entries')}`);

  // Domains. A zone whose declared parts are not all in the proved history was never whole on the
  // platform: nothing may present it as complete, and the manifest must say it is incomplete.
  const incomplete = incompleteZones(entries, m.imvu);
  const certificate = readFileSync(join(root, 'domains', 'ownership-certificate.json'), 'utf8');
  const transferCodes = readFileSync(join(root, 'domains', 'domain-transfer-codes.txt'), 'utf8');
  const jsonOf = <T>(f: string): T | undefined => {
    if (!incomplete.length || !existsSync(join(root, f))) return undefined;
    try {
      return JSON.parse(readFileSync(join(root, f), 'utf8')) as T;
    } catch {
      throw new ArchiveInvalid(f, 'not JSON');
    }
  };
  const dsRecords = incomplete.length && existsSync(join(root, 'domains', 'ds-records.txt')) ? readFileSync(join(root, 'domains', 'ds-records.txt'), 'utf8') : '';
  const owned = jsonOf<OwnershipCertificate>('domains/ownership-certificate.json')?.statement?.domains ?? [];
  const restored = jsonOf<{ zones?: { name: string }[] }>(RESTORE_FILE)?.zones ?? [];
  for (const z of incomplete) {
    const why = `${describeIncomplete(z)}, yet`;
    const zoneFile = `domains/${z.zone}.zone`;
    if (listed.has(zoneFile)) throw new ArchiveInvalid(zoneFile, `${why} the archive holds its zone file as if it were complete`);
    const key = m.files.find((f) => f.path.startsWith(`domains/dnssec/K${z.zone}.+`));
    if (key) throw new ArchiveInvalid(key.path, `${why} the archive holds its DNSSEC key as if it were served`);
    if (dsRecords.split('\n').some((l) => l.toLowerCase().startsWith(`${z.zone}. `))) throw new ArchiveInvalid('domains/ds-records.txt', `${why} it has a DS record`);
    if (owned.includes(z.zone)) throw new ArchiveInvalid('domains/ownership-certificate.json', `${why} the certificate names it among the IMVU's domains`);
    if (transferCodes.split('\n').some((l) => l.startsWith(`${z.zone} `))) throw new ArchiveInvalid('domains/domain-transfer-codes.txt', `${why} it has a transfer code`);
    if (restored.some((r) => r.name === z.zone)) throw new ArchiveInvalid(RESTORE_FILE, `${why} it is among the zones a re-import restores`);
  }
  if (!sameIncomplete(m.incomplete ?? [], incomplete)) {
    const said = (m.incomplete ?? []).map((z) => z.zone).join(', ') || 'none';
    const found = incomplete.map(describeIncomplete).join('; ') || 'every zone whole';
    throw new ArchiveInvalid(MANIFEST_FILE, `lists as incomplete ${said}; the exported ledger says ${found}`);
  }
  const zones = m.files.filter((f) => /^domains\/[^/]+\.zone$/.test(f.path));
  for (const z of zones) await checkZone(join(root, z.path), z.path.slice('domains/'.length, -'.zone'.length), z.path);
  const cert = JSON.parse(certificate) as OwnershipCertificate;
  if (!ownershipCertificateValid(cert) || cert.platformKey !== m.platformKey || cert.statement.imvu !== m.imvu)
    throw new ArchiveInvalid('domains/ownership-certificate.json', 'not signed by the platform key for this IMVU');
  const codes = transferCodes.split('\n').filter((l) => l && !l.startsWith('#'));
  for (const l of codes) {
    const [domain, code] = l.split(' ');
    let claim;
    try {
      claim = openTransferCode(code ?? '');
    } catch (err) {
      throw new ArchiveInvalid('domains/domain-transfer-codes.txt', `${domain}: ${(err as Error).message}`);
    }
    if (claim.domain !== domain || claim.imvu !== m.imvu || claim.key !== m.platformKey) throw new ArchiveInvalid('domains/domain-transfer-codes.txt', `${domain}: the code is for another domain, IMVU or platform`);
  }
  lines.push(`✅ Domains: ${plural(zones.length, 'zone')} exported and parsed, ${plural(codes.length, 'transfer code')}, ownership certificate signed`);
  for (const z of incomplete) lines.push(`⚠️  Domains: incomplete, not exported as a zone: ${describeIncomplete(z)}`);

  // Mail.
  const mboxes = m.files.filter((f) => f.path.startsWith('mail/mailboxes/') && f.path.endsWith('.mbox'));
  let messages = 0;
  for (const f of mboxes) messages += mboxMessages(readFileSync(join(root, f.path), 'latin1'), f.path);
  const mailBytes = mboxes.reduce((s, f) => s + f.size, 0);
  lines.push(m.parts.mail.status === 'complete' ? `✅ Mail: ${plural(mboxes.length, 'mailbox', 'mailboxes')} exported (${plural(messages, 'message')}, ${mailBytes} bytes)` : `⚠️  Mail: ${m.parts.mail.detail}`);
  lines.push(m.parts.compute.status === 'complete' ? `✅ Compute: ${m.parts.compute.detail}` : `⚠️  Compute: ${m.parts.compute.detail}`);
  lines.push(`✅ Network: ${m.parts.network.detail}`);
  if (m.parts.secrets.status === 'complete') {
    const head = readFileSync(join(root, 'secrets', 'secrets.age')).subarray(0, 22).toString('latin1');
    if (head !== 'age-encryption.org/v1\n') throw new ArchiveInvalid('secrets/secrets.age', 'not an age file');
    lines.push(`✅ Secrets: ${m.parts.secrets.detail}`);
  } else lines.push(`⚠️  Secrets: ${m.parts.secrets.detail}`);
  for (const part of PART_NAMES) if (!m.parts[part]) throw new ArchiveInvalid(MANIFEST_FILE, `part ${part} is not accounted for`);
  lines.push('', `Total export size: ${total} bytes in ${plural(m.files.length, 'file')} (archive ${archive.size} bytes)`, `Checksum: sha256:${archive.sha256}`);
  return { imvu: m.imvu, lines: [`Export Verification Report for ${m.imvu}`, '='.repeat(`Export Verification Report for ${m.imvu}`.length), ...lines], sha256: archive.sha256, size: archive.size, manifest: signed };
}

/** Each file's SHA-256 and size, as read once while the archive was unpacked. */
export type FileDigests = Map<string, { sha256: string; size: number }>;

/** Members a verification never reads back (it only checks their digests): not written unless kept. */
const digestOnly = (rel: string) => rel.startsWith('compute/');

/**
 * Unpacks `file` (.tar.gz) in one pass: the archive's own SHA-256, and each member's, computed
 * while the bytes go by. Only regular files and folders under one top-level folder, with clean
 * relative names, each path once; nothing is written through a link (there are none). With
 * `writeAll` false, the members verification never reads again (the data volume, the workload
 * image) are hashed but not written to disk.
 */
async function unpackHashing(source: Readable, file: string, dest: string, writeAll: boolean): Promise<{ archive: { sha256: string; size: number }; top: string; files: FileDigests }> {
  // The archive's digest on a worker thread, the members' here: the two passes run side by side.
  const archiveHash = new ParallelHash();
  const files: FileDigests = new Map();
  let top: string | undefined;
  const extract = tarStream.extract();
  extract.on('entry', (header, stream, next) => {
    const fail = (reason: string) => {
      stream.resume();
      extract.destroy(new ArchiveInvalid(file, reason));
    };
    const bad = badEntryName(header.name);
    if (bad) return fail(`${header.name.slice(0, 200)}: ${bad}`);
    const name = header.name.replace(/\/$/, '');
    const [first, ...rest] = name.split('/');
    if (top === undefined) top = first;
    else if (first !== top) return fail(`holds more than one top-level folder (${top}, ${first})`);
    const rel = rest.join('/');
    if (header.type === 'directory') {
      mkdirSync(join(dest, name), { recursive: true, mode: 0o700 });
      stream.resume();
      stream.on('end', next);
      return;
    }
    if (header.type !== 'file') return fail(`${name}: a ${String(header.type)} entry (only files and folders belong in an export)`);
    if (!rel) return fail(`${name}: a file at the top level`);
    if (files.has(rel)) return fail(`${name}: in the archive twice`);
    const h = createHash('sha256');
    let size = 0;
    const write = writeAll || !digestOnly(rel);
    let out: ReturnType<typeof createWriteStream> | undefined;
    if (write) {
      mkdirSync(dirname(join(dest, name)), { recursive: true, mode: 0o700 });
      out = createWriteStream(join(dest, name), { flags: 'wx', mode: 0o600 });
    }
    stream.on('data', (c) => {
      h.update(c as Buffer);
      size += (c as Buffer).length;
    });
    const finish = () => {
      files.set(rel, { sha256: h.digest('hex'), size });
      next();
    };
    if (out) {
      pipeline(stream, out).then(finish, (err: Error) => extract.destroy(err));
    } else {
      stream.on('end', finish);
      stream.resume();
    }
  });
  let archive: { sha256: string; size: number };
  try {
    await pipeline(
      source,
      new Transform({
        transform(chunk: Buffer, _enc, cb) {
          archiveHash.update(chunk).then(() => cb(null, chunk), cb);
        },
      }),
      createGunzip({ chunkSize: 1 << 20 }),
      extract,
    );
    archive = await archiveHash.digest();
  } catch (err) {
    await archiveHash.abort();
    if (err instanceof ArchiveInvalid) throw err;
    throw new ArchiveInvalid(file, `not a readable .tar.gz: ${(err as Error).message}`);
  }
  if (top === undefined) throw new ArchiveInvalid(file, 'holds no folder');
  return { archive, top, files };
}

/**
 * Verifies an archive file (.tar.gz) in one read: unpacks it into a temp folder, hashing every
 * member as it goes, then checks it. With `keepIn` (an empty folder), the whole extraction stays
 * there once verified (a re-import reads it).
 */
export async function verifyExitArchive(file: string, opts: VerifyOptions & { keepIn?: string } = {}): Promise<VerifyReport & { root: string }> {
  return verifyExitStream(createReadStream(file, { highWaterMark: 1 << 20 }), file, opts);
}

/**
 * Verifies an archive as its bytes arrive (`source`, e.g. a download, named `file` in errors):
 * the same checks as verifyExitArchive, without reading it again once it is on disk.
 */
export async function verifyExitStream(source: Readable, file: string, opts: VerifyOptions & { keepIn?: string } = {}): Promise<VerifyReport & { root: string }> {
  const tmp = opts.keepIn ?? mkdtempSync(join(tmpdir(), 'nexus-export-'));
  let ok = false;
  try {
    const { archive, top, files } = await unpackHashing(source, file, tmp, opts.keepIn !== undefined);
    const report = await verifyExitDir(join(tmp, top), archive, opts, files);
    ok = true;
    return { ...report, root: join(tmp, top) };
  } finally {
    if (!ok || !opts.keepIn) rmSync(tmp, { recursive: true, force: true });
  }
}
