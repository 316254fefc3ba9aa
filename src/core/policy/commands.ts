import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { z } from 'zod';
import type { CommandType } from '../types.ts';
import { canonicalJson } from '../ledger/canonical.ts';
import { CapacityBody, MeterRegisterBody } from '../handshake/metering.ts';
import { PeriodCloseBody } from '../handshake/close.ts';
import { computeDeployBody } from '../../compute/blueprint/schema.ts';
import { DEFAULT_PLAN, DOMAIN_RE, IMVU_NAME_RE, JURISDICTIONS, PLAN_FIELDS, RECORD_TYPES, type PlanLimits } from './vocabulary.ts';

export { DEFAULT_PLAN, DOMAIN_RE, JURISDICTIONS, PLAN_FIELDS, RECORD_TYPES, type PlanLimits };

// The body schema of every command type. A body that does not parse is denied (gate 0) and
// still recorded, so a malformed request leaves the same trace as a refused one.


const identityId = z.string().regex(/^nx1[a-z2-7]{32}$/, 'must be an identity id (nx1...)');
const imvuId = z.string().regex(/^IMVU-\d{3,9}$/, 'must be an IMVU id such as IMVU-001');
const publicKey = z.string().regex(/^[A-Za-z0-9+/]{43}=$/, 'must be a base64 Ed25519 public key');
// Schemas validate and never transform: what is signed is what is decided and what is written. A
// name not already in its canonical (lower-case) form is refused, never silently rewritten.
const lowerCase = (s: string) => s === s.toLowerCase();
const canonicalMessage = (what: string) => ({ message: `${what} must be in canonical form: lower case` });
const domain = z.string().max(253).refine(lowerCase, canonicalMessage('a domain name')).regex(DOMAIN_RE, 'must be a domain name such as example.world');
// A record owner: '@', a relative name, or an absolute one ending in a dot; no empty labels.
const recordName = z
  .string()
  .min(1)
  .max(253)
  .refine(lowerCase, canonicalMessage('a record name'))
  .refine((s) => s === '@' || !s.replace(/\.$/, '').split('.').some((l) => l.length === 0), 'must not contain empty labels (such as x..y)');
// A mailbox address: a dot-atom local part (no empty parts, so no leading, trailing or doubled
// dots) at a domain name.
const mailboxAddress = z
  .string()
  .max(320)
  .refine(lowerCase, canonicalMessage('an address'))
  .refine((s) => {
    const at = s.lastIndexOf('@');
    return at > 0 && /^[a-z0-9_+-]+(\.[a-z0-9_+-]+)*$/.test(s.slice(0, at)) && at <= 64 && DOMAIN_RE.test(s.slice(at + 1));
  }, 'must be an address such as info@example.world (no empty labels such as x..y)');
const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be a SHA-256 digest in lower-case hex');
const ageRecipient = z
  .string()
  .max(2048)
  .regex(/^(age1[02-9ac-hj-np-z]{58}|ssh-ed25519 [A-Za-z0-9+/]{68}|ssh-rsa [A-Za-z0-9+/]{300,1400}={0,2})$/, 'must be an age recipient (age1...) or an SSH public key (ssh-ed25519 or ssh-rsa, without a comment)');
/** scrypt$N$r$p$salt$key: the cost parameters travel with the hash, salt 16-64 bytes, key 32-64 bytes. */
export const APP_PASSWORD_HASH = /^scrypt\$\d{1,8}\$\d{1,3}\$\d{1,3}\$[A-Za-z0-9_-]{22,86}\$[A-Za-z0-9_-]{43,86}$/;

/** Bounds on an app password's scrypt cost: weak enough to verify within a login, never a memory bomb (128*N*r <= 64 MiB). */
export const SCRYPT_BOUNDS = { minN: 2 ** 14, maxMem: 64 * 1024 * 1024, maxR: 16, maxP: 4 } as const;

export interface ScryptHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  key: Buffer;
}

/** The parts of an app password hash, or why it is refused (shape, or a cost outside SCRYPT_BOUNDS). */
export function parseAppPasswordHash(hash: string): ScryptHash | string {
  if (!APP_PASSWORD_HASH.test(hash)) return 'not an app password hash (scrypt$N$r$p$salt$key)';
  const [, n, r, p, salt, key] = hash.split('$') as [string, string, string, string, string, string];
  const N = Number(n);
  const R = Number(r);
  const P = Number(p);
  if (N < SCRYPT_BOUNDS.minN || (N & (N - 1)) !== 0) return `scrypt N must be a power of two >= ${SCRYPT_BOUNDS.minN}`;
  if (R < 1 || R > SCRYPT_BOUNDS.maxR || P < 1 || P > SCRYPT_BOUNDS.maxP) return `scrypt r must be 1..${SCRYPT_BOUNDS.maxR} and p 1..${SCRYPT_BOUNDS.maxP}`;
  if (128 * N * R > SCRYPT_BOUNDS.maxMem) return `scrypt memory 128*N*r must be at most ${SCRYPT_BOUNDS.maxMem} bytes`;
  const s = Buffer.from(salt, 'base64url');
  const k = Buffer.from(key, 'base64url');
  if (s.length < 16 || k.length < 32) return 'scrypt salt must be at least 16 bytes and key at least 32';
  return { N, r: R, p: P, salt: s, key: k };
}
const isoTime = z.string().datetime({ offset: false, message: 'must be an ISO-8601 UTC time' });
const digits = z.string().regex(/^\d{1,30}$/, 'must be a whole number of units as decimal digits');
const smallInt = (max: number) => z.number().int().min(1).max(max);

/** One spelling per address, so the ledger records it exactly as it is served: dotted quad, or RFC 5952 IPv6. */
function canonicalAddress(s: string): boolean {
  if (isIP(s) === 4) return /^(0|[1-9]\d{0,2})(\.(0|[1-9]\d{0,2})){3}$/.test(s);
  return isIP(s) === 6 && new URL(`http://[${s}]/`).hostname === `[${s}]`;
}
const nameServer = z
  .object({
    name: z.string().regex(DOMAIN_RE, 'must be a lower-case host name without a final dot, such as ns1.world'),
    address: z.string().max(45).refine(canonicalAddress, 'must be an IPv4 address or an IPv6 address in canonical (RFC 5952) form'),
  })
  .strict();

export const DEFAULT_ENVELOPE = {
  cpu_cores: 2,
  memory_gb: 4,
  storage_gb: 50,
  iops: 100,
  burst_multiplier: 2,
  burst_minutes: 5,
} as const;

export const ENVELOPE_FIELDS = ['cpu_cores', 'memory_gb', 'storage_gb', 'iops'] as const;


const envelopePatch = z
  .object({
    cpu_cores: smallInt(1024).optional(),
    memory_gb: smallInt(65536).optional(),
    storage_gb: smallInt(1_000_000).optional(),
    iops: smallInt(10_000_000).optional(),
  })
  .strict();

// A route of the routing policy (spec: routing-policy.yaml). Strings are bounded to characters
// that can sit in an HAProxy map line unquoted; what a backend may name is gate 8's business
// (src/network/routes/policy.ts), so a refusal there is logged with its reason.
const route = z
  .object({
    path: z
      .string()
      .min(1)
      .max(256)
      .regex(/^\/[A-Za-z0-9._~!$&'()+,;=:@%/-]*\*?$/, 'must start with / and use URL path characters; a trailing * matches any suffix'),
    backend: z.string().min(1).max(128).regex(/^[A-Za-z0-9._:[\]-]+$/, 'must be name[:port]'),
    rate_limit: z.string().regex(/^[1-9]\d{0,8}\/(s|min|h)$/, 'must be N/s, N/min or N/h').optional(),
    require_identity: z.boolean().optional(),
    require_roles: z.array(z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'must be a lower-case role name')).max(16).optional(),
    ip_whitelist: z.array(z.string().min(2).max(43).regex(/^[0-9a-fA-F:.]+(\/\d{1,3})?$/, 'must be an IP address or prefix')).max(64).optional(),
  })
  .strict();

export const TrafficPolicy = z
  .object({
    public: z.array(route).max(256),
    private: z.array(route).max(256),
    restricted: z.array(route).max(256),
  })
  .strict();

/** Bounds of the TXT answer a `domain.verified` records: records kept, characters per record. */
export const MAX_EVIDENCE_RECORDS = 16;
export const MAX_EVIDENCE_TXT = 1024;
const dkimSelector = z.string().regex(/^[a-z0-9-]{1,63}$/);
const dnssecPublicKey = z.string().regex(/^[A-Za-z0-9+/]{86}==$/, 'must be a base64 ECDSA P-256 public key (64 octets)');

const sha256Digest = z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be a digest such as sha256:<64 hex digits>');

/** What a snapshot covers (src/compute/snapshots): its data layer, the blueprint's digest, the envelope it was taken under. */
const snapshotCovers = z
  .object({
    layer: sha256Digest,
    entries: z.number().int().min(0).max(5_000_000),
    data_bytes: digits,
    blueprint: sha256Digest.optional(),
    envelope: z
      .object({
        cpu_cores: smallInt(1024),
        memory_gb: smallInt(65536),
        storage_gb: smallInt(1_000_000),
        iops: smallInt(10_000_000),
      })
      .strict(),
  })
  .strict();

const keyState = z.enum(['active', 'published', 'retired']);
/** A zone as an exit archive's IMVU.json holds it: records (absolute names), serial, DNSSEC public keys. */
const importedRecords = z
  .array(
    z
      .object({
        name: z.string().min(1).max(253).refine(lowerCase, canonicalMessage('a record name')).regex(/^[a-z0-9_*-]+(\.[a-z0-9_*-]+)*$/, 'must be an absolute name without a final dot'),
        type: z.enum(RECORD_TYPES),
        value: z.string().min(1).max(2048),
        ttl: z.number().int().min(0).max(604800),
      })
      .strict(),
  )
  .max(1000);
/** Most parts one import declares (each at most one ledger entry of records). */
export const MAX_IMPORT_PARTS = 1024;

/** What an `imvu.import.part` names its header by: the SHA-256 of the `imvu.import` (or `domain.transfer`) body's canonical JSON. */
export function importHeaderDigest(body: unknown): string {
  return createHash('sha256').update(canonicalJson(body)).digest('hex');
}

/** What a header declares of each part: the SHA-256 of its records' canonical JSON. */
export function importPartDigest(records: unknown): string {
  return createHash('sha256').update(canonicalJson(records)).digest('hex');
}
/** What a header (`imvu.import`, `domain.transfer`) declares of a zone too large for one entry: each part's SHA-256 and record count. */
const declaredParts = z
  .array(z.object({ sha256: sha256Hex, records: z.number().int().min(1).max(1000) }).strict())
  .min(1)
  .max(MAX_IMPORT_PARTS);
const importedZone = z
  .object({
    name: domain,
    serial: z.number().int().min(1).max(0xffffffff),
    records: importedRecords,
    dnssec: z.array(z.object({ algorithm: z.literal(13), flags: z.union([z.literal(257), z.literal(256)]), publicKey: dnssecPublicKey, state: keyState }).strict()).max(4),
  })
  .strict();

export const BODY_SCHEMAS = {
  'platform.genesis': z
    .object({
      name: z.literal('platform'),
      publicKey,
      origin: z.string().min(1).max(255).regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces'),
      suffix: z.string().max(253).refine(lowerCase, canonicalMessage('the suffix')).regex(/^[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63})*$/, 'must be a DNS suffix such as world'),
      edgeAddress: z.ipv4(),
    })
    .strict(),
  'identity.register': z
    .object({
      name: z.string().regex(/^[a-z][a-z0-9-]{1,31}$/, 'must be 2-32 of a-z, 0-9 and -, starting with a letter'),
      role: z.enum(['creator', 'member', 'admin', 'service']),
      publicKey,
    })
    .strict(),
  // A new key for an existing identity (its id stays): signed by the current key, and `proof` is the
  // new key's signature over the rotation (src/core/identity/rotation.ts). The old key stops at once.
  'identity.rotate': z
    .object({
      identity: identityId,
      publicKey,
      proof: z.string().regex(/^[A-Za-z0-9+/]{86}==$/, 'must be a 64-byte Ed25519 signature in standard base64'),
    })
    .strict(),
  // The identity's key signs nothing more (self, or the platform for the admins and services it registered).
  'identity.revoke': z.object({ identity: identityId, reason: z.string().min(1).max(500).optional() }).strict(),
  // A content-addressed snapshot of an IMVU (gate 12): `digest` names its OCI manifest, `size` the
  // bytes of its blobs. Built outside the chokepoint; only this record goes through it.
  'snapshot.create': z.object({ imvu: imvuId, digest: sha256Digest, size: digits, covers: snapshotCovers }).strict(),
  // Restores the IMVU's data volume from one of its recorded snapshots, byte for byte.
  'snapshot.rollback': z.object({ imvu: imvuId, digest: sha256Digest }).strict(),
  'imvu.create': z
    .object({
      name: z.string().regex(IMVU_NAME_RE, 'must be 1-63 of letters, digits, _ and -, starting with a letter'),
      owner: identityId,
      jurisdiction: z.string().min(1).max(32),
      envelope: envelopePatch.optional(),
    })
    .strict(),
  'imvu.scale': envelopePatch.extend({ imvu: imvuId }).strict(),
  'imvu.suspend': z.object({ imvu: imvuId, reason: z.string().min(1).max(500) }).strict(),
  'imvu.resume': z.object({ imvu: imvuId }).strict(),
  // `recipients`: who can open the archive's secrets/secrets.age (age or SSH public keys); without
  // them, the creator's own identity key (as an ssh-ed25519 recipient).
  'imvu.exit': z.object({ imvu: imvuId, recipients: z.array(ageRecipient).min(1).max(8).optional() }).strict(),
  // The exit process (src/imvu/exit/): the platform records the finished archive (its SHA-256 and
  // size, and the ledger size its history was proved against); the creator confirms the download
  // by naming the same digest, or, a week after the archive was ready, the platform ends the exit;
  // data is released after the grace and deleted after the retention (src/imvu/exit/policy.ts).
  'imvu.exit.ready': z
    .object({
      imvu: imvuId,
      archive: z.object({ sha256: sha256Hex, size: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER) }).strict(),
      manifest: sha256Hex,
      treeSize: z.number().int().min(1),
    })
    .strict(),
  'imvu.exit.confirm': z.object({ imvu: imvuId, archive: sha256Hex }).strict(),
  'imvu.exit.expire': z.object({ imvu: imvuId }).strict(),
  'imvu.purge': z.object({ imvu: imvuId, stage: z.enum(['release', 'delete']) }).strict(),
  // A re-import (src/imvu/import/): the creator recreates on this platform, under the same id and
  // identity key, the IMVU that an exit archive of another platform holds. `source` is the signed
  // reference to the first platform's log: its origin and key, the cosigned checkpoint the archive's
  // history is proved against, and the archive's and manifest's digests. The served state comes
  // whole (records of the primary zone with its serial and DNSSEC public keys, DKIM selectors,
  // mailboxes, routes): replay needs nothing but this entry. `id`, not `imvu`: it does not exist yet.
  'imvu.import': z
    .object({
      id: imvuId,
      name: z.string().regex(IMVU_NAME_RE, 'must be 1-63 of letters, digits, _ and -, starting with a letter'),
      owner: identityId,
      jurisdiction: z.string().min(1).max(32),
      envelope: envelopePatch.optional(),
      source: z
        .object({
          origin: z.string().min(1).max(255).regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces'),
          platformKey: publicKey,
          checkpoint: z.string().min(1).max(8192),
          treeSize: z.number().int().min(1),
          archive: sha256Hex,
          manifest: sha256Hex,
        })
        .strict(),
      zone: importedZone,
      dkim: z.array(z.object({ selector: dkimSelector, publicKey: z.string().min(1).max(1024), state: keyState }).strict()).max(4),
      mailboxes: z.array(mailboxAddress).max(256),
      routes: TrafficPolicy,
      // A zone too large for one entry: the records that follow in `imvu.import.part` entries, each
      // part's SHA-256 (of the canonical JSON of its records) and record count declared here. The
      // IMVU stays `importing` (not served) until every declared part is recorded.
      parts: declaredParts.optional(),
    })
    .strict(),
  // One declared part of an imported zone: bound to its header (`imvu.import`, or `domain.transfer`
  // for a transferred domain) by that entry's body digest (SHA-256 of its canonical JSON) and to
  // the declaration by the part's own digest (gate 13).
  'imvu.import.part': z.object({ imvu: imvuId, import: sha256Hex, part: z.number().int().min(0).max(MAX_IMPORT_PARTS - 1), records: importedRecords.min(1) }).strict(),
  // A domain the IMVU held on the platform it left, moved here with the transfer code that platform
  // signed at the exit (src/imvu/exit/certificates.ts): the code must be signed by the key of the
  // IMVU's `imvu.import` source and name this IMVU, its owner and the exit's tree size (gate 3).
  // A platform whose domain transfer codes this platform takes (domain.transfer): its log origin and
  // Ed25519 key, as the operator configured them (platform only, gate 17).
  'platform.peer': z.object({ origin: z.string().min(1).max(255).regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces'), publicKey }).strict(),
  // With `parts`, as for `imvu.import`: the zone's records follow in `imvu.import.part` entries
  // naming this entry's body digest, and the domain is not served until the last one is recorded.
  'domain.transfer': z.object({ imvu: imvuId, domain, code: z.string().min(1).max(4096), zone: importedZone, parts: declaredParts.optional() }).strict(),
  'member.add': z.object({ imvu: imvuId, identity: identityId }).strict(),
  'domain.claim': z.object({ imvu: imvuId, domain }).strict(),
  'dns.record.add': z
    .object({
      zone: domain,
      name: recordName,
      type: z.enum(RECORD_TYPES),
      value: z.string().min(1).max(2048),
      ttl: z.number().int().min(0).max(604800).optional(),
    })
    .strict(),
  'dns.record.remove': z
    .object({
      zone: domain,
      name: recordName,
      type: z.enum(RECORD_TYPES),
      value: z.string().min(1).max(2048).optional(),
    })
    .strict(),
  'mailbox.add': z.object({ imvu: imvuId, address: mailboxAddress }).strict(),
  'mailbox.remove': z.object({ imvu: imvuId, address: mailboxAddress }).strict(),
  // An app password for submission (and IMAP): only its scrypt hash, computed by the client, so
  // the password itself never reaches the ledger. Cost bounds are checked in preconditions.ts.
  'mail.password.set': z.object({ imvu: imvuId, address: mailboxAddress, hash: z.string().regex(APP_PASSWORD_HASH, 'must be scrypt$N$r$p$salt$key (base64url)') }).strict(),
  'mail.password.revoke': z.object({ imvu: imvuId, address: mailboxAddress }).strict(),
  // A request for a new DKIM key (`nexus mail dkim rotate`): the platform publishes the next
  // selector beside the active one (a follow-up) and its scheduler takes the timed steps after.
  'dkim.rotate': z.object({ imvu: imvuId }).strict(),
  // A submission the mail service refused (gate 5): who logged in, as which identity, and the
  // senders they tried; recorded by the `mail` service on the user's behalf.
  'mail.send': z
    .object({
      imvu: imvuId,
      identity: identityId,
      login: mailboxAddress,
      mailFrom: z.string().max(320),
      from: z.array(z.string().max(320)).max(16),
    })
    .strict(),
  // What the IMAP server refused a logged-in account of this IMVU over one interval (mailbox names
  // outside its own tree, gate 16 for mail), counted per address, command and reason and recorded
  // by the `mail` service: one entry per IMVU and interval, which its creator reads in the log.
  'mail.refusals': z
    .object({
      imvu: imvuId,
      from: isoTime,
      to: isoTime,
      counts: z
        .array(
          z
            .object({
              address: mailboxAddress,
              command: z.string().regex(/^[A-Z]{2,16}$/),
              reason: z.string().regex(/^[a-z-]{1,32}$/),
              count: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
            })
            .strict(),
        )
        .min(1)
        .max(300),
    })
    .strict(),
  'route.set': z.object({ imvu: imvuId, policy: TrafficPolicy }).strict(),
  'consent.record': z
    .object({ imvu: imvuId, subject: identityId, purpose: z.string().min(1).max(200), granted: z.boolean() })
    .strict(),
  'usage.report': z
    .object({
      imvu: imvuId,
      service: z.string().min(1).max(64),
      period: z.object({ start: isoTime, end: isoTime }).strict(),
      metrics: z.record(z.string().regex(/^[a-z]+(\.[a-z0-9_]+)+$/), digits),
    })
    .strict(),
  'revenue.record': z
    .object({ imvu: imvuId, amount: digits, currency: z.string().regex(/^[A-Z]{3}$/), memo: z.string().max(500).optional(), at: isoTime.optional() })
    .strict(),
  'pricebook.publish': z.object({}).passthrough(), // validated by the handshake module's own schema
  // `source` and `attempts` mark a notice of refused attempts by one identity, aggregated per interval (gate 17).
  'notify.creator': z
    .object({
      imvu: imvuId,
      recipient: identityId,
      about: z.number().int().min(0),
      gate: z.number().int().min(0).max(17),
      message: z.string().max(1000),
      source: identityId.optional(),
      attempts: z.number().int().min(1).max(1_000_000_000).optional(),
    })
    .strict(),
  'dkim.publish': z.object({ imvu: imvuId, selector: dkimSelector, publicKey: z.string().min(1).max(1024) }).strict(),
  // A zone's DNSSEC key (src/domains/dnssec): ECDSA P-256 (algorithm 13), the DNSKEY public key field
  // (x || y, 64 octets) in base64; flags 257 for the combined signing key, 256 for a zone-signing key.
  'dnssec.publish': z
    .object({
      imvu: imvuId,
      zone: domain,
      algorithm: z.literal(13),
      flags: z.union([z.literal(257), z.literal(256)]),
      publicKey: dnssecPublicKey,
    })
    .strict(),
  // The platform re-signs a signed zone that has not changed for a while: only the serial moves, so
  // secondaries transfer it again with fresh signatures (src/domains/dns-service.ts schedules it).
  'dnssec.resign': z.object({ zone: domain }).strict(),
  // Attempts refused without an entry (not authenticated), counted per source prefix and reason
  // over one interval and recorded by the platform as one entry (src/api/limits.ts).
  'noise.summary': z
    .object({
      from: isoTime,
      to: isoTime,
      counts: z
        .array(
          z
            .object({
              source: z.string().min(1).max(64),
              reason: z.string().regex(/^[a-z-]{1,32}$/),
              count: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
            })
            .strict(),
        )
        .min(1)
        .max(300),
    })
    .strict(),
  // Requests the gateway (HAProxy) refused with 401, 403, 429 or 451, counted per route and reason
  // over one interval from HAProxy's log stream, recorded by the platform as one entry per IMVU:
  // `imvu` indexes it under that IMVU (its creator's view) and every count is of that IMVU's routes.
  'gateway.refusals': z
    .object({
      imvu: imvuId,
      from: isoTime,
      to: isoTime,
      counts: z
        .array(
          z
            .object({
              imvu: imvuId,
              route: z.string().regex(/^IMVU-\d{3,9}\.\d{1,4}$/),
              status: z.union([z.literal(401), z.literal(403), z.literal(429), z.literal(451)]),
              reason: z.string().regex(/^[a-z-]{1,32}$/),
              count: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
            })
            .strict(),
        )
        .min(1)
        .max(1000),
    })
    .strict()
    .refine((b) => b.counts.every((c) => c.imvu === b.imvu && c.route.startsWith(`${b.imvu}.`)), { message: "every count is of the entry's own IMVU and its routes" }),
  // Billing (src/core/handshake): which identity meters which metric, what the platform can serve,
  // and the sealed totals of a period that has ended. Platform only (gate 17), checked by gate 6.
  'meter.register': MeterRegisterBody,
  'capacity.publish': CapacityBody,
  'period.close': PeriodCloseBody,
  // A claimed domain is pending until its claimant proves control (naming.ts, gate 3): the creator
  // (or a member) asks for the proof with `domain.verify`; the platform looks the challenge TXT up
  // and records what it found in `domain.verified`, which replay checks without DNS.
  'domain.verify': z.object({ imvu: imvuId, domain }).strict(),
  'domain.verified': z
    .object({
      imvu: imvuId,
      domain,
      evidence: z
        .object({
          name: z.string().max(253),
          txt: z.array(z.string().max(MAX_EVIDENCE_TXT)).max(MAX_EVIDENCE_RECORDS),
        })
        .strict(),
    })
    .strict(),
  'domain.release': z.object({ imvu: imvuId, domain }).strict(),
  // Timed key rotations (the platform's enumerated powers, gate 17): a key published beside the
  // active one becomes active after the wait, the one it replaces is retired, then removed.
  'dkim.activate': z.object({ imvu: imvuId, selector: dkimSelector }).strict(),
  'dkim.remove': z.object({ imvu: imvuId, selector: dkimSelector }).strict(),
  'dnssec.activate': z.object({ imvu: imvuId, zone: domain, publicKey: dnssecPublicKey }).strict(),
  'dnssec.remove': z.object({ imvu: imvuId, zone: domain, publicKey: dnssecPublicKey }).strict(),
  // The plan limits (platform only); every field is required, so the limits in force are exactly what was signed.
  'plan.publish': z
    .object({
      cpu_cores: smallInt(1024),
      memory_gb: smallInt(65536),
      storage_gb: smallInt(1_000_000),
      iops: smallInt(10_000_000),
      imvus_per_creator: smallInt(100_000),
    })
    .strict(),
  // An approval above the plan, for one IMVU or for every IMVU of one creator (admin or platform, gate 15).
  'quota.approve': z
    .object({
      imvu: imvuId.optional(),
      creator: identityId.optional(),
      envelope: envelopePatch.extend({ imvus: smallInt(100_000).optional() }).strict(),
      reason: z.string().min(1).max(500),
    })
    .strict()
    .refine((b) => (b.imvu === undefined) !== (b.creator === undefined), 'name exactly one of imvu or creator')
    .refine((b) => b.imvu === undefined || b.envelope.imvus === undefined, 'envelope.imvus applies to a creator, not to one IMVU'),
  // The platform's own zone, the DNS suffix (src/domains/registry/): its DNSSEC key (the trust
  // anchor of every IMVU zone below it) and its name servers, which every IMVU zone's NS RRset
  // names. Nothing is normalised: names lower case, addresses canonical, the list sorted.
  'platform.zone': z
    .object({
      zone: z.string().regex(/^[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63})*$/, 'must be the platform DNS suffix in lower case, such as world'),
      nameservers: z
        .array(nameServer)
        .min(1)
        .max(8)
        .refine((a) => a.every((x, i) => i === 0 || `${a[i - 1]!.name} ${a[i - 1]!.address}` < `${x.name} ${x.address}`), 'must be sorted by name, then address, without duplicates'),
      algorithm: z.literal(13),
      flags: z.literal(257),
      publicKey: z.string().regex(/^[A-Za-z0-9+/]{86}==$/, 'must be a base64 ECDSA P-256 public key (64 octets)'),
    })
    .strict(),
  // The platform found its served state (the projections) different from the ledger, rebuilt it
  // from the ledger, and says so (src/core/policy/integrity.ts). Applying it changes no projection;
  // the IMVUs named get a notification each.
  // The compute fabric (src/compute): the blueprint's schema lives beside its YAML loader.
  'compute.deploy': computeDeployBody,
  'compute.start': z.object({ imvu: imvuId }).strict(),
  'compute.stop': z.object({ imvu: imvuId }).strict(),
  'compute.restart': z.object({ imvu: imvuId }).strict(),
  // Recorded because it is privileged (a shell in the workload); what it printed is not.
  'compute.exec': z.object({ imvu: imvuId, command: z.array(z.string().min(1).max(4096)).min(1).max(64) }).strict(),
  // The burst policy's timer (the compute service): raise the CPU quota by the envelope's
  // multiplier for its minutes, then lower it back.
  'compute.burst': z.object({ imvu: imvuId, phase: z.enum(['raise', 'lower']), multiplier: z.number().int().min(1).max(16) }).strict(),
  // The gateway's ACME orders (src/network/acme, RFC 8555 DNS-01): the challenge TXT at
  // `_acme-challenge.<name>` of one of the IMVU's own names, published in its zone while the order
  // is in progress and removed after (platform only, gate 17; in the IMVU's own zone, gate 4).
  'acme.challenge': z
    .object({
      imvu: imvuId,
      action: z.enum(['publish', 'remove']),
      records: z
        .array(
          z
            .object({
              zone: domain,
              name: z.string().max(253).regex(/^_acme-challenge\.[a-z0-9.-]+$/, 'must be _acme-challenge.<one of the IMVU\'s names>'),
              // base64url(SHA-256(key authorization)), RFC 8555 8.4.
              value: z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be an RFC 8555 DNS-01 digest (43 base64url characters)'),
            })
            .strict(),
        )
        .min(1)
        .max(100),
    })
    .strict(),
  // A certificate the gateway serves for an IMVU's names (issued by the ACME CA): what a creator
  // compares the served certificate with. Platform only (gate 17), names the IMVU's own.
  'certificate.issued': z
    .object({
      imvu: imvuId,
      names: z
        .array(domain)
        .min(1)
        .max(100)
        .refine((a) => a.every((x, i) => i === 0 || a[i - 1]! < x), 'must be sorted, without duplicates'),
      serial: z.string().regex(/^[0-9a-f]{1,64}$/, 'must be the serial number in lower-case hex'),
      sha256: sha256Hex,
      notBefore: isoTime,
      notAfter: isoTime,
      issuer: z.string().min(1).max(512),
      directory: z.string().url().max(2048),
    })
    .strict()
    .refine((b) => Date.parse(b.notAfter) > Date.parse(b.notBefore), 'notAfter must be after notBefore'),
  // The platform's signed record of the state at tree size `size` (its own index): the digest of
  // every projection table (store/digest.ts combinedDigest; the gates' state lives in them), as a
  // verifier's replay computes it. A full verify recomputes it (a lie is caught by anyone who
  // verifies from entry 0); `audit verify --from-snapshot` starts only from a state it names.
  'ledger.snapshot': z.object({ size: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER), digest: sha256Hex }).strict(),
  'integrity.alarm': z
    .object({
      trigger: z.enum(['start', 'periodic']),
      detectedAt: isoTime,
      ledgerSize: z.number().int().min(0),
      tables: z.array(z.string().regex(/^[a-z_]{1,64}$/)).max(64),
      imvus: z.array(imvuId).max(1000),
      detail: z.string().max(1000),
    })
    .strict(),
} satisfies Record<CommandType, z.ZodType>;

export function formatZodError(err: z.ZodError): string {
  return err.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join('.') : 'body'}: ${i.message}`)
    .join('; ');
}
