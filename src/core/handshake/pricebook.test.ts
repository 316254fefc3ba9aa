import { describe, expect, it } from 'vitest';
import { nextPeriod, periodOfInstant } from './period.ts';
import { PriceBookBody, assertPriceBookTiming, parsePriceBook, priceInForce } from './pricebook.ts';
import { fakeEntry, priceBook } from './test-fixtures.ts';

const validBody = {
  version: 1,
  currency: 'USD',
  effectiveFrom: '2025-12',
  prices: {
    'compute.cpu_core_hours': { amount: '100', per: '24' },
    'dns.queries': { amount: '100', per: '10000' },
  },
};

describe('parsePriceBook / PriceBookBody', () => {
  it('accepts a valid body and returns bigint prices', () => {
    expect(PriceBookBody.safeParse(validBody).success).toBe(true);
    const book = parsePriceBook(validBody);
    expect(book.version).toBe(1);
    expect(book.currency).toBe('USD');
    expect(book.effectiveFrom).toBe('2025-12');
    expect(book.prices.get('dns.queries')).toEqual({ amount: 100n, per: 10000n });
    expect([...book.prices.keys()]).toEqual(['compute.cpu_core_hours', 'dns.queries']);
  });

  it('accepts a zero price (free metric) explicitly listed', () => {
    expect(parsePriceBook({ ...validBody, prices: { 'dns.queries': { amount: '0', per: '1' } } }).prices.get('dns.queries')).toEqual({
      amount: 0n,
      per: 1n,
    });
  });

  const bad: [label: string, body: unknown, message: RegExp][] = [
    ['not an object', 'hello', /invalid price book: \(body\): /],
    ['version 0', { ...validBody, version: 0 }, /version: version must be at least 1/],
    ['fractional version', { ...validBody, version: 1.5 }, /version: version must be a whole number/],
    ['string version', { ...validBody, version: '1' }, /version: version must be a number/],
    ['lower-case currency', { ...validBody, currency: 'usd' }, /currency: currency must be an ISO 4217 code/],
    ['long currency', { ...validBody, currency: 'USDT' }, /currency: currency must be an ISO 4217 code/],
    ['month 13', { ...validBody, effectiveFrom: '2025-13' }, /effectiveFrom: effectiveFrom must be a month written 'YYYY-MM'/],
    ['full date', { ...validBody, effectiveFrom: '2025-12-01' }, /effectiveFrom: effectiveFrom must be a month/],
    ['empty prices', { ...validBody, prices: {} }, /prices: prices must list at least one metric/],
    ['prices not an object', { ...validBody, prices: [] }, /prices: prices must be an object/],
    ['undotted metric', { ...validBody, prices: { cpu: { amount: '1', per: '1' } } }, /prices\.cpu: invalid key: metric names are dotted/],
    ['upper-case metric', { ...validBody, prices: { 'DNS.queries': { amount: '1', per: '1' } } }, /prices\["DNS\.queries"\]: invalid key/],
    ['fractional amount', { ...validBody, prices: { 'dns.queries': { amount: '1.5', per: '1' } } }, /prices\["dns\.queries"\]\.amount: amount must be a string of decimal digits only/],
    ['numeric amount', { ...validBody, prices: { 'dns.queries': { amount: 150, per: '1' } } }, /prices\["dns\.queries"\]\.amount: amount must be a string of decimal digits/],
    ['negative amount', { ...validBody, prices: { 'dns.queries': { amount: '-1', per: '1' } } }, /amount must be a string of decimal digits only/],
    ['per 0', { ...validBody, prices: { 'dns.queries': { amount: '1', per: '0' } } }, /prices\["dns\.queries"\]\.per: per must be at least 1/],
    ['missing per', { ...validBody, prices: { 'dns.queries': { amount: '1' } } }, /prices\["dns\.queries"\]\.per: per must be a string/],
    ['31-digit amount', { ...validBody, prices: { 'dns.queries': { amount: '1'.repeat(31), per: '1' } } }, /at most 30 digits/],
    ['unknown key', { ...validBody, effective_from: '2025-12' }, /Unrecognized key: "effective_from"/],
  ];
  it.each(bad)('rejects %s with a clear message', (_label, body, message) => {
    expect(() => parsePriceBook(body)).toThrow(/^invalid price book: /);
    expect(() => parsePriceBook(body)).toThrow(message);
  });

  it('reports every problem at once', () => {
    expect(() => parsePriceBook({ version: 0, currency: 'usd', effectiveFrom: 'x', prices: {} })).toThrow(
      /version: .*; currency: .*; effectiveFrom: .*; prices: /,
    );
  });
});

describe('priceInForce', () => {
  const book = (index: number, version: number, effectiveFrom: string, allowed = true) =>
    fakeEntry({ index, type: 'pricebook.publish', body: priceBook(version, effectiveFrom, { 'dns.queries': ['1', '1'] }), allowed });

  it('picks the book with the greatest effectiveFrom <= period', () => {
    const entries = [book(0, 1, '2025-01'), book(1, 2, '2025-06'), book(2, 3, '2026-01')];
    expect(priceInForce(entries, '2024-12')).toBeUndefined();
    expect(priceInForce(entries, '2025-01')?.index).toBe(0);
    expect(priceInForce(entries, '2025-05')?.index).toBe(0);
    expect(priceInForce(entries, '2025-06')?.index).toBe(1);
    expect(priceInForce(entries, '2025-12')?.index).toBe(1);
    expect(priceInForce(entries, '2026-01')?.index).toBe(2);
    expect(priceInForce(entries, '2030-07')?.index).toBe(2);
  });

  it('breaks ties on effectiveFrom by the later ledger entry, regardless of array order', () => {
    const a = book(3, 7, '2025-06');
    const b = book(5, 4, '2025-06');
    expect(priceInForce([a, b], '2025-06')?.index).toBe(5);
    expect(priceInForce([b, a], '2025-06')?.index).toBe(5);
  });

  it('ignores denied publications and other command types', () => {
    const other = fakeEntry({ index: 2, type: 'revenue.record', body: { imvu: 'x', amount: '1', currency: 'USD' } });
    expect(priceInForce([book(0, 1, '2025-01'), book(1, 2, '2025-06', false), other], '2025-12')?.index).toBe(0);
    expect(priceInForce([book(1, 2, '2025-06', false)], '2025-12')).toBeUndefined();
  });

  it('throws on an allowed but malformed price book rather than skipping it', () => {
    const broken = fakeEntry({ index: 9, type: 'pricebook.publish', body: { version: 1 } });
    expect(() => priceInForce([broken], '2025-12')).toThrow(/invalid price book in ledger entry #9: /);
  });

  it('validates the period', () => {
    expect(() => priceInForce([], '2025-13')).toThrow(/period must be a month written 'YYYY-MM' with month 01\.\.12, got '2025-13'/);
    expect(() => priceInForce([], '2025-1')).toThrow(/period must be a month/);
  });
});

describe('assertPriceBookTiming', () => {
  it('allows a book that starts in a later period than its publication', () => {
    expect(() => assertPriceBookTiming(validBody, '2025-11-30T23:59:59.999Z')).not.toThrow();
    expect(() => assertPriceBookTiming({ ...validBody, effectiveFrom: '2027-03' }, '2025-11-01T00:00:00Z')).not.toThrow();
  });

  it('rejects a book for the current period', () => {
    expect(() => assertPriceBookTiming(validBody, '2025-12-01T00:00:00Z')).toThrow(
      /price book version 1 would take effect from 2025-12 but was published at 2025-12-01T00:00:00Z \(period 2025-12\).*earliest allowed effectiveFrom is 2026-01/,
    );
  });

  it('rejects a retroactive book', () => {
    expect(() => assertPriceBookTiming(validBody, '2026-02-10T09:00:00Z')).toThrow(/cannot change retroactively/);
  });

  it('uses the UTC month of publishedAt, honouring offsets', () => {
    // 2025-12-01T00:30+01:00 is still 2025-11 in UTC, so effectiveFrom 2025-12 is in the future.
    expect(() => assertPriceBookTiming(validBody, '2025-12-01T00:30:00+01:00')).not.toThrow();
    // 2025-11-30T23:30-01:00 is already 2025-12 in UTC.
    expect(() => assertPriceBookTiming(validBody, '2025-11-30T23:30:00-01:00')).toThrow(/period 2025-12/);
  });

  it('rejects an invalid body or timestamp', () => {
    expect(() => assertPriceBookTiming({ ...validBody, version: 0 }, '2025-01-01T00:00:00Z')).toThrow(/invalid price book/);
    expect(() => assertPriceBookTiming(validBody, 'yesterday')).toThrow(/publishedAt must be an ISO-8601 instant/);
    expect(() => assertPriceBookTiming(validBody, '2025-02-30T00:00:00Z')).toThrow(/day out of range/);
  });
});

describe('periods', () => {
  it('maps instants to UTC months and steps to the next month', () => {
    expect(periodOfInstant('2025-12-31T23:59:59Z')).toBe('2025-12');
    expect(periodOfInstant('2026-01-01T00:30:00+01:00')).toBe('2025-12');
    expect(periodOfInstant('2024-02-29T12:00:00.123456Z')).toBe('2024-02');
    expect(nextPeriod('2025-12')).toBe('2026-01');
    expect(nextPeriod('2025-09')).toBe('2025-10');
  });

  it('rejects non-instants', () => {
    expect(() => periodOfInstant('2025-12-01')).toThrow(/ISO-8601 instant/);
    expect(() => periodOfInstant('2025-12-01T00:00:00')).toThrow(/ISO-8601 instant/);
    expect(() => periodOfInstant('2023-02-29T00:00:00Z')).toThrow(/day out of range/);
    expect(() => periodOfInstant('2025-12-01T24:00:00Z')).toThrow(/time out of range/);
  });
});
