import { createHash } from 'node:crypto';

// RFC 6962 / RFC 9162 Merkle tree hashing over SHA-256.
//
//   leaf     = SHA-256(0x00 || data)
//   interior = SHA-256(0x01 || left || right)
//   empty    = SHA-256("")
//
// The log stores the hash of every complete, aligned subtree: node (level, index) is the hash of
// leaves [index * 2^level, (index + 1) * 2^level). With those stored, a root, an inclusion proof
// or a consistency proof needs O(log n) node lookups per proof element and never re-hashes the log.
//
// Sizes and indices are plain numbers and must be safe non-negative integers (< 2^53). No bitwise
// operators are used on them, since those truncate to 32 bits.

/** A read-only view of the stored complete subtrees. */
export interface NodeSource {
  /** Hash of leaves [index * 2^level, (index + 1) * 2^level). Only called for complete aligned subtrees within the tree size. */
  node(level: number, index: number): Buffer;
  /** Optional: the number of leaves the source holds. When present, generation functions reject sizes beyond it. */
  readonly size?: number;
}

export interface StoredNode {
  level: number;
  index: number;
  hash: Buffer;
}

export const HASH_SIZE = 32;

const LEAF_PREFIX = Buffer.from([0x00]);
const NODE_PREFIX = Buffer.from([0x01]);

/** Longest proof that can exist for a tree of fewer than 2^53 leaves; anything longer is rejected unread. */
const MAX_PROOF_LENGTH = 64;

export function leafHash(data: Uint8Array): Buffer {
  return createHash('sha256').update(LEAF_PREFIX).update(data).digest();
}

export function nodeHash(left: Uint8Array, right: Uint8Array): Buffer {
  return createHash('sha256').update(NODE_PREFIX).update(left).update(right).digest();
}

/** MTH({}) = SHA-256(""). */
export const EMPTY_ROOT: Buffer = createHash('sha256').digest();
// A private copy for internal use, so that a caller mutating the exported Buffer changes nothing here.
const EMPTY: Buffer = Buffer.from(EMPTY_ROOT);

// ---------------------------------------------------------------------------------------------
// Integer helpers (safe for values up to 2^53)

function isCount(n: unknown): n is number {
  return typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
}

function checkCount(name: string, n: unknown): asserts n is number {
  if (!isCount(n)) throw new RangeError(`${name} must be a non-negative safe integer, got ${String(n)}`);
}

function checkWithinSource(src: NodeSource, name: string, n: number): void {
  const have = src.size;
  if (typeof have === 'number' && n > have) {
    throw new RangeError(`${name} ${n} exceeds the ${have} leaves held by the node source`);
  }
}

/** Largest power of two strictly less than n (n >= 2). */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** If n is a power of two, its base-2 logarithm; otherwise -1. */
function log2Exact(n: number): number {
  let level = 0;
  let k = 1;
  while (k < n) {
    k *= 2;
    level++;
  }
  return k === n ? level : -1;
}

function half(n: number): number {
  return Math.floor(n / 2);
}

function isOdd(n: number): boolean {
  return n % 2 === 1;
}

function lookup(src: NodeSource, level: number, index: number): Buffer {
  const h = src.node(level, index);
  if (!Buffer.isBuffer(h) || h.length !== HASH_SIZE) {
    throw new Error(`node source returned a malformed hash for (level ${level}, index ${index})`);
  }
  return h;
}

// ---------------------------------------------------------------------------------------------
// Appending

/**
 * Given the leaf hash of the leaf at index `leafIndex` (i.e. appended to a tree of `leafIndex`
 * leaves), return the nodes that become complete: the leaf itself at level 0, then each parent
 * that it completes, bottom-up. Left siblings are read from `src`, which must already hold every
 * complete subtree of the first `leafIndex` leaves.
 */
export function nodesCompletedBy(src: NodeSource, leafIndex: number, leaf: Buffer): StoredNode[] {
  checkCount('leafIndex', leafIndex);
  if (leafIndex >= Number.MAX_SAFE_INTEGER) throw new RangeError('tree is full');
  checkWithinSource(src, 'leafIndex', leafIndex);
  if (!Buffer.isBuffer(leaf) || leaf.length !== HASH_SIZE) throw new RangeError(`leaf hash must be ${HASH_SIZE} bytes`);
  const out: StoredNode[] = [{ level: 0, index: leafIndex, hash: leaf }];
  let level = 0;
  let index = leafIndex;
  let hash = leaf;
  while (isOdd(index)) {
    hash = nodeHash(lookup(src, level, index - 1), hash);
    level++;
    index = half(index);
    out.push({ level, index, hash });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tree hashes

/**
 * MTH of leaves [start, end), as RFC 9162 defines it for that list on its own. Uses stored complete
 * subtrees: when `start` is a multiple of the smallest power of two >= (end - start), which holds
 * for every subtree a root or proof needs, this costs O(log n) lookups and hashes. Other ranges are
 * still answered correctly but may need up to O(n) lookups.
 */
export function subtreeHash(src: NodeSource, start: number, end: number): Buffer {
  checkCount('start', start);
  checkCount('end', end);
  if (start > end) throw new RangeError(`start ${start} is after end ${end}`);
  checkWithinSource(src, 'end', end);
  if (start === end) return Buffer.from(EMPTY);
  return mth(src, start, end);
}

function mth(src: NodeSource, start: number, end: number): Buffer {
  const n = end - start;
  const level = log2Exact(n);
  if (level >= 0 && start % n === 0) return lookup(src, level, start / n);
  const k = splitPoint(n);
  return nodeHash(mth(src, start, start + k), mth(src, start + k, end));
}

export function rootHash(src: NodeSource, size: number): Buffer {
  checkCount('size', size);
  checkWithinSource(src, 'size', size);
  return size === 0 ? Buffer.from(EMPTY) : mth(src, 0, size);
}

// ---------------------------------------------------------------------------------------------
// Proof generation

/** RFC 9162 2.1.3.1: the audit path of leaf `index` in the tree of the first `size` leaves, leaf to root. */
export function inclusionProof(src: NodeSource, index: number, size: number): Buffer[] {
  checkCount('index', index);
  checkCount('size', size);
  if (index >= size) throw new RangeError(`index ${index} is not below tree size ${size}`);
  checkWithinSource(src, 'size', size);
  // PATH(m, D[start:end]) walked top-down; siblings collected root-first then reversed.
  const siblings: Buffer[] = [];
  let start = 0;
  let end = size;
  let m = index;
  while (end - start > 1) {
    const k = splitPoint(end - start);
    if (m < k) {
      siblings.push(mth(src, start + k, end));
      end = start + k;
    } else {
      siblings.push(mth(src, start, start + k));
      start += k;
      m -= k;
    }
  }
  return siblings.reverse();
}

/** RFC 9162 2.1.4.1: PROOF(oldSize, D[newSize]). Empty when oldSize is 0 or equals newSize. */
export function consistencyProof(src: NodeSource, oldSize: number, newSize: number): Buffer[] {
  checkCount('oldSize', oldSize);
  checkCount('newSize', newSize);
  if (oldSize > newSize) throw new RangeError(`oldSize ${oldSize} is greater than newSize ${newSize}`);
  checkWithinSource(src, 'newSize', newSize);
  if (oldSize === 0 || oldSize === newSize) return [];
  // SUBPROOF(m, D[start:end], b) walked top-down; elements collected root-first then reversed.
  const rev: Buffer[] = [];
  let start = 0;
  let end = newSize;
  let m = oldSize;
  let b = true;
  while (m !== end - start) {
    const n = end - start;
    const k = splitPoint(n);
    if (m <= k) {
      rev.push(mth(src, start + k, end));
      end = start + k;
    } else {
      rev.push(mth(src, start, start + k));
      start += k;
      m -= k;
      b = false;
    }
  }
  if (!b) rev.push(mth(src, start, end));
  return rev.reverse();
}

// ---------------------------------------------------------------------------------------------
// Verification (never throws)

function isHash(h: unknown): h is Uint8Array {
  return h instanceof Uint8Array && h.length === HASH_SIZE;
}

function isProof(proof: unknown): proof is Uint8Array[] {
  return Array.isArray(proof) && proof.length <= MAX_PROOF_LENGTH && proof.every(isHash);
}

function sameHash(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

/**
 * RFC 9162 2.1.3.2. `leaf` is the leaf *hash* (leafHash(data)). Returns false, never throws, on any
 * malformed or hostile input.
 */
export function verifyInclusion(leaf: Buffer, index: number, size: number, proof: Buffer[], root: Buffer): boolean {
  try {
    if (!isCount(index) || !isCount(size) || index >= size) return false;
    if (!isHash(leaf) || !isHash(root) || !isProof(proof)) return false;
    let fn = index;
    let sn = size - 1;
    let r: Uint8Array = leaf;
    for (const p of proof) {
      if (sn === 0) return false;
      if (isOdd(fn) || fn === sn) {
        r = nodeHash(p, r);
        if (!isOdd(fn)) {
          while (!isOdd(fn) && fn !== 0) {
            fn = half(fn);
            sn = half(sn);
          }
        }
      } else {
        r = nodeHash(r, p);
      }
      fn = half(fn);
      sn = half(sn);
    }
    return sn === 0 && sameHash(r, root);
  } catch {
    return false;
  }
}

/**
 * RFC 9162 2.1.4.2, extended to the edge cases: equal sizes need an empty proof and equal roots;
 * oldSize 0 needs an empty proof and oldRoot = EMPTY_ROOT (a well-formed newRoot is then trivially
 * consistent). Returns false, never throws, on any malformed or hostile input.
 */
export function verifyConsistency(oldSize: number, newSize: number, oldRoot: Buffer, newRoot: Buffer, proof: Buffer[]): boolean {
  try {
    if (!isCount(oldSize) || !isCount(newSize) || oldSize > newSize) return false;
    if (!isHash(oldRoot) || !isHash(newRoot) || !isProof(proof)) return false;
    if (oldSize === newSize) return proof.length === 0 && sameHash(oldRoot, newRoot);
    if (oldSize === 0) return proof.length === 0 && sameHash(oldRoot, EMPTY);
    // 0 < oldSize < newSize
    if (proof.length === 0) return false;
    const path: Uint8Array[] = log2Exact(oldSize) >= 0 ? [oldRoot, ...proof] : proof;
    let fn = oldSize - 1;
    let sn = newSize - 1;
    while (isOdd(fn)) {
      fn = half(fn);
      sn = half(sn);
    }
    const first = path[0];
    if (first === undefined) return false;
    let fr: Uint8Array = first;
    let sr: Uint8Array = first;
    for (let i = 1; i < path.length; i++) {
      const c = path[i];
      if (c === undefined || sn === 0) return false;
      if (isOdd(fn) || fn === sn) {
        fr = nodeHash(c, fr);
        sr = nodeHash(c, sr);
        if (!isOdd(fn)) {
          while (!isOdd(fn) && fn !== 0) {
            fn = half(fn);
            sn = half(sn);
          }
        }
      } else {
        sr = nodeHash(sr, c);
      }
      fn = half(fn);
      sn = half(sn);
    }
    return sn === 0 && sameHash(fr, oldRoot) && sameHash(sr, newRoot);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// In-memory tree

/**
 * A NodeSource that keeps every complete subtree in memory, level by level. Hashes are stored
 * back to back in one growable buffer per level (32 bytes a node), so a million leaves cost about
 * 64 MB rather than two million separate Buffer objects. node() returns a copy.
 */
export class MemoryTree implements NodeSource {
  private levels: { buf: Buffer; count: number }[] = [];
  private leaves = 0;

  get size(): number {
    return this.leaves;
  }

  /** Append one leaf (raw data, hashed with leafHash). Returns the new leaf's index. */
  append(data: Uint8Array): number {
    return this.appendLeafHash(leafHash(data));
  }

  /** Append one leaf given its leaf hash. Returns the new leaf's index. */
  appendLeafHash(leaf: Buffer): number {
    const index = this.leaves;
    for (const n of nodesCompletedBy(this, index, leaf)) this.store(n);
    this.leaves = index + 1;
    return index;
  }

  node(level: number, index: number): Buffer {
    const row = this.levels[level];
    if (!isCount(level) || !isCount(index) || row === undefined || index >= row.count) {
      throw new RangeError(`no complete subtree at (level ${level}, index ${index}) in a tree of ${this.leaves} leaves`);
    }
    return Buffer.from(row.buf.subarray(index * HASH_SIZE, (index + 1) * HASH_SIZE));
  }

  root(): Buffer {
    return rootHash(this, this.leaves);
  }

  private store(n: StoredNode): void {
    let row = this.levels[n.level];
    if (row === undefined) {
      row = { buf: Buffer.alloc(HASH_SIZE * 16), count: 0 };
      this.levels[n.level] = row;
    }
    if (n.index !== row.count) throw new Error(`internal: node (${n.level}, ${n.index}) stored out of order`);
    if ((row.count + 1) * HASH_SIZE > row.buf.length) {
      const grown = Buffer.alloc(row.buf.length * 2);
      row.buf.copy(grown);
      row.buf = grown;
    }
    n.hash.copy(row.buf, row.count * HASH_SIZE);
    row.count++;
  }
}
