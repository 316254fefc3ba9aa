// Key rotation proof: the new key signs that it takes over an identity from the old one, so a
// rotation needs both keys (the command itself is signed by the old, current key; this proof by
// the new one). The bytes name the platform (log origin), the identity and both keys, so a proof
// made for one platform, identity or predecessor key proves nothing anywhere else.
import { sign, verify, type KeyObject } from 'node:crypto';
import { canonicalBytes } from '../ledger/canonical.ts';
import { cachedPublicKey } from './keys.ts';
import { isCanonicalSignature } from './envelope.ts';

const ROTATION_CONTEXT = Buffer.from('nexus-identity-rotation-v1\n', 'utf8');

export interface RotationClaim {
  /** The platform's log origin. */
  origin: string;
  /** The identity id, which stays the same across rotations. */
  identity: string;
  /** The current (old) public key, base64. */
  from: string;
  /** The new public key, base64. */
  to: string;
}

export function rotationProofBytes(c: RotationClaim): Buffer {
  return Buffer.concat([ROTATION_CONTEXT, canonicalBytes({ from: c.from, identity: c.identity, origin: c.origin, to: c.to })]);
}

/** The new key's signature over the claim (standard base64, 64 bytes). */
export function signRotationProof(newKey: KeyObject, c: RotationClaim): string {
  return sign(null, rotationProofBytes(c), newKey).toString('base64');
}

export function verifyRotationProof(c: RotationClaim, proof: unknown): boolean {
  try {
    if (!isCanonicalSignature(proof)) return false;
    return verify(null, rotationProofBytes(c), cachedPublicKey(c.to), Buffer.from(proof, 'base64'));
  } catch {
    return false;
  }
}
