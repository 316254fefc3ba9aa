import { deny, pass, isOwner, type Gate, type GateContext } from '../gate.ts';
import { DEFAULT_ENVELOPE, DEFAULT_PLAN, ENVELOPE_FIELDS, type PlanLimits } from '../commands.ts';
import type { GateResult } from '../../types.ts';

type Field = (typeof ENVELOPE_FIELDS)[number] | 'imvus';
const NAMES: Record<Field, string> = { cpu_cores: 'cores', memory_gb: 'GB memory', storage_gb: 'GB storage', iops: 'IOPS', imvus: 'IMVUs' };
const PLAN_KEY: Record<Field, keyof PlanLimits> = { cpu_cores: 'cpu_cores', memory_gb: 'memory_gb', storage_gb: 'storage_gb', iops: 'iops', imvus: 'imvus_per_creator' };

/** The plan in force: the latest `plan.publish`, or the defaults in code for a ledger that never published one. */
export async function planOf(ctx: GateContext): Promise<PlanLimits> {
  return (await ctx.db.get<PlanLimits & { [k: string]: number }>('SELECT cpu_cores, memory_gb, storage_gb, iops, imvus_per_creator FROM plan WHERE id = ?', ['plan'])) ?? { ...DEFAULT_PLAN };
}

/** The largest value of `field` the approvals in force for this IMVU or creator allow, if any. */
async function approved(ctx: GateContext, field: Field, imvu: string | undefined, creator: string): Promise<number | undefined> {
  const rows = await ctx.db.all<{ v: number | null }>(`SELECT ${field} AS v FROM quota_approvals WHERE (kind = 'imvu' AND subject = ?) OR (kind = 'creator' AND subject = ?)`, [imvu ?? '', creator]);
  const values = rows.map((r) => r.v).filter((v): v is number => typeof v === 'number');
  return values.length ? Math.max(...values) : undefined;
}

/** Values above the plan need a `quota.approve` that covers them; undefined when every one is within the plan or approved. */
async function abovePlan(ctx: GateContext, wanted: Partial<Record<Field, number>>, imvu: string | undefined, creator: string): Promise<string | undefined> {
  const plan = await planOf(ctx);
  const over: string[] = [];
  for (const [field, value] of Object.entries(wanted) as [Field, number][]) {
    const limit = plan[PLAN_KEY[field]];
    if (value <= limit) continue;
    const ok = await approved(ctx, field, imvu, creator);
    if (ok === undefined || value > ok) over.push(`${value} ${NAMES[field]} (plan ${limit}${ok === undefined ? '' : `, approved ${ok}`})`);
  }
  return over.length ? over.join(', ') : undefined;
}

async function createWithinPlan(ctx: GateContext): Promise<GateResult> {
  const owner = String(ctx.body.owner);
  const env = { ...DEFAULT_ENVELOPE, ...((ctx.body.envelope as Record<string, number> | undefined) ?? {}) };
  const count = await ctx.db.get<{ n: number }>("SELECT COUNT(*) AS n FROM imvus WHERE owner = ? AND status <> 'exited'", [owner]);
  const wanted: Partial<Record<Field, number>> = { imvus: Number(count?.n ?? 0) + 1 };
  for (const f of ENVELOPE_FIELDS) wanted[f] = env[f];
  const over = await abovePlan(ctx, wanted, undefined, owner);
  if (over) return deny(15, `above the platform's plan without an approval (quota.approve): ${over}`);
  return pass(15, 'within the plan (or approved above it)');
}

export const gate: Gate = {
  number: 15,
  name: 'No Silent Throttling',
  enforcedIn:
    'src/core/policy/gates/15-no-silent-throttling.ts (envelope decreases need the creator, denial notifies the creator; envelopes and IMVUs per creator above the published plan need a quota.approve)',
  guards: ['imvu.create', 'imvu.import', 'imvu.scale', 'imvu.suspend', 'imvu.resume', 'quota.approve'],
  status: 'enforced',
  async check(ctx) {
    const role = ctx.actor?.role;
    if (ctx.command.type === 'imvu.create' || ctx.command.type === 'imvu.import') return createWithinPlan(ctx);
    if (ctx.command.type === 'quota.approve') {
      if (role !== 'admin' && role !== 'platform') return deny(15, `only an admin or the platform approves quotas above the plan, not a ${role ?? 'stranger'}`);
      const subject = typeof ctx.body.imvu === 'string' ? ctx.body.imvu : String(ctx.body.creator);
      return pass(15, `approval above the plan for ${subject} by ${ctx.actor?.name}`);
    }
    if (!ctx.imvu) return deny(15, `unknown IMVU ${String(ctx.body.imvu)}`);
    if (ctx.command.type !== 'imvu.scale') {
      if (role !== 'admin' && role !== 'platform') return deny(15, `only an admin or the platform may ${ctx.command.type.slice(5)} an IMVU`);
      if (ctx.imvu.status === 'exited') return deny(15, `${ctx.imvu.id} has exited`);
      if (ctx.command.type === 'imvu.resume' && ctx.imvu.status !== 'suspended') return deny(15, `${ctx.imvu.id} is ${ctx.imvu.status}, not suspended`);
      // A no-op is never an allowed entry: suspending a suspended IMVU changes nothing.
      if (ctx.command.type === 'imvu.suspend' && ctx.imvu.status === 'suspended') return deny(15, `${ctx.imvu.id} is already suspended: no change`);
      return pass(15, `${ctx.command.type} by ${ctx.actor?.name} is recorded and the creator is notified`);
    }
    const env = await ctx.db.get<Record<string, number>>('SELECT * FROM envelopes WHERE imvu = ?', [ctx.imvu.id]);
    if (!env) return deny(15, `${ctx.imvu.id} has no envelope`);
    const changes = ENVELOPE_FIELDS.filter((f) => typeof ctx.body[f] === 'number');
    if (changes.length === 0) return deny(15, 'scale names no envelope field to change');
    if (changes.every((f) => ctx.body[f] === Number(env[f]))) return deny(15, `${ctx.imvu.id} already has that envelope: no change`);
    const decreases = changes.filter((f) => (ctx.body[f] as number) < (env[f] ?? 0));
    if (decreases.length > 0 && !isOwner(ctx)) {
      const what = decreases.map((f) => `${f} ${env[f]} -> ${String(ctx.body[f])}`).join(', ');
      return deny(15, `decrease of ${ctx.imvu.id} (${what}) needs its creator's signature; ${ctx.actor?.name} (${role}) alone cannot throttle it`);
    }
    if (!isOwner(ctx) && role !== 'admin' && role !== 'platform') return deny(15, `only the creator, an admin or the platform may scale ${ctx.imvu.id}`);
    const increases: Partial<Record<Field, number>> = {};
    for (const f of changes) if ((ctx.body[f] as number) > (env[f] ?? 0)) increases[f] = ctx.body[f] as number;
    const over = await abovePlan(ctx, increases, ctx.imvu.id, ctx.imvu.owner);
    if (over) return deny(15, `increase of ${ctx.imvu.id} above the platform's plan without an approval (quota.approve): ${over}`);
    return pass(15, decreases.length ? 'decrease signed by the creator' : 'increase only, within the plan (or approved above it)');
  },
};
