// The revenue part of an exit archive: per month, the statement as CSV and as PDF, both rendered
// from `statement()` over the exported ledger entries alone, so `nexus export verify` recomputes
// them from events.jsonl and finds the same bytes (the 55/45 split included).
import { statement, type Statement } from '../../core/handshake/statement.ts';
import { periodOfInstant } from '../../core/handshake/period.ts';
import type { LedgerEntry } from '../../core/types.ts';
import { textPdf } from './pdf.ts';

/** Months (YYYY-MM) in which the IMVU has allowed usage or revenue entries, ascending. */
export function billedPeriods(entries: readonly LedgerEntry[], imvu: string): string[] {
  const out = new Set<string>();
  for (const e of entries) {
    if (!e.decision.allowed) continue;
    const { type, body, ts } = e.command.command;
    if (body.imvu !== imvu) continue;
    if (type === 'usage.report') {
      const start = (body.period as { start?: unknown } | undefined)?.start;
      if (typeof start === 'string') out.add(periodOfInstant(start));
    } else if (type === 'revenue.record') out.add(periodOfInstant(typeof body.at === 'string' ? body.at : ts));
  }
  return [...out].sort();
}

export function statementCsv(s: Statement): string {
  const rows = [['kind', 'metric', 'quantity', 'price_amount', 'price_per', 'charge', 'currency']];
  for (const l of s.lines) rows.push(['usage', l.metric, String(l.quantity), String(l.amount), String(l.per), String(l.charge), s.currency]);
  rows.push(['usage_total', '', '', '', '', String(s.usageTotal), s.currency]);
  rows.push(['revenue_total', '', '', '', '', String(s.revenueTotal), s.currency]);
  rows.push(['total', '', '', '', '', String(s.total), s.currency]);
  rows.push(['creator_55', '', '', '', '', String(s.creator), s.currency]);
  rows.push(['platform_45', '', '', '', '', String(s.platform), s.currency]);
  rows.push(['entries', s.entries.join(' '), '', '', '', '', '']);
  return rows.map((r) => r.join(',')).join('\n') + '\n';
}

export function statementPdf(s: Statement): Buffer {
  const lines = [
    `IMVU ${s.imvu}, period ${s.period} (UTC), currency ${s.currency}, price book version ${s.priceBookVersion ?? 'none'}`,
    'Amounts in minor units (cents). creator = ceil(total * 55 / 100); platform = total - creator.',
    '',
    ...s.lines.map((l) => `${l.metric}: ${l.quantity} at ${l.amount} per ${l.per} = ${l.charge}`),
    '',
    `usage total: ${s.usageTotal}`,
    `revenue total: ${s.revenueTotal}`,
    `total: ${s.total}`,
    `creator (55%): ${s.creator}`,
    `platform (45%): ${s.platform}`,
    '',
    `from ledger entries: ${s.entries.join(', ')}`,
  ];
  return textPdf(`Statement ${s.period} for ${s.imvu}`, lines);
}

export function statementsOf(entries: readonly LedgerEntry[], imvu: string): Statement[] {
  return billedPeriods(entries, imvu).map((p) => statement(entries, imvu, p));
}
