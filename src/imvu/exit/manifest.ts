// MANIFEST.json of an exit archive: every file's SHA-256 and size, which parts are complete and
// which are missing (and why), the ledger size the history is proved against, all signed by the
// platform key. One canonical form (RFC 8785 JSON) is what is signed and what is checked.
import { createHash, sign, verify, type KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { canonicalJson } from '../../core/ledger/canonical.ts';
import { publicKeyFromRaw } from '../../core/identity/keys.ts';
import type { IncompleteZone } from './incomplete.ts';

export const MANIFEST_FILE = 'MANIFEST.json';
export const EXIT_FORMAT = 'nexus-exit/1';
/** The IMVU's served state, for a re-import (src/imvu/import/). */
export const RESTORE_FILE = 'IMVU.json';

/** The archive's parts, in the spec's order. */
export const PART_NAMES = ['domains', 'mail', 'compute', 'network', 'ledger', 'secrets'] as const;
export type PartName = (typeof PART_NAMES)[number];

export interface PartStatus {
  status: 'complete' | 'missing';
  /** What it holds (complete) or why it is missing. */
  detail: string;
}

export interface ManifestFile {
  path: string;
  sha256: string;
  size: number;
}

export interface Manifest {
  format: typeof EXIT_FORMAT;
  imvu: string;
  owner: string;
  origin: string;
  /** The platform's Ed25519 public key, base64: the key of the checkpoint and of this signature. */
  platformKey: string;
  /** The ledger size every inclusion proof in ledger/ is checked against. */
  treeSize: number;
  createdAt: string;
  parts: Record<PartName, PartStatus>;
  /**
   * Zones whose declared parts were not all recorded when the history was cut (src/imvu/exit/incomplete.ts):
   * never served here, so not exported as zones. Absent in archives made before it was listed.
   */
  incomplete?: IncompleteZone[];
  files: ManifestFile[];
}

export interface SignedManifest {
  manifest: Manifest;
  /** Ed25519 over the canonical JSON of `manifest`, base64. */
  signature: string;
}

export function signManifest(m: Manifest, key: KeyObject): SignedManifest {
  return { manifest: m, signature: sign(null, Buffer.from(canonicalJson(m)), key).toString('base64') };
}

export function manifestSignatureValid(s: SignedManifest): boolean {
  try {
    const key = publicKeyFromRaw(Buffer.from(s.manifest.platformKey, 'base64'));
    return verify(null, Buffer.from(canonicalJson(s.manifest)), key, Buffer.from(s.signature, 'base64'));
  } catch {
    return false;
  }
}

export async function hashFile(path: string): Promise<{ sha256: string; size: number }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
    h.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: h.digest('hex'), size };
}
