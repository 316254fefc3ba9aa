import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { LedgerEntry } from '../types.ts';
import { formatMinor } from './split.ts';
import { statement, statementToJson } from './statement.ts';
import { deepFreeze, fakeEntry, ledger, priceBook, revenue, usage } from './test-fixtures.ts';

// Price book v1 for the lifecycle document's December 2025 example (amounts in cents):
//   compute  $1.00 per 24 core-hours   -> 4 cores x 720 h = 2,880 core-hours = $120.00
//   dns      $1.00 per 10,000 queries  -> 50,000 queries                    =   $5.00
//   mail     $1.00 per 100 messages    -> 500 messages                      =   $5.00
//            $2.50 per GB-month        -> 2 GB-months                       =   $5.00
//   network  $0.10 per GB              -> 150 GB                            =  $15.00
const PRICES_V1: Record<string, [string, string]> = {
  'compute.cpu_core_hours': ['100', '24'],
  'dns.queries': ['100', '10000'],
  'mail.messages': ['100', '100'],
  'mail.storage_gb_months': ['250', '1'],
  'network.bandwidth_gb': ['10', '1'],
};

const IMVU = 'IMVU-042';

function lifecycleLedger(): LedgerEntry[] {
  return ledger(
    { type: 'pricebook.publish', ts: '2025-11-20T10:00:00Z', body: priceBook(1, '2025-12', PRICES_V1) }, // #0
    { type: 'usage.report', body: usage(IMVU, '2025-12-01T00:00:00Z', { 'compute.cpu_core_hours': '1440' }, 'compute', '2025-12-16T00:00:00Z') }, // #1
    { type: 'usage.report', body: usage(IMVU, '2025-12-16T00:00:00Z', { 'compute.cpu_core_hours': '1440' }, 'compute', '2026-01-01T00:00:00Z') }, // #2
    { type: 'usage.report', body: usage(IMVU, '2025-12-01T00:00:00Z', { 'dns.queries': '30000' }, 'dns') }, // #3
    { type: 'usage.report', body: usage(IMVU, '2025-12-20T00:00:00Z', { 'dns.queries': '20000' }, 'dns') }, // #4
    { type: 'usage.report', body: usage(IMVU, '2025-12-31T23:59:59.999Z', { 'mail.messages': '500', 'mail.storage_gb_months': '2' }, 'mail') }, // #5
    { type: 'usage.report', body: usage(IMVU, '2025-12-05T00:00:00Z', { 'network.bandwidth_gb': '150' }, 'network') }, // #6
  );
}

/** Entries that must not change IMVU-042's December statement, appended after the real ones. */
function noise(from: number): LedgerEntry[] {
  const specs: Parameters<typeof fakeEntry>[0][] = [
    // denied entries of this IMVU, in the period
    { index: 0, type: 'usage.report', allowed: false, body: usage(IMVU, '2025-12-10T00:00:00Z', { 'compute.cpu_core_hours': '999999' }) },
    { index: 0, type: 'usage.report', allowed: false, body: usage(IMVU, '2025-12-10T00:00:00Z', { 'unpriced.metric': '1' }) },
    { index: 0, type: 'revenue.record', allowed: false, body: revenue(IMVU, '100000') },
    { index: 0, type: 'revenue.record', allowed: false, body: revenue(IMVU, '100000', { currency: 'EUR' }) },
    { index: 0, type: 'pricebook.publish', allowed: false, body: priceBook(9, '2025-12', { 'dns.queries': ['99999', '1'] }) },
    // other IMVUs, in the period (even malformed or unpriced ones)
    { index: 0, type: 'usage.report', body: usage('IMVU-043', '2025-12-10T00:00:00Z', { 'compute.cpu_core_hours': '5000' }) },
    { index: 0, type: 'usage.report', body: usage('IMVU-043', '2025-12-10T00:00:00Z', { 'unpriced.metric': '7' }) },
    { index: 0, type: 'usage.report', body: { imvu: 'IMVU-043', metrics: 'garbage' } },
    { index: 0, type: 'revenue.record', body: revenue('IMVU-043', '70000', { currency: 'EUR' }) },
    // this IMVU, other months
    { index: 0, type: 'usage.report', body: usage(IMVU, '2025-11-30T23:00:00Z', { 'dns.queries': '1000000' }, 'dns', '2025-12-01T01:00:00Z') },
    { index: 0, type: 'usage.report', body: usage(IMVU, '2026-01-01T00:00:00Z', { 'network.bandwidth_gb': '1000' }) },
    { index: 0, type: 'revenue.record', ts: '2025-12-02T00:00:00Z', body: revenue(IMVU, '12345', { at: '2025-11-30T23:59:59Z' }) },
    { index: 0, type: 'revenue.record', ts: '2026-01-01T00:00:00Z', body: revenue(IMVU, '54321') },
    // unrelated command types
    { index: 0, type: 'imvu.scale', body: { imvu: IMVU, cpu: 8 } },
  ];
  return specs.map((s, i) => fakeEntry({ ...s, index: from + i }));
}

describe('statement: lifecycle example (IMVU-042, December 2025)', () => {
  it('prices compute $120, dns $5, mail $10, network $15 -> $150.00 split $82.50 / $67.50', () => {
    const s = statement(lifecycleLedger(), IMVU, '2025-12');
    expect(s.imvu).toBe(IMVU);
    expect(s.period).toBe('2025-12');
    expect(s.currency).toBe('USD');
    expect(s.priceBookVersion).toBe(1);
    expect(s.lines).toEqual([
      { metric: 'compute.cpu_core_hours', quantity: 2880n, amount: 100n, per: 24n, charge: 12000n },
      { metric: 'dns.queries', quantity: 50000n, amount: 100n, per: 10000n, charge: 500n },
      { metric: 'mail.messages', quantity: 500n, amount: 100n, per: 100n, charge: 500n },
      { metric: 'mail.storage_gb_months', quantity: 2n, amount: 250n, per: 1n, charge: 500n },
      { metric: 'network.bandwidth_gb', quantity: 150n, amount: 10n, per: 1n, charge: 1500n },
    ]);
    expect(s.categories).toEqual({ compute: 12000n, dns: 500n, mail: 1000n, network: 1500n });
    expect(s.usageTotal).toBe(15000n);
    expect(s.revenueTotal).toBe(0n);
    expect(s.total).toBe(15000n);
    expect(s.creator).toBe(8250n);
    expect(s.platform).toBe(6750n);
    expect(s.entries).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect([s.total, s.creator, s.platform].map((a) => formatMinor(a, s.currency))).toEqual(['$150.00', '$82.50', '$67.50']);
    expect(Object.fromEntries(Object.entries(s.categories).map(([k, v]) => [k, formatMinor(v, 'USD')]))).toEqual({
      compute: '$120.00',
      dns: '$5.00',
      mail: '$10.00',
      network: '$15.00',
    });
  });

  it('renders JSON with bigints as decimal strings', () => {
    const json = statementToJson(statement(lifecycleLedger(), IMVU, '2025-12'));
    expect(json).toEqual({
      imvu: IMVU,
      period: '2025-12',
      currency: 'USD',
      priceBookVersion: 1,
      lines: [
        { metric: 'compute.cpu_core_hours', quantity: '2880', amount: '100', per: '24', charge: '12000' },
        { metric: 'dns.queries', quantity: '50000', amount: '100', per: '10000', charge: '500' },
        { metric: 'mail.messages', quantity: '500', amount: '100', per: '100', charge: '500' },
        { metric: 'mail.storage_gb_months', quantity: '2', amount: '250', per: '1', charge: '500' },
        { metric: 'network.bandwidth_gb', quantity: '150', amount: '10', per: '1', charge: '1500' },
      ],
      categories: { compute: '12000', dns: '500', mail: '1000', network: '1500' },
      usageTotal: '15000',
      revenueTotal: '0',
      total: '15000',
      creator: '8250',
      platform: '6750',
      entries: [0, 1, 2, 3, 4, 5, 6],
    });
    expect(() => JSON.stringify(json)).not.toThrow();
  });

  it('ignores denied entries, other IMVUs and other months', () => {
    const clean = lifecycleLedger();
    const noisy = [...clean, ...noise(clean.length)];
    expect(statementToJson(statement(noisy, IMVU, '2025-12'))).toEqual(statementToJson(statement(clean, IMVU, '2025-12')));
  });

  it('assigns usage to the month of period.start and revenue to the month of `at`, else of ts', () => {
    const entries = [...lifecycleLedger(), ...noise(7)];
    // The usage that starts 2025-11-30T23:00Z (and ends in December) belongs to November, where no book is in force.
    expect(() => statement(entries, IMVU, '2025-11')).toThrow(/usage is reported \(ledger entries #16\) but no price book is in force for 2025-11/);
    entries.push(fakeEntry({ index: 21, type: 'pricebook.publish', body: priceBook(1, '2025-11', PRICES_V1) }));
    const nov = statement(entries, IMVU, '2025-11');
    expect(nov.lines).toEqual([{ metric: 'dns.queries', quantity: 1000000n, amount: 100n, per: 10000n, charge: 10000n }]);
    expect(nov.revenueTotal).toBe(12345n); // recorded in December (ts) but `at` is in November
    expect(nov.entries).toEqual([16, 18, 21]);
    expect(statement(entries, IMVU, '2025-12').priceBookVersion).toBe(1);
    const jan = statement(entries, IMVU, '2026-01');
    expect(jan.lines).toEqual([{ metric: 'network.bandwidth_gb', quantity: 1000n, amount: 10n, per: 1n, charge: 10000n }]);
    expect(jan.revenueTotal).toBe(54321n);
    expect(jan.total).toBe(64321n);
  });
});

describe('statement: revenue', () => {
  it('a revenue-only month of $500.00 splits $275.00 / $225.00', () => {
    const entries = ledger(
      { type: 'pricebook.publish', ts: '2025-11-20T10:00:00Z', body: priceBook(1, '2025-12', PRICES_V1) },
      { type: 'revenue.record', ts: '2026-03-31T20:00:00Z', body: revenue('IMVU-123', '30000', { memo: 'art sales' }) },
      { type: 'revenue.record', ts: '2026-04-02T08:00:00Z', body: revenue('IMVU-123', '20000', { at: '2026-03-15T12:00:00Z' }) },
    );
    const s = statement(entries, 'IMVU-123', '2026-03');
    expect(s.lines).toEqual([]);
    expect(s.categories).toEqual({});
    expect(s.usageTotal).toBe(0n);
    expect(s.revenueTotal).toBe(50000n);
    expect(s.total).toBe(50000n);
    expect(s.creator).toBe(27500n);
    expect(s.platform).toBe(22500n);
    expect(s.priceBookVersion).toBe(1);
    expect(s.entries).toEqual([0, 1, 2]);
    expect([formatMinor(s.total, 'USD'), formatMinor(s.creator, 'USD'), formatMinor(s.platform, 'USD')]).toEqual([
      '$500.00',
      '$275.00',
      '$225.00',
    ]);
  });

  it('a revenue-only month needs no price book and takes its currency from the revenue', () => {
    const entries = ledger({ type: 'revenue.record', ts: '2026-03-10T00:00:00Z', body: revenue('IMVU-123', '50000', { currency: 'EUR' }) });
    const s = statement(entries, 'IMVU-123', '2026-03');
    expect(s.currency).toBe('EUR');
    expect(s.priceBookVersion).toBeNull();
    expect([s.total, s.creator, s.platform]).toEqual([50000n, 27500n, 22500n]);
  });

  it('an empty month is all zeros', () => {
    const s = statement([], 'IMVU-123', '2026-03');
    expect([s.usageTotal, s.revenueTotal, s.total, s.creator, s.platform]).toEqual([0n, 0n, 0n, 0n, 0n]);
    expect(s.entries).toEqual([]);
    expect(s.priceBookVersion).toBeNull();
  });

  it('throws on a revenue currency that differs from the price book', () => {
    const entries = [
      ...lifecycleLedger(),
      fakeEntry({ index: 7, type: 'revenue.record', body: revenue(IMVU, '100', { currency: 'EUR' }) }),
    ];
    expect(() => statement(entries, IMVU, '2025-12')).toThrow(
      /revenue in ledger entry #7 is in EUR but price book version 1 \(ledger entry #0\) is in USD/,
    );
  });

  it('throws on revenues in two currencies without a price book', () => {
    const entries = ledger(
      { type: 'revenue.record', body: revenue(IMVU, '100', { currency: 'USD' }) },
      { type: 'revenue.record', body: revenue(IMVU, '100', { currency: 'EUR' }) },
    );
    expect(() => statement(entries, IMVU, '2025-12')).toThrow(/revenue in ledger entry #1 is in EUR but earlier revenue in this period is in USD/);
  });

  it('throws on a malformed revenue entry of this IMVU', () => {
    const entries = ledger({ type: 'revenue.record', body: revenue(IMVU, '12.50') });
    expect(() => statement(entries, IMVU, '2025-12')).toThrow(
      /statement for IMVU "IMVU-042" period 2025-12: invalid revenue.record in ledger entry #0: amount: must be a string of decimal digits only/,
    );
  });
});

describe('statement: price books over time', () => {
  const PRICES_V2: Record<string, [string, string]> = Object.fromEntries(
    Object.entries(PRICES_V1).map(([m, [a, p]]) => [m, [String(BigInt(a) * 2n), p]]),
  );

  it('a price book published for a later period does not affect the earlier period', () => {
    const before = statement(lifecycleLedger(), IMVU, '2025-12');
    const entries = [
      ...lifecycleLedger(),
      fakeEntry({ index: 7, type: 'pricebook.publish', ts: '2025-12-10T00:00:00Z', body: priceBook(2, '2026-01', PRICES_V2) }),
      fakeEntry({ index: 8, type: 'usage.report', body: usage(IMVU, '2026-01-03T00:00:00Z', { 'network.bandwidth_gb': '150' }) }),
    ];
    const dec = statement(entries, IMVU, '2025-12');
    expect(statementToJson(dec)).toEqual(statementToJson(before));
    expect(dec.priceBookVersion).toBe(1);

    const jan = statement(entries, IMVU, '2026-01');
    expect(jan.priceBookVersion).toBe(2);
    expect(jan.lines).toEqual([{ metric: 'network.bandwidth_gb', quantity: 150n, amount: 20n, per: 1n, charge: 3000n }]);
    expect(jan.entries).toEqual([7, 8]);
  });
});

describe('statement: rounding', () => {
  it('rounds up once per metric on the summed quantity, not once per report', () => {
    const entries = ledger(
      { type: 'pricebook.publish', body: priceBook(1, '2025-12', { 'dns.queries': ['1', '3'] }) },
      { type: 'usage.report', body: usage(IMVU, '2025-12-01T00:00:00Z', { 'dns.queries': '1' }) },
      { type: 'usage.report', body: usage(IMVU, '2025-12-02T00:00:00Z', { 'dns.queries': '1' }) },
      { type: 'usage.report', body: usage(IMVU, '2025-12-03T00:00:00Z', { 'dns.queries': '1' }) },
      { type: 'usage.report', body: usage(IMVU, '2025-12-04T00:00:00Z', { 'dns.queries': '1' }) },
    );
    const s = statement(entries, IMVU, '2025-12');
    expect(s.lines).toEqual([{ metric: 'dns.queries', quantity: 4n, amount: 1n, per: 3n, charge: 2n }]); // ceil(4/3), not 4 x ceil(1/3)
  });

  it('a zero quantity of a priced metric costs nothing', () => {
    const entries = ledger(
      { type: 'pricebook.publish', body: priceBook(1, '2025-12', PRICES_V1) },
      { type: 'usage.report', body: usage(IMVU, '2025-12-01T00:00:00Z', { 'dns.queries': '0' }) },
    );
    expect(statement(entries, IMVU, '2025-12').lines).toEqual([{ metric: 'dns.queries', quantity: 0n, amount: 100n, per: 10000n, charge: 0n }]);
  });
});

describe('statement: errors (never priced at zero)', () => {
  it('throws on a usage metric with no price', () => {
    const entries = [
      ...lifecycleLedger(),
      fakeEntry({ index: 7, type: 'usage.report', body: usage(IMVU, '2025-12-09T00:00:00Z', { 'gpu.hours': '3', 'dns.queries': '1' }) }),
    ];
    expect(() => statement(entries, IMVU, '2025-12')).toThrow(
      'statement for IMVU "IMVU-042" period 2025-12: no price for usage metric "gpu.hours" (ledger entries #7) in price book version 1 (ledger entry #0); refusing to price usage at zero',
    );
  });

  it('throws on usage without any price book in force', () => {
    const entries = ledger(
      { type: 'pricebook.publish', body: priceBook(1, '2026-01', PRICES_V1) },
      { type: 'usage.report', body: usage(IMVU, '2025-12-01T00:00:00Z', { 'dns.queries': '5' }) },
    );
    expect(() => statement(entries, IMVU, '2025-12')).toThrow(/usage is reported \(ledger entries #1\) but no price book is in force for 2025-12/);
  });

  it('throws on a malformed usage entry of this IMVU, naming the entry and field', () => {
    const entries = [
      ...lifecycleLedger(),
      fakeEntry({ index: 7, type: 'usage.report', body: usage(IMVU, '2025-12-01T00:00:00Z', { 'dns.queries': '-5' }) }),
    ];
    expect(() => statement(entries, IMVU, '2025-12')).toThrow(
      /invalid usage.report in ledger entry #7: metrics\["dns.queries"\]: must be a string of decimal digits only/,
    );
    const backwards = fakeEntry({ index: 7, type: 'usage.report', body: usage(IMVU, '2025-12-02T00:00:00Z', {}, 'dns', '2025-12-01T00:00:00Z') });
    expect(() => statement([...lifecycleLedger(), backwards], IMVU, '2025-12')).toThrow(/period: period.end must not be before period.start/);
  });

  it('validates the period and the IMVU', () => {
    for (const bad of ['2025-13', '2025-00', '2025-1', '202512', '2025-12-01', '']) {
      expect(() => statement([], IMVU, bad)).toThrow(/period must be a month written 'YYYY-MM' with month 01\.\.12/);
    }
    expect(() => statement([], '', '2025-12')).toThrow(/imvu must be a non-empty string/);
  });
});

describe('statement: determinism', () => {
  it('same entries in -> identical JSON out, without mutating the input', () => {
    const entries = deepFreeze([...lifecycleLedger(), ...noise(7)]);
    const a = JSON.stringify(statementToJson(statement(entries, IMVU, '2025-12')));
    const b = JSON.stringify(statementToJson(statement(entries, IMVU, '2025-12')));
    const c = JSON.stringify(statementToJson(statement(structuredClone([...lifecycleLedger(), ...noise(7)]), IMVU, '2025-12')));
    expect(b).toBe(a);
    expect(c).toBe(a);
  });

  it('property: the order in which entries are supplied does not matter', () => {
    const entries = [
      ...lifecycleLedger(),
      ...noise(7),
      fakeEntry({ index: 21, type: 'revenue.record', body: revenue(IMVU, '999') }),
      fakeEntry({ index: 22, type: 'pricebook.publish', body: priceBook(3, '2025-12', PRICES_V1) }),
    ];
    const expected = JSON.stringify(statementToJson(statement(entries, IMVU, '2025-12')));
    fc.assert(
      fc.property(fc.shuffledSubarray(entries, { minLength: entries.length }), (shuffled) => {
        expect(JSON.stringify(statementToJson(statement(shuffled, IMVU, '2025-12')))).toBe(expected);
      }),
      { numRuns: 50 },
    );
  });
});

describe('statement: properties', () => {
  const metrics = Object.keys(PRICES_V1);
  const price = fc.record({ amount: fc.bigInt({ min: 0n, max: 10n ** 9n }), per: fc.bigInt({ min: 1n, max: 10n ** 6n }) });
  const report = fc.dictionary(fc.constantFrom(...metrics), fc.bigInt({ min: 0n, max: 10n ** 12n }), { maxKeys: metrics.length });

  it('creator + platform == total == sum of line charges + revenue; each charge is the ceiling', () => {
    fc.assert(
      fc.property(
        fc.tuple(...metrics.map(() => price)),
        fc.array(report, { maxLength: 8 }),
        fc.array(fc.bigInt({ min: 0n, max: 10n ** 15n }), { maxLength: 4 }),
        (prices, reports, revenues) => {
          const book = priceBook(
            1,
            '2025-12',
            Object.fromEntries(metrics.map((m, i) => [m, [String(prices[i]?.amount), String(prices[i]?.per)]])),
          );
          const entries = ledger(
            { type: 'pricebook.publish', body: book },
            ...reports.map((r, i) => ({
              type: 'usage.report' as const,
              body: usage(IMVU, `2025-12-${String((i % 28) + 1).padStart(2, '0')}T00:00:00Z`, Object.fromEntries(Object.entries(r).map(([k, v]) => [k, String(v)]))),
            })),
            ...revenues.map((amount) => ({ type: 'revenue.record' as const, body: revenue(IMVU, String(amount)) })),
          );
          const s = statement(entries, IMVU, '2025-12');
          const chargeSum = s.lines.reduce((sum, l) => sum + l.charge, 0n);
          const revenueSum = revenues.reduce((sum, r) => sum + r, 0n);
          expect(s.creator + s.platform).toBe(s.total);
          expect(s.usageTotal).toBe(chargeSum);
          expect(s.revenueTotal).toBe(revenueSum);
          expect(s.total).toBe(chargeSum + revenueSum);
          expect(Object.values(s.categories).reduce((sum, c) => sum + c, 0n)).toBe(chargeSum);
          for (const line of s.lines) {
            const expectedQuantity = reports.reduce((sum, r) => sum + (r[line.metric] ?? 0n), 0n);
            expect(line.quantity).toBe(expectedQuantity);
            expect(line.charge * line.per >= line.quantity * line.amount).toBe(true);
            expect((line.charge - 1n) * line.per < line.quantity * line.amount).toBe(true);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
