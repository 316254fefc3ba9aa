import { GATES } from './gates/index.ts';

export interface GateInfo {
  number: number;
  name: string;
  file: string;
  enforcedIn: string;
  guards: string[] | 'all';
  status: 'enforced' | 'not-yet-enforced';
  reason?: string;
}

const slug = (name: string) =>
  name
    .toLowerCase()
    .replace(/\(.*\)/, '')
    .trim()
    .replace(/[^a-z0-9]+/g, '-');

/** The 17 gates with where each is enforced and whether it is yet, for `nexus gates`. */
export function gateStatus(): GateInfo[] {
  return GATES.map((g) => ({
    number: g.number,
    name: g.name,
    file: `src/core/policy/gates/${String(g.number).padStart(2, '0')}-${slug(g.name)}.ts`,
    enforcedIn: g.enforcedIn,
    guards: g.guards === 'all' ? 'all' : [...g.guards],
    status: g.status === 'enforced' ? 'enforced' : 'not-yet-enforced',
    ...(g.status === 'enforced' ? {} : { reason: g.status.notYetEnforced }),
  }));
}
