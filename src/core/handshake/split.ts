// The 55-45 handshake: money is integer minor units (bigint) end to end, never floats.

/** The creator's share of every statement total. Constitutional constant, deliberately not configurable. */
export const CREATOR_SHARE_PERCENT = 55n;
/** The platform's share of every statement total. Constitutional constant, deliberately not configurable. */
export const PLATFORM_SHARE_PERCENT = 45n;

// Compile-time-ish guard: the two shares must always add up to the whole.
if (CREATOR_SHARE_PERCENT + PLATFORM_SHARE_PERCENT !== 100n) {
  throw new Error('handshake shares must add up to 100 percent');
}

/** Longest accepted decimal string of minor units (10^30 is far beyond any real amount). */
export const MAX_AMOUNT_DIGITS = 30;

const DIGITS = /^[0-9]+$/;

function describe(input: unknown): string {
  if (typeof input === 'string') {
    const shown = input.length > 40 ? `${input.slice(0, 40)}…` : input;
    return `'${shown}'`;
  }
  if (typeof input === 'number') return `${input}`;
  if (typeof input === 'bigint') return `${input}n`;
  if (input === null) return 'null';
  if (Array.isArray(input)) return 'an array';
  return `a value of type ${typeof input}`;
}

/** Why a string is not a plain run of decimal digits (the most specific reason first). */
function stringProblem(s: string): string {
  if (s.length === 0) return 'empty string';
  if (/\s/.test(s)) return 'contains whitespace';
  if (s.startsWith('-')) return 'negative';
  if (s.startsWith('+')) return 'has a sign';
  if (/^[+-]?0[xob]/i.test(s)) return 'not decimal (hex/octal/binary prefix)';
  if (/^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)e[+-]?[0-9]/i.test(s)) return 'exponent notation is not allowed';
  if (/^[0-9]*\.[0-9]*$/.test(s)) return 'fractional; amounts are whole minor units (e.g. cents)';
  return 'not a string of decimal digits';
}

/**
 * Parses an amount (or quantity) of minor units. Accepts a bigint >= 0, a safe non-negative integer
 * number, or a string of 1..30 decimal digits. Everything else throws, naming `what` and the problem.
 */
export function parseAmount(input: unknown, what = 'amount'): bigint {
  const fail = (problem: string): never => {
    throw new Error(`${what} must be a non-negative whole number of minor units, got ${describe(input)} (${problem})`);
  };
  if (typeof input === 'bigint') {
    if (input < 0n) fail('negative');
    return input;
  }
  if (typeof input === 'number') {
    if (Number.isNaN(input)) fail('not a number');
    if (!Number.isFinite(input)) fail('not finite');
    if (input < 0) fail('negative');
    if (!Number.isInteger(input)) fail('fractional; amounts are whole minor units (e.g. cents)');
    if (!Number.isSafeInteger(input)) fail('beyond the safe integer range; pass a bigint or a decimal string');
    return BigInt(input);
  }
  if (typeof input === 'string') {
    if (!DIGITS.test(input)) fail(stringProblem(input));
    if (input.length > MAX_AMOUNT_DIGITS) fail(`more than ${MAX_AMOUNT_DIGITS} digits`);
    return BigInt(input);
  }
  return fail('expected a bigint, an integer number or a string of decimal digits');
}

export interface Split {
  total: bigint;
  creator: bigint;
  platform: bigint;
}

/**
 * Splits a total 55/45. The creator's share is rounded UP to the minor unit (any indivisible
 * remainder goes to the creator) and the platform gets exactly the rest, so creator + platform == total.
 */
export function split(total: bigint): Split {
  if (typeof total !== 'bigint') throw new Error(`split: total must be a bigint, got ${describe(total)}`);
  if (total < 0n) throw new Error(`split: total must not be negative, got ${total}`);
  const creator = (total * CREATOR_SHARE_PERCENT + 99n) / 100n; // ceil for non-negative values
  return { total, creator, platform: total - creator };
}

/** ISO 4217 minor-unit exponents that differ from the usual 2. */
const MINOR_DIGITS: Readonly<Record<string, number>> = {
  BIF: 0, CLP: 0, DJF: 0, GNF: 0, ISK: 0, JPY: 0, KMF: 0, KRW: 0, PYG: 0, RWF: 0, UGX: 0, UYI: 0, VND: 0,
  VUV: 0, XAF: 0, XOF: 0, XPF: 0,
  BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3,
};

/**
 * Renders minor units for humans, e.g. (8250n, 'USD') -> "$82.50", (12345n, 'EUR') -> "123.45 EUR".
 * Display only: never parse the result back into money.
 */
export function formatMinor(amount: bigint, currency: string): string {
  if (typeof amount !== 'bigint') throw new Error(`formatMinor: amount must be a bigint, got ${describe(amount)}`);
  if (!/^[A-Z]{3}$/.test(currency)) {
    throw new Error(`formatMinor: currency must be an ISO 4217 code of 3 upper-case letters, got ${describe(currency)}`);
  }
  const digits = Object.hasOwn(MINOR_DIGITS, currency) ? (MINOR_DIGITS[currency] ?? 2) : 2;
  const sign = amount < 0n ? '-' : '';
  const abs = (amount < 0n ? -amount : amount).toString();
  let number = abs;
  if (digits > 0) {
    const padded = abs.padStart(digits + 1, '0');
    number = `${padded.slice(0, -digits)}.${padded.slice(-digits)}`;
  }
  return currency === 'USD' ? `${sign}$${number}` : `${sign}${number} ${currency}`;
}
