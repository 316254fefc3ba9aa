// The routing policy of an IMVU (spec: routing-policy.yaml) as the gateway reads it: what a route's
// backend may name, how a rate limit reads, and the YAML form `nexus route set --policy` loads.
//
// A backend names a port of the IMVU's OWN workload (`public-api:3000`); the name is a label for
// people, the address is always the IMVU's workload address, computed from imvus.seq. Addresses,
// host names and `localhost` are refused outright (gate 8), so no route can point at another
// IMVU's /30, the host's loopback services or the daemon; rendering re-derives the address and
// never reads one from the policy (src/network/gateway/table.ts).
import { isIP } from 'node:net';
import type { z } from 'zod';
import type { TrafficPolicy } from '../../core/policy/commands.ts';
import { workloadNet } from '../../compute/fabric/addresses.ts';

export type Policy = z.infer<typeof TrafficPolicy>;
export type Route = Policy['public'][number];
export const ROUTE_CLASSES = ['public', 'private', 'restricted'] as const;
export type RouteClass = (typeof ROUTE_CLASSES)[number];

export const DEFAULT_BACKEND_PORT = 80;
/** The window of the gateway's request-rate counters; a route's rate_limit is scaled to it. */
export const RATE_WINDOW_S = 60;
/** Requests per window when a route sets no rate_limit (per IMVU route; threat 3.1). */
export const DEFAULT_RATE_PER_WINDOW = 10_000;

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/** The backend's label and port, or why it cannot be one (an address, a host name, a bad port). */
export function parseBackend(backend: string): { name: string; port: number } | { error: string } {
  const i = backend.lastIndexOf(':');
  const name = i < 0 ? backend : backend.slice(0, i);
  const portText = i < 0 ? undefined : backend.slice(i + 1);
  const own = 'a backend names a port of the IMVU\'s own workload (name:port, e.g. web:8080)';
  if (isIP(name) || isIP(backend) || name.startsWith('[') || /^[0-9.]+$/.test(name)) return { error: `backend ${backend} is an address; ${own}` };
  if (name.includes('.')) return { error: `backend ${backend} is a host name; ${own}` };
  if (/^localhost$/i.test(name)) return { error: `backend ${backend} names the host's loopback; ${own}` };
  if (!LABEL.test(name)) return { error: `backend ${backend}: the name must be a label of letters, digits and -; ${own}` };
  if (portText === undefined) return { name, port: DEFAULT_BACKEND_PORT };
  if (!/^[1-9]\d{0,4}$/.test(portText) || Number(portText) > 65535) return { error: `backend ${backend}: port must be 1-65535` };
  return { name, port: Number(portText) };
}

/** `1000/min` as a count per RATE_WINDOW_S, rounded up (never 0). */
export function ratePerWindow(rate: string | undefined): number {
  if (rate === undefined) return DEFAULT_RATE_PER_WINDOW;
  const m = /^([1-9]\d{0,8})\/(s|min|h)$/.exec(rate);
  if (!m) throw new Error(`rate_limit ${rate}: must be N/s, N/min or N/h`);
  const per = m[2] === 's' ? 1 : m[2] === 'min' ? 60 : 3600;
  return Math.max(1, Math.ceil((Number(m[1]) * RATE_WINDOW_S) / per));
}

function validPrefix(p: string): boolean {
  const [addr, len, ...rest] = p.split('/');
  if (rest.length || !addr) return false;
  const v = isIP(addr);
  if (!v) return false;
  if (len === undefined) return true;
  return /^\d{1,3}$/.test(len) && Number(len) <= (v === 4 ? 32 : 128);
}

/**
 * Everything gate 8 refuses in a policy that its schema let through: backends that are not the
 * IMVU's own workload, allow-lists that are not IP prefixes, one path routed twice, a private
 * route that waives identity, a restricted route without roles.
 */
export function policyProblems(policy: Policy): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const cls of ROUTE_CLASSES) {
    for (const r of policy[cls]) {
      const b = parseBackend(r.backend);
      if ('error' in b) out.push(`${cls} ${r.path}: ${b.error}`);
      for (const p of r.ip_whitelist ?? []) if (!validPrefix(p)) out.push(`${cls} ${r.path}: ip_whitelist entry ${p} is not an IP address or prefix`);
      if (seen.has(r.path)) out.push(`${r.path} is routed twice; each path has one route`);
      seen.add(r.path);
      if (cls === 'private' && r.require_identity === false) out.push(`private ${r.path}: a private route always requires an identity`);
      if (cls === 'restricted' && !r.require_roles?.length) out.push(`restricted ${r.path}: a restricted route lists the roles it admits (require_roles)`);
      if (cls === 'public' && (r.require_roles?.length || r.require_identity)) out.push(`public ${r.path}: a public route admits anyone; make it private or restricted`);
    }
  }
  return out;
}

/**
 * Where a backend's traffic goes: the IMVU's own workload address and the backend's port. The
 * address comes from the IMVU's sequence number alone; whatever the policy says cannot change it.
 */
export function resolveBackend(backend: string, seq: number, range?: string): { address: string; port: number } {
  const b = parseBackend(backend);
  if ('error' in b) throw new Error(b.error);
  return { address: workloadNet(seq, range).workloadAddress, port: b.port };
}
