// The daemon's defaults, apart from config.ts (which validates with zod) so that the CLI can print
// them in its help without loading the validation.
import { DEFAULT_PLAN } from '../core/policy/vocabulary.ts';

/** The root name servers (IANA root hints, IPv4), where domain proofs start their look-ups. */
export const IANA_ROOT_HINTS = [
  '198.41.0.4', '170.247.170.2', '192.33.4.12', '199.7.91.13', '192.203.230.10', '192.5.5.241', '192.112.36.4',
  '198.97.190.53', '192.36.148.17', '192.58.128.30', '193.0.14.129', '199.7.83.42', '202.12.27.33',
] as const;

export const DEFAULTS = {
  dataDir: '.nexus',
  host: '127.0.0.1',
  port: 7600,
  logLevel: 'info',
  suffix: 'world',
  dns: true,
  dnsAddress: '127.0.0.1',
  /** The HAProxy gateway runs when haproxy is installed; it listens on loopback unless told otherwise. */
  gateway: true,
  gatewayAddress: '127.0.0.1',
  /** No region: the gateway serves no private or restricted route of an IMVU with a residency rule. */
  gatewayRegion: '',
  meterIntervalMs: 60_000,
  /** How often the running daemon compares its projections with what its writes should have made. */
  integrityIntervalMs: 60_000,
  /** A signed ledger.snapshot (the state digest a verifier may start from) after every this many entries; 0: never. */
  snapshotEvery: 100_000,
  /**
   * Key sets kept made for imvu.create: a burst of this many creations does not wait for RSA-2048
   * (about 0.2 s of one core each); the pool fills after the first creation, not at start.
   */
  keyPool: 4,
  computeRange: '10.96.0.0/11',
  /** Zone transfers: nobody may transfer, nobody is notified, no TSIG key. */
  xfrAllow: [],
  notify: [],
  rootHints: IANA_ROOT_HINTS,
  /** Remote MTAs listen on 25 (tests: a free port on loopback). */
  mailRelayPort: 25,
  /** Plan limits published at init (a `plan.publish` entry); above them needs a `quota.approve`. */
  plan: DEFAULT_PLAN,
  /** The platform's name servers: none given means `ns1.<suffix>` at the DNS address. */
  nameservers: [],
  /** Witnesses the daemon asks to cosign its checkpoints: none. */
  witnesses: [],
  /** Deadline of one add-checkpoint exchange with a witness. */
  witnessTimeoutMs: 10_000,
  /** Serving the API without TLS on an address other hosts can reach is refused unless this is set. */
  insecureHttp: false,
  /** `auto`: readable lines on a terminal, JSON lines otherwise. */
  logFormat: 'auto',
  /** Signed denials from the zone's NSEC chain (the one zone transfers carry); `compact`: RFC 9824. */
  dnssecDenial: 'nsec',
} as const;

/** The authoritative DNS server's default port: 53 when running as root, 5353 otherwise. */
export function defaultDnsPort(): number {
  return process.getuid?.() === 0 ? 53 : 5353;
}
