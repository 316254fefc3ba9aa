// DNSKEY RDATA and its key tag: pure functions of the published public key, derived wherever
// they are needed (signer, DS, transfers) rather than stored. No imports on purpose.

/** ECDSA Curve P-256 with SHA-256 (RFC 6605). The only algorithm this platform signs with. */
export const ALGORITHM_ECDSAP256SHA256 = 13;
/** DNSKEY flags of a combined signing key: Zone Key (bit 7) + Secure Entry Point (bit 15) (RFC 4034 2.1.1). */
export const CSK_FLAGS = 257;
/** DNSKEY protocol field, always 3 (RFC 4034 2.1.2). */
export const DNSKEY_PROTOCOL = 3;

/** DNSKEY RDATA: flags (2 octets), protocol 3, algorithm, public key (RFC 4034 2.1). */
export function dnskeyRdata(flags: number, algorithm: number, publicKey: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16BE(flags & 0xffff, 0);
  head.writeUInt8(DNSKEY_PROTOCOL, 2);
  head.writeUInt8(algorithm & 0xff, 3);
  return Buffer.concat([head, publicKey]);
}

/** The key tag of a DNSKEY RDATA (RFC 4034 appendix B; algorithm 1 is not used here). */
export function keyTag(rdata: Buffer): number {
  let ac = 0;
  for (let i = 0; i < rdata.length; i++) ac += i & 1 ? rdata[i]! : rdata[i]! << 8;
  ac += (ac >>> 16) & 0xffff;
  return ac & 0xffff;
}
