// Zones of an exiting IMVU that were never whole here: a `domain.transfer` (or an `imvu.import`)
// that declared its zone in parts, some of which no `imvu.import.part` recorded. The platform did
// not serve such a zone, so the archive must not present it as a complete one. Decided from the
// exported ledger entries alone, so the builder and the offline verifier reach the same answer.
import { importHeaderDigest } from '../../core/policy/commands.ts';
import type { LedgerEntry } from '../../core/types.ts';

export interface IncompleteZone {
  zone: string;
  /** The command that declared the parts and the ledger entry it was recorded at. */
  declaredBy: 'domain.transfer' | 'imvu.import';
  entry: number;
  /** How many parts it declared, and the numbers (as `imvu.import.part` names them) never recorded. */
  parts: number;
  missing: number[];
}

/** The IMVU's zones whose declared parts are not all among `entries` (each entry once, any order). */
export function incompleteZones(entries: readonly LedgerEntry[], imvu: string): IncompleteZone[] {
  const open = new Map<string, { declaredBy: IncompleteZone['declaredBy']; entry: number; digest: string; parts: number; got: Set<number> }>();
  for (const e of [...entries].sort((x, y) => x.index - y.index)) {
    if (!e.decision.allowed) continue;
    const { type, body } = e.command.command as { type: string; body: Record<string, unknown> };
    if ((type === 'domain.transfer' && body.imvu === imvu) || (type === 'imvu.import' && body.id === imvu)) {
      const zone = String((body.zone as { name?: unknown } | undefined)?.name ?? '');
      const parts = Array.isArray(body.parts) ? body.parts.length : 0;
      // A header repeated with the same body (the domain released and transferred again) owes its parts again.
      if (parts) open.set(zone, { declaredBy: type, entry: e.index, digest: importHeaderDigest(body), parts, got: new Set() });
      else open.delete(zone);
    } else if (type === 'imvu.import.part' && body.imvu === imvu) {
      for (const o of open.values()) if (o.digest === body.import) o.got.add(Number(body.part));
    } else if (type === 'domain.release' && body.imvu === imvu) {
      // Released, the domain owes nothing more; claimed again later, it is a zone of its own.
      open.delete(String(body.domain));
    }
  }
  const out: IncompleteZone[] = [];
  for (const [zone, o] of [...open].sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) {
    const missing = Array.from({ length: o.parts }, (_, n) => n).filter((n) => !o.got.has(n));
    if (missing.length) out.push({ zone, declaredBy: o.declaredBy, entry: o.entry, parts: o.parts, missing });
  }
  return out;
}

/** "3, 5-9": part numbers as ranges. */
function ranges(ns: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < ns.length; ) {
    let j = i;
    while (j + 1 < ns.length && ns[j + 1] === ns[j]! + 1) j++;
    out.push(i === j ? String(ns[i]) : `${ns[i]}-${ns[j]}`);
    i = j + 1;
  }
  return out.join(', ');
}

/** One line for a report: which zone, which declaration, which parts never came. */
export function describeIncomplete(z: IncompleteZone): string {
  return `${z.zone}: ${z.missing.length} of the ${z.parts} parts its ${z.declaredBy} (ledger entry ${z.entry}) declared were never recorded (imvu.import.part ${ranges(z.missing)})`;
}

/** Whether two lists name the same zones, declarations and missing parts. */
export function sameIncomplete(x: readonly IncompleteZone[], y: readonly IncompleteZone[]): boolean {
  const key = (l: readonly IncompleteZone[]) => JSON.stringify([...l].map((z) => [z.zone, z.declaredBy, z.entry, z.parts, z.missing]).sort());
  return key(x) === key(y);
}
