import type { SqlReader } from '../store/index.ts';
import type { PlatformRow } from './gate.ts';

/** The id and domains the next IMVU will get: a pure function of the committed state, so replay agrees. */
export async function imvuDomainsFor(db: SqlReader, platform: PlatformRow): Promise<{ seq: number; id: string; primary: string; stage: string }> {
  const row = await db.get<{ seq: number }>('SELECT COALESCE(MAX(seq), 0) + 1 AS seq FROM imvus');
  const seq = row?.seq ?? 1;
  const digits = String(seq).padStart(3, '0');
  const primary = `imvu${digits}.${platform.suffix}`;
  return { seq, id: `IMVU-${digits}`, primary, stage: `stage.${primary}` };
}

/** Absolute, lower-case name for a record name given relative to its zone ('@' is the apex). */
export function absoluteName(name: string, zone: string): string {
  const lower = name.toLowerCase();
  // A trailing dot makes a name absolute, as in zone files.
  if (lower.endsWith('.')) return lower.slice(0, -1);
  if (lower === '@' || lower === zone) return zone;
  if (lower.endsWith('.' + zone)) return lower;
  return `${lower}.${zone}`;
}

export function isWithin(name: string, zone: string): boolean {
  return name === zone || name.endsWith('.' + zone);
}
