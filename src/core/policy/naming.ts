import { createHash } from 'node:crypto';
import { parse as parseDomain } from 'tldts';
import type { SqlReader } from '../store/index.ts';
import type { PlatformRow } from './gate.ts';

/** The id and domains the next IMVU will get: a pure function of the committed state, so replay agrees. */
export async function imvuDomainsFor(db: SqlReader, platform: PlatformRow): Promise<{ seq: number; id: string; primary: string; stage: string }> {
  const row = await db.get<{ seq: number }>('SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM imvus');
  const seq = row?.seq ?? 1;
  const id = imvuIdOf(seq);
  const primary = `imvu${id.slice('IMVU-'.length)}.${platform.suffix}`;
  return { seq, id, primary, stage: `stage.${primary}` };
}

/** The id `imvu.create` gives the IMVU of sequence number `seq` (an imported IMVU keeps the id it had). */
export function imvuIdOf(seq: number): string {
  return `IMVU-${String(seq).padStart(3, '0')}`;
}

/** Absolute, lower-case name for a record name given relative to its zone ('@' is the apex). */
export function absoluteName(name: string, zone: string): string {
  const lower = name.toLowerCase();
  // A trailing dot makes a name absolute, as in zone files.
  if (lower.endsWith('.')) return lower.slice(0, -1);
  if (lower === '@' || lower === zone) return zone;
  if (lower.endsWith('.' + zone)) return lower;
  return `${lower}.${zone}`;
}

export function isWithin(name: string, zone: string): boolean {
  return name === zone || name.endsWith('.' + zone);
}

// ---- who may hold which name ---------------------------------------------------------------------
//
// Names under the platform suffix belong to the registry: an IMVU gets `imvuNNN.<suffix>` at
// creation and adds names inside it as records (gate 4); nothing under the suffix is claimed with
// `domain.claim`. Any other domain is claimed pending proof of control (a TXT record at
// `_nexus-challenge.<domain>` holding the claim's token), unless it is a public suffix.

/**
 * Labels directly under the platform suffix that name the platform's own services (besides
 * `imvuNNN`, `ns*` and `_*`, which are matched by pattern). Every name under
 * the suffix is refused to `domain.claim` anyway; these get a reason of their own, and are what the
 * registry will never allocate to an IMVU.
 */
export const RESERVED_PLATFORM_LABELS: readonly string[] = [
  'www', 'mail', 'smtp', 'imap', 'mx', 'api', 'dns', 'stage', 'admin', 'platform', 'nexus', 'registry',
  'whois', 'status', 'acme', 'autoconfig', 'autodiscover', 'hostmaster', 'postmaster', 'abuse', 'root', 'localhost', 'wpad',
];

/**
 * Identity names of platform services and roles. Only the platform registers them, and only as
 * service identities: a creator who took `dns` first would keep the DNS service from starting
 * (src/core/service-identity.ts refuses a name that belongs to another key).
 */
export const RESERVED_IDENTITY_NAMES: readonly string[] = [
  'dns', 'mail', 'smtp', 'imap', 'gateway', 'compute', 'network', 'platform', 'admin', 'administrator', 'root',
  'billing', 'metering', 'witness', 'nexus', 'system', 'service', 'services', 'operator', 'registry', 'resolver',
  'ledger', 'audit', 'acme', 'api', 'www', 'hostmaster', 'postmaster', 'abuse', 'security', 'support', 'noreply',
];

/** Why `name` (a schema-valid domain) cannot be claimed under the registry's rules, if it cannot. */
export function registryRefusal(name: string, suffix: string, own?: { imvu: string; primary: string }): string | undefined {
  if (name === suffix) return `${name} is the platform suffix: the names under it are allocated by the registry`;
  if (isWithin(suffix, name)) return `${name} contains the platform suffix ${suffix}, whose names are allocated by the registry`;
  if (!isWithin(name, suffix)) return undefined;
  const label = name.slice(0, name.length - suffix.length - 1).split('.').pop()!;
  const top = `${label}.${suffix}`;
  if (/^imvu\d+$/.test(label)) return `${top} is allocated by the registry to an IMVU (imvuNNN.${suffix}); it cannot be claimed`;
  if (label.startsWith('ns') || label.startsWith('_') || RESERVED_PLATFORM_LABELS.includes(label))
    return `${top} is a reserved platform name`;
  if (own && isWithin(name, own.primary))
    return `${name} lies inside ${own.primary}, which is already the zone of ${own.imvu}: add records to it (nexus dns record add) instead of claiming`;
  return `names under ${suffix} are allocated by the registry (each IMVU gets imvuNNN.${suffix} and adds names inside it as records); claim a domain outside ${suffix}`;
}

/** How long a claim stays pending before it lapses unproven. */
export const CLAIM_TTL_MS = 7 * 24 * 60 * 60 * 1000;
/** Unproven, unexpired claims one IMVU may hold at once. */
export const MAX_PENDING_CLAIMS = 16;
/** The owner name of the challenge TXT record is this label under the claimed domain. */
export const CHALLENGE_LABEL = '_nexus-challenge';

export function challengeName(domain: string): string {
  return `${CHALLENGE_LABEL}.${domain}`;
}

const B32 = 'abcdefghijklmnopqrstuvwxyz234567';

function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31];
  return out;
}

/**
 * The value the claimant publishes at `_nexus-challenge.<domain>`: base32 of SHA-256 over the
 * platform's log origin, the claim entry's index, the IMVU and the domain. A function of the claim
 * alone, so replay recomputes it; bound to the origin and the entry, so a TXT left in place for one
 * platform or one earlier claim proves nothing for another.
 */
export function challengeToken(origin: string, index: number, imvu: string, domain: string): string {
  return 'nexus-' + base32(createHash('sha256').update(`nexus-challenge\n${origin}\n${index}\n${imvu}\n${domain}`).digest());
}

/** Why `name` cannot be owned by anyone: it is on the Public Suffix List (ICANN or private section). */
export function publicSuffixRefusal(name: string): string | undefined {
  const r = parseDomain(name, { allowPrivateDomains: true });
  if (r.publicSuffix === name) return `${name} is a public suffix (Public Suffix List${r.isPrivate ? ', private section' : ''}): no one can own it`;
  return undefined;
}

/** The MTA-STS policy id published in `_mta-sts` (RFC 8461 3.1): it changes whenever the policy does. */
export const MTA_STS_ID = 'nexus1';

/**
 * The mail records of an IMVU's primary zone, in the order they are written at `imvu.create`
 * (the projection writer and the transfer journal both use this list): the MX the inbound server
 * answers for, SPF allowing only that MX to send (the outbound queue connects from the same edge),
 * DMARC reject, MTA-STS (`testing`: the platform's certificate is not yet one every sender
 * validates, so failures are reported, not enforced) with its policy host, and TLS-RPT.
 */
export function mailRecords(primary: string, edge: string): { name: string; type: string; value: string }[] {
  return [
    { name: primary, type: 'MX', value: `10 mail.${primary}.` },
    { name: `mail.${primary}`, type: 'A', value: edge },
    { name: primary, type: 'TXT', value: 'v=spf1 mx -all' },
    { name: `_dmarc.${primary}`, type: 'TXT', value: `v=DMARC1; p=reject; rua=mailto:admin@${primary}` },
    { name: `_mta-sts.${primary}`, type: 'TXT', value: `v=STSv1; id=${MTA_STS_ID}` },
    { name: `mta-sts.${primary}`, type: 'A', value: edge },
    { name: `_smtp._tls.${primary}`, type: 'TXT', value: `v=TLSRPTv1; rua=mailto:admin@${primary}` },
  ];
}

/** The MTA-STS policy file served at https://mta-sts.<primary>/.well-known/mta-sts.txt (RFC 8461 3.2). */
export function mtaStsPolicy(primary: string): string {
  return `version: STSv1\r\nmode: testing\r\nmx: mail.${primary}\r\nmax_age: 86400\r\n`;
}
