import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { randomBytes } from 'node:crypto';
import { MemoryTree, nodeHash, subtreeHash } from './merkle.ts';
import {
  EntryTooLargeError,
  MAX_BUNDLE_ENTRY_BYTES,
  TILE_WIDTH,
  TilePathError,
  decodeBundle,
  encodeBundle,
  encodeTileIndex,
  parseTilePath,
  readBundleEntries,
  readHashTile,
  tilePath,
  tileWidthAt,
  type TileRef,
  type TileSource,
} from './tiles.ts';

/** A TileSource over an in-memory tree and its leaves. */
function source(tree: MemoryTree, leaves: Buffer[]): TileSource {
  return {
    async readNodes(level, from, to) {
      const out: Buffer[] = [];
      for (let i = from; i < to; i++) {
        try {
          out.push(tree.node(level, i));
        } catch {
          break;
        }
      }
      return out;
    },
    async readEntries(from, to) {
      return leaves.slice(from, to);
    },
  };
}

function buildTree(n: number): { tree: MemoryTree; leaves: Buffer[] } {
  const tree = new MemoryTree();
  const leaves: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const d = Buffer.from(`entry ${i} ${randomBytes(4).toString('hex')}`);
    leaves.push(d);
    tree.append(d);
  }
  return { tree, leaves };
}

/** MTH of a power-of-two list of hashes, as a perfect tree. */
function perfectRoot(hashes: Buffer[]): Buffer {
  let row = hashes;
  while (row.length > 1) {
    const next: Buffer[] = [];
    for (let i = 0; i < row.length; i += 2) next.push(nodeHash(row[i]!, row[i + 1]!));
    row = next;
  }
  return row[0]!;
}

const split = (tile: Buffer) => Array.from({ length: tile.length / 32 }, (_, i) => tile.subarray(i * 32, (i + 1) * 32));

describe('tile paths (C2SP tlog-tiles)', () => {
  it('encodes the index as the specification does', () => {
    expect(encodeTileIndex(1234067)).toBe('x001/x234/067');
    expect(encodeTileIndex(0)).toBe('000');
    expect(encodeTileIndex(999)).toBe('999');
    expect(encodeTileIndex(1000)).toBe('x001/000');
    expect(tilePath({ level: 0, index: 1234067, width: 256 })).toBe('tile/0/x001/x234/067');
    expect(tilePath({ level: 1, index: 0, width: 17 })).toBe('tile/1/000.p/17');
    expect(tilePath({ level: 'entries', index: 5, width: 256 })).toBe('tile/entries/005');
  });

  it('parse inverts tilePath for every tile', () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: 0, max: 63 }), fc.constant('entries' as const)),
        fc.oneof(fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 0, max: Math.floor(Number.MAX_SAFE_INTEGER / 256) })),
        fc.integer({ min: 1, max: 256 }),
        (level, index, width) => {
          const ref: TileRef = { level, index, width };
          expect(parseTilePath(tilePath(ref).slice('tile/'.length))).toEqual(ref);
        },
      ),
    );
  });

  it('refuses every other spelling', () => {
    const bad = [
      '',
      '0',
      '0/',
      '00/000',
      '64/000',
      '-1/000',
      '0/00',
      '0/0000',
      '0/x000/001', // a leading x000: two names for tile 1
      '0/001/001', // the x is required on all but the last
      '0/x001/x001',
      '0/000.p',
      '0/000.p/0',
      '0/000.p/256',
      '0/000.p/010',
      '0/000.p/5/6',
      '0/x001.p/5',
      '0/000/',
      '0//000',
      'entries',
      'entries/',
      'entries/x1/000',
      'data/000',
      '0/+12',
      '0/1e3',
      `0/${'x999/'.repeat(20)}999`,
      '0/x999/x999/x999/x999/x999/x999/999', // beyond 2^53
    ];
    for (const p of bad) expect(() => parseTilePath(p), p).toThrow(TilePathError);
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (s) => {
        try {
          const ref = parseTilePath(s);
          // Whatever parses is the one canonical spelling of its tile.
          expect(tilePath(ref)).toBe(`tile/${s}`);
        } catch (err) {
          expect(err).toBeInstanceOf(TilePathError);
        }
      }),
    );
  });
});

describe('tile widths', () => {
  it("the specification's examples", () => {
    // 70,000: 273 full level-0 tiles, one partial of 112; one full level-1 tile, one partial of 17; a partial level-2 tile of 1.
    expect(tileWidthAt(70_000, 0, 272)).toBe(256);
    expect(tileWidthAt(70_000, 0, 273)).toBe(112);
    expect(tileWidthAt(70_000, 0, 274)).toBe(0);
    expect(tileWidthAt(70_000, 1, 0)).toBe(256);
    expect(tileWidthAt(70_000, 1, 1)).toBe(17);
    expect(tileWidthAt(70_000, 2, 0)).toBe(1);
    expect(tileWidthAt(70_000, 3, 0)).toBe(0);
    // 256: a full level-0 tile and a partial level-1 tile of width 1.
    expect(tileWidthAt(256, 0, 0)).toBe(256);
    expect(tileWidthAt(256, 0, 1)).toBe(0);
    expect(tileWidthAt(256, 1, 0)).toBe(1);
    expect(tileWidthAt(0, 0, 0)).toBe(0);
    expect(tileWidthAt(0, 'entries', 0)).toBe(0);
    expect(tileWidthAt(70_000, 'entries', 273)).toBe(112);
  });

  it('the rightmost tile of each level has floor(size / 256^L) mod 256 hashes, the ones before are full', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.integer({ min: 0, max: 7 }), (size, level) => {
        const count = Math.floor(size / 256 ** level);
        const last = Math.floor(count / 256);
        expect(tileWidthAt(size, level, last)).toBe(count % 256);
        if (last > 0) expect(tileWidthAt(size, level, last - 1)).toBe(256);
        expect(tileWidthAt(size, level, last + 1)).toBe(0);
      }),
    );
  });
});

describe('hash tiles from the stored tree', () => {
  it('hash i of tile (L, N) is MTH(D[(N*256+i)*256^L : (N*256+i+1)*256^L]); a level-1 hash is the root of a full level-0 tile', async () => {
    const { tree, leaves } = buildTree(256 * 3 + 77);
    const src = source(tree, leaves);
    const size = tree.size;
    for (const [level, index] of [
      [0, 0],
      [0, 2],
      [0, 3],
      [1, 0],
    ] as const) {
      const width = tileWidthAt(size, level, index);
      const tile = await readHashTile(src, size, { level, index, width });
      expect(tile?.length).toBe(width * 32);
      const span = 256 ** level;
      split(tile!).forEach((h, i) => {
        const start = (index * 256 + i) * span;
        expect(h.equals(subtreeHash(tree, start, start + span))).toBe(true);
      });
    }
    const level1 = split((await readHashTile(src, size, { level: 1, index: 0, width: 3 }))!);
    for (let t = 0; t < 3; t++) expect(level1[t]!.equals(perfectRoot(split((await readHashTile(src, size, { level: 0, index: t, width: 256 }))!)))).toBe(true);
  });

  it('serves exactly the tiles the tree holds: a partial width is a prefix of the grown tile; beyond the tree, nothing', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 700 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 256 }), async (n, level, index, width) => {
        const { tree, leaves } = buildTree(n);
        const src = source(tree, leaves);
        const have = tileWidthAt(n, level, index);
        const tile = await readHashTile(src, n, { level, index, width });
        if (width > have) {
          expect(tile).toBeUndefined();
          return;
        }
        expect(tile!.length).toBe(width * 32);
        const widest = await readHashTile(src, n, { level, index, width: have });
        expect(widest!.subarray(0, width * 32).equals(tile!)).toBe(true);
        const bundle = await readBundleEntries(src, n, { level: 'entries', index, width: Math.min(width, tileWidthAt(n, 'entries', index) || 1) });
        if (tileWidthAt(n, 'entries', index) === 0) expect(bundle).toBeUndefined();
      }),
      { numRuns: 60 },
    );
  });

  it('a store that lacks nodes is an error, never a short tile', async () => {
    const { tree, leaves } = buildTree(300);
    const lossy: TileSource = { ...source(tree, leaves), readNodes: async (l, f, t) => (await source(tree, leaves).readNodes(l, f, t)).slice(1) };
    await expect(readHashTile(lossy, 300, { level: 0, index: 0, width: 256 })).rejects.toThrow(/lacks nodes/);
  });
});

describe('entry bundles', () => {
  it('round-trips; each entry in a uint16 length prefix', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 256 }), (entries) => {
        const b = encodeBundle(entries);
        expect(b.length).toBe(entries.reduce((n, e) => n + 2 + e.length, 0));
        expect(decodeBundle(b).map((e) => Buffer.from(e).toString('hex'))).toEqual(entries.map((e) => Buffer.from(e).toString('hex')));
      }),
    );
    expect(encodeBundle([Buffer.from('ab')]).toString('hex')).toBe('00026162');
  });

  it('an entry of 65,535 bytes fits; one byte more is refused with its index, never wrapped', () => {
    const max = Buffer.alloc(MAX_BUNDLE_ENTRY_BYTES, 1);
    expect(decodeBundle(encodeBundle([max]))[0]!.length).toBe(MAX_BUNDLE_ENTRY_BYTES);
    let caught: unknown;
    try {
      encodeBundle([Buffer.from('x'), Buffer.alloc(MAX_BUNDLE_ENTRY_BYTES + 1)], 512);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(EntryTooLargeError);
    expect((caught as EntryTooLargeError).entryIndex).toBe(513);
    expect((caught as EntryTooLargeError).bytes).toBe(MAX_BUNDLE_ENTRY_BYTES + 1);
  });

  it('decoding refuses truncated and overlong bundles', () => {
    expect(() => decodeBundle(Buffer.from([0]))).toThrow(/truncated/);
    expect(() => decodeBundle(Buffer.from([0, 5, 1, 2]))).toThrow(/truncated/);
    expect(() => decodeBundle(Buffer.alloc(2 * (TILE_WIDTH + 1)))).toThrow(/at most/);
  });
});
