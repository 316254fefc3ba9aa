// Prometheus metrics of one server instance (its own registry, so several servers can share a process).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { COMMAND_TYPES } from '../core/types.ts';

export type Outcome = 'allowed' | 'denied' | 'unauthenticated' | 'error';

export interface Metrics {
  registry: Registry;
  command(type: unknown, outcome: Outcome): void;
  request(method: string, route: string, status: number, seconds: number): void;
  /** An attempt refused without an entry, by source prefix and reason. */
  unauthenticated(prefix: string, reason: string): void;
  /** A read refused before its handler: unsigned or badly signed, too many at once, or not an admin's (metrics). */
  readRefused(reason: 'unauthenticated' | 'busy' | 'forbidden'): void;
}

/** Distinct source prefixes labelled at most; the rest count as `other` (bounded cardinality). */
const MAX_PREFIX_LABELS = 256;

const KNOWN = new Set<string>(COMMAND_TYPES);

export function createMetrics(ledgerSize: () => Promise<number>): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'nexus_' });
  const commands = new Counter({
    name: 'nexus_commands_total',
    help: 'Commands submitted over the API, by command type and outcome (allowed, denied; unauthenticated and error = not recorded).',
    labelNames: ['type', 'outcome'] as const,
    registers: [registry],
  });
  new Gauge({
    name: 'nexus_ledger_size',
    help: 'Entries in the ledger (committed).',
    registers: [registry],
    async collect() {
      this.set(await ledgerSize());
    },
  });
  const durations = new Histogram({
    name: 'nexus_http_request_duration_seconds',
    help: 'HTTP request durations by method, route and status code.',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  });
  const refused = new Counter({
    name: 'nexus_unauthenticated_attempts_total',
    help: 'Attempts refused before the ledger (bad or missing signature, unknown identity, replay, other platform), by source prefix and reason.',
    labelNames: ['prefix', 'reason'] as const,
    registers: [registry],
  });
  const readsRefused = new Counter({
    name: 'nexus_reads_refused_total',
    help: 'Reads refused before their handler: unauthenticated (unsigned or bad RFC 9421 signature), busy (too many signed reads), forbidden (metrics for a non-admin).',
    labelNames: ['reason'] as const,
    registers: [registry],
  });
  const prefixes = new Set<string>();
  return {
    registry,
    readRefused(reason) {
      readsRefused.inc({ reason });
    },
    unauthenticated(prefix, reason) {
      if (!prefixes.has(prefix) && prefixes.size < MAX_PREFIX_LABELS) prefixes.add(prefix);
      refused.inc({ prefix: prefixes.has(prefix) ? prefix : 'other', reason });
    },
    command(type, outcome) {
      // Unknown types come from clients: fold them into one label so they cannot blow up cardinality.
      commands.inc({ type: typeof type === 'string' && KNOWN.has(type) ? type : 'invalid', outcome });
    },
    request(method, route, status, seconds) {
      durations.observe({ method, route, status: String(status) }, seconds);
    },
  };
}
