import { afterEach, describe, expect, it } from 'vitest';
import { decodeEntry } from '../ledger/ledger.ts';
import { combinedDigest, scanAll } from '../store/digest.ts';
import { verifyStore } from './verify.ts';
import { testPlatform, type TestPlatform } from '../testing.ts';

// `ledger.snapshot`: the platform's signed record of the state digest at its own index. Only the
// platform may sign one (gate 17), only for the state just before it, and the daemon records one
// every N entries when asked to, from the digests it keeps (no scan).

let p: TestPlatform | undefined;
afterEach(async () => {
  await p?.cleanup();
  p = undefined;
});

const snapshots = async (t: TestPlatform) =>
  (await t.store.all<{ data: Buffer }>('SELECT data FROM ledger_entries ORDER BY idx')).map((r) => decodeEntry(r.data)).filter((e) => e.command.command.type === 'ledger.snapshot');

describe('ledger.snapshot', () => {
  it('is the platform\'s alone, and names the state at its own index', async () => {
    p = await testPlatform();
    const ops = await p.register('ops', 'admin');
    const alice = await p.register('alice', 'creator');
    const digest = combinedDigest(await scanAll(p.store));
    const size = p.chokepoint.ledger.size;
    for (const who of [ops, alice]) {
      const r = await p.as(who, 'ledger.snapshot', { size: p.chokepoint.ledger.size, digest });
      expect(r.allowed).toBe(false);
      expect(r.gates.find((g) => g.status === 'deny')).toMatchObject({ gate: 17, reason: 'ledger.snapshot is originated by the platform only' });
    }
    const wrong = await p.chokepoint.submit(p.chokepoint.platformCommand('ledger.snapshot', { size: size - 1, digest }));
    expect(wrong.allowed).toBe(false);
    expect(wrong.gates.find((g) => g.status === 'deny')).toMatchObject({ gate: 17, reason: expect.stringMatching(/records the state at its own index/) });
    const oversize = await p.chokepoint.submit(p.chokepoint.platformCommand('ledger.snapshot', { size: p.chokepoint.ledger.size, digest, more: 'x' }));
    expect(oversize.allowed).toBe(false);

    // recordSnapshot: the digest the writer keeps, equal to a full scan of the state at that size.
    const before = combinedDigest(await scanAll(p.store));
    const at = p.chokepoint.ledger.size;
    const r = await p.integrity.recordSnapshot();
    expect(r).toMatchObject({ index: at, allowed: true });
    const [e] = (await snapshots(p)).filter((x) => x.decision.allowed);
    expect(e!.command.command.body).toEqual({ size: at, digest: before });
    // A claim, not a change: nothing but the entry's own nonce and index rows moved.
    const v = await verifyStore(p.store);
    expect(v.problems).toEqual([]);
    expect(v.snapshotEntries).toBe(1);
  });

  it('the daemon records one every N entries when configured, and verifiers check each', async () => {
    p = await testPlatform();
    p.integrity.snapshotEveryEntries(4);
    for (let i = 0; i < 9; i++) await p.register(`c${i}`, 'creator');
    await new Promise((r) => setTimeout(r, 200));
    const found = await snapshots(p);
    expect(found.length).toBeGreaterThanOrEqual(2);
    for (const e of found) expect(e).toMatchObject({ decision: { allowed: true }, command: { command: { body: { size: e.index } } } });
    const v = await verifyStore(p.store);
    expect(v.problems).toEqual([]);
    expect(v.snapshotEntries).toBe(found.length);
  });

  it('records none unless configured', async () => {
    p = await testPlatform();
    for (let i = 0; i < 9; i++) await p.register(`c${i}`, 'creator');
    await new Promise((r) => setTimeout(r, 100));
    expect(await snapshots(p)).toEqual([]);
  });
});
