import { describe, expect, it } from 'vitest';
import { generateKeyPair } from '../core/identity/keys.ts';
import { verifyCommandSignature } from '../core/identity/envelope.ts';
import { createPublicKey } from 'node:crypto';
import type { Receipt } from '../core/policy/chokepoint.ts';
import type { SignedCommand } from '../core/types.ts';
import { UsageMeter } from './metering.ts';

// The meter alone, with a fake chokepoint and a fake clock: batching, retries, denials, months.

const key = generateKeyPair().privateKey;
const allowed = (index: number): Receipt => ({ index, allowed: true, gates: [], followUps: [] });
const denied = (index: number): Receipt => ({ index, allowed: false, gates: [{ gate: 6, status: 'deny', reason: 'no' }], followUps: [] });

function harness(start = Date.UTC(2026, 10, 27, 12, 0, 0)) {
  let now = start;
  const sent: SignedCommand[] = [];
  let mode: 'ok' | 'throw' | 'deny' = 'ok';
  const errors: string[] = [];
  const meter = new UsageMeter({
    service: 'dns',
    key,
    origin: 'nexus.test/meter',
    now: () => now,
    intervalMs: 1_000_000,
    submit: async (signed) => {
      if (mode === 'throw') throw new Error('disk full');
      sent.push(signed);
      return mode === 'deny' ? denied(sent.length) : allowed(sent.length);
    },
    onError: (err) => errors.push(err.message),
  });
  return {
    meter,
    sent,
    errors,
    set mode(m: 'ok' | 'throw' | 'deny') {
      mode = m;
    },
    tick(ms: number) {
      now += ms;
    },
    bodies: () => sent.map((s) => s.command.body),
  };
}

describe('UsageMeter', () => {
  it('one signed usage.report per IMVU per flush, with the period and the summed counts', async () => {
    const h = harness();
    for (let i = 0; i < 137; i++) h.meter.count('IMVU-001', 'dns.queries');
    h.meter.count('IMVU-002', 'dns.queries', 5);
    h.tick(60_000);
    const r = await h.meter.flush();
    expect(r.reported.length).toBe(2);
    expect(h.sent.map((s) => s.command.type)).toEqual(['usage.report', 'usage.report']);
    const byImvu = Object.fromEntries(h.bodies().map((b) => [b.imvu as string, b]));
    expect(byImvu['IMVU-001']).toEqual({
      imvu: 'IMVU-001',
      service: 'dns',
      period: { start: '2026-11-27T12:00:00.000Z', end: '2026-11-27T12:01:00.000Z' },
      metrics: { 'dns.queries': '137' },
    });
    expect(byImvu['IMVU-002']!.metrics).toEqual({ 'dns.queries': '5' });
    for (const s of h.sent) expect(verifyCommandSignature(s, createPublicKey(key))).toBe(true);
    // Nothing new: nothing sent.
    h.tick(60_000);
    expect((await h.meter.flush()).reported).toEqual([]);
    expect(h.sent.length).toBe(2);
    expect(h.meter.stats()).toMatchObject({ reported: 2, denied: 0, failed: 0, pendingUnits: 0n });
  });

  it('keeps the counts of a submission that failed and sends them, merged, with the next interval', async () => {
    const h = harness();
    for (let i = 0; i < 10; i++) h.meter.count('IMVU-001', 'dns.queries');
    h.tick(1000);
    h.mode = 'throw';
    const r = await h.meter.flush();
    expect(r.failed.length).toBe(1);
    expect(h.errors).toEqual(['disk full']);
    expect(h.meter.stats().pendingUnits).toBe(10n);
    h.mode = 'ok';
    h.tick(1000);
    for (let i = 0; i < 3; i++) h.meter.count('IMVU-001', 'dns.queries');
    h.tick(1000);
    await h.meter.flush();
    expect(h.bodies()).toEqual([
      { imvu: 'IMVU-001', service: 'dns', period: { start: '2026-11-27T12:00:00.000Z', end: '2026-11-27T12:00:03.000Z' }, metrics: { 'dns.queries': '13' } },
    ]);
    expect(h.meter.stats()).toMatchObject({ reported: 1, failed: 1, pendingUnits: 0n });
  });

  it('a denied report is recorded by the chokepoint and not retried', async () => {
    const h = harness();
    h.meter.count('IMVU-009', 'dns.queries', 4);
    h.mode = 'deny';
    h.tick(10);
    const r = await h.meter.flush();
    expect(r.denied.length).toBe(1);
    expect(h.errors[0]).toMatch(/usage report for IMVU-009 denied \(recorded as ledger entry 1\): gate 6: no/);
    h.mode = 'ok';
    h.tick(10);
    await h.meter.flush();
    expect(h.sent.length).toBe(1);
  });

  it('never lets a period span two months: counting past the boundary seals the old bucket at it', async () => {
    const h = harness(Date.UTC(2026, 10, 30, 23, 59, 30));
    h.meter.count('IMVU-001', 'dns.queries', 7);
    h.tick(60_000); // 2026-12-01T00:00:30Z
    h.meter.count('IMVU-001', 'dns.queries', 2);
    h.tick(1000);
    await h.meter.flush();
    // Contiguous intervals: the new month's starts where the old one's ended.
    expect(h.bodies().map((b) => [b.period, b.metrics])).toEqual([
      [{ start: '2026-11-30T23:59:30.000Z', end: '2026-12-01T00:00:00.000Z' }, { 'dns.queries': '7' }],
      [{ start: '2026-12-01T00:00:00.000Z', end: '2026-12-01T00:00:31.000Z' }, { 'dns.queries': '2' }],
    ]);
    // A bucket still open when the month turns ends at the boundary, too.
    h.meter.count('IMVU-002', 'dns.queries');
    h.tick(40 * 86_400_000);
    await h.meter.flush();
    expect(h.bodies()[2]!.period).toEqual({ start: '2026-12-01T00:00:31.000Z', end: '2027-01-01T00:00:00.000Z' });
  });

  it('the period always ends after it starts and never ahead of the clock (gate 6): an empty interval waits', async () => {
    const h = harness();
    h.meter.count('IMVU-001', 'dns.queries');
    // Flushed in the same millisecond the meter started: nothing can be reported yet, nothing is lost.
    expect((await h.meter.flush()).reported).toEqual([]);
    expect(h.meter.stats().pendingUnits).toBe(1n);
    h.tick(1);
    await h.meter.flush();
    const p = h.bodies()[0]!.period as { start: string; end: string };
    expect(p).toEqual({ start: '2026-11-27T12:00:00.000Z', end: '2026-11-27T12:00:00.001Z' });
  });

  it('reports contiguous intervals: each starts where the previous flush ended, even after a quiet spell', async () => {
    const h = harness();
    h.meter.count('IMVU-001', 'dns.queries');
    h.tick(60_000);
    await h.meter.flush();
    h.tick(60_000);
    await h.meter.flush(); // nothing counted: nothing sent, but the next interval starts here
    h.tick(30_000);
    h.meter.count('IMVU-001', 'dns.queries', 4);
    h.tick(30_000);
    await h.meter.flush();
    expect(h.bodies().map((b) => b.period)).toEqual([
      { start: '2026-11-27T12:00:00.000Z', end: '2026-11-27T12:01:00.000Z' },
      { start: '2026-11-27T12:02:00.000Z', end: '2026-11-27T12:03:00.000Z' },
    ]);
  });

  it("an IMVU's first interval is not cut short by the interval timer: a count just before a flush waits for the next one", async () => {
    // Gate 6 denies more messages than the published capacity allows over the interval; a report of
    // [first count, flush] = 3 ms would be denied and its counts lost.
    let now = Date.UTC(2026, 10, 27, 12, 0, 0);
    const sent: SignedCommand[] = [];
    const meter = new UsageMeter({ service: 'mail', key, origin: 'nexus.test/meter', intervalMs: 40, now: () => now, submit: async (s) => (sent.push(s), allowed(sent.length)) });
    now += 37;
    meter.count('IMVU-001', 'mail.messages');
    now += 3;
    meter.start();
    await new Promise((r) => setTimeout(r, 120));
    expect(sent).toEqual([]);
    expect(meter.stats().pendingUnits).toBe(1n);
    now += 40;
    const deadline = Date.now() + 5000;
    while (sent.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await meter.close();
    expect(sent.map((s) => s.command.body.period)).toEqual([{ start: '2026-11-27T12:00:00.037Z', end: '2026-11-27T12:00:00.080Z' }]);
    // An explicit flush (shutdown, tests) still sends everything it can.
    const h = harness();
    h.tick(10);
    h.meter.count('IMVU-001', 'dns.queries');
    h.tick(1);
    expect((await h.meter.flush()).reported.length).toBe(1);
  });

  it('runs on its interval and flushes the rest on close', async () => {
    const sent: SignedCommand[] = [];
    const meter = new UsageMeter({ service: 'dns', key, origin: 'nexus.test/meter', intervalMs: 20, submit: async (s) => (sent.push(s), allowed(sent.length)) }).start();
    meter.count('IMVU-001', 'dns.queries', 3);
    const deadline = Date.now() + 5000;
    while (sent.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(sent.length).toBe(1);
    meter.count('IMVU-001', 'dns.queries', 2);
    const last = await meter.close();
    expect(last.reported.map((r) => r.metrics.get('dns.queries'))).toEqual([2n]);
    expect(sent.length).toBe(2);
  });
});
