// Billing periods are calendar months in UTC, written 'YYYY-MM'. Because the format is fixed-width,
// plain string comparison orders periods chronologically.

const PERIOD = /^([0-9]{4})-(0[1-9]|1[0-2])$/;

export function isPeriod(value: unknown): value is string {
  return typeof value === 'string' && PERIOD.test(value);
}

/** Throws unless `value` is a 'YYYY-MM' period with month 01..12. */
export function assertPeriod(value: unknown, what = 'period'): string {
  if (!isPeriod(value)) {
    const shown = typeof value === 'string' ? `'${value}'` : typeof value;
    throw new Error(`${what} must be a month written 'YYYY-MM' with month 01..12, got ${shown}`);
  }
  return value;
}

/** The period after `period` ('2025-12' -> '2026-01'). */
export function nextPeriod(period: string): string {
  const m = PERIOD.exec(assertPeriod(period));
  const year = Number(m?.[1]);
  const month = Number(m?.[2]);
  return month === 12 ? `${String(year + 1).padStart(4, '0')}-01` : `${m?.[1]}-${String(month + 1).padStart(2, '0')}`;
}

const INSTANT =
  /^([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.[0-9]{1,9})?(?:Z|([+-])([0-9]{2}):([0-9]{2}))$/;

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/**
 * The UTC period ('YYYY-MM') containing an ISO-8601 instant such as '2025-12-31T23:59:59Z' or
 * '2026-01-01T00:30:00+01:00' (-> '2025-12'). Strict: a full date-time with 'Z' or an offset is required.
 */
export function periodOfInstant(iso: unknown, what = 'timestamp'): string {
  const bad = (problem: string): never => {
    const shown = typeof iso === 'string' ? `'${iso}'` : typeof iso;
    throw new Error(`${what} must be an ISO-8601 instant like '2025-12-01T00:00:00Z', got ${shown} (${problem})`);
  };
  if (typeof iso !== 'string') return bad('not a string');
  const m = INSTANT.exec(iso);
  if (!m) return bad('not in YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM) form');
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (month < 1 || month > 12) bad('month out of range');
  if (day < 1 || day > daysInMonth(year, month)) bad('day out of range');
  if (hour > 23 || minute > 59 || second > 59) bad('time out of range');
  let offsetMinutes = 0;
  if (m[7] !== undefined) {
    const oh = Number(m[8]);
    const om = Number(m[9]);
    if (oh > 23 || om > 59) bad('offset out of range');
    offsetMinutes = (m[7] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  // setUTCFullYear (unlike Date.UTC) does not remap years 0..99 to 1900..1999.
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute - offsetMinutes, 0, 0);
  const y = d.getUTCFullYear();
  if (y < 0 || y > 9999) bad('year out of range once converted to UTC');
  return `${String(y).padStart(4, '0')}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
}

/** Milliseconds since the epoch for an instant accepted by periodOfInstant (sub-millisecond digits dropped). */
export function instantMillis(iso: string, what = 'timestamp'): number {
  periodOfInstant(iso, what);
  return Date.parse(iso.replace(/(\.[0-9]{3})[0-9]+/, '$1'));
}

/** Milliseconds since the epoch of the first instant of `period` (UTC). */
export function periodStartMillis(period: string): number {
  const m = PERIOD.exec(assertPeriod(period));
  const d = new Date(0);
  d.setUTCFullYear(Number(m?.[1]), Number(m?.[2]) - 1, 1);
  return d.getTime();
}

/** Milliseconds since the epoch of the first instant after `period` (its exclusive end). */
export function periodEndMillis(period: string): number {
  return periodStartMillis(nextPeriod(period));
}

/** The period containing an instant given as milliseconds since the epoch. */
export function periodOfMillis(ms: number): string {
  return periodOfInstant(new Date(ms).toISOString());
}
