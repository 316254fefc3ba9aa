// Billing attacks through the chokepoint, on a platform whose clock the test moves: a hostile root
// admin rewriting prices and periods, and anyone holding a service key inflating usage. Each attack
// is performed, refused by gate 6 (or 17), and both verifiers (offline with the stored projections,
// and the replay the creator's CLI runs online) agree with the ledger.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { signCommand } from '../identity/envelope.ts';
import { decodeEntry, encodeEntry } from '../ledger/ledger.ts';
import { PeriodCloser } from '../handshake/closer.ts';
import { GRACE_MS } from '../handshake/metering.ts';
import { statement } from '../handshake/statement.ts';
import { statementFromTotals } from '../handshake/totals.ts';
import { deniedBy, testPlatform, type Actor, type TestPlatform } from '../testing.ts';
import type { CommandType, Json, LedgerEntry } from '../types.ts';
import type { Receipt } from './chokepoint.ts';
import { decide } from './chokepoint.ts';
import { replayEntries, verifyStore } from './verify.ts';

const T0 = Date.parse('2031-03-10T12:00:00.000Z');
const MINUTE = 60_000;
const DAY = 86_400_000;

let now: number;
let p: TestPlatform;
let alice: Actor;
let dns: Actor;

const iso = (ms: number) => new Date(ms).toISOString();
const reasons = (r: Receipt) => r.gates.filter((g) => g.status === 'deny').map((g) => `gate ${g.gate}: ${g.reason}`).join('; ');

function platform(type: CommandType, body: { [k: string]: Json }): Promise<Receipt> {
  return p.chokepoint.submit(p.chokepoint.platformCommand(type, body));
}

function report(actor: Actor, start: number, end: number, metrics: Record<string, string>, imvu = 'IMVU-001'): Promise<Receipt> {
  return p.as(actor, 'usage.report', { imvu, service: actor.name, period: { start: iso(start), end: iso(end) }, metrics });
}

async function entries(): Promise<LedgerEntry[]> {
  return (await p.store.readEntries(0, p.chokepoint.ledger.size)).map(decodeEntry);
}

/** Both verifiers: the offline one (tree, checkpoints, replay, projections) and the replay `nexus audit verify` runs online. */
async function verifiers(): Promise<{ offline: string[]; online: string[] }> {
  const offline = (await verifyStore(p.store)).problems.map((x) => x.message);
  const online = (await replayEntries(await entries())).map((x) => x.message);
  return { offline, online };
}

async function expectVerified(): Promise<void> {
  expect(await verifiers()).toEqual({ offline: [], online: [] });
}

async function total(imvu = 'IMVU-001', period = '2031-03'): Promise<bigint> {
  return statement(await entries(), imvu, period).total;
}

beforeEach(async () => {
  now = T0;
  p = await testPlatform({ clock: () => new Date(now) });
  alice = await p.register('alice', 'creator');
  dns = await p.register('dns', 'service');
});
afterEach(async () => p.cleanup());

/** An IMVU, the dns service as the meter of dns.queries, and one minute later a first report of one query ($0.01). */
async function billedImvu(): Promise<number> {
  expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
  expect((await platform('meter.register', { identity: dns.id, metrics: ['dns.queries'] })).allowed).toBe(true);
  const start = now;
  now += MINUTE;
  const r = await report(dns, start, now, { 'dns.queries': '1' });
  expect(r.allowed, reasons(r)).toBe(true);
  return now;
}

describe('time and periods', () => {
  it('a hostile root admin with the clock set back a month cannot publish a 1000x price for the current month', async () => {
    // Before the first IMVU: the moment a "current period" book used to be allowed.
    now = T0 - 31 * DAY; // the admin sets the clock back to February
    const thousandfold = { version: 2, currency: 'USD', effectiveFrom: '2031-03', prices: { 'dns.queries': { amount: '10000', per: '1000' } } };
    // Signed at the set-back clock: the entry is still dated by the ledger (March), gate 1 refuses the stale signature.
    expect(deniedBy(await platform('pricebook.publish', thousandfold))).toContain(1);
    // Signed at the ledger's own time: March is the current period, so the book is refused (gate 6).
    const last = (await entries()).at(-1)!.at;
    const current = await p.chokepoint.submit(signCommand(p.platformKey, 'pricebook.publish', thousandfold, { origin: p.config.origin, ts: last }));
    expect(deniedBy(current)).toEqual([6]);
    expect(reasons(current)).toMatch(/cannot change retroactively or for the current period, the earliest allowed effectiveFrom is 2031-04/);
    // As February's "next period" it is retroactive too.
    const feb = await p.chokepoint.submit(signCommand(p.platformKey, 'pricebook.publish', { ...thousandfold, effectiveFrom: '2031-02' }, { origin: p.config.origin, ts: last }));
    expect(deniedBy(feb)).toEqual([6]);

    now = T0;
    await billedImvu();
    expect(await total()).toBe(1n); // one query at the published $0.10 per 1,000: $0.01
    expect((await p.store.get<{ version: number }>('SELECT version FROM price_books ORDER BY entry DESC LIMIT 1'))?.version).toBe(1);
    await expectVerified();
  });

  it('only the very first book may start in the current period; later ones wait for the next period', async () => {
    const second = await platform('pricebook.publish', { version: 2, currency: 'USD', effectiveFrom: '2031-03', prices: { 'dns.queries': { amount: '1', per: '1' } } });
    expect(deniedBy(second)).toEqual([6]);
    const next = await platform('pricebook.publish', { version: 2, currency: 'USD', effectiveFrom: '2031-04', prices: { 'dns.queries': { amount: '20', per: '1000' } } });
    expect(next.allowed, reasons(next)).toBe(true);
    await expectVerified();
  });

  it('a log whose entry times go back fails both verifiers, even when every decision replays', async () => {
    await billedImvu();
    // Root appends, past the chokepoint, a 1000x book dated in February so that it looks published ahead.
    const at = iso(T0 - 31 * DAY);
    const signed = signCommand(
      p.platformKey,
      'pricebook.publish',
      { version: 2, currency: 'USD', effectiveFrom: '2031-03', prices: { 'dns.queries': { amount: '10000', per: '1000' } } },
      { origin: p.config.origin, ts: at },
    );
    const index = p.chokepoint.ledger.size;
    const verdict = await decide(p.store, signed, index, at);
    expect(verdict.decision.allowed).toBe(true); // judged at the forged time, the gates would let it through
    await p.chokepoint.ledger.batch(async (log) => log.append(encodeEntry({ v: 1, index, at, command: signed, decision: verdict.decision })));
    expect(await total()).toBe(10n); // the statement recomputed from this log would be 1000x

    const { offline, online } = await verifiers();
    for (const problems of [offline, online]) expect(problems.join('\n')).toMatch(new RegExp(`entry ${index} is dated ${at}, before the entry preceding it .*entry times never go back`));
  });

  it('usage covers one interval ending within the grace before the entry, inside one period, after the IMVU and its meter exist', async () => {
    const t = await billedImvu();
    now = t + 10 * MINUTE;
    const ahead = await report(dns, t, now + MINUTE, { 'dns.queries': '1' });
    expect(reasons(ahead)).toMatch(/after this entry's time .*cannot be reported ahead/);
    const stale = await report(dns, t, now - GRACE_MS - 1, { 'dns.queries': '1' });
    expect(deniedBy(stale)).toEqual([6]);
    expect(await report(dns, t, t, { 'dns.queries': '0' })).toMatchObject({ allowed: false });
    // An instant finer than any clock: refused and recorded, the batch unharmed.
    const fine = await p.as(dns, 'usage.report', { imvu: 'IMVU-001', service: 'dns', period: { start: '2031-03-10T12:01:00.1234567891Z', end: iso(now) }, metrics: { 'dns.queries': '1' } });
    expect(fine.allowed).toBe(false);
    // Before the IMVU existed.
    expect(reasons(await report(dns, T0 - MINUTE, now, { 'dns.queries': '1' }))).toMatch(/before IMVU-001 was created/);
    // Spanning a month boundary.
    now = Date.parse('2031-04-01T00:10:00.000Z');
    expect(reasons(await report(dns, Date.parse('2031-03-31T23:50:00.000Z'), now, { 'dns.queries': '1' }))).toMatch(/runs past the end of period 2031-03/);
    // The same time twice: intervals of one metric never overlap.
    const ok = await report(dns, Date.parse('2031-03-31T23:50:00.000Z'), Date.parse('2031-04-01T00:00:00.000Z'), { 'dns.queries': '5' });
    expect(ok.allowed, reasons(ok)).toBe(true);
    expect(reasons(await report(dns, Date.parse('2031-03-31T23:55:00.000Z'), Date.parse('2031-04-01T00:00:00.000Z'), { 'dns.queries': '5' }))).toMatch(
      /already reported up to 2031-04-01T00:00:00.000Z/,
    );
    await expectVerified();
  });

  it('after the period and the grace the platform seals it; nothing more can be reported for it and its statements come from the seal', async () => {
    const t = await billedImvu();
    const closer = new PeriodCloser({ store: p.store, now: () => now, submit: (body) => platform('period.close', body) });
    now = t + 5 * MINUTE;
    expect(await closer.check()).toEqual([]); // March has not ended
    now = Date.parse('2031-04-01T00:30:00.000Z');
    expect(await closer.check()).toEqual([]); // ended, but within the grace
    // A report for the last minutes of March, within the grace: accepted.
    expect((await report(dns, t, Date.parse('2031-04-01T00:00:00.000Z'), { 'dns.queries': '2' })).allowed).toBe(true);
    now = Date.parse('2031-04-01T01:00:00.001Z');
    expect(await closer.check()).toEqual(['2031-03']);

    const close = (await entries()).at(-1)!;
    expect(close.command.command).toMatchObject({ type: 'period.close', actor: p.platformId });
    expect(close.command.command.body).toEqual({
      period: '2031-03',
      statements: [{ imvu: 'IMVU-001', currency: 'USD', usageTotal: '1', revenueTotal: '0', total: '1', creator: '1', platform: '0' }],
      complete: true,
    });
    // Usage for the closed month: refused, whatever its interval claims.
    const late = await report(dns, Date.parse('2031-03-31T23:59:00.000Z'), Date.parse('2031-04-01T00:00:00.000Z'), { 'dns.queries': '1' });
    expect(reasons(late)).toMatch(/period 2031-03 is closed \(ledger entry \d+\): nothing more can be reported for it/);
    // Revenue dated in it, too.
    const revenue = await platform('revenue.record', { imvu: 'IMVU-001', amount: '100', currency: 'USD', at: '2031-03-31T23:59:00.000Z' });
    expect(reasons(revenue)).toMatch(/period 2031-03 is closed/);
    // A second close, or a close of a month that has not ended: refused.
    expect(deniedBy(await platform('period.close', { period: '2031-03', statements: [], complete: true }))).toEqual([6]);
    expect(reasons(await platform('period.close', { period: '2031-04', statements: [], complete: true }))).toMatch(/can be closed only after 2031-05-01T01:00:00.000Z/);
    expect(await total()).toBe(1n);
    await expectVerified();
  });

  it('a seal whose totals differ from the ledger is refused, and one forged past the chokepoint fails both verifiers', async () => {
    await billedImvu();
    now = Date.parse('2031-04-02T00:00:00.000Z');
    const inflated = { period: '2031-03', statements: [{ imvu: 'IMVU-001', currency: 'USD', usageTotal: '50000', revenueTotal: '0', total: '50000', creator: '27500', platform: '22500' }], complete: true };
    const r = await platform('period.close', inflated);
    expect(reasons(r)).toMatch(/IMVU-001 2031-03: usageTotal is 50000 but the ledger gives 1/);
    // Leaving an IMVU out is refused too.
    expect(reasons(await platform('period.close', { period: '2031-03', statements: [], complete: true }))).toMatch(/IMVU-001 has usage or revenue in 2031-03 and is not listed/);

    // Root appends the inflated seal as if allowed, and writes the projection rows it implies.
    const signed = p.chokepoint.platformCommand('period.close', inflated);
    const index = p.chokepoint.ledger.size;
    const at = iso(now);
    const decision = { allowed: true, gates: [{ gate: 1, status: 'pass' as const }, { gate: 6, status: 'pass' as const }] };
    await p.chokepoint.ledger.batch(async (log, tx) => {
      await log.append(encodeEntry({ v: 1, index, at, command: signed, decision }));
      await tx.run("INSERT INTO period_closes (period, status, last_imvu, entry) VALUES ('2031-03', 'closed', 'IMVU-001', ?)", [index]);
    });
    const { offline, online } = await verifiers();
    for (const problems of [offline, online]) expect(problems.join('\n')).toMatch(new RegExp(`entry ${index} \\(period.close\\): recorded as allowed, but the gates say denied \\(gate 6: IMVU-001 2031-03: usageTotal is 50000 but the ledger gives 1\\)`));
  });
});

describe('usage bounded by physics, attributed to one meter', () => {
  it('5,000,000,000 DNS queries in one report are refused: more than the published capacity allows in the interval', async () => {
    const t = await billedImvu();
    now = t + MINUTE;
    const r = await report(dns, t, now, { 'dns.queries': '5000000000' });
    expect(deniedBy(r)).toEqual([6]);
    expect(reasons(r)).toMatch(/5000000000 dns.queries in 60 s is more than IMVU-001 can physically use: at most 6000000 \(the published capacity/);
    // At the capacity exactly: accepted.
    expect((await report(dns, t, now, { 'dns.queries': '6000000' })).allowed).toBe(true);
    await expectVerified();
  });

  it('a brand-new billing service cannot report a metric it does not meter, nor one nobody meters', async () => {
    const t = await billedImvu();
    const billing = await p.register('billing', 'service');
    now = t + MINUTE;
    const r = await report(billing, t, now, { 'dns.queries': '1000' });
    expect(reasons(r)).toMatch(/dns.queries is metered by dns \(registered in ledger entry \d+\), not by billing/);
    expect(reasons(await report(billing, t, now, { 'network.bytes_out': '1000' }))).toMatch(/no meter is registered for network.bytes_out/);
    expect(reasons(await report(billing, t, now, { 'custom.widgets': '1' }))).toMatch(/custom.widgets cannot be metered: no physical bound/);
    // Only the platform registers meters (gate 17), only for service identities and bounded metrics (gate 6).
    expect(deniedBy(await p.as(billing, 'meter.register', { identity: billing.id, metrics: ['dns.queries'] }))).toEqual([17]);
    expect(reasons(await platform('meter.register', { identity: alice.id, metrics: ['dns.queries'] }))).toMatch(/alice is a creator/);
    expect(reasons(await platform('meter.register', { identity: billing.id, metrics: ['custom.widgets'] }))).toMatch(/custom.widgets cannot be metered/);
    expect(await total()).toBe(1n);
    await expectVerified();
  });

  it('a meter registration never reaches back: intervals that start before it are refused', async () => {
    const t = await billedImvu();
    const mail = await p.register('mail', 'service');
    now = t + 10 * MINUTE;
    expect((await platform('meter.register', { identity: mail.id, metrics: ['mail.messages'] })).allowed).toBe(true);
    const registeredAt = now;
    now += MINUTE;
    expect(reasons(await report(mail, t, now, { 'mail.messages': '1' }))).toMatch(/before mail became the meter of mail.messages/);
    expect((await report(mail, registeredAt, now, { 'mail.messages': '1' })).allowed).toBe(true);
    await expectVerified();
  });

  it('a statement cannot be inflated from $0.01 to $500,100,003.00 by whoever holds a service key', async () => {
    const t = await billedImvu();
    expect(await total()).toBe(1n);
    const billing = await p.register('billing', 'service');
    now = t + MINUTE;
    // 999,999,999 more queries ($99,999.99 more), 72 core-hours in a minute ($3.00) and $500,000,000 of "revenue".
    const fromDns = await report(dns, t, now, { 'dns.queries': '999999999' });
    const fromBilling = await report(billing, t, now, { 'compute.cpu_core_hours': '72' });
    const revenue = await p.as(billing, 'revenue.record', { imvu: 'IMVU-001', amount: '50000000000', currency: 'USD' });
    for (const r of [fromDns, fromBilling, revenue]) expect(deniedBy(r)).toEqual([6]);
    expect(reasons(fromDns)).toMatch(/at most 6000000/);
    expect(reasons(revenue)).toMatch(/revenue is recorded by the platform or by the registered revenue source \(none registered\), not by billing/);
    // Even as the registered meter of CPU, 72 core-hours in one minute is beyond 2 cores x burst 2.
    expect((await platform('meter.register', { identity: billing.id, metrics: ['compute.cpu_core_hours'] })).allowed).toBe(true);
    const start = now;
    now += MINUTE;
    expect(reasons(await report(billing, start, now, { 'compute.cpu_core_hours': '72' }))).toMatch(/at most 0 \(its envelope over the interval\)/);
    const s = statement(await entries(), 'IMVU-001', '2031-03');
    expect([s.total, s.creator, s.platform]).toEqual([1n, 1n, 0n]);
    await expectVerified();
  });

  it('envelope bounds follow the envelope in force over the interval; a new capacity applies only to later intervals', async () => {
    const t = await billedImvu();
    const compute = await p.register('compute', 'service');
    expect((await platform('meter.register', { identity: compute.id, metrics: ['compute.io_operations', 'network.bandwidth_gb'] })).allowed).toBe(true);
    const start = now;
    now += 60 * MINUTE; // one hour at 100 IOPS: at most 360,000 operations
    expect(reasons(await report(compute, start, now, { 'compute.io_operations': '360001' }))).toMatch(/at most 360000 \(its envelope/);
    expect((await report(compute, start, now, { 'compute.io_operations': '360000' })).allowed).toBe(true);
    // Raised to 400 IOPS half-way through the next hour: 180,000 + 720,000.
    now += 30 * MINUTE;
    expect((await p.as(alice, 'imvu.scale', { imvu: 'IMVU-001', iops: 400 })).allowed).toBe(true);
    now += 30 * MINUTE;
    expect(reasons(await report(compute, start + 60 * MINUTE, now, { 'compute.io_operations': '900001' }))).toMatch(/at most 900000/);
    expect((await report(compute, start + 60 * MINUTE, now, { 'compute.io_operations': '900000' })).allowed).toBe(true);
    // A bigger link published now does not lift the bound of an interval that started before it:
    // two minutes at the default 1.25 GB/s is 150 GB.
    const before = now;
    now += MINUTE;
    expect((await platform('capacity.publish', { dns_queries_per_second: 100_000, link_bytes_per_second: 100_000_000_000, mail_messages_per_second: 100 })).allowed).toBe(true);
    now += MINUTE;
    expect(reasons(await report(compute, before, now, { 'network.bandwidth_gb': '200' }))).toMatch(/at most 150 \(the published capacity/);
    expect((await report(compute, before, now, { 'network.bandwidth_gb': '150' })).allowed).toBe(true);
    expect(deniedBy(await p.as(compute, 'capacity.publish', { dns_queries_per_second: 1, link_bytes_per_second: 1, mail_messages_per_second: 1 }))).toEqual([17]);
    expect(t).toBeLessThan(now);
    await expectVerified();
  });

  it('revenue comes from the one registered revenue source, dated now, in the price book currency; the platform key cannot add any (not one of its powers)', async () => {
    await billedImvu();
    const shop = await p.register('shop', 'service');
    expect((await platform('meter.register', { identity: shop.id, metrics: ['revenue.records'] })).allowed).toBe(true);
    now += 3 * GRACE_MS;
    expect((await p.as(shop, 'revenue.record', { imvu: 'IMVU-001', amount: '1000', currency: 'USD' })).allowed).toBe(true);
    expect(reasons(await p.as(shop, 'revenue.record', { imvu: 'IMVU-001', amount: '1000', currency: 'EUR' }))).toMatch(/revenue in EUR cannot be added to 2031-03, billed in USD/);
    expect(reasons(await p.as(shop, 'revenue.record', { imvu: 'IMVU-001', amount: '1000', currency: 'USD', at: iso(now + DAY) }))).toMatch(/ahead of this entry's time/);
    expect(reasons(await p.as(shop, 'revenue.record', { imvu: 'IMVU-001', amount: '1000', currency: 'USD', at: iso(now - 2 * GRACE_MS) }))).toMatch(/too late to record/);
    expect(reasons(await platform('revenue.record', { imvu: 'IMVU-001', amount: '1', currency: 'USD' }))).toMatch(/not one of the platform's enumerated powers/);
    expect(await total()).toBe(1001n);
    expect((await statementFromTotals(p.store, 'IMVU-001', '2031-03')).total).toBe(1001n);
    await expectVerified();
  });
});
