// The price book: a signed `pricebook.publish` ledger command that says what each metered unit costs
// from a given period on. Prices are integer minor units for `per` units of a metric, so fractional
// unit prices (e.g. $1.00 per 10,000 DNS queries) are exact without floats.

import { z } from 'zod';
import type { LedgerEntry } from '../types.ts';
import { assertPeriod, nextPeriod, periodOfInstant } from './period.ts';
import { MAX_AMOUNT_DIGITS, parseAmount } from './split.ts';

/** Dotted metric names: lower-case segments, at least two, e.g. `compute.cpu_core_hours`. */
export const METRIC_NAME = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$/;
export const CURRENCY_CODE = /^[A-Z]{3}$/;

const digits = (what: string) =>
  z
    .string({ error: `${what} must be a string of decimal digits (minor units)` })
    .regex(/^[0-9]+$/, `${what} must be a string of decimal digits only (no sign, decimal point, exponent or spaces)`)
    .max(MAX_AMOUNT_DIGITS, `${what} must have at most ${MAX_AMOUNT_DIGITS} digits`);

export const MetricName = z
  .string()
  .regex(METRIC_NAME, 'metric names are dotted lower-case names such as "compute.cpu_core_hours"');

export const Currency = z
  .string({ error: 'currency must be a string' })
  .regex(CURRENCY_CODE, 'currency must be an ISO 4217 code of 3 upper-case letters, e.g. "USD"');

export const Price = z.strictObject({
  amount: digits('amount'),
  per: digits('per').refine((s) => BigInt(s) >= 1n, 'per must be at least 1'),
});

export const PriceBookBody = z.strictObject({
  version: z.number({ error: 'version must be a number' }).int('version must be a whole number').min(1, 'version must be at least 1'),
  currency: Currency,
  effectiveFrom: z
    .string({ error: "effectiveFrom must be a 'YYYY-MM' string" })
    .regex(/^[0-9]{4}-(0[1-9]|1[0-2])$/, "effectiveFrom must be a month written 'YYYY-MM' with month 01..12"),
  prices: z
    .record(MetricName, Price, { error: 'prices must be an object mapping metric names to { amount, per }' })
    .refine((p) => Object.keys(p).length > 0, 'prices must list at least one metric'),
});
export type PriceBookBody = z.infer<typeof PriceBookBody>;

export interface PriceBookPrice {
  /** Minor units charged for `per` units of the metric. */
  amount: bigint;
  /** How many units `amount` buys (>= 1). */
  per: bigint;
}

/** A validated price book with amounts as bigints. */
export interface PriceBook {
  version: number;
  currency: string;
  effectiveFrom: string;
  prices: ReadonlyMap<string, PriceBookPrice>;
}

function pathToString(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (typeof key === 'string' && /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key)) out += out ? `.${key}` : key;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out || '(body)';
}

/** Turns zod issues into one readable line per problem, e.g. `prices["dns.queries"].per: per must be at least 1`. */
export function formatIssues(error: z.ZodError): string {
  const lines: string[] = [];
  for (const issue of error.issues) {
    let message = issue.message;
    if (issue.code === 'invalid_key') {
      message = `invalid key: ${issue.issues.map((i) => i.message).join('; ')}`;
    }
    lines.push(`${pathToString(issue.path)}: ${message}`);
  }
  return lines.join('; ');
}

/** Validates a `pricebook.publish` body; throws an Error listing every problem. */
export function parsePriceBook(body: unknown, what = 'price book'): PriceBook {
  const result = PriceBookBody.safeParse(body);
  if (!result.success) throw new Error(`invalid ${what}: ${formatIssues(result.error)}`);
  const { version, currency, effectiveFrom, prices } = result.data;
  const map = new Map<string, PriceBookPrice>();
  for (const metric of Object.keys(prices).sort()) {
    const price = prices[metric];
    if (price === undefined) continue;
    map.set(metric, {
      amount: parseAmount(price.amount, `${what} price amount for "${metric}"`),
      per: parseAmount(price.per, `${what} price per for "${metric}"`),
    });
  }
  return { version, currency, effectiveFrom, prices: map };
}

/**
 * The price book in force for `period`: among allowed `pricebook.publish` entries, the one with the
 * greatest `effectiveFrom <= period`; on a tie the later ledger entry (higher index) wins.
 * An allowed entry whose body is not a valid price book throws (it must never be skipped silently).
 */
export function priceInForce(entries: readonly LedgerEntry[], period: string): LedgerEntry | undefined {
  assertPeriod(period);
  let best: { entry: LedgerEntry; from: string; pos: number } | undefined;
  entries.forEach((entry, pos) => {
    if (!entry.decision.allowed || entry.command.command.type !== 'pricebook.publish') return;
    const book = parsePriceBook(entry.command.command.body, `price book in ledger entry #${entry.index}`);
    if (book.effectiveFrom > period) return;
    const later =
      best === undefined ||
      book.effectiveFrom > best.from ||
      (book.effectiveFrom === best.from &&
        (entry.index > best.entry.index || (entry.index === best.entry.index && pos > best.pos)));
    if (later) best = { entry, from: book.effectiveFrom, pos };
  });
  return best?.entry;
}

/**
 * No retroactive pricing: a price book published at `publishedAt` may only take effect from a period
 * strictly after the (UTC) period containing `publishedAt`. Throws otherwise.
 */
export function assertPriceBookTiming(body: unknown, publishedAt: string): void {
  const book = parsePriceBook(body);
  const publishedIn = periodOfInstant(publishedAt, 'publishedAt');
  if (book.effectiveFrom <= publishedIn) {
    throw new Error(
      `price book version ${book.version} would take effect from ${book.effectiveFrom} but was published at ` +
        `${publishedAt} (period ${publishedIn}); prices cannot change retroactively or for the current period, ` +
        `the earliest allowed effectiveFrom is ${nextPeriod(publishedIn)}`,
    );
  }
}
