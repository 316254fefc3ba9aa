// `nexus audit log`: the ledger as a person reads it. Newest first, one aligned row per entry under
// column headers (index, time, command, actor, IMVU, decision), the IMVU column filled for every
// entry that concerns one, and a footer that says which entries are not shown and how to page to
// them (--from, --limit) or keep printing new ones (--follow, until interrupted).
//
// The IMVU of an entry is read from its body: its `imvu` field; else the IMVU whose zone it names
// (`zone`); else the entry it follows up (`about`, e.g. a notice); the entry that created an IMVU
// is known from GET /v1/imvus (`entry`). An entry about no IMVU (an identity, the platform's own
// zone, a price book) shows '-'.
import { Command, InvalidArgumentError } from 'commander';
import type { ImvuListItem } from '../../imvu/summary.ts';
import type { LedgerEntry } from '../../core/types.ts';
import { ApiError } from '../client.ts';
import { imvuId, int } from '../args.ts';
import { Ctx } from '../context.ts';
import { plural } from '../format.ts';
import { identityNames, listOf } from './imvu.ts';

type Withheld = { index: number; leafHash: string; withheld: true };
export type Served = LedgerEntry | Withheld;

interface Page {
  entries?: Served[];
  size?: number;
  from?: number;
  to?: number;
  next?: number;
}

interface LogOptions {
  imvu?: string;
  from?: number;
  limit: number;
  follow?: boolean;
  interval: number;
}

export const HEADERS = ['INDEX', 'TIME', 'COMMAND', 'ACTOR', 'IMVU', 'DECISION'] as const;

const isWithheld = (e: Served): e is Withheld => 'withheld' in e && e.withheld === true;
const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** What is known to tell an entry's IMVU: the creations, and which IMVU each zone belongs to. */
export interface ImvuClues {
  created: Map<number, string>;
  zones: Map<string, string>;
}

function bodyOf(e: LedgerEntry): Record<string, unknown> {
  const b = e.command?.command?.body;
  return isObj(b) ? b : {};
}

/** Zones the entries name whose IMVU is not known yet (learning first from the entries that name both). */
export function unknownZones(entries: Served[], clues: ImvuClues): string[] {
  for (const e of entries) {
    if (isWithheld(e)) continue;
    const b = bodyOf(e);
    if (typeof b.imvu === 'string' && typeof b.zone === 'string') clues.zones.set(b.zone.toLowerCase(), b.imvu);
    if (typeof b.imvu === 'string' && typeof b.domain === 'string' && e.decision.allowed) clues.zones.set(b.domain.toLowerCase(), b.imvu);
  }
  const out = new Set<string>();
  for (const e of entries) {
    if (isWithheld(e)) continue;
    const z = bodyOf(e).zone;
    if (typeof z === 'string' && !clues.zones.has(z.toLowerCase())) out.add(z.toLowerCase());
  }
  return [...out];
}

/** The IMVU an entry concerns, or undefined. `byIndex` holds the other entries (for follow-ups). */
export function imvuOfEntry(e: Served, clues: ImvuClues, byIndex: Map<number, Served>, depth = 0): string | undefined {
  if (isWithheld(e)) return undefined;
  const created = clues.created.get(e.index);
  if (created) return created;
  const b = bodyOf(e);
  if (typeof b.imvu === 'string') return b.imvu;
  if (typeof b.zone === 'string') {
    const z = clues.zones.get(b.zone.toLowerCase());
    if (z) return z;
  }
  // A follow-up names the entry it answers.
  if (typeof b.about === 'number' && depth < 4) {
    const first = byIndex.get(b.about);
    if (first) return imvuOfEntry(first, clues, byIndex, depth + 1);
  }
  return undefined;
}

/** The cells of one row. */
export function rowOf(e: Served, names: Map<string, string>, imvu: string | undefined): string[] {
  if (isWithheld(e)) return [`#${e.index}`, '-', '(withheld)', '-', '-', `concerns an IMVU you cannot read; leaf hash ${String(e.leafHash).slice(0, 16)}…`];
  const cmd = e.command?.command;
  const deny = e.decision.gates.find((g) => g.status === 'deny');
  const actor = cmd?.actor ?? '?';
  return [
    `#${e.index}`,
    String(e.at ?? '?').replace(/\.\d+Z$/, 'Z'),
    cmd?.type ?? '?',
    names.get(actor) ?? actor,
    imvu ?? '-',
    e.decision.allowed ? 'allowed' : `DENIED gate ${deny?.gate ?? '?'}: ${(deny?.reason ?? '').replace(/\s+/g, ' ')}`,
  ];
}

/** Aligned columns: each padded to `widths` (the last one never). */
export function formatRow(cells: readonly string[], widths: number[]): string {
  return cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ').trimEnd();
}

export function columnWidths(rows: readonly (readonly string[])[]): number[] {
  return HEADERS.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
}

/** The entries in [from, to), about one IMVU when given, following the daemon's page ends. */
async function fetchRange(ctx: Ctx, from: number, to: number, imvu: string | undefined): Promise<{ entries: Served[]; size: number }> {
  const entries: Served[] = [];
  let size = 0;
  let at = from;
  while (at < to) {
    const res = await ctx.get<Page>('/v1/ledger/entries', { from: at, to, imvu });
    size = res.size ?? size;
    entries.push(...(res.entries ?? []).filter((e) => e && typeof e.index === 'number' && e.index >= at && e.index < to));
    const end = typeof res.to === 'number' ? res.to : to;
    if (end <= at) break;
    at = end;
  }
  return { entries: entries.sort((a, b) => a.index - b.index), size };
}

async function ledgerSize(ctx: Ctx): Promise<number> {
  const { checkpoint } = await ctx.connect();
  // The checkpoint may trail the ledger by the entries of a batch not yet signed: the answer's size is current.
  const res = await ctx.get<Page>('/v1/ledger/entries', { from: checkpoint.size, to: checkpoint.size });
  return res.size ?? checkpoint.size;
}

interface Window {
  /** Newest first. */
  entries: Served[];
  size: number;
  /** The newest index looked at (the top of the window), -1 for an empty ledger. */
  top: number;
  /** The oldest index looked at: entries below it are not shown. */
  bottom: number;
  /** With --imvu: whether entries below `bottom` were looked at and none is about the IMVU. */
  olderNone: boolean;
}

/** The newest `limit` entries at or below `top` (all of them, or those about --imvu). */
async function fetchWindow(ctx: Ctx, o: LogOptions): Promise<Window> {
  const size = await ledgerSize(ctx);
  const top = Math.min(o.from ?? size - 1, size - 1);
  if (top < 0) return { entries: [], size, top: -1, bottom: 0, olderNone: true };
  if (!o.imvu) {
    const bottom = Math.max(0, top - o.limit + 1);
    const { entries } = await fetchRange(ctx, bottom, top + 1, undefined);
    return { entries: entries.reverse(), size, top, bottom, olderNone: bottom === 0 };
  }
  // About one IMVU: the daemon answers the newest entries about it from its per-IMVU index (one
  // request unless a page's byte budget cuts it short), so this costs the IMVU's history, not the log's.
  const found: Served[] = [];
  let hi = top + 1;
  while (hi > 0 && found.length < o.limit) {
    const res = await ctx.get<Page & { from?: number }>('/v1/ledger/entries', { to: hi, imvu: o.imvu, newest: o.limit - found.length });
    const got = (res.entries ?? []).filter((e) => e && typeof e.index === 'number' && e.index < hi).sort((a, b) => a.index - b.index);
    found.unshift(...got);
    const from = typeof res.from === 'number' && res.from < hi ? res.from : 0;
    if (!got.length && from > 0) break;
    hi = from;
  }
  const shown = found.slice(-o.limit).reverse();
  const oldest = shown.at(-1)?.index ?? 0;
  // The walk reached index 0 with no more than `limit` found: there are no older ones.
  const olderNone = hi === 0 && found.length <= o.limit;
  return { entries: shown, size, top, bottom: shown.length ? oldest : hi, olderNone };
}

/** The footer: what is not shown, and the commands that show it. */
export function footerLines(w: Window, o: LogOptions): string[] {
  const scope = o.imvu ? ` about ${o.imvu}` : '';
  const flags = `${o.imvu ? ` --imvu ${o.imvu}` : ''}${o.limit !== 100 ? ` --limit ${o.limit}` : ''}`;
  const lines: string[] = [];
  const shown = w.entries.length;
  const withheld = w.entries.filter(isWithheld).length;
  if (!shown) lines.push(w.size ? `No entries${scope} at or below #${Math.max(w.top, 0)} (the ledger holds ${plural(w.size, 'entry', 'entries')}).` : 'The ledger is empty.');
  else
    lines.push(
      `${plural(shown, 'entry', 'entries')}${scope} shown, newest first: #${w.entries[0]!.index} to #${w.entries.at(-1)!.index} of the ledger's ${w.size} (#0 to #${w.size - 1}).`,
    );
  if (withheld) lines.push(`${withheld} of them withheld from you (they concern IMVUs you neither created nor are a member of): their leaf hashes only.`);
  if (!w.olderNone) {
    const next = shown ? w.entries.at(-1)!.index - 1 : w.bottom - 1;
    lines.push(
      o.imvu
        ? `Older entries${scope} (below #${next + 1}) not shown: nexus audit log --from ${next}${flags}`
        : `${plural(next + 1, 'older entry', 'older entries')} (#0 to #${next}) not shown: nexus audit log --from ${next}${flags}`,
    );
  }
  if (w.top < w.size - 1) lines.push(`${plural(w.size - 1 - w.top, 'newer entry', 'newer entries')} (#${w.top + 1} to #${w.size - 1}) not looked at: nexus audit log${flags} (the newest), or --from N for any other page.`);
  lines.push(o.follow ? 'Following: new entries appear below as they are recorded (Ctrl-C to stop).' : `Page with --from N (the newest index to show) and --limit N (at most 1000); --follow keeps printing new entries until interrupted.`);
  return lines;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(t), resolve()), { once: true });
  });
}

/** Fills in the IMVU clues: the creations the reader may see, and the zones the entries name. */
async function cluesFor(ctx: Ctx, entries: Served[], clues: ImvuClues): Promise<void> {
  if (!clues.created.size) {
    for (const i of listOf<ImvuListItem>(await ctx.get('/v1/imvus'), 'imvus')) {
      if (typeof i.entry === 'number') clues.created.set(i.entry, i.id);
      if (typeof i.domain === 'string') clues.zones.set(i.domain.toLowerCase(), i.id);
    }
  }
  // Zones the page names that are neither an IMVU's primary domain nor named with their IMVU.
  for (const zone of unknownZones(entries, clues).slice(0, 50)) {
    try {
      const z = await ctx.get<{ imvu?: string | null }>(`/v1/zones/${encodeURIComponent(zone)}/records`);
      if (z.imvu) clues.zones.set(zone, z.imvu);
    } catch (err) {
      // Released since, or not readable by this reader: the entry keeps '-'.
      if (!(err instanceof ApiError)) throw err;
    }
  }
}

/** Names of the actors the reader's identity list leaves out, from the public key directory. */
async function resolveNames(ctx: Ctx, entries: Served[], names: Map<string, string>): Promise<void> {
  const missing = new Set<string>();
  for (const e of entries) {
    const actor = isWithheld(e) ? undefined : e.command?.command?.actor;
    if (actor && !names.has(actor)) missing.add(actor);
  }
  for (const id of [...missing].slice(0, 50)) {
    try {
      const rec = await ctx.client.get<{ name?: string }>(`/v1/identities/${encodeURIComponent(id)}`);
      if (typeof rec.name === 'string') names.set(id, rec.name);
    } catch (err) {
      // Not registered (a refused registration, a signature that did not verify): the id stays.
      if (!(err instanceof ApiError)) throw err;
    }
  }
}

/**
 * The digest of one entry for --json, beside the entry itself (kept exactly as served, so that its
 * leaf hash can still be computed from it): who, what, about which IMVU, and the decision.
 */
const summaryOf = (e: Served, imvu: string | undefined, names: Map<string, string>) => {
  if (isWithheld(e)) return { index: e.index, withheld: true, imvu: null };
  const cmd = e.command?.command;
  const deny = e.decision.gates.find((g) => g.status === 'deny');
  const actor = cmd?.actor ?? null;
  return {
    index: e.index,
    at: e.at,
    type: cmd?.type ?? null,
    actor,
    actorName: (actor && names.get(actor)) ?? null,
    imvu: imvu ?? null,
    allowed: e.decision.allowed,
    gate: deny?.gate ?? null,
    reason: deny?.reason ?? null,
  };
};

async function auditLog(ctx: Ctx, o: LogOptions): Promise<void> {
  const w = await fetchWindow(ctx, o);
  const clues: ImvuClues = { created: new Map(), zones: new Map() };
  await cluesFor(ctx, w.entries, clues);
  const names = await identityNames(ctx);
  await resolveNames(ctx, w.entries, names);
  const byIndex = new Map(w.entries.map((e) => [e.index, e]));
  const imvus = w.entries.map((e) => imvuOfEntry(e, clues, byIndex));
  const rows = w.entries.map((e, i) => rowOf(e, names, imvus[i]));
  const widths = columnWidths(rows);
  const footer = footerLines(w, o);
  const older = w.olderNone ? null : (w.entries.at(-1)?.index ?? w.bottom) - 1;
  if (!o.follow) {
    ctx.print(
      {
        entries: w.entries,
        summary: w.entries.map((e, i) => summaryOf(e, imvus[i], names)),
        size: w.size,
        order: 'newest first',
        olderFrom: older,
        newer: w.top < w.size - 1 ? { from: w.top + 1, to: w.size - 1 } : null,
      },
      () => [formatRow(HEADERS, widths), ...rows.map((r) => formatRow(r, widths)), '', ...footer],
    );
    return;
  }
  // --follow runs until interrupted: printed as it goes (with --json one entry per line), never held.
  const write = (s: string) => process.stdout.write(s + '\n');
  if (ctx.json) for (let i = 0; i < w.entries.length; i++) write(JSON.stringify({ ...summaryOf(w.entries[i]!, imvus[i], names), entry: w.entries[i] }));
  else for (const l of [formatRow(HEADERS, widths), ...rows.map((r) => formatRow(r, widths)), '', ...footer]) write(l);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let next = w.size;
  const seen = new Map(byIndex);
  try {
    while (!stop.signal.aborted) {
      await sleep(o.interval * 1000, stop.signal);
      if (stop.signal.aborted) break;
      const size = await ledgerSize(ctx);
      if (size <= next) continue;
      const { entries } = await fetchRange(ctx, next, size, o.imvu);
      next = size;
      if (!entries.length) continue;
      for (const e of entries) seen.set(e.index, e);
      await cluesFor(ctx, entries, clues);
      await resolveNames(ctx, entries, names);
      for (const e of entries) {
        const imvu = imvuOfEntry(e, clues, seen);
        write(ctx.json ? JSON.stringify({ ...summaryOf(e, imvu, names), entry: e }) : formatRow(rowOf(e, names, imvu), widths));
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function seconds(value: string): number {
  const n = Number(value);
  if (!/^\d+(\.\d+)?$/.test(value) || !(n >= 0.1 && n <= 3600)) throw new InvalidArgumentError(`expected seconds from 0.1 to 3600, got '${value}'.`);
  return n;
}

export function auditLogCommand(): Command {
  return new Command('log')
    .description('print ledger entries, newest first: who asked what, about which IMVU, and what the gates said')
    .option('--imvu <id>', 'only entries about this IMVU', imvuId)
    .option('--from <n>', 'the newest index to show (default: the newest entry); older pages: the index the footer names', int(0, Number.MAX_SAFE_INTEGER))
    .option('--limit <n>', 'at most this many entries', int(1, 1000), 100)
    .option('--follow', 'after the page, keep printing new entries as they are recorded, until interrupted (Ctrl-C)')
    .option('--interval <seconds>', 'with --follow: seconds between looks at the ledger', seconds, 1)
    .addHelpText(
      'after',
      `
Columns: INDEX, TIME (UTC), COMMAND, ACTOR (the identity's name), IMVU (the IMVU the entry concerns:
its body's imvu, the IMVU of the zone it names, or of the entry it follows up; '-' for none), DECISION
(allowed, or the gate that denied it and why). The footer says which entries are not shown and the
command that shows them. With --json: { entries (newest first, as stored), summary (the same order:
index, at, type, actor, actorName, imvu, allowed, gate, reason), size, olderFrom, newer }; with
--json --follow one line per entry: its summary and the entry itself.`,
    )
    .action(async (o: LogOptions, c: Command) => auditLog(Ctx.of(c), o));
}
