// The gateway meter turns HAProxy's counters into usage reports. An IMVU's first bytes, sampled
// and flushed in the same millisecond (the interval flush, or a shutdown), must still reach the
// ledger: the state file has already consumed them, so a count kept back is a count lost.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testPlatform, type TestPlatform } from '../../core/testing.ts';
import { GatewayMeter, gatewayIdentity, type Counters } from './counters.ts';

describe('GatewayMeter', () => {
  let p: TestPlatform;
  let alice: Awaited<ReturnType<TestPlatform['register']>>;
  let dir: string;

  beforeAll(async () => {
    p = await testPlatform();
    alice = await p.register('alice', 'creator');
    dir = mkdtempSync(join(tmpdir(), 'nexus-gwmeter-'));
  });
  afterAll(async () => {
    await p?.cleanup();
    rmSync(dir, { recursive: true, force: true });
  });

  const reported = async (imvu: string) =>
    BigInt((await p.store.get<{ q: string }>("SELECT COALESCE(SUM(CAST(quantity AS INTEGER)), 0) AS q FROM usage_totals WHERE imvu = ? AND metric = 'network.bytes_in'", [imvu]))!.q);

  /**
   * A fresh IMVU and a meter whose clock stands still unless moved (never ahead of the real one:
   * gate 6 refuses usage reported ahead of time), over counters the test sets.
   */
  const rig = async (name: string) => {
    const r = await p.as(alice, 'imvu.create', { name, owner: alice.id, jurisdiction: 'US-CCPA' });
    expect(r.allowed).toBe(true);
    const imvu = (await p.store.get<{ id: string }>('SELECT id FROM imvus WHERE entry = ?', [r.index]))!.id;
    const id = await gatewayIdentity(p);
    const clock = { t: Date.now(), async move(ms: number) { this.t += ms; await new Promise((res) => setTimeout(res, ms + 5)); } };
    const counters: Counters = { process: 'worker-1', counters: new Map([[imvu, { bytesIn: 0n, bytesOut: 0n, requests: 0n }]]) };
    const meter = new GatewayMeter({ platform: p, key: id.key, stateFile: join(dir, `${name}.json`), read: async () => counters, intervalMs: 3_600_000, sampleMs: 3_600_000, now: () => clock.t });
    return { imvu, meter, clock, set: (bytesIn: bigint) => counters.counters.set(imvu, { bytesIn, bytesOut: 0n, requests: 1n }) };
  };

  it("reports an IMVU's first bytes when they are sampled and flushed in the same millisecond", async () => {
    const { imvu, meter, clock, set } = await rig('shopa');
    await meter.start();
    await clock.move(50);
    const before = await reported(imvu);
    set(5_000n);
    const r = await meter.flush();
    expect(r.denied.length + r.failed.length).toBe(0);
    expect((await reported(imvu)) - before).toBe(5_000n);
    expect(meter.usage.stats().pendingUnits).toBe(0n);
    await meter.close();
  });

  it('a shutdown right after the first bytes loses none of them', async () => {
    const { imvu, meter, clock, set } = await rig('shopb');
    await meter.start();
    await clock.move(50);
    const before = await reported(imvu);
    set(7_000n);
    const r = await meter.close();
    expect(r!.denied.length + r!.failed.length).toBe(0);
    expect((await reported(imvu)) - before).toBe(7_000n);
  });
});
