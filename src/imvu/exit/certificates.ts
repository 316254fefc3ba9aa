// What the platform signs about an exiting IMVU's domains: an ownership certificate (which domains
// the IMVU held, by whom, at which ledger size) and one transfer code per domain that another
// platform's `nexus domain transfer-in` accepts. Both are Ed25519 signatures of the platform key
// over a fixed text, checkable with the platform key in the archive's manifest and checkpoint.
import { sign, verify } from 'node:crypto';
import type { OpenPlatform } from '../../core/platform.ts';
import { publicKeyFromRaw, publicKeyRaw } from '../../core/identity/keys.ts';

export const TRANSFER_CODE_CONTEXT = 'nexus-domain-transfer/1';
export const OWNERSHIP_CONTEXT = 'nexus-domain-ownership/1';

export interface TransferClaim {
  origin: string;
  domain: string;
  imvu: string;
  owner: string;
  treeSize: number;
}

export function transferText(c: TransferClaim): string {
  return `${TRANSFER_CODE_CONTEXT}\n${c.origin}\n${c.domain}\n${c.imvu}\n${c.owner}\n${c.treeSize}\n`;
}

/**
 * A transfer code: base64url of the claim fields and the platform's signature over them, so the
 * receiving platform needs nothing but the code and the first platform's public key.
 */
export function transferCode(p: OpenPlatform, imvu: { id: string; owner: string }, domain: string, treeSize: number): string {
  const claim: TransferClaim = { origin: p.config.origin, domain, imvu: imvu.id, owner: imvu.owner, treeSize };
  const sig = sign(null, Buffer.from(transferText(claim)), p.platformKey);
  return Buffer.from(JSON.stringify({ ...claim, key: publicKeyRaw(p.platformKey).toString('base64'), sig: sig.toString('base64') })).toString('base64url');
}

/** Decodes and checks a transfer code; throws one line on anything malformed or not signed by its key. */
export function openTransferCode(code: string): TransferClaim & { key: string } {
  if (code.length > 4096 || !/^[A-Za-z0-9_-]+$/.test(code)) throw new Error('not a transfer code');
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(Buffer.from(code, 'base64url').toString('utf8')) as Record<string, unknown>;
  } catch {
    throw new Error('not a transfer code');
  }
  const { origin, domain, imvu, owner, treeSize, key, sig } = v;
  if (typeof origin !== 'string' || typeof domain !== 'string' || typeof imvu !== 'string' || typeof owner !== 'string' || typeof treeSize !== 'number' || typeof key !== 'string' || typeof sig !== 'string')
    throw new Error('not a transfer code');
  const claim = { origin, domain, imvu, owner, treeSize };
  let ok = false;
  try {
    ok = verify(null, Buffer.from(transferText(claim)), publicKeyFromRaw(Buffer.from(key, 'base64')), Buffer.from(sig, 'base64'));
  } catch {
    ok = false;
  }
  if (!ok) throw new Error(`the transfer code of ${domain} is not signed by the key it names`);
  return { ...claim, key };
}

export interface OwnershipCertificate {
  statement: { context: string; origin: string; imvu: string; owner: string; domains: string[]; treeSize: number };
  platformKey: string;
  signature: string;
}

export function ownershipText(s: OwnershipCertificate['statement']): string {
  return `${s.context}\n${s.origin}\n${s.imvu}\n${s.owner}\n${s.treeSize}\n${s.domains.join('\n')}\n`;
}

export function ownershipCertificate(p: OpenPlatform, imvu: { id: string; owner: string }, domains: string[], treeSize: number): OwnershipCertificate {
  const statement = { context: OWNERSHIP_CONTEXT, origin: p.config.origin, imvu: imvu.id, owner: imvu.owner, domains, treeSize };
  return {
    statement,
    platformKey: publicKeyRaw(p.platformKey).toString('base64'),
    signature: sign(null, Buffer.from(ownershipText(statement)), p.platformKey).toString('base64'),
  };
}

export function ownershipCertificateValid(c: OwnershipCertificate): boolean {
  try {
    return verify(null, Buffer.from(ownershipText(c.statement)), publicKeyFromRaw(Buffer.from(c.platformKey, 'base64')), Buffer.from(c.signature, 'base64'));
  } catch {
    return false;
  }
}
