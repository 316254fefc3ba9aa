import { Command } from 'commander';
import type { ImvuListItem, ImvuSummary } from '../../imvu/summary.ts';
import type { Json } from '../../core/types.ts';
import { gb, imvuId, imvuName, int, jurisdiction, text } from '../args.ts';
import { JURISDICTIONS } from '../../core/policy/vocabulary.ts';
import { ApiError, type Receipt } from '../client.ts';
import { addExitCommands } from './exit.ts';
import { addImportCommand } from './import.ts';
import { Ctx, receiptLine } from '../context.ts';
import { CliError, EXIT, usage } from '../errors.ts';
import { plural, table } from '../format.ts';

export function listOf<T>(res: unknown, key: string): T[] {
  if (Array.isArray(res)) return res as T[];
  const v = (res as Record<string, unknown> | null)?.[key];
  return Array.isArray(v) ? (v as T[]) : [];
}

/** id -> name of every identity the daemon knows. */
export async function identityNames(ctx: Ctx): Promise<Map<string, string>> {
  const ids = listOf<{ id: string; name: string }>(await ctx.get('/v1/identities'), 'identities');
  return new Map(ids.map((i) => [i.id, i.name]));
}

export async function fetchImvu(ctx: Ctx, id: string): Promise<ImvuSummary> {
  const res = await ctx.get<ImvuSummary | { imvu: ImvuSummary }>(`/v1/imvus/${encodeURIComponent(id)}`);
  return 'imvu' in res && res.imvu && typeof res.imvu === 'object' ? res.imvu : (res as ImvuSummary);
}

interface EnvelopeFlags {
  cpu?: number;
  memory?: number;
  storage?: number;
  iops?: number;
}

function envelopeOf(o: EnvelopeFlags): { [k: string]: Json } {
  const e: { [k: string]: Json } = {};
  if (o.cpu !== undefined) e.cpu_cores = o.cpu;
  if (o.memory !== undefined) e.memory_gb = o.memory;
  if (o.storage !== undefined) e.storage_gb = o.storage;
  if (o.iops !== undefined) e.iops = o.iops;
  return e;
}

function envelopeFlags(cmd: Command): Command {
  return cmd
    .option('--cpu <cores>', 'CPU cores', int(1, 1024))
    .option('--memory <GB>', 'memory in GB (e.g. 8 or 8GB)', gb(1, 65536))
    .option('--storage <GB>', 'storage in GB', gb(1, 1_000_000))
    .option('--iops <n>', 'I/O operations per second', int(1, 10_000_000));
}

function routesByClass(routes: Json): [string, string[]][] {
  if (!routes || typeof routes !== 'object' || Array.isArray(routes)) return [];
  const order = (c: string) => ['public', 'private', 'restricted'].indexOf(c) + 1 || 99;
  return Object.entries(routes)
    .filter(([, list]) => Array.isArray(list))
    .sort(([a], [b]) => order(a) - order(b))
    .map(([cls, list]) => [cls, (list as { path?: string }[]).map((r) => String(r?.path ?? '?'))]);
}

function computeLine(i: ImvuSummary): string {
  const e = i.envelope;
  if (!e) return 'Compute: no envelope';
  return `Compute: ${plural(e.cpu_cores, 'core')}, ${e.memory_gb} GB RAM, ${e.storage_gb} GB storage, ${e.iops} IOPS (burst ${e.burst.multiplier}x for ${e.burst.minutes} min)`;
}

function routesLine(i: ImvuSummary): string {
  const classes = routesByClass(i.routes);
  if (!classes.length) return 'Network routes: none yet';
  return `Network routes: ${classes.map(([cls, paths]) => `${cls} ${paths.length ? paths.join(' ') : '(none)'}`).join(', ')}`;
}

function dnsLine(i: ImvuSummary): string {
  const z = i.zone;
  if (!z) return 'DNS: no zone';
  const types = new Map<string, number>();
  for (const r of z.records) types.set(r.type, (types.get(r.type) ?? 0) + 1);
  const kinds = ['SOA', ...[...types].map(([t, n]) => (n > 1 ? `${t}×${n}` : t))].join(', ');
  return `DNS records: zone ${z.zone} (serial ${z.serial}): ${kinds}`;
}

/** What the running daemon serves, per system (GET /health `serving`). */
export interface Serving {
  dns: boolean;
  mail: boolean;
  compute: boolean;
  routes: boolean;
}

/** Which system serves what a summary line describes. */
function systemOf(line: string): keyof Serving | undefined {
  if (/^(Domain|Stage domain|Other domains|DNS records):/.test(line)) return 'dns';
  if (/^Mail:/.test(line)) return 'mail';
  if (/^Compute:/.test(line)) return 'compute';
  if (/^Network routes:/.test(line)) return 'routes';
  return undefined;
}

/** What the daemon says it serves now; if it cannot say (an older daemon), nothing is claimed as served. */
export async function serving(ctx: Ctx): Promise<Serving> {
  const none = { dns: false, mail: false, compute: false, routes: false };
  try {
    const h = await ctx.client.get<{ serving?: Partial<Serving> }>('/health');
    return { ...none, ...Object.fromEntries(Object.entries(h.serving ?? {}).filter(([, v]) => typeof v === 'boolean')) };
  } catch {
    return none;
  }
}

/**
 * ✅ for what the daemon serves now; ⏳ for what is only recorded, so the output never claims a
 * service that does not run (the daemon says which, in GET /health).
 */
export function markServed(line: string, served: Serving): string {
  const system = systemOf(line);
  if (!system || served[system]) return `✅ ${line}`;
  return `⏳ ${line} (recorded in the ledger; not served: ${system === 'dns' ? 'this daemon runs no DNS server' : `this daemon runs no ${system === 'routes' ? 'HTTP gateway' : system === 'mail' ? 'mail server' : 'compute fabric'}`})`;
}

/** The summary in the spirit of the lifecycle spec's example. */
export function summaryLines(i: ImvuSummary): string[] {
  return [
    `${i.id} ${i.status === 'active' ? 'is active' : `is ${i.status}`}: ${i.name}, owned by ${i.owner.name ?? i.owner.id}, jurisdiction ${i.jurisdiction}`,
    `Domain: ${i.domain}`,
    `Stage domain: ${i.stageDomain}`,
    ...(i.domains.filter((d) => d.name !== i.domain && d.name !== i.stageDomain).length
      ? [`Other domains: ${i.domains.filter((d) => d.name !== i.domain && d.name !== i.stageDomain).map((d) => d.name).join(', ')}`]
      : []),
    `Mail: ${i.mailboxes.length ? i.mailboxes.join(', ') : 'no mailboxes'}${i.dkim ? ` (DKIM ${i.dkim.record})` : ''}`,
    computeLine(i),
    routesLine(i),
    dnsLine(i),
  ];
}

/**
 * A command that would change nothing (suspend a suspended IMVU, resume an active one) is refused
 * here, after reading the state, before anything is signed: it says so, records nothing, exits 0.
 * The daemon refuses it too (gate 15), as a recorded denial, never as an allowed entry.
 */
async function unchanged(ctx: Ctx, id: string, status: 'active' | 'suspended', verb: string): Promise<boolean> {
  // A signer who may not read the IMVU (or one that does not exist) still has its attempt decided
  // and recorded by the daemon: only a state read here can make it a no-op.
  const imvu = await fetchImvu(ctx, id).catch((err: unknown) => {
    if (err instanceof ApiError && (err.status === 403 || err.status === 404)) return undefined;
    throw err;
  });
  if (!imvu || imvu.status !== status) return false;
  ctx.print({ imvu: id, status, index: null, changed: false }, () => `${id} is already ${status}: nothing to ${verb}; no change, nothing recorded`);
  return true;
}

export function imvuCommand(): Command {
  const cmd = new Command('imvu').description('create, inspect, scale, suspend, resume and exit IMVUs');

  envelopeFlags(
    cmd
      .command('create')
      .description("create an IMVU, signed by its owner's key (domain, DNS zone, mail, routes and compute envelope follow)")
      .requiredOption('--name <name>', 'IMVU name (letters, digits, _ and -, starting with a letter)', imvuName)
      .requiredOption('--owner <identity>', 'owner: a local creator identity (name or id)')
      .requiredOption('--jurisdiction <code>', 'jurisdiction tag, upper case, such as US-CCPA or EU-GDPR (all codes below)', jurisdiction)
      .addHelpText('after', `\nJurisdiction codes (gate 9):\n  ${JURISDICTIONS.join(', ')}`),
  ).action(async (o: EnvelopeFlags & { name: string; owner: string; jurisdiction: string }, c: Command) => {
    const ctx = Ctx.of(c);
    const owner = await ctx.identityId(o.owner);
    const signer = ctx.signer([owner], 'imvu create');
    const envelope = envelopeOf(o);
    const body: { [k: string]: Json } = { name: o.name, owner, jurisdiction: o.jurisdiction };
    if (Object.keys(envelope).length) body.envelope = envelope;
    const s = await ctx.submit<Receipt & { imvu?: ImvuSummary }>('POST', '/v1/imvus', 'imvu.create', body, signer);
    const served = await serving(ctx);
    const imvu = s.receipt.imvu;
    if (!imvu) throw new CliError(`the daemon recorded the creation (ledger entry ${s.receipt.index}) but did not describe the IMVU; see \`nexus imvu list\``, EXIT.denied);
    ctx.print({ ...imvu, index: s.receipt.index, checkpoint: s.checkpoint.size, serving: served }, () => {
      const [first, ...rest] = summaryLines(imvu);
      return [`✅ ${imvu.id} created: ${first!.replace(/^\S+ is active: /, '')}`, ...rest.map((l) => markServed(l, served)), `✅ ${receiptLine(s)}`];
    });
  });

  cmd
    .command('list')
    .description('list IMVUs')
    .action(async (_o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const list = listOf<ImvuListItem>(await ctx.get('/v1/imvus'), 'imvus');
      const names = ctx.json || !list.length ? new Map<string, string>() : await identityNames(ctx);
      ctx.print(list, () =>
        list.length
          ? table(['ID', 'NAME', 'STATUS', 'DOMAIN', 'JURISDICTION', 'OWNER'], list.map((i) => [i.id, i.name, i.status, i.domain, i.jurisdiction, names.get(i.owner) ?? i.owner]))
          : 'no IMVUs yet',
      );
    });

  cmd
    .command('show')
    .description('show one IMVU: domains, zone, mailboxes, routes, envelope, and what was tried against it (notifications)')
    .argument('<imvu>', 'IMVU id such as IMVU-001', imvuId)
    .action(async (id: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const imvu = await fetchImvu(ctx, id);
      const { notifications } = await ctx.get<{ notifications: { entry: number; gate: number; message: string; at: string }[] }>(
        `/v1/imvus/${encodeURIComponent(id)}/notifications`,
      );
      ctx.print({ ...imvu, notifications }, () => [
        ...summaryLines(imvu),
        `Members: ${imvu.members.length ? imvu.members.join(', ') : 'none'}`,
        `Created ${imvu.createdAt} (ledger entry ${imvu.entry})`,
        ...(notifications.length
          ? [`Notifications (${notifications.length}):`, ...notifications.map((n) => `  ⚠️  #${n.entry} ${n.at} gate ${n.gate}: ${n.message}`)]
          : ['Notifications: none']),
      ]);
    });

  cmd
    .command('gateway')
    .description("what the gateway serves for an IMVU against the ledger: its route table and the certificate HAProxy serves (read back over its runtime API) next to the ledger's certificate.issued")
    .argument('<imvu>', 'IMVU id such as IMVU-001', imvuId)
    .action(async (id: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const g = await ctx.get<GatewayView>(`/v1/imvus/${encodeURIComponent(id)}/gateway`);
      ctx.print(g, () => gatewayLines(g));
    });

  envelopeFlags(
    cmd
      .command('scale')
      .description("change an IMVU's compute envelope (a decrease needs the creator's signature)")
      .argument('<imvu>', 'IMVU id', imvuId),
  ).action(async (id: string, o: EnvelopeFlags, c: Command) => {
    const ctx = Ctx.of(c);
    const patch = envelopeOf(o);
    if (!Object.keys(patch).length) throw usage('imvu scale needs at least one of --cpu, --memory, --storage, --iops');
    const before = await fetchImvu(ctx, id);
    const now = before.envelope as unknown as Record<string, number> | null;
    if (now && Object.entries(patch).every(([f, v]) => now[f] === v)) {
      ctx.print({ imvu: id, before: before.envelope, after: before.envelope, index: null, changed: false }, () => `${id} already has that envelope: no change, nothing recorded`);
      return;
    }
    const signer = ctx.signer([before.owner.id], `imvu scale ${id}`);
    const s = await ctx.submit('POST', `/v1/imvus/${id}/scale`, 'imvu.scale', { imvu: id, ...patch }, signer);
    const after = await fetchImvu(ctx, id);
    const served = await serving(ctx);
    ctx.print({ imvu: id, before: before.envelope, after: after.envelope, index: s.receipt.index }, () => {
      const b = before.envelope as unknown as Record<string, number> | null;
      const a = after.envelope as unknown as Record<string, number> | null;
      const changes = Object.keys(patch).map((f) => `${f} ${b?.[f] ?? '?'} → ${a?.[f] ?? '?'}`);
      return [`✅ ${id} envelope: ${changes.join(', ')}`, markServed(computeLine(after), served), `✅ 55-45 split unchanged`, `✅ ${receiptLine(s)}`];
    });
  });

  cmd
    .command('suspend')
    .description('suspend an IMVU (admin or platform; the creator is notified, exit stays possible)')
    .argument('<imvu>', 'IMVU id', imvuId)
    .requiredOption('--reason <text>', 'why (recorded in the ledger and sent to the creator; at most 500 characters)', text(500))
    .action(async (id: string, o: { reason: string }, c: Command) => {
      const ctx = Ctx.of(c);
      if (await unchanged(ctx, id, 'suspended', 'suspend')) return;
      const s = await ctx.submit('POST', `/v1/imvus/${id}/suspend`, 'imvu.suspend', { imvu: id, reason: o.reason }, ctx.signer([], `imvu suspend ${id}`));
      ctx.print({ imvu: id, status: 'suspended', index: s.receipt.index }, () => [`✅ ${id} suspended: ${o.reason}`, `✅ ${receiptLine(s)}`]);
    });

  cmd
    .command('resume')
    .description('resume a suspended IMVU')
    .argument('<imvu>', 'IMVU id', imvuId)
    .action(async (id: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      if (await unchanged(ctx, id, 'active', 'resume')) return;
      const s = await ctx.submit('POST', `/v1/imvus/${id}/resume`, 'imvu.resume', { imvu: id }, ctx.signer([], `imvu resume ${id}`));
      ctx.print({ imvu: id, status: 'active', index: s.receipt.index }, () => [`✅ ${id} resumed`, `✅ ${receiptLine(s)}`]);
    });

  addExitCommands(cmd);
  addImportCommand(cmd);

  return cmd;
}

export function memberCommand(): Command {
  const cmd = new Command('member').description('IMVU members');
  cmd
    .command('add')
    .description('add a member to an IMVU (signed by its creator)')
    .argument('<imvu>', 'IMVU id', imvuId)
    .argument('<identity>', 'the member: name or id')
    .action(async (id: string, who: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const member = await ctx.identityId(who);
      const imvu = await fetchImvu(ctx, id);
      if (imvu.members.includes(member)) {
        // Nothing to change: said so, and nothing is signed or recorded.
        ctx.print({ imvu: id, member, index: null, changed: false }, () => `${who} (${member}) is already a member of ${id}: no change, nothing recorded`);
        return;
      }
      const s = await ctx.submit('POST', `/v1/imvus/${id}/members`, 'member.add', { imvu: id, identity: member }, ctx.signer([imvu.owner.id], `member add`));
      ctx.print({ imvu: id, member, index: s.receipt.index }, () => [`✅ ${who} (${member}) is a member of ${id}`, `✅ ${receiptLine(s)}`]);
    });
  return cmd;
}

interface GatewayView {
  imvu: string;
  gateway?: 'off';
  equal?: boolean;
  differences?: { map: string; extra: string[]; missing: string[] }[];
  certificate?: {
    names: string[];
    served?: { serial: string; sha1: string; notAfter: string; issuer: string };
    ledger?: { serial: string; sha256: string; notAfter: string; issuer: string; directory: string; entry: number };
    equal: boolean;
  } | null;
}

function gatewayLines(g: GatewayView): string[] {
  if (g.gateway === 'off') return [`${g.imvu}: this daemon runs no HTTP gateway`];
  const out = [g.equal ? `✅ Routes of ${g.imvu}: served as the ledger says` : `❌ Routes of ${g.imvu}: served differently from the ledger (${(g.differences ?? []).map((d) => d.map).join(', ')})`];
  const c = g.certificate;
  if (!c) return [...out, 'Certificate: none served'];
  out.push(`${c.equal ? '✅' : '❌'} Certificate for ${c.names.join(', ')}: ${c.equal ? 'served as the ledger recorded it' : 'the served certificate is not the ledger\'s'}`);
  out.push(`  served (HAProxy): ${c.served ? `serial ${c.served.serial}, SHA-1 ${c.served.sha1}, until ${c.served.notAfter}, issuer ${c.served.issuer}` : '(none)'}`);
  out.push(`  ledger:           ${c.ledger ? `serial ${c.ledger.serial}, SHA-256 ${c.ledger.sha256}, until ${c.ledger.notAfter}, issuer ${c.ledger.issuer} (${c.ledger.directory}, entry ${c.ledger.entry})` : '(none recorded)'}`);
  return out;
}
