import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CREATOR_SHARE_PERCENT, PLATFORM_SHARE_PERCENT, formatMinor, parseAmount, split } from './split.ts';

const money = fc.bigInt({ min: 0n, max: 10n ** 18n });

describe('split (55-45)', () => {
  it('has fixed constitutional shares that add up to 100%', () => {
    expect(CREATOR_SHARE_PERCENT).toBe(55n);
    expect(PLATFORM_SHARE_PERCENT).toBe(45n);
    expect(CREATOR_SHARE_PERCENT + PLATFORM_SHARE_PERCENT).toBe(100n);
  });

  it('splits $150.00 into $82.50 / $67.50', () => {
    expect(split(15000n)).toEqual({ total: 15000n, creator: 8250n, platform: 6750n });
  });

  it('splits $500.00 into $275.00 / $225.00', () => {
    expect(split(50000n)).toEqual({ total: 50000n, creator: 27500n, platform: 22500n });
  });

  it('rounds the creator share up on indivisible totals', () => {
    expect(split(0n)).toEqual({ total: 0n, creator: 0n, platform: 0n });
    expect(split(1n)).toEqual({ total: 1n, creator: 1n, platform: 0n });
    expect(split(3n)).toEqual({ total: 3n, creator: 2n, platform: 1n }); // 1.65 -> 2
    expect(split(101n)).toEqual({ total: 101n, creator: 56n, platform: 45n }); // 55.55 -> 56
  });

  it('property: creator + platform == total', () => {
    fc.assert(
      fc.property(money, (total) => {
        const s = split(total);
        expect(s.total).toBe(total);
        expect(s.creator + s.platform).toBe(total);
      }),
    );
  });

  it('property: creator is exactly ceil(total * 55 / 100)', () => {
    fc.assert(
      fc.property(money, (total) => {
        const { creator } = split(total);
        expect(creator * 100n >= total * 55n).toBe(true);
        expect((creator - 1n) * 100n < total * 55n).toBe(true);
      }),
    );
  });

  it('property: platform >= 0 and never more than its 45% rounded up', () => {
    fc.assert(
      fc.property(money, (total) => {
        const { platform } = split(total);
        expect(platform >= 0n).toBe(true);
        expect(platform * 100n <= total * 45n).toBe(true);
      }),
    );
  });

  it('rejects a negative total', () => {
    expect(() => split(-1n)).toThrow(/must not be negative, got -1/);
  });

  it('rejects a non-bigint total at runtime', () => {
    expect(() => split(1.5 as unknown as bigint)).toThrow(/must be a bigint/);
  });
});

describe('parseAmount', () => {
  it('accepts bigints, safe integers and decimal-digit strings', () => {
    expect(parseAmount(0n)).toBe(0n);
    expect(parseAmount(15000n)).toBe(15000n);
    expect(parseAmount(0)).toBe(0n);
    expect(parseAmount(8250)).toBe(8250n);
    expect(parseAmount(Number.MAX_SAFE_INTEGER)).toBe(BigInt(Number.MAX_SAFE_INTEGER));
    expect(parseAmount('0')).toBe(0n);
    expect(parseAmount('007')).toBe(7n);
    expect(parseAmount('1'.repeat(30))).toBe(BigInt('1'.repeat(30)));
  });

  it('property: round-trips any non-negative bigint through its decimal string', () => {
    fc.assert(
      fc.property(money, (n) => {
        expect(parseAmount(n.toString())).toBe(n);
      }),
    );
  });

  it('names `what` and shows the bad input', () => {
    expect(() => parseAmount('-5')).toThrow(
      "amount must be a non-negative whole number of minor units, got '-5' (negative)",
    );
    expect(() => parseAmount('abc', 'revenue amount')).toThrow(/^revenue amount must be .* got 'abc'/);
  });

  const rejections: [label: string, input: unknown, reason: RegExp][] = [
    ['negative string', '-5', /got '-5' \(negative\)/],
    ['negative number', -5, /got -5 \(negative\)/],
    ['negative bigint', -5n, /got -5n \(negative\)/],
    ['fractional string', '1.5', /got '1\.5' \(fractional/],
    ['trailing-dot string', '15.', /got '15\.' \(fractional/],
    ['fractional number', 1.5, /got 1\.5 \(fractional/],
    ['exponent string', '1e5', /got '1e5' \(exponent notation/],
    ['exponent with fraction', '1.5E3', /got '1\.5E3' \(exponent notation/],
    ['hex string', '0x10', /got '0x10' \(not decimal/],
    ['empty string', '', /got '' \(empty string\)/],
    ['whitespace only', ' ', /got ' ' \(contains whitespace\)/],
    ['padded digits', ' 5', /got ' 5' \(contains whitespace\)/],
    ['trailing newline', '5\n', /\(contains whitespace\)/],
    ['plus sign', '+5', /got '\+5' \(has a sign\)/],
    ['non-numeric', 'ten', /got 'ten' \(not a string of decimal digits\)/],
    ['unicode digits', '١٢', /\(not a string of decimal digits\)/],
    ['too many digits', '1'.repeat(31), /\(more than 30 digits\)/],
    ['NaN', Number.NaN, /got NaN \(not a number\)/],
    ['Infinity', Number.POSITIVE_INFINITY, /got Infinity \(not finite\)/],
    ['-Infinity', Number.NEGATIVE_INFINITY, /got -Infinity \(not finite\)/],
    ['unsafe integer', 2 ** 60, /beyond the safe integer range/],
    ['null', null, /got null \(expected a bigint/],
    ['undefined', undefined, /got a value of type undefined/],
    ['boolean', true, /got a value of type boolean/],
    ['object', { amount: 5 }, /got a value of type object/],
    ['array', [5], /got an array/],
  ];
  it.each(rejections)('rejects %s with a clear message', (_label, input, reason) => {
    expect(() => parseAmount(input, 'amount')).toThrow(/^amount must be a non-negative whole number of minor units, got /);
    expect(() => parseAmount(input, 'amount')).toThrow(reason);
  });
});

describe('formatMinor', () => {
  it('formats USD with a dollar sign and 2 decimals', () => {
    expect(formatMinor(8250n, 'USD')).toBe('$82.50');
    expect(formatMinor(15000n, 'USD')).toBe('$150.00');
    expect(formatMinor(0n, 'USD')).toBe('$0.00');
    expect(formatMinor(5n, 'USD')).toBe('$0.05');
    expect(formatMinor(123456789012345678901234567890n, 'USD')).toBe('$1234567890123456789012345678.90');
    expect(formatMinor(-150n, 'USD')).toBe('-$1.50');
  });

  it('formats other currencies as "<amount> <code>" with their ISO 4217 decimals', () => {
    expect(formatMinor(12345n, 'EUR')).toBe('123.45 EUR');
    expect(formatMinor(500n, 'JPY')).toBe('500 JPY');
    expect(formatMinor(1234n, 'KWD')).toBe('1.234 KWD');
  });

  it('rejects malformed currency codes', () => {
    expect(() => formatMinor(1n, 'usd')).toThrow(/3 upper-case letters/);
    expect(() => formatMinor(1n, 'DOLLARS')).toThrow(/3 upper-case letters/);
  });
});
