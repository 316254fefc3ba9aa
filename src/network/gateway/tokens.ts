// Route tokens: short-lived ES256 JWTs signed by the gateway key, audience = the IMVU, its roles in
// `roles` (space-separated, so HAProxy can read them word by word). HAProxy verifies them itself.
import { sign, verify, createPublicKey, type KeyObject } from 'node:crypto';

export const MAX_TOKEN_TTL_S = 3600;
export const DEFAULT_TOKEN_TTL_S = 600;

export interface TokenClaims {
  /** The IMVU. */
  aud: string;
  /** The identity id. */
  sub: string;
  roles: string;
  iat: number;
  exp: number;
}

const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');

export function issueToken(key: KeyObject, c: { imvu: string; identity: string; roles: string[]; ttlS?: number; now?: number }): string {
  const ttl = c.ttlS ?? DEFAULT_TOKEN_TTL_S;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_S) throw new Error(`token ttl must be 1-${MAX_TOKEN_TTL_S} seconds`);
  const iat = Math.floor((c.now ?? Date.now()) / 1000);
  const claims: TokenClaims = { aud: c.imvu, sub: c.identity, roles: c.roles.join(' '), iat, exp: iat + ttl };
  const input = `${b64({ alg: 'ES256', typ: 'JWT' })}.${b64(claims)}`;
  const sig = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  return `${input}.${sig.toString('base64url')}`;
}

/** Checks a token as HAProxy does (tests and tools; the gateway itself never needs this). */
export function verifyToken(key: KeyObject, token: string): TokenClaims | undefined {
  const [h, p, s] = token.split('.');
  if (!h || !p || !s) return undefined;
  const ok = verify('sha256', Buffer.from(`${h}.${p}`), { key: createPublicKey(key), dsaEncoding: 'ieee-p1363' }, Buffer.from(s, 'base64url'));
  return ok ? (JSON.parse(Buffer.from(p, 'base64url').toString()) as TokenClaims) : undefined;
}
