// Statements from the running totals (what the API serves) and statement() over the entries (what
// the verifier and exports recompute) are the same statement, for random ledgers built through the
// real chokepoint: random usage (much of it refused), revenue, time moving across months, and the
// platform sealing periods as they end.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeEntry } from '../ledger/ledger.ts';
import { testPlatform, type Actor, type TestPlatform } from '../testing.ts';
import type { CommandType, Json } from '../types.ts';
import { PeriodCloser } from './closer.ts';
import { nextPeriod, periodOfMillis } from './period.ts';
import { statement, statementToJson } from './statement.ts';
import { sealedStatement, statementFromTotals } from './totals.ts';
import { verifyStore } from '../policy/verify.ts';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const FIRST = '2031-01';

let now = Date.parse('2031-01-20T08:00:00.000Z');
let p: TestPlatform;
let closer: PeriodCloser;
const meters: Record<string, Actor> = {};
const lastEnd = new Map<string, number>();
const IMVUS = ['IMVU-001', 'IMVU-002'];
const METRICS = ['dns.queries', 'compute.io_operations', 'compute.memory_gb_hours', 'network.bandwidth_gb'];

const platform = (type: CommandType, body: { [k: string]: Json }) => p.chokepoint.submit(p.chokepoint.platformCommand(type, body));

beforeAll(async () => {
  p = await testPlatform({ clock: () => new Date(now) });
  for (const name of ['alice', 'bob']) {
    const c = await p.register(name, 'creator');
    expect((await p.as(c, 'imvu.create', { name: `Shop-${name}`, owner: c.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
  }
  meters.dns = await p.register('dns', 'service');
  meters.compute = await p.register('compute', 'service');
  expect((await platform('meter.register', { identity: meters.dns.id, metrics: ['dns.queries'] })).allowed).toBe(true);
  expect((await platform('meter.register', { identity: meters.compute.id, metrics: METRICS.slice(1) })).allowed).toBe(true);
  closer = new PeriodCloser({ store: p.store, now: () => now, submit: (body) => platform('period.close', body) });
});
afterAll(async () => p?.cleanup());

type Action =
  | { kind: 'advance'; ms: number }
  | { kind: 'usage'; imvu: number; metric: string; back: number; endBack: number; q: bigint }
  | { kind: 'revenue'; imvu: number; amount: bigint; back: number }
  | { kind: 'close' };

const action: fc.Arbitrary<Action> = fc.oneof(
  fc.record({ kind: fc.constant('advance' as const), ms: fc.integer({ min: MINUTE, max: 4 * DAY }) }),
  fc.record({
    kind: fc.constant('usage' as const),
    imvu: fc.integer({ min: 0, max: 1 }),
    metric: fc.constantFrom(...METRICS),
    back: fc.integer({ min: 0, max: 3 * HOUR }),
    endBack: fc.integer({ min: 0, max: 2 * HOUR }),
    q: fc.oneof(fc.bigInt({ min: 0n, max: 1000n }), fc.bigInt({ min: 0n, max: 10n ** 12n })),
  }),
  fc.record({ kind: fc.constant('revenue' as const), imvu: fc.integer({ min: 0, max: 1 }), amount: fc.bigInt({ min: 0n, max: 10n ** 9n }), back: fc.integer({ min: 0, max: 2 * HOUR }) }),
  fc.constant({ kind: 'close' as const }),
);

async function perform(a: Action): Promise<void> {
  switch (a.kind) {
    case 'advance':
      now += a.ms;
      return;
    case 'usage': {
      const imvu = IMVUS[a.imvu]!;
      const key = `${imvu} ${a.metric}`;
      const start = Math.max(lastEnd.get(key) ?? 0, now - a.back);
      const end = now - a.endBack;
      const meter = a.metric === 'dns.queries' ? meters.dns! : meters.compute!;
      const body = { imvu, service: meter.name, period: { start: new Date(start).toISOString(), end: new Date(end).toISOString() }, metrics: { [a.metric]: a.q.toString() } };
      const r = await p.as(meter, 'usage.report', body);
      if (r.allowed) lastEnd.set(key, end);
      return;
    }
    case 'revenue':
      await platform('revenue.record', { imvu: IMVUS[a.imvu]!, amount: a.amount.toString(), currency: 'USD', at: new Date(now - a.back).toISOString() });
      return;
    case 'close':
      await closer.check();
      return;
  }
}

// Every period so far, for both IMVUs: the totals' statement equals statement() over the entries,
// and a seal carries those totals. Returns how many seals it saw.
async function checkAll(): Promise<{ allowedUsage: number; sealed: number }> {
  const entries = (await p.store.readEntries(0, p.chokepoint.ledger.size)).map(decodeEntry);
  const allowedUsage = entries.filter((e) => e.decision.allowed && e.command.command.type === 'usage.report').length;
  let sealed = 0;
  for (let period = FIRST; period <= periodOfMillis(now); period = nextPeriod(period))
    for (const imvu of IMVUS) {
      const fromTotals = statementToJson(await statementFromTotals(p.store, imvu, period));
      expect(fromTotals).toEqual(statementToJson(statement(entries, imvu, period)));
      const seal = await sealedStatement(p.store, imvu, period);
      if (seal?.totals) {
        sealed++;
        expect(seal.totals).toMatchObject({ total: fromTotals.total, creator: fromTotals.creator, platform: fromTotals.platform });
      }
    }
  return { allowedUsage, sealed };
}

describe('statements from the running totals', () => {
  it('equal statement() over the entries, for every IMVU and period, sealed or not (property)', async () => {
    let allowedUsage = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 12 }), async (actions) => {
        for (const a of actions) await perform(a);
        allowedUsage = (await checkAll()).allowedUsage;
      }),
      { numRuns: 25 },
    );
    // The random runs may or may not have closed a period; whatever they left open is sealed now,
    // so the seals are always checked against the totals too.
    now += 62 * DAY;
    await closer.check();
    const last = await checkAll();
    expect(allowedUsage).toBeGreaterThan(0);
    expect(last.sealed).toBeGreaterThan(0);
  });

  it('and the random ledger verifies: the replayed totals are the stored ones, the seals match the entries', async () => {
    expect((await verifyStore(p.store)).problems).toEqual([]);
  });
});
