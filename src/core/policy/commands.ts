import { z } from 'zod';
import type { CommandType } from '../types.ts';

// The body schema of every command type. A body that does not parse is denied (gate 0) and
// still recorded, so a malformed request leaves the same trace as a refused one.

export const JURISDICTIONS = [
  'US-CCPA', 'EU-GDPR', 'UK-GDPR', 'CH-FADP', 'CA-PIPEDA', 'BR-LGPD', 'JP-APPI', 'KR-PIPA',
  'SG-PDPA', 'IN-DPDP', 'AU-PRIVACY', 'ZA-POPIA', 'NZ-PRIVACY',
] as const;

const identityId = z.string().regex(/^nx1[a-z2-7]{32}$/, 'must be an identity id (nx1...)');
const imvuId = z.string().regex(/^IMVU-\d{3,9}$/, 'must be an IMVU id such as IMVU-001');
const publicKey = z.string().regex(/^[A-Za-z0-9+/]{43}=$/, 'must be a base64 Ed25519 public key');
const label = '(?!-)[a-z0-9-]{1,63}(?<!-)';
export const DOMAIN_RE = new RegExp(`^(?=.{1,253}$)${label}(\\.${label})+$`);
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
const isoTime = z.string().datetime({ offset: false, message: 'must be an ISO-8601 UTC time' });
const digits = z.string().regex(/^\d{1,30}$/, 'must be a whole number of units as decimal digits');
const smallInt = (max: number) => z.number().int().min(1).max(max);

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

const route = z
  .object({
    path: z.string().min(1).max(256).regex(/^\//, 'must start with /'),
    backend: z.string().min(1).max(128),
    require_identity: z.boolean().optional(),
    require_roles: z.array(z.string().min(1).max(32)).max(16).optional(),
  })
  .strict();

export const TrafficPolicy = z
  .object({
    public: z.array(route).max(256),
    private: z.array(route).max(256),
    restricted: z.array(route).max(256),
  })
  .strict();

export const RECORD_TYPES = ['A', 'AAAA', 'CNAME', 'MX', 'TXT', 'SRV', 'NS', 'CAA'] as const;

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
  'imvu.create': z
    .object({
      name: z.string().regex(/^[A-Za-z][A-Za-z0-9_-]{0,62}$/, 'must be 1-63 of letters, digits, _ and -, starting with a letter'),
      owner: identityId,
      jurisdiction: z.string().min(1).max(32),
      envelope: envelopePatch.optional(),
    })
    .strict(),
  'imvu.scale': envelopePatch.extend({ imvu: imvuId }).strict(),
  'imvu.suspend': z.object({ imvu: imvuId, reason: z.string().min(1).max(500) }).strict(),
  'imvu.resume': z.object({ imvu: imvuId }).strict(),
  'imvu.exit': z.object({ imvu: imvuId }).strict(),
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
  'mailbox.add': z.object({ imvu: imvuId, address: z.string().max(320).refine(lowerCase, canonicalMessage('an address')).regex(/^[a-z0-9._+-]{1,64}@[a-z0-9.-]{1,253}$/, 'must be an address such as info@example.world') }).strict(),
  'mailbox.remove': z.object({ imvu: imvuId, address: z.string().max(320).refine(lowerCase, canonicalMessage('an address')) }).strict(),
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
  'notify.creator': z
    .object({ imvu: imvuId, recipient: identityId, about: z.number().int().min(0), gate: z.number().int().min(0).max(17), message: z.string().max(1000) })
    .strict(),
  'dkim.publish': z.object({ imvu: imvuId, selector: z.string().regex(/^[a-z0-9-]{1,63}$/), publicKey: z.string().min(1).max(1024) }).strict(),
  // A zone's DNSSEC key (src/domains/dnssec): ECDSA P-256 (algorithm 13), the DNSKEY public key field
  // (x || y, 64 octets) in base64; flags 257 for the combined signing key, 256 for a zone-signing key.
  'dnssec.publish': z
    .object({
      imvu: imvuId,
      zone: domain,
      algorithm: z.literal(13),
      flags: z.union([z.literal(257), z.literal(256)]),
      publicKey: z.string().regex(/^[A-Za-z0-9+/]{86}==$/, 'must be a base64 ECDSA P-256 public key (64 octets)'),
    })
    .strict(),
  // The platform re-signs a signed zone that has not changed for a while: only the serial moves, so
  // secondaries transfer it again with fresh signatures (src/domains/dns-service.ts schedules it).
  'dnssec.resign': z.object({ zone: domain }).strict(),
  // The platform found its served state (the projections) different from the ledger, rebuilt it
  // from the ledger, and says so (src/core/policy/integrity.ts). Applying it changes no projection;
  // the IMVUs named get a notification each.
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
