// The DNS service as the daemon runs it: the authoritative server over the platform's projections,
// its service identity (`dns`, registered by the platform on first start, with the ledger naming it the
// one meter of `dns.queries`) and the usage meter that reports the queries answered per IMVU into the
// ledger (gate 6), the re-signing of signed zones that have not changed for a while (resign.ts:
// a platform `dnssec.resign` moves the serial), and the later steps of DNSSEC key rollovers once
// their wait is over (dnssec/rollover.ts).
import type { OpenPlatform } from '../core/platform.ts';
import { ensureMeter, ensureServiceIdentity, type ServiceIdentity } from '../core/service-identity.ts';
import { startDnsServer, type DnsServer, type DnsServerOptions } from './dns-authority/server.ts';
import type { XfrOptions } from './dns-authority/xfr.ts';
import { ZONE_VIEW_SOURCES } from './dns-authority/zone-view.ts';
import { tsigKey } from './dns-authority/tsig.ts';
import { UsageMeter, type FlushResult, type UsageReport } from './metering.ts';
import { onlineSigner, type DenialMode } from './dnssec/online.ts';
import type { Receipt } from '../core/policy/chokepoint.ts';
import { ResignScheduler } from './resign.ts';
import { advanceRollovers } from './dnssec/rollover.ts';
import { defaultNameServers, ensurePlatformZone, restatePlatformZone, type NameServer } from './registry/declare.ts';
import { PLATFORM_ZONE_IMVU } from './registry/zone.ts';

export const DNS_SERVICE = 'dns';
export const DNS_QUERIES = 'dns.queries';

/** A socket that could not be bound; `message` is one line for the operator. */
export class ListenError extends Error {
  override name = 'ListenError';
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

export interface DnsServiceOptions {
  platform: OpenPlatform;
  address?: string;
  /** 0 picks a free port. */
  port?: number;
  meterIntervalMs?: number;
  /** How often to look for signed zones to re-sign (resign.ts). Default 1 hour. */
  resignCheckMs?: number;
  /** A signed zone whose serial has not moved for this long gets a `dnssec.resign`. Default 7 days. */
  resignAfterMs?: number;
  /**
   * The platform's name servers, served in its own zone (the suffix) and named by every IMVU zone's
   * NS RRset. Unset or empty: `ns1.<suffix>` at `address` (at the edge address if `address` is
   * 0.0.0.0 or ::). Declared in the ledger (`platform.zone`) when they differ from what it says.
   */
  nameservers?: NameServer[];
  /**
   * Zone transfers (AXFR/IXFR to an allow-list or TSIG-signed requests) and NOTIFY to secondaries.
   * Unset: transfers are REFUSED and nobody is notified.
   */
  xfr?: XfrOptions;
  /** How signed answers prove that a name or type does not exist: the zone's NSEC chain (default) or compact denial. */
  dnssecDenial?: DenialMode;
  /**
   * The daemon's "the API serves" (resolved once start-up is done): the re-sign scheduler's first
   * pass and the warm-up of every zone and key wait for it, so that they do not compete with the
   * start-up for the CPU. Neither guards what is served: an unwarmed zone is compiled by its first
   * query, and re-signing only moves serials. Unset: both start at once.
   */
  startAfter?: PromiseLike<unknown>;
  /** Anything else the authoritative server takes (rrl, tcp, refreshMs, ...), passed through. */
  server?: Omit<DnsServerOptions, 'store' | 'address' | 'port' | 'onQuery' | 'onError'>;
  onError?: (err: unknown) => void;
  onMeterError?: (err: Error, report: UsageReport) => void;
  onReport?: (report: UsageReport, receipt: Receipt) => void;
}

export interface DnsService {
  server: DnsServer;
  meter: UsageMeter;
  identity: ServiceIdentity;
  /** Re-signs unchanged signed zones (platform `dnssec.resign` entries). */
  resigner: ResignScheduler;
  /** Who may transfer and who is notified, as `GET /health` shows it (the key's name, never its secret). */
  xfr: XfrSummary;
  /** Closes the sockets, then flushes the counts left into the ledger. */
  close(): Promise<FlushResult>;
}

export interface XfrSummary {
  /** Addresses and prefixes that may transfer without TSIG. */
  allow: string[];
  /** The TSIG key's name (normalised: lower case, no final dot), or null. */
  tsig: string | null;
  notify: { address: string; port: number }[];
}

export function xfrSummary(xfr: XfrOptions | undefined): XfrSummary {
  return {
    allow: [...(xfr?.allow ?? [])],
    tsig: xfr?.tsig ? tsigKey(xfr.tsig).name : null,
    notify: (xfr?.notify ?? []).map((t) => ({ address: t.address, port: t.port ?? 53 })),
  };
}

function listenError(err: unknown, address: string, port: number): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  const where = `${address.includes(':') ? `[${address}]` : address}:${port}`;
  if (code === 'EADDRINUSE')
    return new ListenError(`cannot listen for DNS on ${where} (UDP/TCP): the address is in use (another DNS server?); choose --dns-port / NEXUS_DNS_PORT, or --no-dns`, code);
  if (code === 'EACCES') return new ListenError(`cannot listen for DNS on ${where}: permission denied (port ${port} needs root); choose --dns-port above 1023, or --no-dns`, code);
  if (code === 'EADDRNOTAVAIL') return new ListenError(`cannot listen for DNS on ${where}: no such local address; check --dns-address / NEXUS_DNS_ADDRESS`, code);
  return err;
}

export async function startDnsService(opts: DnsServiceOptions): Promise<DnsService> {
  const { platform } = opts;
  const address = opts.address ?? '127.0.0.1';
  const port = opts.port ?? 0;
  const xfr = opts.xfr ?? opts.server?.xfr;
  // The meter exists before the sockets (it only counts until its first flush); the identity is
  // registered after they are bound, so that a busy port leaves nothing behind in the ledger.
  const sink: { meter?: UsageMeter } = {};
  // Answers sent while the identity is being registered (a few ms on first start), per IMVU.
  const early = new Map<string, number>();
  let server: DnsServer;
  try {
    server = await startDnsServer({
      // Every zone is signed online with its key from the data directory (DO-bit queries only).
      dnssec: onlineSigner(platform.store, platform.dataDir, opts.dnssecDenial ? { denial: opts.dnssecDenial } : {}),
      ...opts.server,
      ...(opts.startAfter ? { warmAfter: opts.startAfter } : {}),
      // The daemon serves its API while the zone list is read; queries meanwhile wait for it.
      zonesInBackground: true,
      // Its periodic re-read of every zone only after a change the entries did not say (a repair).
      zonesKey: () => platform.integrity.tablesKey(ZONE_VIEW_SOURCES),
      // Worker processes sign with the same keys, read from the data directory.
      ...(opts.server?.workers ? { workers: { dataDir: platform.dataDir, ...opts.server.workers } } : {}),
      ...(xfr ? { xfr } : {}),
      store: platform.store,
      address,
      port,
      ...(opts.onError ? { onError: opts.onError } : {}),
      onQuery: (_zone, imvu, n = 1) => {
        // The platform's own zone is billed to nobody.
        if (imvu === PLATFORM_ZONE_IMVU) return;
        if (sink.meter) sink.meter.count(imvu, DNS_QUERIES, n);
        else early.set(imvu, (early.get(imvu) ?? 0) + n);
      },
    });
  } catch (err) {
    throw listenError(err, address, port);
  }
  let identity: ServiceIdentity;
  let suffix: string;
  try {
    // The platform's own zone, with these name servers, before the first answer for it matters.
    const row = await platform.store.get<{ suffix: string; edge_address: string }>('SELECT suffix, edge_address FROM platform LIMIT 1');
    if (!row) throw new Error('the ledger has no platform genesis entry');
    suffix = row.suffix;
    await ensurePlatformZone(platform, opts.nameservers?.length ? opts.nameservers : defaultNameServers(suffix, address, row.edge_address));
    // What that declaration changed, read like any committed change (nothing, on most starts): a
    // forced re-read of every zone here was a second full read on the start path. While the zone
    // list is still being read, queries wait for both.
    await server.view.settle(await platform.store.ledgerSize());
    identity = await ensureServiceIdentity(platform, DNS_SERVICE);
    // The one meter of DNS queries (gate 6): registered once, before its first interval starts.
    await ensureMeter(platform, identity, [DNS_QUERIES]);
  } catch (err) {
    await server.close();
    throw err;
  }
  const meter = new UsageMeter({
    service: DNS_SERVICE,
    key: identity.key,
    origin: platform.config.origin,
    submit: (signed) => platform.chokepoint.submit(signed),
    ...(opts.meterIntervalMs !== undefined ? { intervalMs: opts.meterIntervalMs } : {}),
    ...(opts.onMeterError ? { onError: opts.onMeterError } : {}),
    ...(opts.onReport ? { onReport: opts.onReport } : {}),
  }).start();
  sink.meter = meter;
  const resigner = new ResignScheduler({
    store: platform.store,
    // The platform's zone is re-signed by declaring it again, unchanged; the others by dnssec.resign.
    submit: (zone) => (zone === suffix ? restatePlatformZone(platform) : platform.chokepoint.submit(platform.chokepoint.platformCommand('dnssec.resign', { zone }))),
    ...(opts.resignCheckMs !== undefined ? { checkMs: opts.resignCheckMs } : {}),
    ...(opts.resignAfterMs !== undefined ? { afterMs: opts.resignAfterMs } : {}),
    ...(opts.onError ? { onError: opts.onError } : {}),
  }).start(opts.startAfter);
  for (const [imvu, n] of early) meter.count(imvu, DNS_QUERIES, n);
  early.clear();
  // Rollovers advance on the re-signing schedule: a step is due a DNSKEY TTL (an hour) after the
  // previous one, and gate 17 refuses any step taken early.
  let advancing: Promise<void> | undefined;
  const rollovers = setInterval(() => {
    advancing ??= advanceRollovers(platform)
      .then(() => undefined, (err: unknown) => opts.onError?.(err))
      .finally(() => (advancing = undefined));
  }, opts.resignCheckMs ?? 3_600_000);
  rollovers.unref();
  const m = meter;
  let closing: Promise<FlushResult> | undefined;
  return {
    server,
    meter: m,
    identity,
    resigner,
    xfr: xfrSummary(xfr),
    close: () =>
      (closing ??= (async () => {
        clearInterval(rollovers);
        await advancing;
        await resigner.close();
        await server.close();
        return m.close();
      })()),
  };
}
