// Every outbound message leaves signed (issue 11 item 3): the attribution header naming the
// sending identity and IMVU is set by us (any copy the sender wrote is dropped first, so it cannot
// be forged), Date and Message-ID are added when missing (RFC 6409 8.2, 8.3), and a DKIM
// signature (mailauth's signer, rsa-sha256, relaxed/relaxed) under the IMVU's active selector
// covers the attribution header with From, To, Subject, Date and Message-ID. The signature is made
// once, at enqueue: a retried message goes out byte for byte as first signed, which is why a
// retired selector stays published for days (src/core/policy/gates/platform-powers.ts).
import { randomBytes } from 'node:crypto';
import type { DKIMSignOptions } from 'mailauth';
import type { SqlReader } from '../../core/store/index.ts';
import { activeKey, type SigningKey } from './keys.ts';

export const ATTRIBUTION_HEADER = 'X-Nexus-Attribution';

/**
 * The signed header fields: every occurrence of each is covered. The sender's copies of the
 * attribution header are removed before signing, so exactly one, ours, is covered. Not over-signed
 * (mailauth 4's signer lists each present field once): a relay could add a second attribution
 * header above ours without breaking the signature, so a reader trusts only the bottom-most one,
 * the one verifiers check.
 */
export const SIGNED_HEADERS = [
  'from',
  'sender',
  'reply-to',
  'to',
  'cc',
  'subject',
  'date',
  'message-id',
  'in-reply-to',
  'references',
  'mime-version',
  'content-type',
  'content-transfer-encoding',
  'x-nexus-attribution',
];

const MAX_HEADER_BYTES = 256 * 1024;

interface Split {
  fields: string[];
  body: string;
}

/** Header fields (each with its folded lines, CRLF) and the body; every line ending made CRLF. */
export function splitMessage(raw: Buffer): Split {
  const text = raw.toString('latin1').replace(/\r?\n/g, '\r\n');
  const end = text.indexOf('\r\n\r\n');
  let headers: string;
  let body: string;
  if (end < 0) {
    headers = text.replace(/\r\n$/, '');
    body = '';
  } else {
    headers = text.slice(0, end);
    body = text.slice(end + 4);
  }
  if (headers.length > MAX_HEADER_BYTES) throw new Error('message header section too large');
  const fields: string[] = [];
  for (const line of headers.split('\r\n')) {
    if (line === '') continue;
    if (/^[ \t]/.test(line) && fields.length > 0) fields[fields.length - 1] += `\r\n${line}`;
    else fields.push(line);
  }
  return { fields, body };
}

function nameOf(field: string): string {
  const i = field.indexOf(':');
  return (i < 0 ? field : field.slice(0, i)).trim().toLowerCase();
}

/** The attribution header's value: who sent it, from which IMVU. */
export function attributionValue(identity: string, imvu: string): string {
  if (!/^[A-Za-z0-9._-]{1,80}$/.test(identity) || !/^IMVU-\d{3,9}$/.test(imvu)) throw new Error('bad attribution');
  return `identity=${identity}; imvu=${imvu}`;
}

/** The message with our attribution header (and Date / Message-ID if missing), not yet signed. */
export function prepare(raw: Buffer, identity: string, imvu: string, domain: string, now = new Date()): Buffer {
  const { fields, body } = splitMessage(raw);
  const kept = fields.filter((f) => nameOf(f) !== ATTRIBUTION_HEADER.toLowerCase());
  const names = new Set(kept.map(nameOf));
  const added = [`${ATTRIBUTION_HEADER}: ${attributionValue(identity, imvu)}`];
  if (!names.has('date')) added.push(`Date: ${now.toUTCString().replace('GMT', '+0000')}`);
  if (!names.has('message-id')) added.push(`Message-ID: <${now.getTime().toString(36)}.${randomBytes(8).toString('hex')}@${domain}>`);
  return Buffer.from([...added, ...kept].join('\r\n') + '\r\n\r\n' + body, 'latin1');
}

/**
 * mailauth's signer, loaded with the first message signed rather than when the daemon starts (the
 * mail queue is always started; mailauth's modules cost a few hundred ms of the start-up, bench/RESULTS.md,
 * scale, "Daemon start (after)").
 */
let signModule: Promise<typeof import('mailauth/lib/dkim/sign.js')> | undefined;

/** Signs a prepared message with `key`; the DKIM-Signature goes on top. */
export async function signWith(key: SigningKey, message: Buffer, now = new Date()): Promise<Buffer> {
  const pem = key.pem ?? (key.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  // mailauth 4 reads the keys from `signatureData` and the header list as a colon-separated string
  // (an array silently means its default list), whatever its typings say.
  const options = {
    canonicalization: 'relaxed/relaxed',
    algorithm: 'rsa-sha256',
    signTime: now,
    headerList: SIGNED_HEADERS.join(':'),
    signatureData: [{ signingDomain: key.domain, selector: key.selector, privateKey: pem }],
  };
  const { dkimSign } = await (signModule ??= import('mailauth/lib/dkim/sign.js'));
  const result = await dkimSign(message, options as unknown as DKIMSignOptions);
  if (result.errors.length > 0 || !/^DKIM-Signature:/i.test(result.signatures)) {
    const e = result.errors[0] as { err?: Error } | undefined;
    throw new Error(`DKIM signing failed: ${e?.err?.message ?? 'no signature'}`);
  }
  return Buffer.concat([Buffer.from(result.signatures, 'latin1'), message]);
}

/** The queue's signer for a data directory: the IMVU's active key from the `dkim_keys` projection. */
export function dkimSigner(dataDir: string, db: SqlReader): (input: { imvu: string; identity: string; raw: Buffer }) => Promise<Buffer> {
  return async ({ imvu, identity, raw }) => {
    const key = await activeKey(dataDir, db, imvu);
    return signWith(key, prepare(raw, identity, imvu, key.domain));
  };
}
