// Receipts: the platform's answer to every recorded command carries { index, checkpoint,
// inclusionProof } (docs/API.md, "Receipts"). The CLI
//   1. rebuilds the ledger entry from the command it signed and the decision in the answer, so the
//      entry the receipt proves is its own command, byte for byte;
//   2. verifies the checkpoint's signature against the pinned platform key and the inclusion proof
//      of that entry against the checkpoint's root;
//   3. keeps the receipt under NEXUS_HOME/receipts/<platform id>/<index>.json (atomic, fsynced),
//      for good: `nexus audit verify` later checks that every kept receipt's entry is still in the
//      log (consistency from the receipt's checkpoint to the current one, and inclusion of the
//      kept leaf hash at its index), so an entry somebody got a receipt for cannot silently go.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { identityIdFromPublicKey } from '../core/identity/keys.ts';
import { MAX_SIGNATURES, noteKeyId, openCheckpoint, splitNote } from '../core/ledger/checkpoint.ts';
import { verifyCosignature } from '../core/witness/cosignature.ts';
import { canonicalBytes } from '../core/ledger/canonical.ts';
import { elideEntry } from '../core/ledger/ledger.ts';
import { leafHash, verifyConsistency, verifyInclusion } from '../core/ledger/merkle.ts';
import type { GateResult, LedgerEntry, SignedCommand } from '../core/types.ts';
import { ApiError, type Client } from './client.ts';
import { verificationFailed } from './errors.ts';
import { writeFileAtomic, type Home, type WitnessPolicy } from './home.ts';
import type { SeenCheckpoint } from './witness.ts';

/** The platform a receipt is from: what its checkpoint is verified with. The id follows from the key. */
export interface ReceiptPlatform {
  id: string;
  origin: string;
  /** Ed25519 public key, base64. */
  publicKey: string;
}

/** What NEXUS_HOME/receipts/<platform id>/<index>.json holds. */
export interface StoredReceipt {
  v: 1;
  platform: ReceiptPlatform;
  /** The daemon that gave it. */
  url: string;
  index: number;
  /** RFC 6962 leaf hash of `entry` (hex). */
  leafHash: string;
  /** The entry the receipt proves: the command signed here, as the platform recorded it. */
  entry: LedgerEntry;
  /** The signed checkpoint of the batch that committed the entry (C2SP signed note). */
  checkpoint: string;
  /** RFC 9162 inclusion proof of the entry in that checkpoint's tree (hex). */
  inclusionProof: string[];
  receivedAt: string;
}

/** A receipt that verified: the checkpoint it proves inclusion in, and the leaf. */
export interface VerifiedReceipt {
  receipt: StoredReceipt;
  checkpoint: SeenCheckpoint;
  leaf: Buffer;
}

const HEX32 = /^[0-9a-f]{64}$/;
/** Bounds on what is parsed: a proof has at most 64 hashes, a checkpoint note is small, a receipt file holds one command. */
const MAX_PROOF = 64;
const MAX_NOTE_CHARS = 64 * 1024;
const MAX_RECEIPT_FILE_BYTES = 512 * 1024;

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function hexHashes(raw: unknown): Buffer[] | undefined {
  if (!Array.isArray(raw) || raw.length > MAX_PROOF || !raw.every((h) => typeof h === 'string' && HEX32.test(h))) return undefined;
  return raw.map((h: string) => Buffer.from(h, 'hex'));
}

/**
 * Checks that `leaf` is entry `index` of the tree of the checkpoint `note`, signed by `platform`.
 * Returns the checkpoint, or why not.
 */
function proveIncluded(platform: ReceiptPlatform, index: number, leaf: Buffer, note: unknown, proofRaw: unknown): SeenCheckpoint | string {
  if (typeof note !== 'string' || note.length > MAX_NOTE_CHARS) return 'its checkpoint is not a signed note';
  let size: number;
  let rootHash: Buffer;
  try {
    const { checkpoint } = openCheckpoint(note, [{ name: platform.origin, publicKeyRaw: Buffer.from(platform.publicKey, 'base64') }], platform.origin);
    ({ size, rootHash } = checkpoint);
  } catch (err) {
    return `its checkpoint does not verify against the platform key ${platform.id}: ${(err as Error).message}`;
  }
  if (!(index < size)) return `its checkpoint (tree size ${size}) does not cover entry ${index}`;
  const proof = hexHashes(proofRaw);
  if (!proof) return 'its inclusion proof is malformed (expected at most 64 hex SHA-256 hashes)';
  if (!verifyInclusion(leaf, index, size, proof, rootHash)) return `its inclusion proof does not show the entry in the checkpoint of tree size ${size}`;
  return { note, size, rootHash };
}

/**
 * Verifies the receipt in the daemon's answer (`body`, the JSON of a response that names an entry
 * index) to the command `signed`, sent to `url`. Throws exit 4 naming what does not hold.
 */
export function verifyReceipt(platform: ReceiptPlatform, url: string, signed: SignedCommand, body: unknown, now = new Date()): VerifiedReceipt {
  const b = isObject(body) ? body : {};
  const index = b.index;
  const what = `${signed.command.type}${typeof index === 'number' ? ` (ledger entry ${index})` : ''}`;
  const fail = (why: string) => verificationFailed(`the platform's receipt for ${what} does not verify: ${why}`);
  if (!Number.isSafeInteger(index) || (index as number) < 0) throw fail('the answer names no ledger index');
  const r = b.receipt;
  if (!isObject(r)) throw fail('the answer carries no receipt');
  if (r.index !== index) throw fail(`the receipt is for entry ${String(r.index)}, not ${String(index)}`);
  if (typeof b.at !== 'string' || b.at.length > 64 || typeof b.allowed !== 'boolean' || !Array.isArray(b.gates) || b.gates.length > 64)
    throw fail('the answer does not say when and how the command was decided (at, allowed, gates)');
  // The entry as the platform records it, rebuilt from the command signed here: if the proof
  // verifies for this leaf, the log holds exactly this command with exactly this decision.
  const entry = elideEntry({ v: 1, index: index as number, at: b.at, command: signed, decision: { allowed: b.allowed, gates: b.gates as GateResult[] } });
  const leaf = leafHash(canonicalBytes(entry));
  const cp = proveIncluded(platform, index as number, leaf, r.checkpoint, r.inclusionProof);
  if (typeof cp === 'string') throw fail(cp);
  const receipt: StoredReceipt = {
    v: 1,
    platform: { id: platform.id, origin: platform.origin, publicKey: platform.publicKey },
    url,
    index: index as number,
    leafHash: leaf.toString('hex'),
    entry,
    checkpoint: cp.note,
    inclusionProof: r.inclusionProof as string[],
    receivedAt: now.toISOString(),
  };
  return { receipt, checkpoint: cp, leaf };
}

/** Checks a kept receipt on its own (no daemon): its entry hashes to its leaf, its checkpoint is signed, its proof holds. */
export function checkStoredReceipt(raw: unknown): VerifiedReceipt | string {
  if (!isObject(raw) || raw.v !== 1) return 'not a receipt (v 1)';
  const p = raw.platform;
  if (!isObject(p) || typeof p.id !== 'string' || typeof p.origin !== 'string' || typeof p.publicKey !== 'string') return 'it names no platform';
  const key = Buffer.from(p.publicKey, 'base64');
  if (key.length !== 32 || key.toString('base64') !== p.publicKey || identityIdFromPublicKey(key) !== p.id) return `its platform key is not the key of ${p.id}`;
  const platform: ReceiptPlatform = { id: p.id, origin: p.origin, publicKey: p.publicKey };
  if (!Number.isSafeInteger(raw.index) || (raw.index as number) < 0) return 'it names no ledger index';
  const index = raw.index as number;
  if (!isObject(raw.entry) || raw.entry.index !== index) return `its entry is not entry ${index}`;
  const leaf = leafHash(canonicalBytes(raw.entry));
  if (typeof raw.leafHash !== 'string' || leaf.toString('hex') !== raw.leafHash) return 'its entry does not hash to its leaf hash';
  const cp = proveIncluded(platform, index, leaf, raw.checkpoint, raw.inclusionProof);
  if (typeof cp === 'string') return cp;
  return { receipt: raw as unknown as StoredReceipt, checkpoint: cp, leaf };
}

/**
 * Keeps a verified receipt: receipts/<platform id>/<index>.json, or, when that name already holds a
 * receipt for a different entry at the same index (the log was rewritten), <index>-<leaf hash>.json
 * beside it, so that the older one stays as evidence. Returns the file.
 */
export function saveReceipt(home: Home, r: StoredReceipt): string {
  const dir = home.receiptDir(r.platform.id);
  for (const name of [`${r.index}.json`, `${r.index}-${r.leafHash.slice(0, 16)}.json`]) {
    const file = join(dir, name);
    if (existsSync(file)) {
      let same = false;
      try {
        same = (JSON.parse(readFileSync(file, 'utf8')) as { leafHash?: unknown }).leafHash === r.leafHash;
      } catch {
        // unreadable: keep it, write beside it
      }
      if (same) return file;
      continue;
    }
    writeFileAtomic(file, JSON.stringify(r, null, 2) + '\n', 0o600);
    return file;
  }
  throw new Error(`cannot keep the receipt for entry ${r.index}: ${dir} already holds two other receipts for that index`);
}

export interface KeptReceipt {
  file: string;
  /** Set when the file checks on its own. */
  verified?: VerifiedReceipt;
  /** Why it does not (a damaged or edited file). */
  problem?: string;
  /** The index the file names, when it can be read. */
  index?: number;
}

/** Every receipt kept for a platform, by index. */
export function keptReceipts(home: Home, platformId: string): KeptReceipt[] {
  const dir = home.receiptDir(platformId);
  if (!existsSync(dir)) return [];
  const out: KeptReceipt[] = [];
  for (const name of readdirSync(dir)) {
    if (!/^\d+(-[0-9a-f]{16})?\.json$/.test(name)) continue;
    const file = join(dir, name);
    let raw: unknown;
    try {
      if (statSync(file).size > MAX_RECEIPT_FILE_BYTES) throw new Error(`larger than ${MAX_RECEIPT_FILE_BYTES} bytes`);
      raw = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      out.push({ file, index: Number(name.split(/[-.]/)[0]), problem: `unreadable: ${(err as Error).message}` });
      continue;
    }
    const checked = checkStoredReceipt(raw);
    const index = isObject(raw) && Number.isSafeInteger(raw.index) ? (raw.index as number) : Number(name.split(/[-.]/)[0]);
    if (typeof checked === 'string') out.push({ file, index, problem: checked });
    else if (checked.receipt.platform.id !== platformId) out.push({ file, index, problem: `it is a receipt of platform ${checked.receipt.platform.id}` });
    else out.push({ file, index, verified: checked });
  }
  return out.sort((a, b) => (a.index ?? 0) - (b.index ?? 0) || a.file.localeCompare(b.file));
}

/** One line about what a receipt proves: "imvu.create by nx1…, allowed at T; in the signed checkpoint of tree size S". */
export function describeReceipt(v: VerifiedReceipt): string {
  const e = v.receipt.entry;
  const cmd = e.command?.command;
  return `${cmd?.type ?? '?'} signed by ${cmd?.actor ?? '?'}, ${e.decision?.allowed ? 'allowed' : 'denied'} at ${e.at}; the platform's signed checkpoint of tree size ${v.checkpoint.size} includes it`;
}

export interface ReceiptCheck {
  file: string;
  index: number | null;
  ok: boolean;
  /** The tree size of the receipt's checkpoint. */
  checkpointSize: number | null;
  problem?: string;
  /** What the receipt proves (for a failure: the evidence). */
  proves?: string;
}

/**
 * Checks that every kept receipt of `platformId` is still in the log whose current signed
 * checkpoint is `current` (already verified by the caller): the receipt's checkpoint is a prefix of
 * the current tree (consistency proof) and its leaf is still at its index (inclusion proof), both
 * fetched from the daemon and verified here.
 */
export async function checkReceipts(client: Client, home: Home, platformId: string, current: SeenCheckpoint): Promise<ReceiptCheck[]> {
  const consistent = new Map<number, string | undefined>();
  const out: ReceiptCheck[] = [];
  // A refusal to give a proof is an answer too: it counts against the receipt.
  const ask = async <T>(path: string, query: Record<string, number>): Promise<T | string> => {
    try {
      return await client.get<T>(path, query);
    } catch (err) {
      if (err instanceof ApiError) return `the daemon refused the proof (${err.message})`;
      throw err;
    }
  };
  for (const k of keptReceipts(home, platformId)) {
    if (!k.verified) {
      out.push({ file: k.file, index: k.index ?? null, ok: false, checkpointSize: null, problem: `the kept receipt does not verify on its own: ${k.problem}` });
      continue;
    }
    const v = k.verified;
    const { index } = v.receipt;
    const S = v.checkpoint.size;
    const N = current.size;
    const problems: string[] = [];
    if (N < S) problems.push(`the log now has ${N} entries, fewer than the ${S} of the receipt's checkpoint: entries were removed${index >= N ? ', this one among them' : ''}`);
    else if (N === S) {
      if (!current.rootHash.equals(v.checkpoint.rootHash)) problems.push(`the platform's current checkpoint has the same size (${N}) but another root: the log was rewritten`);
    } else {
      if (!consistent.has(S)) {
        const res = await ask<{ proof?: unknown }>('/v1/ledger/proof/consistency', { from: S, to: N });
        let why: string | undefined;
        if (typeof res === 'string') why = res;
        else {
          const proof = hexHashes(res.proof);
          if (!proof) why = 'the consistency proof the daemon gave is malformed';
          else if (!verifyConsistency(S, N, v.checkpoint.rootHash, current.rootHash, proof))
            why = `the current tree (size ${N}) does not extend the receipt's checkpoint (size ${S}): the log was rewritten`;
        }
        consistent.set(S, why);
      }
      const why = consistent.get(S);
      if (why) problems.push(why);
    }
    if (index < N) {
      const res = await ask<{ proof?: unknown; leafHash?: unknown }>('/v1/ledger/proof/inclusion', { index, size: N });
      if (typeof res === 'string') problems.push(res);
      else {
        const proof = hexHashes(res.proof);
        if (!proof || !verifyInclusion(v.leaf, index, N, proof, current.rootHash)) {
          const served = typeof res.leafHash === 'string' && HEX32.test(res.leafHash) ? res.leafHash : undefined;
          problems.push(
            served && served !== v.receipt.leafHash
              ? `ledger entry ${index} is no longer the entry the receipt proves (the log now holds leaf ${served.slice(0, 16)}…, the receipt ${v.receipt.leafHash.slice(0, 16)}…)`
              : `the entry the receipt proves is not at index ${index} of the current tree (size ${N})`,
          );
        }
      }
    }
    const proves = describeReceipt(v);
    out.push(problems.length ? { file: k.file, index, ok: false, checkpointSize: S, problem: problems.join('; '), proves } : { file: k.file, index, ok: true, checkpointSize: S, proves });
  }
  return out;
}

/** "ledger entry 7 (what it proves): why; the receipt is kept as evidence in FILE". */
export function receiptFailure(c: ReceiptCheck): string {
  const name = c.index !== null ? `ledger entry ${c.index}` : 'a kept receipt';
  return `${name}${c.proves ? ` (receipt: ${c.proves})` : ''}: ${c.problem}; the receipt is kept as evidence in ${c.file}`;
}

/** The witness cosignatures a receipt's checkpoint carries. */
export interface ReceiptCosignatures {
  /** Every signature line that is not the platform's. */
  lines: string[];
  /** Names (in the creator's policy) of the witnesses whose cosignature verifies. */
  verified: string[];
  /** Lines no witness of the policy accounts for (with no policy: all of them, unverified). */
  unverified: number;
}

/** The size of a cosignature/v1 signature after its key ID: timestamp (8) and Ed25519 signature (64). */
const COSIGNATURE_PAYLOAD = 8 + 64;

function platformLine(platform: ReceiptPlatform): (s: { name: string; keyId: Buffer }) => boolean {
  const id = noteKeyId(platform.origin, Buffer.from(platform.publicKey, 'base64'));
  return (s) => s.name === platform.origin && s.keyId.equals(id);
}

/** Counts the cosignatures on a receipt's checkpoint, checked against the creator's witness policy. */
export function receiptCosignatures(r: StoredReceipt, policy: WitnessPolicy): ReceiptCosignatures {
  let sigs;
  try {
    sigs = splitNote(r.checkpoint).sigs;
  } catch {
    return { lines: [], verified: [], unverified: 0 };
  }
  const isPlatform = platformLine(r.platform);
  const lines = sigs.filter((s) => !isPlatform(s)).map((s) => s.line);
  const verified = policy.witnesses.filter((w) => lines.some((l) => verifyCosignature(r.checkpoint, l, w.vkey).valid)).map((w) => w.name);
  const accounted = lines.filter((l) => policy.witnesses.some((w) => verifyCosignature(r.checkpoint, l, w.vkey).valid)).length;
  return { lines, verified, unverified: lines.length - accounted };
}

/**
 * Is a receipt cosigned as the creator's policy asks (then it is not upgraded again)? With witnesses
 * listed: by at least `require` of them (at least one when none is required). With no witness
 * listed: by anybody (its cosignatures cannot be checked here).
 */
function cosignedEnough(c: ReceiptCosignatures, policy: WitnessPolicy): boolean {
  return policy.witnesses.length ? c.verified.length >= Math.max(1, policy.require) : c.lines.length > 0;
}

export interface ReceiptUpgrade {
  file: string;
  index: number;
  /** Tree size of the receipt's checkpoint. */
  size: number;
  /** Cosignature lines added to the kept receipt (0: nothing new, or `skipped` says why not). */
  added: number;
  /** The receipt's cosignatures after the upgrade. */
  cosignatures: ReceiptCosignatures;
  /** Why the platform's copy of the checkpoint could not be used. */
  skipped?: string;
}

/**
 * Upgrades the kept receipts of `platformId` whose checkpoint is not yet cosigned as the creator's
 * policy asks: one GET /v1/ledger/checkpoints/:size per distinct checkpoint size among them. The
 * checkpoint served must be the receipt's own (same checkpoint text, same platform signature line);
 * the cosignature lines kept from it are those that verify against a witness of the policy (with no
 * witness listed: every well-formed cosignature/v1 line, which nobody has verified). The receipt
 * file is rewritten atomically (write, fsync, rename, fsync the directory). Nothing here fails a
 * command: a platform that does not serve the checkpoint just leaves the receipt as it was.
 */
export async function upgradeReceipts(client: Pick<Client, 'getText'>, home: Home, platformId: string, policy: WitnessPolicy): Promise<ReceiptUpgrade[]> {
  const pending = new Map<number, { file: string; receipt: StoredReceipt; before: ReceiptCosignatures }[]>();
  for (const k of keptReceipts(home, platformId)) {
    if (!k.verified) continue;
    const before = receiptCosignatures(k.verified.receipt, policy);
    if (cosignedEnough(before, policy)) continue;
    const size = k.verified.checkpoint.size;
    pending.set(size, [...(pending.get(size) ?? []), { file: k.file, receipt: k.verified.receipt, before }]);
  }
  const out: ReceiptUpgrade[] = [];
  let unreachable: string | undefined;
  for (const [size, group] of [...pending].sort((a, b) => a[0] - b[0])) {
    let served: string | undefined;
    let skipped = unreachable;
    if (!skipped) {
      try {
        served = await client.getText(`/v1/ledger/checkpoints/${size}`);
      } catch (err) {
        skipped = `the daemon did not serve its checkpoint of tree size ${size}: ${(err as Error).message}`;
        // Not an answer at all (no connection): the other sizes are not asked for either.
        if (!(err instanceof ApiError)) unreachable = skipped;
      }
    }
    for (const g of group) {
      const base = { file: g.file, index: g.receipt.index, size };
      const why = skipped ?? (served === undefined ? 'no answer' : sameCheckpoint(g.receipt, served));
      if (why !== undefined) {
        out.push({ ...base, added: 0, cosignatures: g.before, skipped: why });
        continue;
      }
      const have = new Set(splitNote(g.receipt.checkpoint).sigs.map((s) => s.line));
      const isPlatform = platformLine(g.receipt.platform);
      const fresh = splitNote(served!)
        .sigs.filter((s) => !isPlatform(s) && !have.has(s.line))
        .filter((s) => (policy.witnesses.length ? policy.witnesses.some((w) => verifyCosignature(g.receipt.checkpoint, s.line, w.vkey).valid) : s.sig.length === COSIGNATURE_PAYLOAD))
        .map((s) => s.line)
        .slice(0, Math.max(0, MAX_SIGNATURES - have.size));
      if (!fresh.length) {
        out.push({ ...base, added: 0, cosignatures: g.before });
        continue;
      }
      const upgraded: StoredReceipt = { ...g.receipt, checkpoint: g.receipt.checkpoint + fresh.map((l) => `${l}\n`).join('') };
      // The upgraded file must still check on its own before it replaces the old one.
      const check = checkStoredReceipt(JSON.parse(JSON.stringify(upgraded)));
      if (typeof check === 'string') {
        out.push({ ...base, added: 0, cosignatures: g.before, skipped: `the upgraded receipt would not verify: ${check}` });
        continue;
      }
      writeFileAtomic(g.file, JSON.stringify(upgraded, null, 2) + '\n', 0o600);
      out.push({ ...base, added: fresh.length, cosignatures: receiptCosignatures(upgraded, policy) });
    }
  }
  return out;
}

/** Undefined when `served` is the receipt's checkpoint (same text, same platform signature); otherwise why not. */
function sameCheckpoint(r: StoredReceipt, served: string): string | undefined {
  let mine, theirs;
  try {
    mine = splitNote(r.checkpoint);
    theirs = splitNote(served);
  } catch (err) {
    return `the checkpoint the daemon serves at that tree size is not a signed note: ${(err as Error).message}`;
  }
  const isPlatform = platformLine(r.platform);
  const sig = (sigs: { name: string; keyId: Buffer; line: string }[]) => sigs.find(isPlatform)?.line;
  if (mine.text !== theirs.text) return 'the daemon serves another checkpoint text at that tree size';
  if (sig(mine.sigs) === undefined || sig(mine.sigs) !== sig(theirs.sigs)) return "the checkpoint the daemon serves at that tree size does not carry the receipt's platform signature";
  return undefined;
}
