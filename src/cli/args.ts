// Argument parsers for commander: a bad value is a usage error (exit 2) naming the flag.
import { InvalidArgumentError } from 'commander';
import { IMVU_NAME_RE, JURISDICTIONS } from '../core/policy/vocabulary.ts';
import { parseRecord } from '../domains/records/rdata.ts';
import { usage } from './errors.ts';

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

/** '@', or a name relative to the zone (or absolute, with a final dot): no spaces, no empty labels. */
export function recordName(v: string): string {
  const n = v.toLowerCase();
  if (n === '@') return n;
  if (n.length > 253 || !/^[a-z0-9_*-]+(\.[a-z0-9_-]+)*\.?$/.test(n))
    throw new InvalidArgumentError(`expected '@' or a name such as www or _dmarc.www (a-z, 0-9, _, - and *, dot-separated, no spaces or empty labels), got '${v}'.`);
  return n;
}

const VALUE_FORMS: Record<string, string> = {
  A: 'an IPv4 address such as 192.0.2.7',
  AAAA: 'an IPv6 address such as 2001:db8::7',
  CNAME: 'an absolute host name ending in a dot, such as www.example.world.',
  NS: 'an absolute host name ending in a dot, such as ns1.example.world.',
  MX: 'a preference and an absolute host name, such as "10 mail.example.world."',
  SRV: 'priority, weight, port and an absolute host name, such as "10 5 5060 sip.example.world."',
  CAA: 'flags, a tag and a quoted value, such as \'0 issue "letsencrypt.org"\'',
};

/** A record value the daemon would refuse (gate 0) is a usage error here, before anything is signed. */
export function checkRecordValue(type: string, value: string): void {
  if (!value.length || value.length > 2048 || !parseRecord(type, value)) throw usage(`'${value}' is not a valid ${type} record value: expected ${VALUE_FORMS[type] ?? 'a value of at most 2048 characters'}`);
}
