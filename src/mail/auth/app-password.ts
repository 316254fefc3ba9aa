// App passwords for submission and IMAP. The CLI hashes the password (scrypt, a fresh salt, the
// cost parameters written into the hash) and signs `mail.password.set` with the hash only, so the
// password never reaches the ledger or the daemon's disk. The servers verify against the
// projection `mail_passwords`; the identity the password logs in as is the one that set it.
import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { parseAppPasswordHash, SCRYPT_BOUNDS } from '../../core/policy/commands.ts';
import type { SqlReader } from '../../core/store/index.ts';

/** 2^15 x 8: 32 MiB and tens of milliseconds per attempt, within SCRYPT_BOUNDS. */
export const DEFAULT_SCRYPT = { N: 2 ** 15, r: 8, p: 1 } as const;
const MAX_PASSWORD_BYTES = 1024;

function scrypt(password: Buffer, salt: Buffer, keylen: number, o: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scryptCb(password, salt, keylen, o, (err, key) => (err ? reject(err) : resolve(key))));
}

const maxmem = (N: number, r: number) => 128 * N * r + 1024 * 1024;

/** scrypt$N$r$p$salt$key (base64url) of `password`, with a fresh 16-byte salt. */
export async function hashAppPassword(password: string, params: { N: number; r: number; p: number } = DEFAULT_SCRYPT): Promise<string> {
  const pw = Buffer.from(password, 'utf8');
  if (pw.length === 0 || pw.length > MAX_PASSWORD_BYTES) throw new Error(`an app password is 1 to ${MAX_PASSWORD_BYTES} bytes`);
  const salt = randomBytes(16);
  const key = await scrypt(pw, salt, 32, { N: params.N, r: params.r, p: params.p, maxmem: maxmem(params.N, params.r) });
  const hash = `scrypt$${params.N}$${params.r}$${params.p}$${salt.toString('base64url')}$${key.toString('base64url')}`;
  const check = parseAppPasswordHash(hash);
  if (typeof check === 'string') throw new Error(check);
  return hash;
}

/** Whether `password` matches `hash` (constant-time compare of the derived keys). */
export async function checkAppPassword(hash: string, password: string): Promise<boolean> {
  const h = parseAppPasswordHash(hash);
  if (typeof h === 'string') return false;
  const pw = Buffer.from(password, 'utf8');
  if (pw.length > MAX_PASSWORD_BYTES) return false;
  const key = await scrypt(pw, h.salt, h.key.length, { N: h.N, r: h.r, p: h.p, maxmem: maxmem(h.N, h.r) });
  return timingSafeEqual(key, h.key);
}

export interface MailLogin {
  imvu: string;
  address: string;
  /** The identity that set the password: who the session acts as. */
  identity: string;
}

// An unknown address costs as much as a known one, so timing does not say which mailboxes exist.
let decoy: Promise<string> | undefined;

/**
 * The login of `address` with `password`, or null. Null too when the identity that set the
 * password has since been revoked (its key retired as 'revoked') or the IMVU has exited.
 */
export async function verifyAppPassword(store: SqlReader, address: string, password: string): Promise<MailLogin | null> {
  const a = address.trim().toLowerCase();
  const row = a.length <= 320 ? await store.get<{ imvu: string; identity: string; hash: string }>('SELECT imvu, identity, hash FROM mail_passwords WHERE address = ?', [a]) : undefined;
  if (!row) {
    await checkAppPassword(await (decoy ??= hashAppPassword(randomBytes(12).toString('hex'))), password);
    return null;
  }
  if (!(await checkAppPassword(row.hash, password))) return null;
  const revoked = await store.get("SELECT 1 AS x FROM retired_keys r JOIN identities i ON i.id = r.identity AND i.public_key = r.public_key WHERE r.identity = ? AND r.why = 'revoked'", [row.identity]);
  if (revoked) return null;
  const imvu = await store.get<{ status: string }>('SELECT status FROM imvus WHERE id = ?', [row.imvu]);
  if (!imvu || imvu.status === 'exited') return null;
  return { imvu: row.imvu, address: a, identity: row.identity };
}

export { SCRYPT_BOUNDS };
