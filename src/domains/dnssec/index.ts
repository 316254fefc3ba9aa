export { ALGORITHM_ECDSAP256SHA256, CSK_FLAGS, dnskeyRdata, keyTag } from './keytag.ts';
export {
  DIGEST_SHA256,
  DNSSEC_KEY_DIR,
  DnssecKeyring,
  dnssecKeyPath,
  dsDigest,
  generateZoneKey,
  publicKeyFromRaw,
  rawPublicKey,
  readPrivateKey,
  signingKeyOf,
  zoneKeyOf,
  zoneKeysOf,
  type SigningKey,
  type ZoneKey,
  type ZoneKeys,
} from './keys.ts';
export { DNSKEY_TTL, OnlineSigner, onlineSigner, type OnlineSignerOptions, type SecureQuery } from './online.ts';
export { compileZone, signedZoneRecords, signedZoneText, signZone, type SignedZone, type SignedZoneOptions } from './signed-zone.ts';
export { dsView, keyViews, platformZoneDsView, type DsView, type KeyView } from './ds.ts';
export { signRRset, verifyRRset, validityAround, type Validity } from './sign.ts';
export { canonicalRRset, canonicalRdata, compareNames, labelCount, nameWire } from './wire.ts';
export { rrText, rdataText } from './presentation.ts';
export { advanceRollovers, startRollover, type RolloverPlatform } from './rollover.ts';
