// Builds an IMVU's exit archive (docs/exit.md): one directory per part in the spec's layout, every
// file in its field's standard format, MANIFEST.json signed by the platform key, the whole written
// as one .tar.gz (pack.ts: one pass, each file hashed as it goes in, the data volume's tar made as
// it goes in, stored uncompressed when it does not compress) that appears under its final name only when complete (temp file, fsync, rename,
// fsync of the directory): a kill -9 mid-export leaves no archive that verifies, and a restart
// builds it again from the start. A part whose system is not running here is listed as missing,
// with why, never faked.
import { X509Certificate, createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { promisify } from 'node:util';
import { stringify as yamlStringify } from 'yaml';
import { decodeEntry } from '../../core/ledger/ledger.ts';
import { canonicalJson } from '../../core/ledger/canonical.ts';
import { fsyncDir } from '../../core/durable.ts';
import { publicKeyRaw } from '../../core/identity/keys.ts';
import { sshPublicKey } from '../../core/identity/openssh.ts';
import type { OpenPlatform } from '../../core/platform.ts';
import type { LedgerEntry } from '../../core/types.ts';
import { exportZone } from '../../domains/zonefile/export.ts';
import { keyViews } from '../../domains/dnssec/ds.ts';
import { readPrivateKey } from '../../domains/dnssec/keys.ts';
import { dkimKeyPath } from '../provision.ts';
import { EXIT_FORMAT, MANIFEST_FILE, RESTORE_FILE, PART_NAMES, signManifest, type Manifest, type ManifestFile, type PartName, type PartStatus } from './manifest.ts';
import { packArchive, type StreamedMember } from './pack.ts';
import { statementCsv, statementPdf, statementsOf } from './statements.ts';
import { transferCode, ownershipCertificate } from './certificates.ts';
import { describeIncomplete, incompleteZones, type IncompleteZone } from './incomplete.ts';

const run = promisify(execFile);

export interface ExitImvu {
  id: string;
  name: string;
  owner: string;
  jurisdiction: string;
  domain: string;
  status: string;
  entry: number;
}

/** What another system adds to the archive: files under `dir` (its part's folder) and secrets for secrets.age. */
export interface PartResult extends PartStatus {
  secrets?: Record<string, string>;
  /** Digests of files the part took while writing them (paths under its folder): not read again. */
  digests?: Record<string, { sha256: string; size: number }>;
  /** Files the part produces while the archive is written (paths under its folder): never on disk here. */
  streamed?: Record<string, StreamedMember>;
}
export type PartBuilder = (dir: string, imvu: ExitImvu, progress: (fraction: number) => void) => Promise<PartResult>;

export interface ExportOptions {
  platform: OpenPlatform;
  /** The signed checkpoint of this tree size with every witness cosignature held (src/api/checkpoint.ts). */
  checkpointNote(size: number): Promise<string | undefined>;
  /** Builders of the parts other systems own (mail, compute); a part without one is listed as missing. */
  parts?: Partial<Record<'mail' | 'compute', PartBuilder>>;
  /** age recipients for secrets/secrets.age (`age1...` or an SSH public key); default: the creator's identity key as ssh-ed25519. */
  recipients?: string[];
  /** Progress of each part, 0..1, as it goes (the status file, a terminal's bar). */
  onProgress?: (part: PartName | 'archive', fraction: number) => void;
  now?: () => Date;
}

export interface BuiltArchive {
  file: string;
  sha256: string;
  size: number;
  manifestSha256: string;
  treeSize: number;
  parts: Record<PartName, PartStatus>;
}

export function exportDir(dataDir: string, imvu: string): string {
  if (!/^IMVU-\d{3,9}$/.test(imvu)) throw new Error(`not an IMVU id: ${imvu}`);
  return join(dataDir, 'exports', imvu);
}

export function archiveName(imvu: string): string {
  return `${imvu}-exit.tar.gz`;
}

function write(root: string, rel: string, data: string | Buffer, mode = 0o644): void {
  const path = join(root, rel);
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  writeFileSync(path, data, { mode });
}

const jsonl = (rows: unknown[]) => rows.map((r) => canonicalJson(r)).join('\n') + (rows.length ? '\n' : '');

/** BIND's private key file for an ECDSA P-256 zone key (dnssec-signzone, ldns-signzone take it). */
function bindPrivateKey(key: KeyObject): string {
  const d = key.export({ format: 'jwk' }).d;
  if (!d) throw new Error('not a private key');
  return `Private-key-format: v1.3\nAlgorithm: 13 (ECDSAP256SHA256)\nPrivateKey: ${Buffer.from(d, 'base64url').toString('base64')}\n`;
}

/** Entries the creator may see that concern this IMVU, plus the platform facts its bills depend on. */
function concerns(e: LedgerEntry, imvu: ExitImvu, zones: ReadonlySet<string>, people: ReadonlySet<string>): boolean {
  const cmd = e.command.command;
  const body = cmd.body as Record<string, unknown>;
  if (body.imvu === imvu.id || e.index === imvu.entry) return true;
  if (typeof body.zone === 'string' && zones.has(body.zone)) return true;
  if (!e.decision.allowed) return false;
  if (['platform.genesis', 'pricebook.publish', 'capacity.publish', 'meter.register', 'plan.publish', 'platform.zone'].includes(cmd.type)) return true;
  if (cmd.type === 'identity.register') return people.has(cmd.actor) || body.role === 'admin' || body.role === 'service';
  return false;
}

/**
 * A zone whose declared parts are not all in the exported history (`incomplete`) was never served
 * here: it is left out (no zone file, DNSSEC key, DS, transfer code, nor a line of the ownership
 * certificate) and listed as incomplete in MANIFEST.json instead of passing for a whole one.
 */
async function domainsPart(p: OpenPlatform, root: string, imvu: ExitImvu, treeSize: number, secrets: Record<string, string>, incomplete: readonly IncompleteZone[]): Promise<PartResult> {
  const dir = join(root, 'domains');
  const left = new Set(incomplete.map((z) => z.zone));
  const zones = (await p.store.all<{ name: string }>('SELECT name FROM zones WHERE imvu = ? ORDER BY name', [imvu.id])).filter((z) => !left.has(z.name));
  const domains = (await p.store.all<{ name: string; kind: string; entry: number }>('SELECT name, kind, entry FROM domains WHERE imvu = ? ORDER BY name', [imvu.id])).filter((d) => !left.has(d.name));
  const ds: string[] = [];
  let keys = 0;
  for (const { name } of zones) {
    let text = await exportZone(p.store, name);
    // A proven custom zone holds no NS RRset until its creator adds one, and a master file without
    // one is refused by named-checkzone: the platform's name servers, which answered for it, go in.
    if (!(await p.store.get("SELECT 1 AS x FROM records WHERE zone = ? AND name = ? AND type = 'NS'", [name, name]))) {
      const ns = await p.store.all<{ name: string }>('SELECT DISTINCT name FROM nameservers ORDER BY name');
      const names = ns.length ? ns.map((r) => r.name) : [`ns1.${(await p.store.get<{ suffix: string }>('SELECT suffix FROM platform LIMIT 1'))?.suffix ?? 'world'}`];
      text += `; the platform's name servers, which served this zone (no NS RRset was recorded for it)\n${names.map((n) => `${name}. 3600 IN NS ${n}.`).join('\n')}\n`;
    }
    write(dir, `${name}.zone`, text);
    for (const view of await keyViews(p.store, name)) {
      const base = `K${name}.+013+${String(view.keyTag).padStart(5, '0')}`;
      write(dir, `dnssec/${base}.key`, `; ${view.state} since ${view.since}\n${view.dnskey}\n`);
      ds.push(view.ds);
      const priv = readPrivateKey(p.dataDir, name, { imvu: imvu.id, algorithm: view.algorithm, flags: view.flags, public_key: view.publicKey, state: view.state });
      if (!priv) continue;
      const bind = bindPrivateKey(priv);
      write(dir, `dnssec/${base}.private`, bind, 0o600);
      secrets[`dnssec/${base}.private`] = bind;
      keys++;
    }
  }
  write(dir, 'ds-records.txt', ds.length ? ds.join('\n') + '\n' : '; no zone of this IMVU is signed\n');
  const cert = ownershipCertificate(p, imvu, domains.map((d) => d.name), treeSize);
  write(dir, 'ownership-certificate.json', JSON.stringify(cert, null, 2) + '\n');
  const codes = domains.map((d) => `${d.name} ${transferCode(p, imvu, d.name, treeSize)}`);
  write(dir, 'domain-transfer-codes.txt', `# domain transfer-code (nexus domain transfer-in DOMAIN --code CODE on the receiving platform)\n${codes.join('\n')}\n`);
  const notes = incomplete.map((z) => `; incomplete, not exported: ${describeIncomplete(z)}`).join('');
  return { status: 'complete', detail: `${zones.length} zone(s), ${domains.length} domain(s), ${keys} DNSSEC private key(s)${notes}` };
}

async function ledgerPart(
  p: OpenPlatform,
  root: string,
  imvu: ExitImvu,
  treeSize: number,
  note: string,
  progress: (f: number) => void,
): Promise<PartResult & { entries: LedgerEntry[] }> {
  const dir = join(root, 'ledger');
  const zones = new Set((await p.store.all<{ name: string }>('SELECT name FROM zones WHERE imvu = ?', [imvu.id])).map((z) => z.name));
  const members = await p.store.all<{ identity: string }>('SELECT identity FROM members WHERE imvu = ?', [imvu.id]);
  const people = new Set([imvu.owner, ...members.map((m) => m.identity)]);
  const roles = new Map((await p.store.all<{ id: string; role: string }>('SELECT id, role FROM identities')).map((r) => [r.id, r.role]));
  const entries: LedgerEntry[] = [];
  const events: string[] = [];
  const BATCH = 5000;
  for (let from = 0; from < treeSize; from += BATCH) {
    const to = Math.min(treeSize, from + BATCH);
    const raw = await p.store.readEntries(from, to);
    for (let i = 0; i < raw.length; i++) {
      const e = decodeEntry(raw[i]!);
      if (!concerns(e, imvu, zones, people)) continue;
      entries.push(e);
      const proof = p.chokepoint.ledger.inclusionProof(from + i, treeSize).map((h) => h.toString('base64'));
      events.push(canonicalJson({ index: from + i, entry: e, inclusionProof: proof }));
    }
    progress(to / treeSize);
  }
  write(dir, 'events.jsonl', events.join('\n') + '\n');
  write(dir, 'checkpoint.note', note);
  const mine = entries.filter((e) => {
    const b = e.command.command.body as Record<string, unknown>;
    return b.imvu === imvu.id || e.index === imvu.entry || (typeof b.zone === 'string' && zones.has(b.zone));
  });
  const summary = (e: LedgerEntry) => ({
    index: e.index,
    at: e.at,
    type: e.command.command.type,
    actor: e.command.command.actor,
    role: roles.get(e.command.command.actor) ?? 'unknown',
    allowed: e.decision.allowed,
    gates: e.decision.gates,
  });
  write(dir, 'audit/policy-checks.jsonl', jsonl(mine.map(summary)));
  write(dir, 'audit/admin-actions.jsonl', jsonl(mine.filter((e) => ['admin', 'platform'].includes(roles.get(e.command.command.actor) ?? '')).map(summary)));
  const consents = mine
    .filter((e) => e.command.command.type === 'consent.record')
    .map((e) => ({ index: e.index, at: e.at, allowed: e.decision.allowed, ...(e.command.command.body as object) }));
  write(dir, 'compliance/consent-log.jsonl', jsonl(consents));
  write(
    dir,
    'compliance/jurisdiction-metadata.json',
    JSON.stringify({ imvu: imvu.id, jurisdiction: imvu.jurisdiction, recordedIn: imvu.entry, note: 'gate 9: the jurisdiction recorded at creation' }, null, 2) + '\n',
  );
  const statements = statementsOf(entries, imvu.id);
  for (const s of statements) {
    write(dir, `revenue/${s.period}.csv`, statementCsv(s));
    write(dir, `revenue/${s.period}.pdf`, statementPdf(s));
  }
  return { status: 'complete', detail: `${events.length} entries proved against tree size ${treeSize}, ${statements.length} monthly statement(s)`, entries };
}

async function networkPart(p: OpenPlatform, root: string, imvu: ExitImvu, secrets: Record<string, string>): Promise<PartResult> {
  const row = await p.store.get<{ policy: string }>('SELECT policy FROM routes WHERE imvu = ?', [imvu.id]);
  const policy = row ? (JSON.parse(row.policy) as Record<string, unknown>) : { public: [], private: [], restricted: [] };
  const doc = { public_routes: policy.public ?? [], private_routes: policy.private ?? [], restricted_routes: policy.restricted ?? [] };
  write(join(root, 'network'), 'routing-policy.yaml', `# ${imvu.id} routing policy, as recorded in the ledger\n${yamlStringify(doc)}`);
  // The gateway's certificate for the IMVU's names and its chain: to the platform CA that issued it
  // (DATA/gateway, src/network/gateway/certs.ts), or the ACME CA's chain (src/network/acme): the certificate here, its key in secrets.age.
  const certFile = join(p.dataDir, 'gateway', 'certs', `${imvu.id}.pem`);
  const caFile = join(p.dataDir, 'gateway', 'ca', 'ca.pem');
  if (!existsSync(certFile)) return { status: 'complete', detail: 'routing policy (no gateway certificate was issued for this IMVU)' };
  const pem = readFileSync(certFile, 'utf8');
  const certs = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g) ?? [];
  const key = pem.match(/-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----\n?/)?.[0];
  // The platform CA closes the chain only when it issued the leaf (an ACME certificate's file holds its own chain).
  const ca = existsSync(caFile) ? readFileSync(caFile, 'utf8') : undefined;
  const local = ca !== undefined && certs[0] !== undefined && new X509Certificate(certs[0]).checkIssued(new X509Certificate(ca));
  const chain = certs.join('') + (local ? ca : '');
  write(join(root, 'network'), 'certificates/chain.pem', chain);
  if (key) secrets['network/certificate.key'] = key;
  return { status: 'complete', detail: `routing policy, the gateway certificate and its chain (${certs.length + (local ? 1 : 0)} certificate(s))` };
}

/** The DKIM key and the mail DNS policies; the mailboxes come from the mail system's builder. */
function mailKeys(p: OpenPlatform, root: string, imvu: ExitImvu, secrets: Record<string, string>, records: { name: string; value: string }[]): void {
  const dir = join(root, 'mail');
  const keyFile = dkimKeyPath(p.dataDir, imvu.id);
  if (existsSync(keyFile)) {
    const pem = createPrivateKey({ key: readFileSync(keyFile) }).export({ type: 'pkcs8', format: 'pem' }) as string;
    write(dir, 'dkim/private.key', pem, 0o600);
    secrets['dkim/private.key'] = pem;
  }
  const txt = (pred: (r: { name: string; value: string }) => boolean) => records.filter(pred).map((r) => `${r.name} TXT ${r.value}`);
  write(dir, 'dkim/public.txt', txt((r) => r.name.includes('._domainkey.')).join('\n') + '\n');
  write(dir, 'policies/spf.txt', txt((r) => r.value.startsWith('v=spf1')).join('\n') + '\n');
  write(dir, 'policies/dmarc.txt', txt((r) => r.name.startsWith('_dmarc.')).join('\n') + '\n');
}

async function encryptSecrets(root: string, secrets: Record<string, string>, recipients: string[]): Promise<PartResult> {
  const dir = join(root, 'secrets');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const plain = join(dir, '.secrets.json');
  writeFileSync(plain, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 });
  try {
    await run('age', [...recipients.flatMap((r) => ['-r', r]), '-o', join(dir, 'secrets.age'), plain]);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    return { status: 'missing', detail: e.code === 'ENOENT' ? 'age is not installed on the platform' : `age refused: ${String(e.stderr ?? e.message).trim()}` };
  } finally {
    rmSync(plain, { force: true });
  }
  return { status: 'complete', detail: `${Object.keys(secrets).length} secret(s) encrypted with age to ${recipients.length} recipient(s)` };
}

function listFiles(root: string, dir = root): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, name.name);
    if (name.isDirectory()) out.push(...listFiles(root, path));
    else if (name.isFile()) out.push(relative(root, path));
  }
  return out.sort();
}

/**
 * IMVU.json: the IMVU's served state exactly as the projections hold it (envelope, every zone's
 * records, serial and DNSSEC public keys, DKIM selectors, mailboxes, routes, workload), so that
 * `nexus imvu import` on another platform recreates it record for record (src/imvu/import/).
 */
async function writeRestorePlan(p: OpenPlatform, root: string, imvu: ExitImvu, incomplete: readonly IncompleteZone[]): Promise<void> {
  const envelope = await p.store.get<Record<string, number>>('SELECT cpu_cores, memory_gb, storage_gb, iops FROM envelopes WHERE imvu = ?', [imvu.id]);
  const zones = [];
  const left = new Set(incomplete.map((z) => z.zone));
  for (const z of await p.store.all<{ name: string; serial: number }>('SELECT name, serial FROM zones WHERE imvu = ? ORDER BY name', [imvu.id])) {
    // Not whole here, so nothing a re-import (or a transfer-in) could restore as a served zone.
    if (left.has(z.name)) continue;
    const records = await p.store.all<{ name: string; type: string; value: string; ttl: number }>('SELECT name, type, value, ttl FROM records WHERE zone = ? ORDER BY id', [z.name]);
    const dnssec = await p.store.all<{ flags: number; public_key: string; state: string }>('SELECT flags, public_key, state FROM dnssec_keys WHERE zone = ? ORDER BY entry', [z.name]);
    const kind = await p.store.get<{ kind: string }>('SELECT kind FROM domains WHERE name = ?', [z.name]);
    zones.push({
      name: z.name,
      kind: kind?.kind ?? 'primary',
      serial: Number(z.serial),
      records: records.map((r) => ({ name: r.name, type: r.type, value: r.value, ttl: Number(r.ttl) })),
      dnssec: dnssec.map((k) => ({ flags: Number(k.flags), publicKey: k.public_key, state: k.state })),
    });
  }
  const dkim = await p.store.all<{ selector: string; public_key: string; state: string }>('SELECT selector, public_key, state FROM dkim_keys WHERE imvu = ? ORDER BY entry', [imvu.id]);
  const mailboxes = await p.store.all<{ address: string }>('SELECT address FROM mailboxes WHERE imvu = ? ORDER BY address', [imvu.id]);
  const route = await p.store.get<{ policy: string }>('SELECT policy FROM routes WHERE imvu = ?', [imvu.id]);
  const workload = await p.store.get<{ blueprint: string; desired: string }>('SELECT blueprint, desired FROM workloads WHERE imvu = ?', [imvu.id]);
  const plan = {
    format: 'nexus-imvu/1',
    id: imvu.id,
    name: imvu.name,
    owner: imvu.owner,
    jurisdiction: imvu.jurisdiction,
    domain: imvu.domain,
    envelope: envelope ? { cpu_cores: Number(envelope.cpu_cores), memory_gb: Number(envelope.memory_gb), storage_gb: Number(envelope.storage_gb), iops: Number(envelope.iops) } : null,
    zones,
    incomplete,
    dkim: dkim.map((k) => ({ selector: k.selector, publicKey: k.public_key, state: k.state })),
    mailboxes: mailboxes.map((m) => m.address),
    routes: route ? (JSON.parse(route.policy) as unknown) : null,
    workload: workload ? { blueprint: JSON.parse(workload.blueprint) as unknown, desired: workload.desired } : null,
  };
  write(root, RESTORE_FILE, JSON.stringify(plan, null, 2) + '\n');
}

export async function readExitImvu(p: OpenPlatform, id: string): Promise<ExitImvu> {
  const row = await p.store.get<ExitImvu & { [k: string]: string | number }>('SELECT id, name, owner, jurisdiction, domain, status, entry FROM imvus WHERE id = ?', [id]);
  if (!row) throw new Error(`unknown IMVU ${id}`);
  return { ...row, entry: Number(row.entry) };
}

/** Builds the archive of `imvuId` under DATA/exports/<IMVU>/ and returns what `imvu.exit.ready` records. */
export async function buildExitArchive(opts: ExportOptions, imvuId: string): Promise<BuiltArchive> {
  const p = opts.platform;
  const imvu = await readExitImvu(p, imvuId);
  const out = exportDir(p.dataDir, imvu.id);
  const work = join(out, 'build');
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true, mode: 0o700 });
  const root = join(work, imvu.id);
  mkdirSync(root, { mode: 0o700 });
  const progress = (part: PartName | 'archive') => (f: number) => opts.onProgress?.(part, Math.max(0, Math.min(1, f)));

  const latest = await p.store.latestCheckpoint();
  if (!latest) throw new Error('the ledger has no checkpoint yet');
  const treeSize = latest.size;
  const note = (await opts.checkpointNote(treeSize)) ?? latest.note;
  const secrets: Record<string, string> = {};
  const parts = {} as Record<PartName, PartStatus>;
  const known = new Map<string, { sha256: string; size: number }>();
  const streamed = new Map<string, StreamedMember>();
  const done = (name: PartName, r: PartResult) => {
    parts[name] = { status: r.status, detail: r.detail };
    Object.assign(secrets, r.secrets ?? {});
    for (const [rel, d] of Object.entries(r.digests ?? {})) known.set(`${name}/${rel}`, d);
    for (const [rel, m] of Object.entries(r.streamed ?? {})) streamed.set(`${name}/${rel}`, m);
    progress(name)(1);
  };

  // The history first: which zones are whole is decided from the entries the archive proves, as
  // the offline verifier decides it.
  const ledger = await ledgerPart(p, root, imvu, treeSize, note, progress('ledger'));
  const incomplete = incompleteZones(ledger.entries, imvu.id);
  done('domains', await domainsPart(p, root, imvu, treeSize, secrets, incomplete));
  await writeRestorePlan(p, root, imvu, incomplete);
  const left = new Set(incomplete.map((z) => z.zone));
  const records = (
    await p.store.all<{ zone: string; name: string; value: string }>("SELECT zone, name, value FROM records WHERE zone IN (SELECT name FROM zones WHERE imvu = ?) AND type = 'TXT' ORDER BY name, value", [imvu.id])
  ).filter((r) => !left.has(r.zone));
  mailKeys(p, root, imvu, secrets, records);
  const mail = opts.parts?.mail;
  done('mail', mail ? await mail(join(root, 'mail'), imvu, progress('mail')) : { status: 'missing', detail: 'no mail store runs on this platform: mailboxes are not exported (DKIM key and policies are)' });
  const compute = opts.parts?.compute;
  done('compute', compute ? await compute(join(root, 'compute'), imvu, progress('compute')) : { status: 'missing', detail: 'no compute fabric runs on this platform: there is no workload or data volume to export' });
  done('network', await networkPart(p, root, imvu, secrets));
  done('ledger', ledger);
  const ownerKey = await p.store.get<{ public_key: string }>('SELECT public_key FROM identities WHERE id = ?', [imvu.owner]);
  const recipients = opts.recipients?.length ? opts.recipients : ownerKey ? [sshPublicKey(Buffer.from(ownerKey.public_key, 'base64'))] : [];
  done('secrets', await encryptSecrets(root, secrets, recipients));

  for (const name of PART_NAMES) if (!parts[name]) throw new Error(`part ${name} was not built`);
  const createdAt = (opts.now?.() ?? new Date()).toISOString();
  let signed = '';
  const manifestOf = (files: ManifestFile[]): string => {
    const manifest: Manifest = {
      format: EXIT_FORMAT,
      imvu: imvu.id,
      owner: imvu.owner,
      origin: p.config.origin,
      platformKey: publicKeyRaw(p.platformKey).toString('base64'),
      treeSize,
      createdAt,
      parts,
      incomplete,
      files,
    };
    signed = JSON.stringify(signManifest(manifest, p.platformKey), null, 2) + '\n';
    return signed;
  };

  // One pass: each file read once into the gzip stream, hashed on the way unless its digest was
  // taken when it was written, the streamed ones (the data volume's tar) made as they go in;
  // MANIFEST.json last; the archive's digest taken as it is written.
  const file = join(out, archiveName(imvu.id));
  const partial = `${file}.partial`;
  rmSync(partial, { force: true });
  const members = [...listFiles(root), ...streamed.keys()].sort();
  const packed = await packArchive(root, imvu.id, members, known, MANIFEST_FILE, manifestOf, partial, (d, t) => progress('archive')(t ? d / t : 1), streamed);
  renameSync(partial, file);
  fsyncDir(out);
  rmSync(work, { recursive: true, force: true });
  progress('archive')(1);
  return { file, sha256: packed.sha256, size: packed.size, manifestSha256: createHash('sha256').update(signed).digest('hex'), treeSize, parts };
}
