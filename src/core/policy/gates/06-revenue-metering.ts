import { deny, pass, isMember, type Gate, type GateContext } from '../gate.ts';
import type { GateResult } from '../../types.ts';
import { GRACE_MS, METRIC_BOUNDS, REVENUE_STREAM, isMeterable, needsEnvelope, physicalLimit, type Capacity, type EnvelopePiece } from '../../handshake/metering.ts';
import { instantMillis, periodEndMillis, periodOfInstant, periodStartMillis } from '../../handshake/period.ts';
import { assertPriceBookTiming, parsePriceBook } from '../../handshake/pricebook.ts';
import { sealedDifference, sealedTotals, type PeriodCloseBody } from '../../handshake/close.ts';
import { billedImvus, bookInForce, closeOf, statementFromTotals } from '../../handshake/totals.ts';

// Revenue metering, in terms of time and physics. Everything read here is ledger-derived state
// (projections rebuilt by replay) and the entry's own time `at`, so the verifier's replay reaches
// the same decisions:
// - who: each metric has one meter identity (meter.register), usage never comes from the IMVU itself;
// - when: an interval ends no later than `at` and no earlier than GRACE_MS before it, lies in one
//   period, starts after the IMVU and its meter existed, and never overlaps an earlier report;
// - how much: no more than the envelope and the published capacities allow in that interval;
// - prices only for later periods; closed periods sealed with totals that match the ledger.

/** A revenue entry dated by its command's `ts` may be this far ahead of `at` (gate 1's signing window). */
const SIGNED_AHEAD_MS = 5 * 60 * 1000;

const iso = (ms: number) => new Date(ms).toISOString();
const hours = (ms: number) => `${ms / 3_600_000} h`;

interface MeterRow {
  identity: string;
  since_ms: number;
  entry: number;
  [k: string]: string | number;
}

async function meterOf(ctx: GateContext, metric: string): Promise<(MeterRow & { name: string }) | undefined> {
  return ctx.db.get<MeterRow & { name: string }>(
    'SELECT m.identity AS identity, m.since_ms AS since_ms, m.entry AS entry, COALESCE(i.name, m.identity) AS name FROM meters m LEFT JOIN identities i ON i.id = m.identity WHERE m.metric = ?',
    [metric],
  );
}

/** The envelopes in force over [start, end), each with how long it was. */
async function envelopeOver(ctx: GateContext, imvu: string, start: number, end: number): Promise<EnvelopePiece[]> {
  const rows = await ctx.db.all<Omit<EnvelopePiece, 'ms'> & { at_ms: number }>(
    'SELECT at_ms, cpu_cores, memory_gb, storage_gb, iops, burst_multiplier FROM envelope_history WHERE imvu = ? AND at_ms < ? ORDER BY at_ms, entry',
    [imvu, end],
  );
  const pieces: EnvelopePiece[] = [];
  rows.forEach((r, i) => {
    const from = Math.max(r.at_ms, start);
    const to = Math.min(rows[i + 1]?.at_ms ?? end, end);
    if (to > from) pieces.push({ ms: to - from, cpu_cores: r.cpu_cores, memory_gb: r.memory_gb, storage_gb: r.storage_gb, iops: r.iops, burst_multiplier: r.burst_multiplier });
  });
  return pieces;
}

async function capacityAt(ctx: GateContext, ms: number): Promise<Capacity | undefined> {
  return ctx.db.get<Capacity & { [k: string]: number }>(
    'SELECT dns_queries_per_second, link_bytes_per_second, mail_messages_per_second FROM capacities WHERE at_ms <= ? ORDER BY at_ms DESC, entry DESC LIMIT 1',
    [ms],
  );
}

async function closedProblem(ctx: GateContext, period: string): Promise<string | undefined> {
  const close = await closeOf(ctx.db, period);
  return close ? `period ${period} is ${close.status} (ledger entry ${close.entry}): nothing more can be reported for it` : undefined;
}

async function usageReport(ctx: GateContext): Promise<GateResult> {
  const actor = ctx.actor!;
  const imvu = ctx.imvu!;
  if (actor.role !== 'service') return deny(6, `usage is metered by the infrastructure: a ${actor.role} identity cannot report usage`);
  if (imvu.owner === actor.id || (await isMember(ctx, imvu.id, actor.id))) return deny(6, `${imvu.id} cannot report its own usage`);
  const b = ctx.body as { service: string; period: { start: string; end: string }; metrics: Record<string, string> };
  if (b.service !== actor.name) return deny(6, `the report names service '${b.service}' but is signed by ${actor.name}`);
  const metrics = Object.keys(b.metrics).sort();
  if (metrics.length === 0) return deny(6, 'a usage report lists at least one metric');
  const start = instantMillis(b.period.start);
  const end = instantMillis(b.period.end);
  const at = instantMillis(ctx.at);
  if (!(start < end)) return deny(6, 'usage period must end after it starts');
  const period = periodOfInstant(b.period.start);
  const closed = await closedProblem(ctx, period);
  if (closed) return deny(6, closed);
  if (end > periodEndMillis(period)) return deny(6, `the interval ${b.period.start} .. ${b.period.end} runs past the end of period ${period}: report each period separately`);
  if (end > at) return deny(6, `the interval ends at ${b.period.end}, after this entry's time ${ctx.at}: usage cannot be reported ahead of time`);
  if (end < at - GRACE_MS) return deny(6, `the interval ended at ${b.period.end}, more than ${hours(GRACE_MS)} before this entry's time ${ctx.at}: too late to report`);
  if (start < instantMillis(imvu.created_at)) return deny(6, `the interval starts at ${b.period.start}, before ${imvu.id} was created (${imvu.created_at})`);
  const found = await bookInForce(ctx.db, period);
  if (!found) return deny(6, `no price book is in force for ${period}: usage would be priced at an unknown rate`);
  let capacity: Capacity | undefined;
  let envelope: EnvelopePiece[] | undefined;
  for (const metric of metrics) {
    const kind = METRIC_BOUNDS[metric];
    if (!kind) return deny(6, `${metric} cannot be metered: no physical bound is known for it`);
    const meter = await meterOf(ctx, metric);
    if (!meter) return deny(6, `no meter is registered for ${metric}: nobody may report it`);
    if (meter.identity !== actor.id) return deny(6, `${metric} is metered by ${meter.name} (registered in ledger entry ${meter.entry}), not by ${actor.name}`);
    if (start < meter.since_ms)
      return deny(6, `the interval starts at ${b.period.start}, before ${actor.name} became the meter of ${metric} (ledger entry ${meter.entry}, ${iso(meter.since_ms)})`);
    if (!found.book.prices.has(metric)) return deny(6, `${metric} has no price in price book version ${found.book.version} (ledger entry ${found.entry}) for ${period}`);
    const last = await ctx.db.get<{ last: number | null }>('SELECT MAX(last_end_ms) AS last FROM usage_totals WHERE imvu = ? AND metric = ?', [imvu.id, metric]);
    if (last?.last != null && start < last.last)
      return deny(6, `${metric} of ${imvu.id} is already reported up to ${iso(last.last)}: an interval starting at ${b.period.start} would count that time twice`);
    if (needsEnvelope(kind)) envelope ??= await envelopeOver(ctx, imvu.id, start, end);
    else {
      capacity ??= await capacityAt(ctx, start);
      if (!capacity) return deny(6, `no capacity was published before ${b.period.start}: ${metric} has no bound`);
    }
    const limit = physicalLimit(kind, end - start, envelope ?? [], capacity ?? { dns_queries_per_second: 0, link_bytes_per_second: 0, mail_messages_per_second: 0 }, periodEndMillis(period) - periodStartMillis(period));
    const quantity = BigInt(b.metrics[metric]!);
    if (quantity > limit)
      return deny(
        6,
        `${quantity} ${metric} in ${(end - start) / 1000} s is more than ${imvu.id} can physically use: at most ${limit} ` +
          `(${needsEnvelope(kind) ? 'its envelope' : 'the published capacity'} over the interval)`,
      );
  }
  return pass(6, `metered by service ${actor.name}`);
}

async function revenueRecord(ctx: GateContext): Promise<GateResult> {
  const actor = ctx.actor!;
  if (actor.role !== 'service' && actor.role !== 'platform') return deny(6, `revenue is recorded only by a service or the platform, not by a ${actor.role}`);
  const b = ctx.body as { amount: string; currency: string; at?: string };
  const when = b.at ?? ctx.command.ts;
  const t = instantMillis(when);
  const at = instantMillis(ctx.at);
  if (actor.role === 'service') {
    const source = await meterOf(ctx, REVENUE_STREAM);
    if (!source || source.identity !== actor.id)
      return deny(6, `revenue is recorded by the platform or by the registered revenue source (${source ? `${source.name}, ledger entry ${source.entry}` : 'none registered'}), not by ${actor.name}`);
    if (t < source.since_ms) return deny(6, `revenue dated ${when} is from before ${actor.name} became the revenue source (${iso(source.since_ms)})`);
  }
  const period = periodOfInstant(when);
  const closed = await closedProblem(ctx, period);
  if (closed) return deny(6, closed);
  if (t > at + SIGNED_AHEAD_MS) return deny(6, `revenue dated ${when} is ahead of this entry's time ${ctx.at}`);
  if (t < at - GRACE_MS) return deny(6, `revenue dated ${when} is more than ${hours(GRACE_MS)} before this entry's time ${ctx.at}: too late to record`);
  const found = await bookInForce(ctx.db, period);
  if (!found) return deny(6, `no price book is in force for ${period}, so the period has no currency`);
  if (found.book.currency !== b.currency) return deny(6, `revenue in ${b.currency} cannot be added to ${period}, billed in ${found.book.currency} (price book version ${found.book.version})`);
  return pass(6, `revenue recorded by ${actor.name}`);
}

async function priceBook(ctx: GateContext): Promise<GateResult> {
  let book;
  try {
    book = parsePriceBook(ctx.body);
  } catch (err) {
    return deny(6, (err as Error).message);
  }
  const publishedIn = periodOfInstant(ctx.at);
  if (book.effectiveFrom > publishedIn) return pass(6, `price book version ${book.version} takes effect from ${book.effectiveFrom}, after ${publishedIn} in which it is published`);
  // The platform's very first book, before any IMVU exists, may start billing now: nobody has been charged at any other price.
  const first = !(await ctx.db.get('SELECT 1 AS x FROM price_books LIMIT 1')) && !(await ctx.db.get('SELECT 1 AS x FROM imvus LIMIT 1'));
  if (first && book.effectiveFrom === publishedIn) return pass(6, `the platform's first price book, published before any IMVU exists, in force from ${publishedIn}`);
  try {
    assertPriceBookTiming(ctx.body, ctx.at);
  } catch (err) {
    return deny(6, (err as Error).message);
  }
  return deny(6, `price book version ${book.version} cannot take effect from ${book.effectiveFrom}`);
}

async function meterRegister(ctx: GateContext): Promise<GateResult> {
  const b = ctx.body as { identity: string; metrics: string[] };
  const who = await ctx.db.get<{ name: string; role: string }>('SELECT name, role FROM identities WHERE id = ?', [b.identity]);
  if (!who) return deny(6, `unknown identity ${b.identity}`);
  if (who.role !== 'service') return deny(6, `only a service identity meters usage; ${who.name} is a ${who.role}`);
  const bad = b.metrics.find((m) => !isMeterable(m));
  if (bad) return deny(6, `${bad} cannot be metered: no physical bound is known for it`);
  return pass(6, `${who.name} meters ${b.metrics.join(', ')} for intervals from ${ctx.at} on`);
}

async function periodClose(ctx: GateContext): Promise<GateResult> {
  const { period, statements, complete } = ctx.body as PeriodCloseBody;
  const closable = periodEndMillis(period) + GRACE_MS;
  if (!(instantMillis(ctx.at) > closable)) return deny(6, `period ${period} can be closed only after ${iso(closable)} (its end plus ${hours(GRACE_MS)})`);
  const close = await closeOf(ctx.db, period);
  if (close?.status === 'closed') return deny(6, `period ${period} is already closed (ledger entry ${close.entry})`);
  const closing = await ctx.db.get<{ period: string }>("SELECT period FROM period_closes WHERE status = 'closing' AND period <> ? LIMIT 1", [period]);
  if (closing) return deny(6, `period ${closing.period} is being closed: it is completed first`);
  const later = await ctx.db.get<{ period: string }>('SELECT period FROM period_closes WHERE period > ? LIMIT 1', [period]);
  if (later) return deny(6, `a later period (${later.period}) is already closed`);
  const open = await ctx.db.get<{ p: string | null }>(
    "SELECT MIN(period) AS p FROM billing_entries WHERE period < ? AND period NOT IN (SELECT period FROM period_closes WHERE status = 'closed')",
    [period],
  );
  if (open?.p) return deny(6, `period ${open.p} has usage or revenue and is not closed: periods close in order`);
  const expected = await billedImvus(ctx.db, period, close?.last_imvu ?? '');
  if (!complete && statements.length === 0) return deny(6, 'a close that is not complete lists at least one IMVU');
  for (let i = 0; i < statements.length; i++) {
    const s = statements[i]!;
    if (s.imvu !== expected[i])
      return deny(6, `statement ${i} is for ${s.imvu}, but the next IMVU with usage or revenue in ${period} is ${expected[i] ?? 'none'}`);
    let actual;
    try {
      actual = sealedTotals(await statementFromTotals(ctx.db, s.imvu, period));
    } catch (err) {
      return deny(6, `${s.imvu}: ${(err as Error).message}`);
    }
    const diff = sealedDifference(s, actual);
    if (diff) return deny(6, `${s.imvu} ${period}: ${diff}`);
  }
  if (complete && statements.length < expected.length) return deny(6, `marked complete, but ${expected[statements.length]} has usage or revenue in ${period} and is not listed`);
  return pass(6, `period ${period}: ${statements.length} statement${statements.length === 1 ? '' : 's'} sealed${complete ? '; the period is closed' : ''}`);
}

export const gate: Gate = {
  number: 6,
  name: 'Revenue Metering',
  enforcedIn: 'src/core/policy/gates/06-revenue-metering.ts (who may report what, when and how much; prices ahead; sealed periods) + src/core/handshake',
  guards: ['usage.report', 'revenue.record', 'pricebook.publish', 'meter.register', 'period.close'],
  status: 'enforced',
  async check(ctx) {
    // Whatever the body holds (e.g. an instant with more digits than a clock has), a refusal, never a throw.
    try {
      return await judge(ctx);
    } catch (err) {
      return deny(6, `cannot be judged: ${String((err as Error)?.message ?? err).slice(0, 300)}`);
    }
  },
};

async function judge(ctx: GateContext): Promise<GateResult> {
  switch (ctx.command.type) {
    case 'usage.report':
    case 'revenue.record':
      if (!ctx.imvu || !ctx.actor) return deny(6, `unknown IMVU ${String(ctx.body.imvu)}`);
      return ctx.command.type === 'usage.report' ? usageReport(ctx) : revenueRecord(ctx);
    case 'pricebook.publish':
      return priceBook(ctx);
    case 'meter.register':
      return meterRegister(ctx);
    case 'period.close':
      return periodClose(ctx);
    default:
      return pass(6);
  }
}
