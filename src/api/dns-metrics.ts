// Prometheus series of the DNS service, read from its counters at scrape time (DnsServer.stats()
// and the usage meter), registered on the daemon's own registry.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { DnsService } from '../domains/dns-service.ts';

export function registerDnsMetrics(registry: Registry, dns: DnsService): void {
  const stats = () => dns.server.stats();
  /** A counter whose value is read from `read()` at scrape time. */
  const counter = (name: string, help: string, read: () => number | [Record<string, string>, number][], labelNames: string[] = []) =>
    new Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        const v = read();
        if (typeof v === 'number') this.inc(v);
        else for (const [labels, n] of v) this.inc(labels, n);
      },
    });
  counter('nexus_dns_queries_total', 'DNS messages received, by transport.', () => [
    [{ transport: 'udp' }, stats().udpQueries],
    [{ transport: 'tcp' }, stats().tcpQueries],
  ], ['transport']);
  counter('nexus_dns_responses_total', 'DNS responses sent.', () => stats().responses);
  counter('nexus_dns_answered_total', 'Responses for hosted zones (what metering counts).', () => stats().answered);
  counter('nexus_dns_dropped_total', 'DNS queries not answered, by reason (rrl: rate limited; busy: too many in flight; ignored: not a query, or a suspicious source port).', () => [
    [{ reason: 'rrl' }, stats().rrlDropped],
    [{ reason: 'busy' }, stats().busyDropped],
    [{ reason: 'ignored' }, stats().ignored],
  ], ['reason']);
  counter('nexus_dns_rrl_slipped_total', 'Rate-limited queries answered small instead of dropped (slip): empty with TC, or BADCOOKIE to a client with a client cookie.', () => stats().rrlSlipped);
  counter('nexus_dns_tcp_closed_total', 'DNS TCP connections refused or closed to protect the others.', () => [
    [{ reason: 'per-source-limit' }, stats().tcpRefused],
    [{ reason: 'evicted-idle' }, stats().tcpEvicted],
    [{ reason: 'deadline' }, stats().tcpTimeouts],
  ], ['reason']);
  counter('nexus_dns_errors_total', 'DNS socket and handling errors.', () => stats().errors);
  counter('nexus_dns_tcp_connections_total', 'DNS TCP connections accepted.', () => stats().tcpConnections);
  counter('nexus_dns_response_cache_total', 'Lookups in the cache of encoded answers, by result (queries of other shapes are not looked up).', () => [
    [{ result: 'hit' }, stats().cacheHits],
    [{ result: 'miss' }, stats().cacheMisses],
  ], ['result']);
  counter('nexus_usage_reports_total', 'Usage reports the DNS service submitted to the ledger, by outcome (failed ones are retried).', () => {
    const m = dns.meter.stats();
    return [
      [{ service: dns.meter.service, outcome: 'allowed' }, m.reported],
      [{ service: dns.meter.service, outcome: 'denied' }, m.denied],
      [{ service: dns.meter.service, outcome: 'failed' }, m.failed],
    ];
  }, ['service', 'outcome']);
  new Gauge({
    name: 'nexus_dns_open_connections',
    help: 'DNS TCP connections open now.',
    registers: [registry],
    collect() {
      this.set(stats().openConnections);
    },
  });
  new Gauge({
    name: 'nexus_dns_response_cache_entries',
    help: 'Encoded answers held by the response cache.',
    registers: [registry],
    collect() {
      this.set(stats().cacheEntries);
    },
  });
  new Gauge({
    name: 'nexus_dns_rrl_buckets',
    help: 'Source prefixes tracked by response rate limiting.',
    registers: [registry],
    collect() {
      this.set(stats().rrlBuckets);
    },
  });
  new Gauge({
    name: 'nexus_usage_pending_units',
    help: 'Units counted by the DNS service and not yet recorded in the ledger.',
    labelNames: ['service'] as const,
    registers: [registry],
    collect() {
      this.set({ service: dns.meter.service }, Number(dns.meter.stats().pendingUnits));
    },
  });
}
