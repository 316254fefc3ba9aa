import type { SqlReader } from '../store/index.ts';
import type { Command, CommandType, GateResult, Role } from '../types.ts';

export interface IdentityRow {
  id: string;
  name: string;
  role: Role;
  public_key: string;
  entry: number;
  [k: string]: string | number;
}

export interface ImvuRow {
  id: string;
  seq: number;
  name: string;
  owner: string;
  jurisdiction: string;
  status: string;
  domain: string;
  stage_domain: string;
  created_at: string;
  entry: number;
  [k: string]: string | number;
}

export interface PlatformRow {
  id: string;
  origin: string;
  suffix: string;
  edge_address: string;
  entry: number;
  [k: string]: string | number;
}

/** What a gate sees: the verified command, its actor, the committed state, and the entry's time. */
export interface GateContext {
  command: Command;
  body: Record<string, unknown>;
  actor: IdentityRow | undefined;
  imvu: ImvuRow | undefined;
  platform: PlatformRow | undefined;
  index: number;
  at: string;
  db: SqlReader;
}

export interface Gate {
  number: number;
  name: string;
  /** Where the rule is enforced, for `nexus gates`. */
  enforcedIn: string;
  /** Command types this gate guards; 'all' for every command. */
  guards: readonly CommandType[] | 'all';
  /** 'enforced' when the gate can decide now; otherwise why not yet, reported on every command it guards. */
  status: 'enforced' | { notYetEnforced: string };
  check(ctx: GateContext): Promise<GateResult>;
  /** A check of commands it does not guard; its result is recorded only when it has one. */
  beyond?(ctx: GateContext): Promise<GateResult | undefined>;
}

export const pass = (gate: number, reason?: string): GateResult => (reason ? { gate, status: 'pass', reason } : { gate, status: 'pass' });
export const deny = (gate: number, reason: string): GateResult => ({ gate, status: 'deny', reason });

export function isOwner(ctx: GateContext): boolean {
  return !!ctx.imvu && !!ctx.actor && ctx.imvu.owner === ctx.actor.id;
}

export async function isMember(ctx: GateContext, imvu: string, identity: string): Promise<boolean> {
  return !!(await ctx.db.get('SELECT 1 AS x FROM members WHERE imvu = ? AND identity = ?', [imvu, identity]));
}

/** A gate whose enforcement lives in a system not built yet: it says so on every command it guards. */
export function notYetEnforced(number: number, name: string, guards: readonly CommandType[], enforcedIn: string, why: string): Gate {
  return {
    number,
    name,
    enforcedIn,
    guards,
    status: { notYetEnforced: why },
    async check() {
      return { gate: number, status: 'not-enforced', reason: `not yet enforced: ${why}` };
    },
  };
}
