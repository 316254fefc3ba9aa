// Consent pseudonyms: a subject records consent with a key derived for one IMVU of one platform, so
// the ledger links the consent to that pseudonym, never to the subject's own identity, and two
// IMVUs see two unrelated pseudonyms. Only the holder of the subject's key can derive (and so sign
// as, and look up) its pseudonym:
//
//   seed   = HMAC-SHA256(key = the subject's Ed25519 private seed,
//                        msg = "nexus-consent-pseudonym-v1\n" || origin || "\n" || imvu)
//   key    = the Ed25519 key with that seed; id = its self-certifying identity id
//   name   = "c-" || the 24 characters of the id after "nx1"
import { createHmac, createPrivateKey, type KeyObject } from 'node:crypto';
import { identityIdFromPublicKey, publicKeyRaw } from '../core/identity/keys.ts';

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

export interface Pseudonym {
  name: string;
  id: string;
  key: KeyObject;
  /** base64 of the raw public key, as identity.register takes it. */
  publicKey: string;
}

export function consentPseudonym(subjectKey: KeyObject, origin: string, imvu: string): Pseudonym {
  const seed = subjectKey.export({ format: 'der', type: 'pkcs8' }).subarray(-32);
  const derived = createHmac('sha256', seed).update(`nexus-consent-pseudonym-v1\n${origin}\n${imvu}`).digest();
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, derived]), format: 'der', type: 'pkcs8' });
  const raw = publicKeyRaw(key);
  const id = identityIdFromPublicKey(raw);
  return { name: `c-${id.slice(3, 27)}`, id, key, publicKey: raw.toString('base64') };
}
