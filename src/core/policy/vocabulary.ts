// The command vocabulary that the CLI needs to describe its options (jurisdiction codes, record
// types, the domain-name pattern, the default plan limits), without loading the body schemas (zod)
// of commands.ts, which re-exports all of it.

export const JURISDICTIONS = [
  'US-CCPA', 'EU-GDPR', 'UK-GDPR', 'CH-FADP', 'CA-PIPEDA', 'BR-LGPD', 'JP-APPI', 'KR-PIPA',
  'SG-PDPA', 'IN-DPDP', 'AU-PRIVACY', 'ZA-POPIA', 'NZ-PRIVACY',
] as const;

/** An IMVU name: 1-63 of letters, digits, _ and -, starting with a letter. */
export const IMVU_NAME_RE = /^[A-Za-z][A-Za-z0-9_-]{0,62}$/;

const label = '(?!-)[a-z0-9-]{1,63}(?<!-)';
export const DOMAIN_RE = new RegExp(`^(?=.{1,253}$)${label}(\\.${label})+$`);

export const RECORD_TYPES = ['A', 'AAAA', 'CNAME', 'MX', 'TXT', 'SRV', 'NS', 'CAA'] as const;

/**
 * The platform's plan limits in force until a `plan.publish` entry says otherwise (the platform
 * publishes them at init, so replay never depends on configuration). An envelope above them, or
 * more IMVUs per creator, needs a `quota.approve` entry that covers it (gate 15).
 */
export const DEFAULT_PLAN = {
  cpu_cores: 8,
  memory_gb: 32,
  storage_gb: 500,
  iops: 5000,
  imvus_per_creator: 10,
} as const;
export type PlanLimits = { [K in keyof typeof DEFAULT_PLAN]: number };
export const PLAN_FIELDS = ['cpu_cores', 'memory_gb', 'storage_gb', 'iops', 'imvus_per_creator'] as const;

/**
 * The exit's clock (gate 13), counted in ledger entry times. The platform may end an exit the
 * creator has not confirmed only this long after the archive was ready; it may release an exited
 * IMVU's resources only after the grace, and delete its data only after the retention.
 */
export const EXIT_CONFIRM_DAYS = 7;
export const EXIT_GRACE_DAYS = 30;
export const EXIT_RETENTION_DAYS = 90;
