// Daemon configuration, resolved from (highest first) explicit options, the environment, a JSON
// config file, then defaults. Every value is validated; a bad one is a single-line ConfigError.
import { closeSync, existsSync, fstatSync, openSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import type { XfrOptions } from '../domains/dns-authority/xfr.ts';
import { DEFAULT_PLAN, PLAN_FIELDS, type PlanLimits } from '../core/policy/commands.ts';
import { parseCosignerVerifierKey } from '../core/witness/cosignature.ts';
import { DEFAULTS, IANA_ROOT_HINTS, defaultDnsPort } from './defaults.ts';
import { rangeCapacity } from '../compute/fabric/addresses.ts';

export { DEFAULTS, IANA_ROOT_HINTS, defaultDnsPort };


export const CONFIG_FILE_NAME = 'nexus.json';
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export const DNSSEC_DENIALS = ['nsec', 'compact'] as const;

export interface NexusConfig {
  /** Absolute path of the data directory. */
  dataDir: string;
  host: string;
  /** 0 asks the OS for a free port. */
  port: number;
  logLevel: (typeof LOG_LEVELS)[number];
  /** DNS suffix for IMVU domains; used only when a data directory is initialised. */
  suffix: string;
  /** Run the authoritative DNS server (`--no-dns` turns it off). */
  dns: boolean;
  dnsAddress: string;
  /** UDP and TCP; 0 asks the OS for a free port. */
  dnsPort: number;
  /** How signed answers prove a name or type does not exist: `nsec` (the zone's NSEC chain) or `compact` (RFC 9824). */
  dnssecDenial: (typeof DNSSEC_DENIALS)[number];
  /** Run the HAProxy gateway when haproxy is installed (`--no-gateway` turns it off). */
  gateway: boolean;
  gatewayAddress: string;
  /** HTTPS of the gateway (443 as root, otherwise 8443). */
  gatewayPort: number;
  /** Plain HTTP of the gateway, redirecting to HTTPS (80 as root, otherwise 8080). */
  gatewayHttpPort: number;
  /** This gateway node's region (geo routing, src/network/gateway/geo.ts); '' when not set. */
  gatewayRegion: string;
  /** How often metered usage (DNS queries per IMVU) is reported into the ledger. */
  meterIntervalMs: number;
  /** How often the projections are scanned and compared with their expected digests (src/core/policy/integrity.ts). */
  integrityIntervalMs: number;
  /** A signed ledger.snapshot every this many entries, 0 never (src/core/policy/integrity.ts). */
  snapshotEvery: number;
  /** Key sets (DKIM RSA-2048 and DNSSEC P-256) kept made for `imvu.create` (src/imvu/provision.ts). */
  keyPool: number;
  /** The private IPv4 range each IMVU's workload /30 is cut from (src/compute/fabric/addresses.ts). */
  computeRange: string;
  /** Addresses or CIDR prefixes allowed to transfer zones (AXFR/IXFR) without TSIG. Default none. */
  xfrAllow: string[];
  /**
   * The TSIG key (HMAC-SHA256) a secondary may sign transfers with, from any address; null when
   * there is none. `secret` is base64; it is never logged nor shown by the API.
   */
  tsig: { name: string; secret: string } | null;
  /** Secondaries sent a NOTIFY when a zone changes (IP addresses only; port 53 unless given). */
  notify: { address: string; port: number }[];
  /**
   * Root servers the daemon's own resolver starts from when it looks up a domain proof (the TXT at
   * `_nexus-challenge.<domain>`); default the IANA root servers. Servers learned from referrals are
   * asked on the first hint's port (53 unless given: a test hierarchy on loopback uses one port).
   */
  rootHints: { address: string; port: number }[];
  /** Port of the remote MTAs the outbound queue delivers to (25; tests point it at a free port on loopback). */
  mailRelayPort: number;
  /**
   * The plan limits the platform publishes when it initialises a data directory (ledger data from
   * then on: changing this later changes nothing, so replay never depends on configuration).
   */
  plan: PlanLimits;
  /**
   * The platform's name servers (names inside the suffix, with their addresses): served in the
   * platform's own zone and named by every IMVU zone's NS RRset. Empty: `ns1.<suffix>` at the DNS
   * address (or the edge address when DNS listens on 0.0.0.0 / ::).
   */
  nameservers: { name: string; address: string }[];
  /**
   * Witnesses (C2SP tlog-witness) sent every new checkpoint, each with the verifier key its
   * cosignatures must verify under (src/core/witness/collector.ts).
   */
  witnesses: { url: string; vkey: string }[];
  /** Deadline of one add-checkpoint exchange; a slower witness counts as failed for that checkpoint. */
  witnessTimeoutMs: number;
  /**
   * TLS for the API: the certificate (chain) and private key files, PEM, and their contents; null
   * serves plain HTTP (refused on a non-loopback address unless `insecureHttp`).
   */
  tls: { certFile: string; keyFile: string; cert: string; key: string } | null;
  /**
   * Certificates of the gateway from this ACME CA (RFC 8555; DNS-01 answered by our own DNS): the
   * directory URL, an extra CA (PEM) trusted for its HTTPS (a private CA such as Pebble's), and how
   * many days before expiry a certificate is renewed. null: the platform's local CA issues them.
   */
  acme: { directory: string; caCertFile?: string; caCert?: string; renewBeforeDays: number; challenge: 'dns-01' | 'http-01' } | null;
  /** Allows plain HTTP on an address other hosts can reach (with a warning). */
  insecureHttp: boolean;
  /** `auto`: readable lines when stdout is a terminal, JSON lines otherwise. */
  logFormat: (typeof LOG_FORMATS)[number];
  /** The config file that was read, if any. */
  configFile?: string;
}

/** Explicit values (command-line flags or a caller's options); each wins over everything else. */
export interface ConfigOptions {
  dataDir?: string;
  host?: string;
  port?: number | string;
  logLevel?: string;
  suffix?: string;
  dns?: boolean | string;
  dnsAddress?: string;
  dnsPort?: number | string;
  dnssecDenial?: string;
  gateway?: boolean | string;
  gatewayAddress?: string;
  gatewayPort?: number | string;
  gatewayHttpPort?: number | string;
  gatewayRegion?: string;
  meterIntervalMs?: number | string;
  integrityIntervalMs?: number | string;
  snapshotEvery?: number | string;
  keyPool?: number | string;
  computeRange?: string;
  /** Addresses or CIDR prefixes (each may also be a comma-separated list). */
  xfrAllow?: string | string[];
  tsigName?: string;
  /** A file holding the base64 TSIG secret; refused when other users may read it. */
  tsigSecretFile?: string;
  /** `address[:port]` (IPv6 in brackets when a port is given), each may be a comma-separated list. */
  notify?: string | string[];
  /** `address[:port]`, each may be a comma-separated list. */
  rootHints?: string | string[];
  mailRelayPort?: number | string;
  /** Plan limits for init: `cpu_cores=16,memory_gb=64` (unnamed limits keep their defaults) or an object. */
  plan?: string | Partial<PlanLimits>;
  /** `name=address` (e.g. `ns1.world=192.0.2.53`), each may be a comma-separated list. */
  nameservers?: string | string[];
  /** `URL=VKEY` (a witness's submission URL and its verifier key), each may be a comma-separated list. */
  witnesses?: string | string[];
  witnessTimeoutMs?: number | string;
  /** PEM certificate (chain) file for HTTPS; needs `tlsKey`. */
  tlsCert?: string;
  /** PEM private key file for HTTPS, not readable by other users; needs `tlsCert`. */
  tlsKey?: string;
  insecureHttp?: boolean | string;
  /** The ACME directory URL (https). */
  acmeDirectory?: string;
  /** A PEM CA certificate file trusted for the ACME directory's HTTPS. */
  acmeCaCert?: string;
  /** Days before expiry a certificate is renewed (1-365, default 30). */
  acmeRenewDays?: number | string;
  /** How the ACME CA validates: dns-01 (our DNS, default) or http-01 (the gateway's port 80). */
  acmeChallenge?: string;
  logFormat?: string;
  /** A JSON config file to read instead of `<dataDir>/nexus.json`. */
  config?: string;
  /** Defaults to process.env. */
  env?: Record<string, string | undefined>;
  /** Base for relative paths given by options or the environment; defaults to process.cwd(). */
  cwd?: string;
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const Host = z
  .string()
  .min(1, 'must not be empty')
  .max(253)
  .regex(/^[A-Za-z0-9.:[\]-]+$/, 'must be an IP address or host name');
const PORT_MESSAGE = 'must be an integer 0-65535';
const Port = z.preprocess(
  (v) => (typeof v === 'string' && /^\d{1,5}$/.test(v) ? Number(v) : v),
  z.number({ error: PORT_MESSAGE }).int(PORT_MESSAGE).min(0, PORT_MESSAGE).max(65535, PORT_MESSAGE),
);
const LogLevel = z.enum(LOG_LEVELS, { error: `must be one of ${LOG_LEVELS.join(', ')}` });
const Suffix = z
  .string()
  .toLowerCase()
  .regex(/^[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63})*$/, 'must be a DNS suffix such as world');
const DataDir = z.string().min(1, 'must not be empty');
const BOOL_MESSAGE = 'must be true or false';
const Bool = z.preprocess(
  (v) => (typeof v === 'string' ? ({ true: true, '1': true, yes: true, on: true, false: false, '0': false, no: false, off: false } as Record<string, boolean>)[v.toLowerCase()] ?? v : v),
  z.boolean({ error: BOOL_MESSAGE }),
);
const INTERVAL_MESSAGE = 'must be an integer number of milliseconds, 10-86400000';
// A range of /30s: any IPv4 prefix of length 8-29 with its host bits zero.
const GatewayRegion = z.string().regex(/^$|^[a-z]{2}(-[a-z0-9]{1,16}){0,3}$/, 'must be a two-letter area and optional labels, e.g. eu-west or us-east-1');
const ComputeRange = z.string().superRefine((v, ctx) => {
  try {
    if (rangeCapacity(v) < 1) ctx.addIssue({ code: 'custom', message: 'must hold at least one /30 beside the first' });
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
  }
});
const SNAPSHOT_EVERY_MESSAGE = 'must be a whole number of entries from 0 (never) to 1000000000';
const SnapshotEvery = z.preprocess(
  (v) => (typeof v === 'string' && /^\d{1,10}$/.test(v) ? Number(v) : v),
  z.number({ error: SNAPSHOT_EVERY_MESSAGE }).int(SNAPSHOT_EVERY_MESSAGE).min(0, SNAPSHOT_EVERY_MESSAGE).max(1_000_000_000, SNAPSHOT_EVERY_MESSAGE),
);
const KEY_POOL_MESSAGE = 'must be a whole number of key sets from 1 to 10000';
const KeyPool = z.preprocess(
  (v) => (typeof v === 'string' && /^\d{1,5}$/.test(v) ? Number(v) : v),
  z.number({ error: KEY_POOL_MESSAGE }).int(KEY_POOL_MESSAGE).min(1, KEY_POOL_MESSAGE).max(10_000, KEY_POOL_MESSAGE),
);
const IntervalMs = z.preprocess(
  (v) => (typeof v === 'string' && /^\d{1,9}$/.test(v) ? Number(v) : v),
  z.number({ error: INTERVAL_MESSAGE }).int(INTERVAL_MESSAGE).min(10, INTERVAL_MESSAGE).max(86_400_000, INTERVAL_MESSAGE),
);

const splitList = (v: unknown): unknown => {
  const split = (x: unknown) => (typeof x === 'string' ? x.split(',').map((p) => p.trim()).filter(Boolean) : [x]);
  if (typeof v === 'string') return split(v);
  return Array.isArray(v) ? v.flatMap(split) : v;
};
const LIST_MESSAGE = 'must be a list of strings';

function isAddressOrPrefix(a: string): boolean {
  const [addr, bits, extra] = a.split('/');
  const family = isIP(addr ?? '');
  if (!family || extra !== undefined) return false;
  return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 6 ? 128 : 32));
}
const XfrAllow = z.preprocess(
  splitList,
  z.array(
    z.string().refine(isAddressOrPrefix, { error: (i) => `${JSON.stringify(i.input)} is not an IP address or CIDR prefix (such as 192.0.2.53, 10.0.0.0/8 or 2001:db8::/32)` }),
    { error: LIST_MESSAGE },
  ).transform((a) => [...new Set(a)]),
);

/** `192.0.2.1`, `192.0.2.1:5300`, `2001:db8::1`, `[2001:db8::1]:5300`; port 53 unless given. */
function hostPort(s: string, what = "the secondary's"): { address: string; port: number } | string {
  let address: string | undefined;
  let port: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(s);
  if (bracketed) [, address, port] = bracketed;
  else if (isIP(s) === 6) address = s;
  else [, address, port] = /^([^:]+)(?::(\d{1,5}))?$/.exec(s) ?? [];
  if (address === undefined || !isIP(address) || (bracketed && isIP(address) !== 6)) {
    if (/^[A-Za-z0-9.-]*[A-Za-z][A-Za-z0-9.-]*(:\d+)?$/.test(s)) return `${JSON.stringify(s)} is a host name: give ${what} IP address (names are not resolved)`;
    return `${JSON.stringify(s)} is not an IP address with an optional port (such as 192.0.2.53:53 or [2001:db8::53]:53)`;
  }
  const p = port === undefined ? 53 : Number(port);
  if (!(p >= 1 && p <= 65535)) return `${JSON.stringify(s)}: the port must be 1-65535`;
  return { address, port: p };
}
/** A string that `parse` turns into a value, or refuses with the message it returns. */
function parsedWith<T extends object>(parse: (s: string) => T | string, string: z.ZodString = z.string()) {
  return string.transform((s, ctx) => {
    const r = parse(s);
    if (typeof r === 'string') {
      ctx.addIssue({ code: 'custom', message: r });
      return z.NEVER;
    }
    return r;
  });
}
const Notify = z.preprocess(
  splitList,
  z.array(
    parsedWith(hostPort),
    { error: LIST_MESSAGE },
  ).transform((a) => [...new Map(a.map((t) => [`${t.address} ${t.port}`, t])).values()]),
);

const RootHints = z.preprocess(
  splitList,
  z
    .array(
      parsedWith((s) => hostPort(s, "a root server's")),
      { error: LIST_MESSAGE },
    )
    .min(1, 'must name at least one root server')
    .max(32, 'at most 32 root servers'),
);
const PLAN_MESSAGE = `must be plan limits such as cpu_cores=8,memory_gb=32 (known: ${PLAN_FIELDS.join(', ')}; whole numbers)`;
const limit = (max: number) => z.number({ error: PLAN_MESSAGE }).int(PLAN_MESSAGE).min(1, PLAN_MESSAGE).max(max, PLAN_MESSAGE);
const Plan = z.preprocess(
  (v) => {
    if (typeof v !== 'string') return v;
    const pairs = v.split(',').map((p) => p.trim()).filter(Boolean).map((p) => p.split('=').map((x) => x.trim()));
    if (pairs.some((kv) => kv.length !== 2 || !/^\d{1,9}$/.test(kv[1]!))) return v;
    return Object.fromEntries(pairs.map(([k, n]) => [k, Number(n)]));
  },
  z
    .object(
      {
        cpu_cores: limit(1024).optional(),
        memory_gb: limit(65536).optional(),
        storage_gb: limit(1_000_000).optional(),
        iops: limit(10_000_000).optional(),
        imvus_per_creator: limit(100_000).optional(),
      },
      { error: PLAN_MESSAGE },
    )
    .strict()
    .transform((p): PlanLimits => ({ ...DEFAULT_PLAN, ...p })),
);
const HOST_NAME = /^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))+$/;

/** `ns1.world=192.0.2.53` or `ns2.world=[2001:db8::53]`: a name server inside the suffix and its address (never resolved). */
function nameServer(s: string): { name: string; address: string } | string {
  const eq = s.indexOf('=');
  if (eq < 0) return `${JSON.stringify(s)} is not NAME=ADDRESS (such as ns1.world=192.0.2.53)`;
  const name = s.slice(0, eq).trim().toLowerCase().replace(/\.$/, '');
  const address = s.slice(eq + 1).trim().replace(/^\[(.*)\]$/, '$1');
  if (!HOST_NAME.test(name)) return `${JSON.stringify(name)} is not a host name such as ns1.world`;
  const family = isIP(address);
  if (!family) return `${JSON.stringify(address)} (for ${name}) is not an IP address (a name server's address is published as given, never resolved)`;
  if (address === '0.0.0.0' || address === '::') return `${address} (for ${name}) is not an address a resolver can reach`;
  // One spelling per address, as the ledger records it (RFC 5952 for IPv6).
  return { name, address: family === 6 ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address };
}
const NameServers = z.preprocess(
  splitList,
  z.array(
    parsedWith(nameServer),
    { error: LIST_MESSAGE },
  ).max(8, 'at most 8 name servers').transform((a) => [...new Map(a.map((t) => [`${t.name} ${t.address}`, t])).values()]),
);

/** `http://host:port/prefix=<name>+<key id>+<base64 key>`: a witness and the key its cosignatures verify under. */
function witnessSpec(s: string): { url: string; vkey: string } | string {
  const eq = s.indexOf('=');
  if (eq < 0) return `${JSON.stringify(s.slice(0, 200))} is not URL=VKEY (a witness's URL and its verifier key, as \`nexus witness init\` prints it)`;
  const rawUrl = s.slice(0, eq).trim();
  const vkey = s.slice(eq + 1).trim();
  let u: URL;
  try {
    u = new URL(rawUrl);
  } catch {
    return `${JSON.stringify(rawUrl.slice(0, 200))} is not a URL (such as http://witness.example:7601)`;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return `${JSON.stringify(rawUrl.slice(0, 200))}: a witness URL is http or https`;
  if (u.search || u.hash || u.username || u.password) return `${JSON.stringify(rawUrl.slice(0, 200))}: a witness URL has no query, fragment or credentials`;
  try {
    parseCosignerVerifierKey(vkey);
  } catch (err) {
    return `the verifier key for witness ${rawUrl} is invalid: ${(err as Error).message}`;
  }
  return { url: u.toString().replace(/\/+$/, ''), vkey };
}
const Witnesses = z.preprocess(
  (v) => splitList(Array.isArray(v) ? v.map((w: unknown) => (w && typeof w === 'object' && 'url' in w && 'vkey' in w ? `${String(w.url)}=${String(w.vkey)}` : w)) : v),
  z.array(
    parsedWith(witnessSpec, z.string({ error: 'must be a list of URL=VKEY strings or { url, vkey } objects' })),
    { error: LIST_MESSAGE },
  )
    .max(32, 'at most 32 witnesses')
    .refine((a) => new Set(a.map((w) => w.vkey)).size === a.length, 'a witness key is listed twice'),
);

const TSIG_NAME_MESSAGE = 'must be a key name such as nexus-xfr or xfr.example.org (letters, digits, - and _ in dot-separated labels)';
const TsigName = z
  .string({ error: TSIG_NAME_MESSAGE })
  .transform((s) => s.toLowerCase().replace(/\.$/, ''))
  .refine((s) => s.length > 0 && s.length <= 253 && s.split('.').every((l) => /^[a-z0-9_-]{1,63}$/.test(l)), TSIG_NAME_MESSAGE);
const Path = z.string({ error: 'must be a file path' }).min(1, 'must not be empty');

const AcmeDirectory = z
  .string({ error: 'must be an https URL' })
  .max(2048)
  .refine((s) => {
    try {
      const u = new URL(s);
      return u.protocol === 'https:' && !u.username && !u.password;
    } catch {
      return false;
    }
  }, 'must be an https URL such as https://acme-v02.api.letsencrypt.org/directory');
const AcmeChallenge = z.enum(['dns-01', 'http-01'], { error: 'must be dns-01 or http-01' });
const RENEW_MESSAGE = 'must be a whole number of days, 1-365';
const RenewDays = z.preprocess(
  (v) => (typeof v === 'string' && /^\d{1,3}$/.test(v) ? Number(v) : v),
  z.number({ error: RENEW_MESSAGE }).int(RENEW_MESSAGE).min(1, RENEW_MESSAGE).max(365, RENEW_MESSAGE),
);

const LogFormat = z.enum(LOG_FORMATS, { error: `must be one of ${LOG_FORMATS.join(', ')}` });
const DnssecDenial = z.enum(DNSSEC_DENIALS, { error: `must be one of ${DNSSEC_DENIALS.join(', ')}` });

const FIELDS = {
  dataDir: DataDir,
  host: Host,
  port: Port,
  logLevel: LogLevel,
  suffix: Suffix,
  dns: Bool,
  dnsAddress: Host,
  dnsPort: Port,
  dnssecDenial: DnssecDenial,
  gateway: Bool,
  gatewayAddress: Host,
  gatewayPort: Port,
  gatewayHttpPort: Port,
  gatewayRegion: GatewayRegion,
  meterIntervalMs: IntervalMs,
  integrityIntervalMs: IntervalMs,
  snapshotEvery: SnapshotEvery,
  keyPool: KeyPool,
  computeRange: ComputeRange,
  xfrAllow: XfrAllow,
  notify: Notify,
  rootHints: RootHints,
  mailRelayPort: Port,
  plan: Plan,
  nameservers: NameServers,
  witnesses: Witnesses,
  witnessTimeoutMs: IntervalMs,
  insecureHttp: Bool,
  logFormat: LogFormat,
} as const;
type Field = keyof typeof FIELDS;

const ENV: Record<Field, string> = {
  dataDir: 'NEXUS_DATA',
  host: 'NEXUS_HOST',
  port: 'NEXUS_PORT',
  logLevel: 'NEXUS_LOG_LEVEL',
  suffix: 'NEXUS_SUFFIX',
  dns: 'NEXUS_DNS',
  dnsAddress: 'NEXUS_DNS_ADDRESS',
  dnsPort: 'NEXUS_DNS_PORT',
  dnssecDenial: 'NEXUS_DNSSEC_DENIAL',
  gateway: 'NEXUS_GATEWAY',
  gatewayAddress: 'NEXUS_GATEWAY_ADDRESS',
  gatewayPort: 'NEXUS_GATEWAY_PORT',
  gatewayHttpPort: 'NEXUS_GATEWAY_HTTP_PORT',
  gatewayRegion: 'NEXUS_GATEWAY_REGION',
  meterIntervalMs: 'NEXUS_METER_INTERVAL_MS',
  integrityIntervalMs: 'NEXUS_INTEGRITY_INTERVAL_MS',
  snapshotEvery: 'NEXUS_SNAPSHOT_EVERY',
  keyPool: 'NEXUS_KEY_POOL',
  computeRange: 'NEXUS_COMPUTE_RANGE',
  xfrAllow: 'NEXUS_XFR_ALLOW',
  notify: 'NEXUS_NOTIFY',
  rootHints: 'NEXUS_ROOT_HINTS',
  mailRelayPort: 'NEXUS_MAIL_RELAY_PORT',
  plan: 'NEXUS_PLAN',
  nameservers: 'NEXUS_NAMESERVERS',
  witnesses: 'NEXUS_WITNESSES',
  witnessTimeoutMs: 'NEXUS_WITNESS_TIMEOUT_MS',
  insecureHttp: 'NEXUS_INSECURE_HTTP',
  logFormat: 'NEXUS_LOG_FORMAT',
};
const FLAG: Record<Field, string> = {
  dataDir: '--data',
  host: '--host',
  port: '--port',
  logLevel: '--log-level',
  suffix: '--suffix',
  dns: '--no-dns',
  dnsAddress: '--dns-address',
  dnsPort: '--dns-port',
  dnssecDenial: '--dnssec-denial',
  gateway: '--no-gateway',
  gatewayAddress: '--gateway-address',
  gatewayPort: '--gateway-port',
  gatewayHttpPort: '--gateway-http-port',
  gatewayRegion: '--region',
  meterIntervalMs: '--meter-interval',
  integrityIntervalMs: '--integrity-interval',
  snapshotEvery: '--snapshot-every',
  keyPool: '--key-pool',
  computeRange: '--compute-range',
  xfrAllow: '--xfr-allow',
  notify: '--notify',
  rootHints: '--root-hints',
  mailRelayPort: '--mail-relay-port',
  plan: '--plan',
  nameservers: '--nameserver',
  witnesses: '--witness',
  witnessTimeoutMs: '--witness-timeout',
  insecureHttp: '--insecure-http',
  logFormat: '--log-format',
};

/** What a config file may contain (the same fields, nothing else). */
export const ConfigFileSchema = z
  .object({
    dataDir: DataDir.optional(),
    host: Host.optional(),
    port: Port.optional(),
    logLevel: LogLevel.optional(),
    suffix: Suffix.optional(),
    dns: z.boolean({ error: BOOL_MESSAGE }).optional(),
    dnsAddress: Host.optional(),
    dnsPort: Port.optional(),
    dnssecDenial: DnssecDenial.optional(),
    gateway: z.boolean({ error: BOOL_MESSAGE }).optional(),
    gatewayAddress: Host.optional(),
    gatewayPort: Port.optional(),
    gatewayHttpPort: Port.optional(),
    gatewayRegion: GatewayRegion.optional(),
    meterIntervalMs: IntervalMs.optional(),
    integrityIntervalMs: IntervalMs.optional(),
    snapshotEvery: SnapshotEvery.optional(),
    keyPool: KeyPool.optional(),
    computeRange: ComputeRange.optional(),
    xfrAllow: XfrAllow.optional(),
    tsigName: TsigName.optional(),
    tsigSecretFile: Path.optional(),
    notify: Notify.optional(),
    rootHints: RootHints.optional(),
    mailRelayPort: Port.optional(),
    plan: Plan.optional(),
    nameservers: NameServers.optional(),
    witnesses: Witnesses.optional(),
    witnessTimeoutMs: IntervalMs.optional(),
    tlsCert: Path.optional(),
    tlsKey: Path.optional(),
    insecureHttp: z.boolean({ error: BOOL_MESSAGE }).optional(),
    acmeDirectory: AcmeDirectory.optional(),
    acmeCaCert: Path.optional(),
    acmeRenewDays: RenewDays.optional(),
    acmeChallenge: AcmeChallenge.optional(),
    logFormat: LogFormat.optional(),
  })
  .strict();

function check<F extends Field>(field: F, value: unknown, source: string): z.output<(typeof FIELDS)[F]> {
  const r = FIELDS[field].safeParse(value);
  // A list from repeated flags is not echoed: the message names the element at fault.
  const shown = Array.isArray(value) ? '' : ` ${JSON.stringify(value)}`;
  if (!r.success) throw new ConfigError(`invalid ${source}${shown}: ${r.error.issues[0]?.message ?? 'invalid value'}`);
  return r.data as z.output<(typeof FIELDS)[F]>;
}

function readConfigFile(file: string): z.output<typeof ConfigFileSchema> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ConfigError(`cannot read config file ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.message.split('\n')[0]}`);
  }
  if (typeof raw === 'object' && raw !== null && 'tsigSecret' in raw)
    throw new ConfigError(`invalid config file ${file}: tsigSecret: the TSIG secret is not read from the config file; use tsigSecretFile or NEXUS_TSIG_SECRET`);
  const r = ConfigFileSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    const where = i && i.path.length ? i.path.join('.') : '';
    throw new ConfigError(`invalid config file ${file}: ${where ? `${where}: ` : ''}${i?.message ?? 'invalid'}`);
  }
  return r.data;
}

/** Resolves the daemon's configuration. Throws ConfigError (one line) on any bad value. */
export function resolveConfig(opts: ConfigOptions = {}): NexusConfig {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const given = (v: string | undefined): v is string => v !== undefined && v !== '';

  // The data directory first: it decides where the default config file lives.
  const explicitFile = opts.config ?? (given(env.NEXUS_CONFIG) ? env.NEXUS_CONFIG : undefined);
  const configFile = explicitFile !== undefined ? resolve(cwd, explicitFile) : undefined;
  const fromExplicitFile = configFile ? readConfigFile(configFile) : {};

  let dataDir: string;
  if (opts.dataDir !== undefined) dataDir = resolve(cwd, check('dataDir', opts.dataDir, FLAG.dataDir));
  else if (given(env.NEXUS_DATA)) dataDir = resolve(cwd, check('dataDir', env.NEXUS_DATA, ENV.dataDir));
  else if (fromExplicitFile.dataDir !== undefined) dataDir = resolve(dirname(configFile!), fromExplicitFile.dataDir);
  else dataDir = resolve(cwd, DEFAULTS.dataDir);

  let file = fromExplicitFile;
  let fileName = configFile;
  if (!configFile) {
    const inDataDir = join(dataDir, CONFIG_FILE_NAME);
    if (existsSync(inDataDir)) {
      file = readConfigFile(inDataDir);
      fileName = inDataDir;
      if (file.dataDir !== undefined && resolve(dataDir, file.dataDir) !== dataDir)
        throw new ConfigError(`invalid config file ${inDataDir}: dataDir cannot move the data directory it sits in`);
    }
  }

  const pick = <F extends Exclude<Field, 'dataDir'>>(field: F): z.output<(typeof FIELDS)[F]> => {
    const o = opts[field];
    if (o !== undefined) return check(field, o, FLAG[field]);
    const e = env[ENV[field]];
    if (given(e)) return check(field, e, ENV[field]);
    if (file[field] !== undefined) return file[field] as z.output<(typeof FIELDS)[F]>;
    const root = process.getuid?.() === 0;
    const fallback =
      field === 'dnsPort' ? defaultDnsPort() : field === 'gatewayPort' ? (root ? 443 : 8443) : field === 'gatewayHttpPort' ? (root ? 80 : 8080) : DEFAULTS[field as Exclude<Field, 'dataDir' | 'dnsPort' | 'gatewayPort' | 'gatewayHttpPort'>];
    return check(field, fallback, `default ${field}`);
  };

  const cfg: NexusConfig = {
    dataDir,
    host: pick('host'),
    port: pick('port'),
    logLevel: pick('logLevel'),
    suffix: pick('suffix'),
    dns: pick('dns'),
    dnsAddress: pick('dnsAddress'),
    dnsPort: pick('dnsPort'),
    dnssecDenial: pick('dnssecDenial'),
    gateway: pick('gateway'),
    gatewayAddress: pick('gatewayAddress'),
    gatewayPort: pick('gatewayPort'),
    gatewayHttpPort: pick('gatewayHttpPort'),
    gatewayRegion: pick('gatewayRegion'),
    meterIntervalMs: pick('meterIntervalMs'),
    integrityIntervalMs: pick('integrityIntervalMs'),
    snapshotEvery: pick('snapshotEvery'),
    keyPool: pick('keyPool'),
    computeRange: pick('computeRange'),
    xfrAllow: pick('xfrAllow'),
    tsig: resolveTsig(opts, env, file, fileName, cwd),
    notify: pick('notify'),
    rootHints: pick('rootHints'),
    mailRelayPort: pick('mailRelayPort'),
    plan: pick('plan'),
    nameservers: pick('nameservers'),
    witnesses: pick('witnesses'),
    witnessTimeoutMs: pick('witnessTimeoutMs'),
    tls: resolveTls(opts, env, file, fileName, cwd),
    acme: resolveAcme(opts, env, file, fileName, cwd),
    insecureHttp: pick('insecureHttp'),
    logFormat: pick('logFormat'),
    ...(fileName ? { configFile: fileName } : {}),
  };
  if (cfg.notify.length > 0 && cfg.xfrAllow.length === 0 && !cfg.tsig)
    throw new ConfigError('secondaries to NOTIFY are set (--notify / NEXUS_NOTIFY / notify) but none may transfer: add --xfr-allow or a TSIG key (--tsig-name and its secret)');
  const remote = cfg.dns && isLoopback(cfg.dnsAddress) ? cfg.notify.find((t) => !isLoopback(t.address)) : undefined;
  if (remote)
    throw new ConfigError(
      `cannot NOTIFY ${remote.address}: DNS listens on ${cfg.dnsAddress} (loopback), which a secondary elsewhere cannot reach; set --dns-address / NEXUS_DNS_ADDRESS to an address it can`,
    );
  return cfg;
}

/**
 * Why serving the API this way is unsafe: plain HTTP on an address other hosts can reach (every
 * signed read, receipt and key directory in the clear, open to tampering on the way). undefined
 * when it is not (TLS, or a loopback address).
 */
export function exposureWarning(cfg: Pick<NexusConfig, 'host' | 'port' | 'tls'>): string | undefined {
  if (cfg.tls || isLoopback(cfg.host)) return undefined;
  return `the API would listen on ${cfg.host}:${cfg.port} without TLS: other hosts would send and read everything in the clear, and anyone on the path could alter the answers (checkpoints, receipts, keys)`;
}

function isLoopback(address: string): boolean {
  const a = address.toLowerCase().replace(/^::ffff:/, '');
  return a === 'localhost' || a === '::1' || /^127\./.test(a);
}

/** The API's TLS certificate and key: both files or neither, from flags, the environment or the config file. */
function resolveTls(
  opts: ConfigOptions,
  env: Record<string, string | undefined>,
  file: z.output<typeof ConfigFileSchema>,
  fileName: string | undefined,
  cwd: string,
): NexusConfig['tls'] {
  const given = (v: string | undefined): v is string => v !== undefined && v !== '';
  const one = (flag: string | undefined, flagName: string, envName: string, fromFile: string | undefined, fileKey: string) => {
    if (flag !== undefined) {
      if (flag === '') throw new ConfigError(`invalid ${flagName} "": must not be empty`);
      return { path: resolve(cwd, flag), source: flagName };
    }
    if (given(env[envName])) return { path: resolve(cwd, env[envName]), source: envName };
    if (fromFile !== undefined) return { path: resolve(dirname(fileName!), fromFile), source: `${fileKey} in ${fileName}` };
    return undefined;
  };
  const cert = one(opts.tlsCert, '--tls-cert', 'NEXUS_TLS_CERT', file.tlsCert, 'tlsCert');
  const key = one(opts.tlsKey, '--tls-key', 'NEXUS_TLS_KEY', file.tlsKey, 'tlsKey');
  if (!cert && !key) return null;
  if (!key) throw new ConfigError(`a TLS certificate is given (${cert!.source}) but no key: set --tls-key, NEXUS_TLS_KEY or tlsKey`);
  if (!cert) throw new ConfigError(`a TLS key is given (${key.source}) but no certificate: set --tls-cert, NEXUS_TLS_CERT or tlsCert`);
  const certText = readPem(cert.path, cert.source, 'TLS certificate', false);
  if (!/-----BEGIN CERTIFICATE-----/.test(certText)) throw new ConfigError(`invalid TLS certificate ${cert.path} (${cert.source}): no PEM CERTIFICATE block`);
  const keyText = readPem(key.path, key.source, 'TLS key', true);
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(keyText)) throw new ConfigError(`invalid TLS key ${key.path} (${key.source}): no PEM PRIVATE KEY block`);
  return { certFile: cert.path, keyFile: key.path, cert: certText, key: keyText };
}

/** The ACME CA: a directory URL (flag, environment or config file), its extra trusted CA and renewal window. */
function resolveAcme(
  opts: ConfigOptions,
  env: Record<string, string | undefined>,
  file: z.output<typeof ConfigFileSchema>,
  fileName: string | undefined,
  cwd: string,
): NexusConfig['acme'] {
  const given = (v: string | undefined): v is string => v !== undefined && v !== '';
  const parse = <T>(schema: z.ZodType<T>, v: unknown, source: string): T => {
    const r = schema.safeParse(v);
    if (!r.success) throw new ConfigError(`invalid ${source} ${JSON.stringify(v)}: ${r.error.issues[0]?.message ?? 'invalid value'}`);
    return r.data;
  };
  let directory: string | undefined;
  if (opts.acmeDirectory !== undefined) directory = parse(AcmeDirectory, opts.acmeDirectory, '--acme-directory');
  else if (given(env.NEXUS_ACME_DIRECTORY)) directory = parse(AcmeDirectory, env.NEXUS_ACME_DIRECTORY, 'NEXUS_ACME_DIRECTORY');
  else directory = file.acmeDirectory;
  let ca: { path: string; source: string } | undefined;
  if (opts.acmeCaCert !== undefined) ca = { path: resolve(cwd, opts.acmeCaCert), source: '--acme-ca-cert' };
  else if (given(env.NEXUS_ACME_CA_CERT)) ca = { path: resolve(cwd, env.NEXUS_ACME_CA_CERT), source: 'NEXUS_ACME_CA_CERT' };
  else if (file.acmeCaCert !== undefined) ca = { path: resolve(dirname(fileName!), file.acmeCaCert), source: `acmeCaCert in ${fileName}` };
  let days = 30;
  if (opts.acmeRenewDays !== undefined) days = parse(RenewDays, opts.acmeRenewDays, '--acme-renew-days');
  else if (given(env.NEXUS_ACME_RENEW_DAYS)) days = parse(RenewDays, env.NEXUS_ACME_RENEW_DAYS, 'NEXUS_ACME_RENEW_DAYS');
  else if (file.acmeRenewDays !== undefined) days = file.acmeRenewDays;
  let challenge: 'dns-01' | 'http-01' | undefined;
  if (opts.acmeChallenge !== undefined) challenge = parse(AcmeChallenge, opts.acmeChallenge, '--acme-challenge');
  else if (given(env.NEXUS_ACME_CHALLENGE)) challenge = parse(AcmeChallenge, env.NEXUS_ACME_CHALLENGE, 'NEXUS_ACME_CHALLENGE');
  else challenge = file.acmeChallenge;
  if (!directory) {
    if (ca) throw new ConfigError(`an ACME CA certificate is given (${ca.source}) but no ACME directory: set --acme-directory, NEXUS_ACME_DIRECTORY or acmeDirectory`);
    if (challenge) throw new ConfigError('an ACME challenge type is given but no ACME directory: set --acme-directory, NEXUS_ACME_DIRECTORY or acmeDirectory');
    return null;
  }
  if (!ca) return { directory, renewBeforeDays: days, challenge: challenge ?? 'dns-01' };
  const caCert = readPem(ca.path, ca.source, 'ACME CA certificate', false);
  if (!/-----BEGIN CERTIFICATE-----/.test(caCert)) throw new ConfigError(`invalid ACME CA certificate ${ca.path} (${ca.source}): no PEM CERTIFICATE block`);
  return { directory, caCertFile: ca.path, caCert, renewBeforeDays: days, challenge: challenge ?? 'dns-01' };
}

/** Reads a PEM file (at most 1 MiB); a private key that every user may read is refused. */
function readPem(file: string, source: string, what: string, secret: boolean): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message.split('\n')[0];
    throw new ConfigError(`cannot read ${what} file ${file} (${source}): ${why}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new ConfigError(`cannot read ${what} file ${file} (${source}): not a regular file`);
    if (st.size > 1024 * 1024) throw new ConfigError(`${what} file ${file} (${source}) is larger than 1 MiB`);
    if (secret && (st.mode & 0o006) !== 0)
      throw new ConfigError(`refusing ${what} file ${file} (${source}): every user may read or replace it (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); chmod 600 ${file}`);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

const SECRET_MESSAGE = 'must be a base64 HMAC-SHA256 secret of at least 16 bytes (e.g. the output of `openssl rand -base64 32`)';

/** The TSIG key name and secret: each from flag, environment or config file; both or neither. */
function resolveTsig(
  opts: ConfigOptions,
  env: Record<string, string | undefined>,
  file: z.output<typeof ConfigFileSchema>,
  fileName: string | undefined,
  cwd: string,
): NexusConfig['tsig'] {
  const given = (v: string | undefined): v is string => v !== undefined && v !== '';
  const parseName = (v: unknown, source: string) => {
    const r = TsigName.safeParse(v);
    if (!r.success) throw new ConfigError(`invalid ${source} ${JSON.stringify(v)}: ${r.error.issues[0]?.message ?? TSIG_NAME_MESSAGE}`);
    return r.data;
  };
  let name: { value: string; source: string } | undefined;
  if (opts.tsigName !== undefined) name = { value: parseName(opts.tsigName, '--tsig-name'), source: '--tsig-name' };
  else if (given(env.NEXUS_TSIG_NAME)) name = { value: parseName(env.NEXUS_TSIG_NAME, 'NEXUS_TSIG_NAME'), source: 'NEXUS_TSIG_NAME' };
  else if (file.tsigName !== undefined) name = { value: file.tsigName, source: `tsigName in ${fileName}` };

  // The secret: a file (flag, environment or config file) or NEXUS_TSIG_SECRET, never a flag (it would show in `ps`).
  type Secret = { file: string; source: string } | { value: string; source: string };
  let secret: Secret | undefined;
  if (opts.tsigSecretFile !== undefined) {
    if (opts.tsigSecretFile === '') throw new ConfigError('invalid --tsig-secret-file "": must not be empty');
    secret = { file: resolve(cwd, opts.tsigSecretFile), source: '--tsig-secret-file' };
  } else if (given(env.NEXUS_TSIG_SECRET_FILE) && given(env.NEXUS_TSIG_SECRET)) {
    throw new ConfigError('both NEXUS_TSIG_SECRET and NEXUS_TSIG_SECRET_FILE are set: keep one');
  } else if (given(env.NEXUS_TSIG_SECRET_FILE)) secret = { file: resolve(cwd, env.NEXUS_TSIG_SECRET_FILE), source: 'NEXUS_TSIG_SECRET_FILE' };
  else if (given(env.NEXUS_TSIG_SECRET)) secret = { value: env.NEXUS_TSIG_SECRET, source: 'NEXUS_TSIG_SECRET' };
  else if (file.tsigSecretFile !== undefined) secret = { file: resolve(dirname(fileName!), file.tsigSecretFile), source: `tsigSecretFile in ${fileName}` };

  if (!name && !secret) return null;
  if (!name) throw new ConfigError(`a TSIG secret is given (${secret!.source}) but no key name: set --tsig-name, NEXUS_TSIG_NAME or tsigName`);
  if (!secret)
    throw new ConfigError(`TSIG key ${name.value} (${name.source}) has no secret: set --tsig-secret-file, NEXUS_TSIG_SECRET_FILE, tsigSecretFile or NEXUS_TSIG_SECRET`);
  // Whitespace is dropped: `openssl rand -base64 64` wraps its output, files end with a newline.
  const value = ('file' in secret ? readSecretFile(secret.file, secret.source) : secret.value).replace(/\s+/g, '');
  if (!isTsigSecret(value)) throw new ConfigError(`invalid TSIG secret ${'file' in secret ? `in ${secret.file} (${secret.source})` : `in ${secret.source}`}: ${SECRET_MESSAGE}`);
  return { name: name.value, secret: value };
}

function isTsigSecret(s: string): boolean {
  // As tsigKey() (src/domains/dns-authority/tsig.ts) will check it.
  return /^[A-Za-z0-9+/]+={0,2}$/.test(s) && Buffer.from(s, 'base64').length >= 16;
}

/** Reads a secret file, refusing one that every user on the machine may read or replace. */
function readSecretFile(file: string, source: string): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message.split('\n')[0];
    throw new ConfigError(`cannot read TSIG secret file ${file} (${source}): ${why}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new ConfigError(`cannot read TSIG secret file ${file} (${source}): not a regular file`);
    const others = st.mode & 0o006;
    if (others !== 0) {
      const what = others === 0o006 ? 'readable and writable' : others === 0o004 ? 'readable' : 'writable';
      throw new ConfigError(`refusing TSIG secret file ${file} (${source}): it is ${what} by every user (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}); chmod 600 ${file}`);
    }
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

/** What the DNS server's `xfr` option gets: undefined (transfers refused, no NOTIFY) when nothing is configured. */
export function xfrOptions(cfg: Pick<NexusConfig, 'xfrAllow' | 'tsig' | 'notify'>): XfrOptions | undefined {
  if (cfg.xfrAllow.length === 0 && !cfg.tsig && cfg.notify.length === 0) return undefined;
  return {
    ...(cfg.xfrAllow.length ? { allow: [...cfg.xfrAllow] } : {}),
    ...(cfg.tsig ? { tsig: { name: cfg.tsig.name, secret: cfg.tsig.secret } } : {}),
    ...(cfg.notify.length ? { notify: cfg.notify.map((n) => ({ ...n })) } : {}),
  };
}
