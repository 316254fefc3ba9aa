import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  EMPTY_ROOT,
  MemoryTree,
  consistencyProof,
  inclusionProof,
  leafHash,
  nodeHash,
  nodesCompletedBy,
  rootHash,
  subtreeHash,
  verifyConsistency,
  verifyInclusion,
  type NodeSource,
} from './merkle.ts';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const toHex = (bs: Buffer[]): string[] => bs.map((b) => b.toString('hex'));

function flipBit(b: Buffer, bit: number): Buffer {
  const c = Buffer.from(b);
  const i = Math.floor(bit / 8) % c.length;
  c[i] = (c[i] ?? 0) ^ (1 << (bit % 8));
  return c;
}

function flipInProof(proof: Buffer[], j: number, bit: number): Buffer[] {
  return proof.map((p, k) => (k === j ? flipBit(p, bit) : p));
}

// ---------------------------------------------------------------------------------------------
// Known-answer vectors.
//
// From the certificate-transparency reference implementation's Merkle tree tests,
// google/certificate-transparency cpp/merkletree/merkle_tree_test.cc (kInputs, kSHA256Roots,
// kSHA256Paths, kSHA256Proofs; paths there number leaves from 1). The same vectors are carried
// by transparency-dev/merkle proof/verify_test.go; the per-node hashes below are from
// transparency-dev/merkle testonly/constants.go (NodeHashes). Typed in here by hand.

const INPUTS = ['', '00', '10', '2021', '3031', '40414243', '5051525354555657', '606162636465666768696a6b6c6d6e6f'].map(hex);

const EMPTY_HASH = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/** ROOTS[n - 1] is the root of the tree of the first n inputs. */
const ROOTS = [
  '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
  'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
  'aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77',
  'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
  '4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4',
  '76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef',
  'ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c',
  '5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328',
];

/** NODES[level][index]: every complete subtree of the 8-leaf tree. */
const NODES = [
  [
    '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
    '0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7',
    '07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7',
    'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    '4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658',
    'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f',
    '46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1',
  ],
  [
    'fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125',
    '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
    '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
    'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
  ],
  [
    'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
  ],
  ['5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328'],
];

/** kSHA256Paths, converted to 0-based leaf indices (the vector {leaf 0, size 0} is the invalid case). */
const INCLUSION_VECTORS: { index: number; size: number; proof: string[] }[] = [
  { index: 0, size: 1, proof: [] },
  {
    index: 0,
    size: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    index: 5,
    size: 8,
    proof: [
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
  { index: 2, size: 3, proof: ['fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125'] },
  {
    index: 1,
    size: 5,
    proof: [
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  },
];

/** kSHA256Proofs, plus the (6, 7) vector that transparency-dev/merkle proof/verify_test.go adds. */
const CONSISTENCY_VECTORS: { oldSize: number; newSize: number; proof: string[] }[] = [
  { oldSize: 1, newSize: 1, proof: [] },
  {
    oldSize: 1,
    newSize: 8,
    proof: [
      '96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7',
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      '6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4',
    ],
  },
  {
    oldSize: 6,
    newSize: 8,
    proof: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
  {
    oldSize: 2,
    newSize: 5,
    proof: [
      '5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e',
      'bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b',
    ],
  },
  {
    oldSize: 6,
    newSize: 7,
    proof: [
      '0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a',
      'b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f',
      'd37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7',
    ],
  },
];

function vectorTree(n = INPUTS.length): MemoryTree {
  const t = new MemoryTree();
  for (const d of INPUTS.slice(0, n)) t.append(d);
  return t;
}

/** A NodeSource that enforces the contract: only complete aligned subtrees within `size` are asked for. */
function strictSource(inner: NodeSource, size: number): NodeSource & { lookups: number } {
  const s = {
    size,
    lookups: 0,
    node(level: number, index: number): Buffer {
      s.lookups++;
      const width = 2 ** level;
      if (!Number.isSafeInteger(level) || !Number.isSafeInteger(index) || level < 0 || index < 0 || (index + 1) * width > size) {
        throw new Error(`contract violation: node(${level}, ${index}) asked of a tree of ${size}`);
      }
      return inner.node(level, index);
    },
  };
  return s;
}

// ---------------------------------------------------------------------------------------------
// Naive reference implementation (RFC 9162 2.1.1, 2.1.3.1, 2.1.4.1, recursing over whole lists).

function largestPow2Below(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

function refMth(leaves: Buffer[]): Buffer {
  if (leaves.length === 0) return Buffer.from(EMPTY_HASH, 'hex');
  if (leaves.length === 1) return leaves[0] as Buffer;
  const k = largestPow2Below(leaves.length);
  return nodeHash(refMth(leaves.slice(0, k)), refMth(leaves.slice(k)));
}

function refPath(m: number, leaves: Buffer[]): Buffer[] {
  if (leaves.length <= 1) return [];
  const k = largestPow2Below(leaves.length);
  return m < k
    ? [...refPath(m, leaves.slice(0, k)), refMth(leaves.slice(k))]
    : [...refPath(m - k, leaves.slice(k)), refMth(leaves.slice(0, k))];
}

function refSubproof(m: number, leaves: Buffer[], b: boolean): Buffer[] {
  const n = leaves.length;
  if (m === n) return b ? [] : [refMth(leaves)];
  const k = largestPow2Below(n);
  return m <= k
    ? [...refSubproof(m, leaves.slice(0, k), b), refMth(leaves.slice(k))]
    : [...refSubproof(m - k, leaves.slice(k), false), refMth(leaves.slice(0, k))];
}

/** The left/right pattern of an inclusion path, from the RFC recursion on sizes alone. */
function pathShape(m: number, n: number): string {
  if (n <= 1) return '';
  const k = largestPow2Below(n);
  return m < k ? `${pathShape(m, k)}R` : `${pathShape(m - k, n - k)}L`;
}

/** The pattern of a consistency proof: whether it starts from the old root, then each element's side. */
function consistencyShape(m: number, n: number, b = true): string {
  if (m === n) return b ? 'old-root:' : 'explicit:';
  const k = largestPow2Below(n);
  return m <= k ? `${consistencyShape(m, k, b)}R` : `${consistencyShape(m - k, n - k, false)}L`;
}

// A shared tree of random-ish leaves for the property tests; smaller trees are its prefixes.
const MAX_PROP_SIZE = 2048;
const propData = Array.from({ length: MAX_PROP_SIZE }, (_, i) => Buffer.from(`leaf-${i}-${(i * 2654435761) % 4294967296}`));
const propLeaves = propData.map(leafHash);
const propTree = new MemoryTree();
for (const d of propData) propTree.append(d);
const propRoots = new Map<number, Buffer>();
function refRoot(size: number): Buffer {
  let r = propRoots.get(size);
  if (r === undefined) {
    r = refMth(propLeaves.slice(0, size));
    propRoots.set(size, r);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------

describe('merkle: hashing primitives', () => {
  it('empty root is SHA-256 of the empty string', () => {
    expect(EMPTY_ROOT.toString('hex')).toBe(EMPTY_HASH);
    expect(rootHash(new MemoryTree(), 0).toString('hex')).toBe(EMPTY_HASH);
  });

  it('leaf and node hashes use the 0x00 / 0x01 domain separation', () => {
    expect(leafHash(Buffer.alloc(0)).toString('hex')).toBe(NODES[0]?.[0]);
    const l0 = hex(NODES[0]?.[0] ?? ''), l1 = hex(NODES[0]?.[1] ?? '');
    expect(nodeHash(l0, l1).toString('hex')).toBe(NODES[1]?.[0]);
    expect(nodeHash(l1, l0).toString('hex')).not.toBe(NODES[1]?.[0]);
  });
});

describe('merkle: RFC 6962 reference vectors (certificate-transparency merkle_tree_test.cc)', () => {
  it('roots for tree sizes 0..8, from stored nodes', () => {
    const t = vectorTree();
    expect(t.size).toBe(8);
    expect(rootHash(t, 0).toString('hex')).toBe(EMPTY_HASH);
    for (let n = 1; n <= 8; n++) {
      expect(rootHash(strictSource(t, n), n).toString('hex'), `size ${n}`).toBe(ROOTS[n - 1]);
      expect(vectorTree(n).root().toString('hex'), `incremental size ${n}`).toBe(ROOTS[n - 1]);
    }
  });

  it('stored complete subtrees match the published node hashes', () => {
    const t = vectorTree();
    NODES.forEach((row, level) => row.forEach((h, index) => expect(t.node(level, index).toString('hex')).toBe(h)));
    expect(() => t.node(4, 0)).toThrow(RangeError);
    expect(() => t.node(0, 8)).toThrow(RangeError);
  });

  it('nodesCompletedBy reports the leaf and each parent it completes', () => {
    const t = vectorTree(7);
    const done = nodesCompletedBy(t, 7, leafHash(INPUTS[7] as Buffer));
    expect(done.map((n) => [n.level, n.index, n.hash.toString('hex')])).toEqual([
      [0, 7, NODES[0]?.[7]],
      [1, 3, NODES[1]?.[3]],
      [2, 1, NODES[2]?.[1]],
      [3, 0, NODES[3]?.[0]],
    ]);
    expect(nodesCompletedBy(vectorTree(4), 4, leafHash(INPUTS[4] as Buffer)).map((n) => [n.level, n.index])).toEqual([[0, 4]]);
  });

  it('inclusion proofs: generated equal published, and published verify', () => {
    const t = vectorTree();
    for (const v of INCLUSION_VECTORS) {
      const got = inclusionProof(strictSource(t, v.size), v.index, v.size);
      expect(toHex(got), `${v.index}/${v.size}`).toEqual(v.proof);
      const leaf = leafHash(INPUTS[v.index] as Buffer);
      expect(verifyInclusion(leaf, v.index, v.size, v.proof.map(hex), hex(ROOTS[v.size - 1] ?? ''))).toBe(true);
    }
  });

  it('consistency proofs: generated equal published, and published verify', () => {
    const t = vectorTree();
    for (const v of CONSISTENCY_VECTORS) {
      const got = consistencyProof(strictSource(t, v.newSize), v.oldSize, v.newSize);
      expect(toHex(got), `${v.oldSize}->${v.newSize}`).toEqual(v.proof);
      const ok = verifyConsistency(v.oldSize, v.newSize, hex(ROOTS[v.oldSize - 1] ?? ''), hex(ROOTS[v.newSize - 1] ?? ''), v.proof.map(hex));
      expect(ok).toBe(true);
    }
  });

  it('every single-bit change to a published proof, leaf or root is rejected', () => {
    for (const v of INCLUSION_VECTORS) {
      const leaf = leafHash(INPUTS[v.index] as Buffer);
      const root = hex(ROOTS[v.size - 1] ?? '');
      const proof = v.proof.map(hex);
      for (let bit = 0; bit < 256; bit++) {
        expect(verifyInclusion(flipBit(leaf, bit), v.index, v.size, proof, root)).toBe(false);
        expect(verifyInclusion(leaf, v.index, v.size, proof, flipBit(root, bit))).toBe(false);
        for (let j = 0; j < proof.length; j++) {
          expect(verifyInclusion(leaf, v.index, v.size, flipInProof(proof, j, bit), root)).toBe(false);
        }
      }
    }
    for (const v of CONSISTENCY_VECTORS) {
      const r1 = hex(ROOTS[v.oldSize - 1] ?? '');
      const r2 = hex(ROOTS[v.newSize - 1] ?? '');
      const proof = v.proof.map(hex);
      for (let bit = 0; bit < 256; bit++) {
        expect(verifyConsistency(v.oldSize, v.newSize, flipBit(r1, bit), r2, proof)).toBe(false);
        expect(verifyConsistency(v.oldSize, v.newSize, r1, flipBit(r2, bit), proof)).toBe(false);
        for (let j = 0; j < proof.length; j++) {
          expect(verifyConsistency(v.oldSize, v.newSize, r1, r2, flipInProof(proof, j, bit))).toBe(false);
        }
      }
    }
  });

  it('the corruptions the reference verifier tests reject are rejected', () => {
    const some = hex('abacaba000000000000000000000000000000000000000000060061e00123456');
    for (const v of INCLUSION_VECTORS.filter((x) => x.proof.length > 0)) {
      const leaf = leafHash(INPUTS[v.index] as Buffer);
      const root = hex(ROOTS[v.size - 1] ?? '');
      const p = v.proof.map(hex);
      const bad: [number, number, Buffer[], Buffer][] = [
        [v.index - 1, v.size, p, root],
        [v.index + 1, v.size, p, root],
        [v.index ^ 2, v.size, p, root],
        [v.index, v.size * 2, p, root],
        [v.index, Math.floor(v.size / 2), p, root],
        [v.index, v.size, p, EMPTY_ROOT],
        [v.index, v.size, p, some],
        [v.index, v.size, [...p, Buffer.alloc(0)], root],
        [v.index, v.size, [...p, root], root],
        [v.index, v.size, [Buffer.alloc(0), ...p], root],
        [v.index, v.size, [root, ...p], root],
        [v.index, v.size, p.slice(0, -1), root],
        [v.index, v.size, [p[0] as Buffer, some, ...p.slice(1)], root],
      ];
      for (const [i, s, proof, r] of bad) expect(verifyInclusion(leaf, i, s, proof, r), `${i}/${s}`).toBe(false);
      expect(verifyInclusion(leafHash(Buffer.from('WrongLeaf')), v.index, v.size, p, root)).toBe(false);
    }
    for (const v of CONSISTENCY_VECTORS.filter((x) => x.proof.length > 0)) {
      const r1 = hex(ROOTS[v.oldSize - 1] ?? '');
      const r2 = hex(ROOTS[v.newSize - 1] ?? '');
      const p = v.proof.map(hex);
      const bad: [number, number, Buffer, Buffer, Buffer[]][] = [
        [v.oldSize - 1, v.newSize, r1, r2, p],
        [v.oldSize + 1, v.newSize, r1, r2, p],
        [v.oldSize ^ 2, v.newSize, r1, r2, p],
        [v.oldSize, v.newSize * 2, r1, r2, p],
        [v.oldSize, Math.floor(v.newSize / 2), r1, r2, p],
        [v.oldSize, v.newSize, r2, r1, p],
        [v.oldSize, v.newSize, r1, r2, []],
        [v.oldSize, v.newSize, r1, r2, [...p, Buffer.alloc(0)]],
        [v.oldSize, v.newSize, r1, r2, [...p, r1]],
        [v.oldSize, v.newSize, r1, r2, [...p, r2]],
        [v.oldSize, v.newSize, r1, r2, [Buffer.alloc(0), ...p]],
        [v.oldSize, v.newSize, r1, r2, [r1, ...p]],
        [v.oldSize, v.newSize, r1, r2, [r2, ...p]],
        [v.oldSize, v.newSize, r1, r2, [p[0] as Buffer, ...p]],
        [v.oldSize, v.newSize, r1, r2, p.slice(0, -1)],
      ];
      for (const [m, n, a, b, proof] of bad) expect(verifyConsistency(m, n, a, b, proof), `${m}->${n}`).toBe(false);
    }
  });
});

describe('merkle: edge cases and hostile input', () => {
  const t = vectorTree();
  const root8 = hex(ROOTS[7] ?? '');
  const leaf0 = leafHash(INPUTS[0] as Buffer);

  it('generation rejects out-of-range arguments with RangeError', () => {
    const bad: (() => unknown)[] = [
      () => inclusionProof(t, 0, 0),
      () => inclusionProof(t, 8, 8),
      () => inclusionProof(t, -1, 8),
      () => inclusionProof(t, 0.5, 8),
      () => inclusionProof(t, 0, 9), // beyond what the source holds
      () => inclusionProof(t, Number.NaN, 8),
      () => consistencyProof(t, 5, 4),
      () => consistencyProof(t, -1, 4),
      () => consistencyProof(t, 1, 9),
      () => consistencyProof(t, 1, 2 ** 53),
      () => rootHash(t, 9),
      () => rootHash(t, -1),
      () => subtreeHash(t, 3, 2),
      () => subtreeHash(t, 0, 9),
      () => nodesCompletedBy(t, -1, leaf0),
      () => nodesCompletedBy(t, 8, Buffer.alloc(31)),
    ];
    for (const f of bad) expect(f).toThrow(RangeError);
  });

  it('trivial consistency cases', () => {
    expect(consistencyProof(t, 0, 8)).toEqual([]);
    expect(consistencyProof(t, 8, 8)).toEqual([]);
    expect(consistencyProof(t, 0, 0)).toEqual([]);
    expect(verifyConsistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])).toBe(true);
    expect(verifyConsistency(0, 8, EMPTY_ROOT, root8, [])).toBe(true);
    expect(verifyConsistency(0, 8, root8, root8, [])).toBe(false); // size 0 has exactly one root
    expect(verifyConsistency(0, 8, EMPTY_ROOT, root8, [root8])).toBe(false);
    expect(verifyConsistency(8, 8, root8, root8, [])).toBe(true);
    expect(verifyConsistency(8, 8, root8, EMPTY_ROOT, [])).toBe(false);
    expect(verifyConsistency(8, 8, root8, root8, [root8])).toBe(false);
    expect(verifyConsistency(1, 2, hex(ROOTS[0] ?? ''), hex(ROOTS[1] ?? ''), [])).toBe(false);
    expect(verifyConsistency(2, 1, hex(ROOTS[1] ?? ''), hex(ROOTS[0] ?? ''), [])).toBe(false);
  });

  it('verification never throws and returns false on malformed input', () => {
    const p = inclusionProof(t, 0, 8);
    const junk: unknown[] = [undefined, null, 'abc', 42, {}, [], Buffer.alloc(31), Buffer.alloc(33), new Uint8Array(32).buffer, Number.NaN, -1, 1.5, 2 ** 53, Infinity];
    for (const j of junk) {
      const a = j as never;
      expect(verifyInclusion(a, 0, 8, p, root8)).toBe(false);
      expect(verifyInclusion(leaf0, a, 8, p, root8)).toBe(false);
      expect(verifyInclusion(leaf0, 0, a, p, root8)).toBe(false);
      expect(verifyInclusion(leaf0, 0, 8, a, root8)).toBe(false);
      expect(verifyInclusion(leaf0, 0, 8, [a, ...p.slice(1)], root8)).toBe(false);
      expect(verifyInclusion(leaf0, 0, 8, p, a)).toBe(false);
      expect(verifyConsistency(a, 8, root8, root8, [])).toBe(false);
      expect(verifyConsistency(4, a, hex(ROOTS[3] ?? ''), root8, [])).toBe(false);
      expect(verifyConsistency(4, 8, a, root8, [hex(NODES[2]?.[1] ?? '')])).toBe(false);
      expect(verifyConsistency(4, 8, hex(ROOTS[3] ?? ''), a, [hex(NODES[2]?.[1] ?? '')])).toBe(false);
      expect(verifyConsistency(4, 8, hex(ROOTS[3] ?? ''), root8, a)).toBe(false);
    }
    // index >= size, size 0, absurdly long proofs, a proof array with a throwing getter
    expect(verifyInclusion(leaf0, 8, 8, p, root8)).toBe(false);
    expect(verifyInclusion(leaf0, 0, 0, [], EMPTY_ROOT)).toBe(false);
    expect(verifyInclusion(leaf0, 0, 8, Array.from({ length: 100_000 }, () => root8), root8)).toBe(false);
    const hostile = [...p];
    Object.defineProperty(hostile, 1, { get: () => { throw new Error('boom'); } });
    expect(verifyInclusion(leaf0, 0, 8, hostile, root8)).toBe(false);
    expect(verifyConsistency(1, 8, leaf0, root8, hostile)).toBe(false);
    // a one-leaf tree: root is the leaf hash and the proof is empty
    expect(verifyInclusion(leaf0, 0, 1, [], leaf0)).toBe(true);
    expect(verifyInclusion(leaf0, 0, 1, [], EMPTY_ROOT)).toBe(false);
  });

  it('a claimed size with the same path shape verifies too: the root, not the proof, binds the size', () => {
    // Documented behaviour of the RFC 9162 algorithm: index 0 of size 3 and of size 4 share a path
    // shape, so a size-3 proof checks out against the size-3 root under a claim of size 4. Callers
    // must take (size, root) together from a signed checkpoint.
    const p3 = inclusionProof(t, 0, 3);
    const root3 = hex(ROOTS[2] ?? '');
    expect(pathShape(0, 3)).toBe(pathShape(0, 4));
    expect(verifyInclusion(leaf0, 0, 4, p3, root3)).toBe(true);
    expect(verifyInclusion(leaf0, 0, 4, p3, hex(ROOTS[3] ?? ''))).toBe(false);
  });

  it('subtreeHash answers unaligned ranges correctly as well', () => {
    const leaves = INPUTS.map(leafHash);
    for (let s = 0; s <= 8; s++) {
      for (let e = s; e <= 8; e++) {
        expect(subtreeHash(strictSource(t, 8), s, e).toString('hex'), `[${s},${e})`).toBe(refMth(leaves.slice(s, e)).toString('hex'));
      }
    }
  });

  it('a malformed node from the source is an error, not a bad proof', () => {
    const broken: NodeSource = { node: () => Buffer.alloc(3) };
    expect(() => rootHash(broken, 3)).toThrow(/malformed/);
  });
});

describe('merkle: properties (fast-check)', () => {
  const sizeArb = fc.integer({ min: 1, max: MAX_PROP_SIZE });
  const sizeIndex = sizeArb.chain((size) => fc.tuple(fc.constant(size), fc.integer({ min: 0, max: size - 1 })));
  const sizePair = sizeArb.chain((n) => fc.tuple(fc.integer({ min: 1, max: n }), fc.constant(n)));

  it('rootHash from stored nodes equals the naive recursive MTH, with O(log n) lookups', () => {
    fc.assert(
      fc.property(sizeArb, (size) => {
        const src = strictSource(propTree, size);
        expect(rootHash(src, size).equals(refRoot(size))).toBe(true);
        expect(src.lookups).toBeLessThanOrEqual(Math.ceil(Math.log2(size + 1)));
        // an exactly-sized tree gives the same root
      }),
      { numRuns: 200 },
    );
  });

  it('exactly-sized trees built leaf by leaf agree with the naive MTH', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 300 }), (size) => {
        const t = new MemoryTree();
        for (const d of propData.slice(0, size)) t.append(d);
        expect(t.size).toBe(size);
        expect(t.root().equals(size === 0 ? EMPTY_ROOT : refRoot(size))).toBe(true);
      }),
      { numRuns: 30 },
    );
  });

  it('inclusion proofs equal the naive RFC PATH and verify', () => {
    fc.assert(
      fc.property(sizeIndex, ([size, index]) => {
        const src = strictSource(propTree, size);
        const proof = inclusionProof(src, index, size);
        expect(toHex(proof)).toEqual(toHex(refPath(index, propLeaves.slice(0, size))));
        expect(src.lookups).toBeLessThanOrEqual(2 * 11 * 11);
        expect(verifyInclusion(propLeaves[index] as Buffer, index, size, proof, refRoot(size))).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('consistency proofs equal the naive RFC PROOF and verify', () => {
    fc.assert(
      fc.property(sizePair, ([oldSize, newSize]) => {
        const src = strictSource(propTree, newSize);
        const proof = consistencyProof(src, oldSize, newSize);
        const ref = oldSize === newSize ? [] : refSubproof(oldSize, propLeaves.slice(0, newSize), true);
        expect(toHex(proof)).toEqual(toHex(ref));
        expect(verifyConsistency(oldSize, newSize, refRoot(oldSize), refRoot(newSize), proof)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('any single flipped bit in an inclusion proof, the leaf or the root fails', () => {
    fc.assert(
      fc.property(sizeIndex, fc.nat(), fc.nat(255), ([size, index], j, bit) => {
        const proof = inclusionProof(propTree, index, size);
        const leaf = propLeaves[index] as Buffer;
        const root = refRoot(size);
        expect(verifyInclusion(flipBit(leaf, bit), index, size, proof, root)).toBe(false);
        expect(verifyInclusion(leaf, index, size, proof, flipBit(root, bit))).toBe(false);
        if (proof.length > 0) {
          expect(verifyInclusion(leaf, index, size, flipInProof(proof, j % proof.length, bit), root)).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('any single flipped bit in a consistency proof or either root fails', () => {
    fc.assert(
      fc.property(sizePair, fc.nat(), fc.nat(255), ([oldSize, newSize], j, bit) => {
        const proof = consistencyProof(propTree, oldSize, newSize);
        const r1 = refRoot(oldSize);
        const r2 = refRoot(newSize);
        expect(verifyConsistency(oldSize, newSize, flipBit(r1, bit), r2, proof)).toBe(false);
        expect(verifyConsistency(oldSize, newSize, r1, flipBit(r2, bit), proof)).toBe(false);
        if (proof.length > 0) {
          expect(verifyConsistency(oldSize, newSize, r1, r2, flipInProof(proof, j % proof.length, bit))).toBe(false);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a wrong index always fails; a wrong size fails unless it has the very same path shape', () => {
    fc.assert(
      fc.property(sizeIndex, fc.integer({ min: 0, max: 2 * MAX_PROP_SIZE }), fc.integer({ min: 0, max: 2 * MAX_PROP_SIZE }), ([size, index], otherIndex, otherSize) => {
        const proof = inclusionProof(propTree, index, size);
        const leaf = propLeaves[index] as Buffer;
        const root = refRoot(size);
        if (otherIndex !== index) expect(verifyInclusion(leaf, otherIndex, size, proof, root)).toBe(false);
        if (otherSize !== size) {
          const same = index < otherSize && pathShape(index, otherSize) === pathShape(index, size);
          expect(verifyInclusion(leaf, index, otherSize, proof, root)).toBe(same);
        }
        for (const s of [size * 2, Math.floor(size / 2), size + 1, size - 1]) {
          if (s === size) continue;
          const same = index < s && pathShape(index, s) === pathShape(index, size);
          expect(verifyInclusion(leaf, index, s, proof, root)).toBe(same);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('wrong sizes fail a consistency proof unless they have the very same proof shape', () => {
    fc.assert(
      fc.property(sizePair, fc.integer({ min: 0, max: 2 * MAX_PROP_SIZE }), fc.integer({ min: 0, max: 2 * MAX_PROP_SIZE }), ([m, n], m2, n2) => {
        fc.pre(m < n);
        const proof = consistencyProof(propTree, m, n);
        const r1 = refRoot(m);
        const r2 = refRoot(n);
        const shape = consistencyShape(m, n);
        const candidates: [number, number][] = [[m2, n], [m, n2], [m2, n2], [m - 1, n], [m + 1, n], [m ^ 2, n], [m, n * 2], [m, Math.floor(n / 2)], [m, n + 1]];
        for (const [a, b] of candidates) {
          if (a === m && b === n) continue;
          const same = a > 0 && a < b && consistencyShape(a, b) === shape;
          expect(verifyConsistency(a, b, r1, r2, proof), `${a}->${b} for ${m}->${n}`).toBe(same);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('merkle: a million leaves', () => {
  it('proofs at size 1,000,000 verify, with O(log^2 n) lookups', () => {
    const N = 1_000_000;
    const t = new MemoryTree();
    const d = Buffer.alloc(8);
    for (let i = 0; i < N; i++) {
      d.writeUInt32BE(i, 4);
      t.append(d);
    }
    expect(t.size).toBe(N);
    const root = t.root();
    const oldRoot = rootHash(t, 654_321);
    for (const index of [0, 1, 500_000, 654_320, 999_999]) {
      const src = strictSource(t, N);
      const p = inclusionProof(src, index, N);
      expect(src.lookups).toBeLessThanOrEqual(20 * 20);
      d.writeUInt32BE(index, 4);
      expect(verifyInclusion(leafHash(d), index, N, p, root)).toBe(true);
      expect(verifyInclusion(leafHash(d), index, N, p, oldRoot)).toBe(false);
    }
    for (const m of [1, 654_321, 524_288, 999_999]) {
      const src = strictSource(t, N);
      const c = consistencyProof(src, m, N);
      expect(src.lookups).toBeLessThanOrEqual(20 * 20);
      expect(verifyConsistency(m, N, rootHash(t, m), root, c)).toBe(true);
    }
  });
});
