// Argument parsers for commander: a bad value is a usage error (exit 2) naming the flag.
import { InvalidArgumentError } from 'commander';
import { IMVU_NAME_RE, JURISDICTIONS } from '../core/policy/vocabulary.ts';

export function int(min: number, max: number) {
  return (value: string): number => {
    if (!/^\d+$/.test(value)) throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}, got '${value}'.`);
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < min || n > max) throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}, got '${value}'.`);
    return n;
  };
}

/** A size in GB: "8", "8GB", "8 GB" or "8G" (the spec writes --memory 16GB). */
export function gb(min: number, max: number) {
  const parse = int(min, max);
  return (value: string): number => parse(value.trim().replace(/\s*(gb|g|gib)$/i, ''));
}

export function port(value: string): number {
  return int(0, 65535)(value);
}

export function imvuId(value: string): string {
  const v = value.trim().toUpperCase();
  if (/^IMVU-\d{3,9}$/.test(v)) return v;
  if (/^\d{1,9}$/.test(v)) return `IMVU-${v.padStart(3, '0')}`;
  throw new InvalidArgumentError(`expected an IMVU id such as IMVU-001, got '${value}'.`);
}

export function month(value: string): string {
  if (!/^\d{4}-(0[1-9]|1[0-2])$/.test(value)) throw new InvalidArgumentError(`expected a month as YYYY-MM, got '${value}'.`);
  return value;
}

export function minorUnits(value: string): bigint {
  if (!/^\d{1,30}$/.test(value)) throw new InvalidArgumentError(`expected a whole number of minor units (e.g. cents), got '${value}'.`);
  return BigInt(value);
}

export function currency(value: string): string {
  const v = value.toUpperCase();
  if (!/^[A-Z]{3}$/.test(v)) throw new InvalidArgumentError(`expected an ISO 4217 currency code such as USD, got '${value}'.`);
  return v;
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

/** An IMVU name as the schema takes it (no spaces). */
export function imvuName(value: string): string {
  if (!IMVU_NAME_RE.test(value)) throw new InvalidArgumentError(`expected 1-63 of letters, digits, _ and -, starting with a letter (no spaces), got '${value}'.`);
  return value;
}

/** A jurisdiction code exactly as gate 9 knows it (upper case: the signed body is never rewritten). */
export function jurisdiction(value: string): string {
  if ((JURISDICTIONS as readonly string[]).includes(value)) return value;
  const upper = value.toUpperCase();
  if ((JURISDICTIONS as readonly string[]).includes(upper)) throw new InvalidArgumentError(`jurisdiction codes are upper case: did you mean '${upper}'?`);
  throw new InvalidArgumentError(`expected one of ${JURISDICTIONS.join(', ')}, got '${value}'.`);
}

/** Free text recorded in the ledger (a reason, a purpose): not empty, at most `max` characters. */
export function text(max: number) {
  return (value: string): string => {
    if (!value.trim().length || value.length > max) throw new InvalidArgumentError(`expected 1 to ${max} characters, got ${value.length}.`);
    return value;
  };
}
