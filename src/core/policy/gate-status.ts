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

/**
 * Gate 0 runs before the 17: a command whose type is unknown, whose body does not match its schema
 * (src/core/policy/commands.ts), that is too large for one entry, or that contradicts the state
 * (src/core/policy/preconditions.ts: the IMVU or zone it names does not exist, the name it creates
 * is taken, a record value is malformed) is denied by gate 0 and still recorded.
 */
export const GATE_ZERO: GateInfo = {
  number: 0,
  name: 'Schema and preconditions',
  file: 'src/core/policy/preconditions.ts',
  enforcedIn: 'src/core/policy/chokepoint.ts, before the 17: body schemas (commands.ts) and preconditions (preconditions.ts: what it names exists, what it creates is free, values are well-formed)',
  guards: 'all',
  status: 'enforced',
};

/** Gate 0 and the 17 gates, with where each is enforced and whether it is yet, for `nexus gates`. */
export function gateStatus(): GateInfo[] {
  return [{ ...GATE_ZERO }, ...GATES.map((g): GateInfo => ({
    number: g.number,
    name: g.name,
    file: `src/core/policy/gates/${String(g.number).padStart(2, '0')}-${slug(g.name)}.ts`,
    enforcedIn: g.enforcedIn,
    guards: g.guards === 'all' ? 'all' : [...g.guards],
    status: g.status === 'enforced' ? 'enforced' : 'not-yet-enforced',
    ...(g.status === 'enforced' ? {} : { reason: g.status.notYetEnforced }),
  }))];
}
