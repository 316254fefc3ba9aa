import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { generateKeyPair } from '../identity/keys.ts';
import { openStore } from '../store/index.ts';
import { Frontier, Ledger } from './ledger.ts';
import { MemoryTree, verifyInclusion, verifyConsistency, leafHash, rootHash } from './merkle.ts';
import { openCheckpoint } from './checkpoint.ts';
import { publicKeyRaw } from '../identity/keys.ts';

describe('Frontier', () => {
  it('computes the same root and stores the same complete subtrees as a full tree', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 300 }), (n) => {
        const f = new Frontier(0, []);
        const t = new MemoryTree();
        const stored = new Map<string, Buffer>();
        for (let i = 0; i < n; i++) {
          const data = Buffer.from(`entry ${i}`);
          for (const node of f.append(data)) stored.set(`${node.level}/${node.index}`, node.hash);
          t.append(data);
        }
        expect(f.root().equals(t.root())).toBe(true);
        for (let level = 0; 2 ** level <= n; level++)
          for (let i = 0; (i + 1) * 2 ** level <= n; i++) expect(stored.get(`${level}/${i}`)?.equals(t.node(level, i))).toBe(true);
        expect(stored.size).toBe([...Array(12).keys()].reduce((s, l) => s + Math.floor(n / 2 ** l), 0));
      }),
      { numRuns: 60 },
    );
  });

  it('continues from a saved edge: edge at m, then leaf hashes m..n, gives the root of the whole tree of n', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 200 }), fc.integer({ min: 0, max: 200 }), (m, k) => {
        const t = new MemoryTree();
        const head = new Frontier(0, []);
        for (let i = 0; i < m; i++) {
          head.append(Buffer.from(`entry ${i}`));
          t.append(Buffer.from(`entry ${i}`));
        }
        // What a reader keeps between two verifications: the edge alone, rebuilt from its hashes.
        const resumed = new Frontier(head.size, head.edge());
        for (let i = m; i < m + k; i++) {
          resumed.appendLeafHash(leafHash(Buffer.from(`entry ${i}`)));
          t.append(Buffer.from(`entry ${i}`));
        }
        expect(resumed.size).toBe(m + k);
        expect(resumed.root().equals(t.root())).toBe(true);
      }),
      { numRuns: 60 },
    );
  });
});

describe('Ledger over the store', () => {
  it('appends, signs a checkpoint per commit, proves inclusion and consistency, and survives reopen', async () => {
    const store = openStore(':memory:');
    const { privateKey } = generateKeyPair();
    const opts = { origin: 'test.local/log', keyName: 'test.local/log', platformKey: privateKey };
    const ledger = await Ledger.open(store, opts);
    for (let b = 0; b < 5; b++) await ledger.batch(async (log) => { for (let i = 0; i < 7; i++) await log.append(Buffer.from(`e${log.next}`)); });
    expect(ledger.size).toBe(35);
    const note = (await store.latestCheckpoint())!.note;
    const { checkpoint } = openCheckpoint(note, [{ name: opts.keyName, publicKeyRaw: publicKeyRaw(privateKey) }]);
    expect(checkpoint.size).toBe(35);
    expect(checkpoint.rootHash.equals(ledger.root())).toBe(true);
    expect(verifyInclusion(leafHash(Buffer.from('e17')), 17, 35, ledger.inclusionProof(17), ledger.root())).toBe(true);
    const old = rootHash(store.nodeSource(), 14);
    expect(verifyConsistency(14, 35, old, ledger.root(), ledger.consistencyProof(14))).toBe(true);
    // A failed batch leaves neither entries nor a moved frontier behind.
    await expect(ledger.batch(async (log) => { await log.append(Buffer.from('x')); throw new Error('abort'); })).rejects.toThrow('abort');
    expect(ledger.size).toBe(35);
    expect(await store.ledgerSize()).toBe(35);
    const again = await Ledger.open(store, opts);
    expect(again.root().equals(ledger.root())).toBe(true);
    await store.close();
  });
});
