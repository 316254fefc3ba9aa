import { sign, verify, type KeyObject } from 'node:crypto';
import type { RrsigData } from 'dns-packet';
import { publicKeyFromRaw, type ZoneKey } from './keys.ts';
import { canonicalRRset, labelCount, labelsOf, nameWire, typeCode } from './wire.ts';

// RRSIG generation and verification (RFC 4034 3.1.8.1, RFC 6605 section 4): the signature covers
// the RRSIG RDATA without its signature field (signer's name in canonical form) followed by the
// RRset in canonical form and order, with the original TTL. ECDSA P-256 with SHA-256; the
// signature is r || s, 32 octets each (node:crypto's 'ieee-p1363' encoding).

export interface Validity {
  /** Seconds since the epoch (serial number arithmetic, RFC 4034 3.1.5). */
  inception: number;
  expiration: number;
}

export type RrsigFields = Omit<RrsigData, 'signature'>;

/** RRSIG RDATA without the signature: the first part of the signed data. */
export function rrsigPrefix(f: RrsigFields): Buffer {
  const head = Buffer.alloc(18);
  head.writeUInt16BE(typeCode(f.typeCovered), 0);
  head.writeUInt8(f.algorithm, 2);
  head.writeUInt8(f.labels, 3);
  head.writeUInt32BE(f.originalTTL >>> 0, 4);
  head.writeUInt32BE(f.expiration >>> 0, 8);
  head.writeUInt32BE(f.inception >>> 0, 12);
  head.writeUInt16BE(f.keyTag, 16);
  return Buffer.concat([head, nameWire(f.signersName)]);
}

/**
 * The owner name a signature was made over (RFC 4035 5.3.2): the RR's own name, or for an RRSIG
 * whose Labels field is smaller (a wildcard expansion) `*.` plus that many rightmost labels.
 */
export function signedOwner(owner: string, labels: number): string {
  const all = labelsOf(owner);
  if (labels >= labelCount(owner)) return owner;
  return ['*', ...all.slice(all.length - labels)].join('.');
}

export function signedData(f: RrsigFields, owner: string, data: readonly unknown[]): Buffer {
  return Buffer.concat([rrsigPrefix(f), canonicalRRset(signedOwner(owner, f.labels), f.typeCovered, f.originalTTL, data)]);
}

/** The RRSIG fields before the signature, for an RRset of `owner` (absolute) and `type` signed by `key`. */
export function rrsigFields(key: Pick<ZoneKey, 'zone' | 'algorithm' | 'keyTag'>, owner: string, type: string, ttl: number, validity: Validity): RrsigFields {
  return {
    typeCovered: type,
    algorithm: key.algorithm,
    labels: labelCount(owner),
    originalTTL: ttl >>> 0,
    expiration: validity.expiration >>> 0,
    inception: validity.inception >>> 0,
    keyTag: key.keyTag,
    signersName: key.zone,
  };
}

/** Signs one RRset (`owner` absolute, without trailing dot; `ttl` is its original TTL). */
export function signRRset(key: Pick<ZoneKey, 'zone' | 'algorithm' | 'keyTag' | 'privateKey'>, owner: string, type: string, ttl: number, data: readonly unknown[], validity: Validity): RrsigData {
  const fields = rrsigFields(key, owner, type, ttl, validity);
  return { ...fields, signature: signBytes(key, signedData(fields, owner, data)) };
}

/** The signature field over the signed data (RFC 6605 4: r || s for ECDSA P-256 with SHA-256). */
export function signBytes(key: Pick<ZoneKey, 'privateKey'>, data: Buffer): Buffer {
  return sign('sha256', data, { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
}

/** Checks an RRSIG over an RRset with a DNSKEY public key field (for tests and self-checks). */
export function verifyRRset(publicKey: Buffer | KeyObject, rrsig: RrsigData, owner: string, data: readonly unknown[]): boolean {
  const key = Buffer.isBuffer(publicKey) ? publicKeyFromRaw(publicKey) : publicKey;
  return verify('sha256', signedData(rrsig, owner, data), { key, dsaEncoding: 'ieee-p1363' }, rrsig.signature);
}

/** A validity window around `now` (milliseconds): from `before` seconds ago to `after` seconds ahead. */
export function validityAround(nowMs: number, before: number, after: number): Validity {
  const now = Math.floor(nowMs / 1000);
  return { inception: now - before, expiration: now + after };
}
