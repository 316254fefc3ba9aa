// The ledger as C2SP tlog-tiles (c2sp.org/tlog-tiles): the Merkle tree cut into tiles of height 8.
//
// Hash tile (level L, index N): the 256 hashes MTH(D[(N*256 + i) * 256^L : (N*256 + i + 1) * 256^L]),
// i = 0..255. Each is a complete aligned subtree of 256^L leaves, i.e. the stored node at Merkle level
// 8L, index N*256 + i (src/core/ledger/merkle.ts), so a tile of W hashes costs W node reads and no
// hashing. A partial tile holds the first W (1..255) of them; the rightmost tile of each level is
// partial in a tree of `size` leaves with floor(size / 256^L) mod 256 hashes.
//
// Entry bundle N: the entries N*256 .. N*256 + W - 1, each as a big-endian uint16 length and the
// entry's bytes (the bytes whose RFC 6962 leaf hash is in level-0 tile N).
//
// Paths: tile/<L>/<N>[.p/<W>] and tile/entries/<N>[.p/<W>]; <L> decimal 0..63 without leading
// zeros; <N> in 3-digit groups, all but the last prefixed with "x" (1234067 -> x001/x234/067);
// <W> decimal 1..255 without leading zeros. Parsing is strict: exactly one spelling per tile.

export const TILE_HEIGHT = 8;
/** Hashes in a full tile (2^TILE_HEIGHT); entries in a full bundle. */
export const TILE_WIDTH = 256;
/** An entry bundle prefixes each entry with a big-endian uint16 length. */
export const MAX_BUNDLE_ENTRY_BYTES = 0xffff;
/** The longest tile path (after "tile/") accepted: more than any tile of a tree below 2^53 leaves needs. */
export const MAX_TILE_PATH_LENGTH = 64;

/** A tile named by a path: a hash tile at `level`, or an entry bundle (`level` = 'entries'). */
export interface TileRef {
  level: number | 'entries';
  index: number;
  /** Hashes (or entries) it holds: 256 for a full tile, 1..255 for a partial one. */
  width: number;
}

export class TilePathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TilePathError';
  }
}

/** An entry that cannot be carried by an entry bundle (its length does not fit the uint16 prefix). */
export class EntryTooLargeError extends Error {
  constructor(
    readonly entryIndex: number,
    readonly bytes: number,
  ) {
    super(`ledger entry ${entryIndex} is ${bytes} bytes, more than the ${MAX_BUNDLE_ENTRY_BYTES} an entry bundle can carry`);
    this.name = 'EntryTooLargeError';
  }
}

const isCount = (n: unknown): n is number => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;

function checkCount(name: string, n: unknown): asserts n is number {
  if (!isCount(n)) throw new RangeError(`${name} must be a non-negative safe integer, got ${String(n)}`);
}

/** <N>: zero-padded 3-digit groups, all but the last with an "x" prefix. */
export function encodeTileIndex(index: number): string {
  checkCount('tile index', index);
  const groups: string[] = [];
  let n = index;
  do {
    groups.unshift(String(n % 1000).padStart(3, '0'));
    n = Math.floor(n / 1000);
  } while (n > 0);
  return groups.map((g, i) => (i < groups.length - 1 ? `x${g}` : g)).join('/');
}

/** The path of a tile relative to the log's prefix: `tile/0/x001/234`, `tile/1/000.p/7`, `tile/entries/005`. */
export function tilePath(t: TileRef): string {
  if (t.level !== 'entries' && !(isCount(t.level) && t.level <= 63)) throw new RangeError(`tile level must be 0..63 or 'entries', got ${String(t.level)}`);
  if (!Number.isInteger(t.width) || t.width < 1 || t.width > TILE_WIDTH) throw new RangeError(`tile width must be 1..${TILE_WIDTH}, got ${String(t.width)}`);
  const partial = t.width < TILE_WIDTH ? `.p/${t.width}` : '';
  return `tile/${t.level}/${encodeTileIndex(t.index)}${partial}`;
}

const LEVEL = /^(?:0|[1-9][0-9]?)$/;
const WIDTH = /^[1-9][0-9]{0,2}$/;
const GROUP = /^[0-9]{3}$/;
const X_GROUP = /^x[0-9]{3}$/;

/**
 * Parses the part of a tile path after `tile/` (`0/x001/234.p/5`, `entries/000`). Strict and
 * bounded: anything but the one canonical spelling of a tile throws TilePathError.
 */
export function parseTilePath(path: unknown): TileRef {
  if (typeof path !== 'string') throw new TilePathError('a tile path must be a string');
  if (path.length > MAX_TILE_PATH_LENGTH) throw new TilePathError(`a tile path is at most ${MAX_TILE_PATH_LENGTH} characters`);
  const parts = path.split('/');
  const head = parts.shift() ?? '';
  let level: number | 'entries';
  if (head === 'entries') level = 'entries';
  else if (LEVEL.test(head) && Number(head) <= 63) level = Number(head);
  else throw new TilePathError(`the tile level must be "entries" or a decimal number 0..63 without leading zeros, not ${JSON.stringify(head.slice(0, 20))}`);
  let width = TILE_WIDTH;
  const last = parts.length - 1;
  if (last >= 1 && parts[last - 1]?.endsWith('.p')) {
    // "<group>.p/<W>": a partial tile.
    const w = parts.pop()!;
    if (!WIDTH.test(w) || Number(w) > TILE_WIDTH - 1) throw new TilePathError(`the width of a partial tile must be a decimal number 1..255 without leading zeros, not ${JSON.stringify(w.slice(0, 20))}`);
    width = Number(w);
    parts[parts.length - 1] = parts[parts.length - 1]!.slice(0, -2);
  }
  if (parts.length === 0 || (parts.length === 1 && parts[0] === '')) throw new TilePathError('the tile path has no tile index');
  let index = 0;
  parts.forEach((g, i) => {
    const isLast = i === parts.length - 1;
    if (!(isLast ? GROUP : X_GROUP).test(g))
      throw new TilePathError(`tile index element ${JSON.stringify(g.slice(0, 20))} must be ${isLast ? 'three digits (the last element)' : '"x" and three digits'}`);
    index = index * 1000 + Number(isLast ? g : g.slice(1));
  });
  if (parts.length > 1 && parts[0] === 'x000') throw new TilePathError('the tile index has a leading x000 element (one spelling per tile)');
  if (!Number.isSafeInteger(index)) throw new TilePathError('the tile index is too large');
  return { level, index, width };
}

/**
 * How many hashes tile (level, index) holds in a tree of `size` leaves (0..256), or for
 * level 'entries', how many entries bundle `index` holds. 256: the full tile exists.
 */
export function tileWidthAt(size: number, level: number | 'entries', index: number): number {
  checkCount('size', size);
  checkCount('tile index', index);
  // Complete subtrees of 256^level leaves; the division by a power of two is exact in doubles.
  const count = level === 'entries' ? size : Math.floor(size / TILE_WIDTH ** level);
  const before = index * TILE_WIDTH;
  if (count <= before) return 0;
  return Math.min(TILE_WIDTH, count - before);
}

/** The Merkle level (merkle.ts) and first node index of the hashes in hash tile (level, index). */
export function tileNodes(level: number, index: number): { nodeLevel: number; first: number } {
  checkCount('tile level', level);
  checkCount('tile index', index);
  return { nodeLevel: level * TILE_HEIGHT, first: index * TILE_WIDTH };
}

/** What a tile is read from: the stored complete subtrees and entries (src/core/store). */
export interface TileSource {
  /** Hashes of the stored nodes (level, from) .. (level, to - 1), in order. */
  readNodes(level: number, from: number, to: number): Promise<Buffer[]>;
  readEntries(from: number, to: number): Promise<Buffer[]>;
}

/**
 * The bytes of hash tile `ref` (a number level) in a tree of `size` leaves, or undefined when the
 * tree does not hold that tile at that width. A partial width below what the tree holds is the
 * prefix of the tile it grew into: the same hashes, served for the checkpoints that had it.
 */
export async function readHashTile(src: TileSource, size: number, ref: TileRef): Promise<Buffer | undefined> {
  if (ref.level === 'entries') throw new RangeError('readHashTile reads hash tiles, not entry bundles');
  if (ref.width > tileWidthAt(size, ref.level, ref.index)) return undefined;
  const { nodeLevel, first } = tileNodes(ref.level, ref.index);
  const hashes = await src.readNodes(nodeLevel, first, first + ref.width);
  if (hashes.length !== ref.width || hashes.some((h) => h.length !== 32))
    throw new Error(`the store lacks nodes of tile ${tilePath(ref)} (level ${nodeLevel}, ${first}..${first + ref.width - 1}): run \`nexus audit verify\``);
  return Buffer.concat(hashes);
}

/** The entries of bundle `ref` in a tree of `size`, or undefined when the tree does not hold them. */
export async function readBundleEntries(src: TileSource, size: number, ref: TileRef): Promise<Buffer[] | undefined> {
  if (ref.level !== 'entries') throw new RangeError('readBundleEntries reads entry bundles');
  if (ref.width > tileWidthAt(size, 'entries', ref.index)) return undefined;
  const first = ref.index * TILE_WIDTH;
  const entries = await src.readEntries(first, first + ref.width);
  if (entries.length !== ref.width) throw new Error(`the store lacks entries of bundle ${tilePath(ref)}`);
  return entries;
}

/**
 * An entry bundle: each entry as a big-endian uint16 length and its bytes. Throws
 * EntryTooLargeError (naming the entry) when an entry is longer than 65,535 bytes: the format
 * cannot carry it, and a truncated or wrapped length would make every later entry unreadable.
 */
export function encodeBundle(entries: readonly Uint8Array[], firstIndex = 0): Buffer {
  let total = 0;
  entries.forEach((e, i) => {
    if (e.length > MAX_BUNDLE_ENTRY_BYTES) throw new EntryTooLargeError(firstIndex + i, e.length);
    total += 2 + e.length;
  });
  const out = Buffer.alloc(total);
  let at = 0;
  for (const e of entries) {
    out.writeUInt16BE(e.length, at);
    out.set(e, at + 2);
    at += 2 + e.length;
  }
  return out;
}

/** The entries of a bundle (throws on a truncated or overlong one). */
export function decodeBundle(bundle: Uint8Array, maxEntries = TILE_WIDTH): Buffer[] {
  const buf = Buffer.from(bundle.buffer, bundle.byteOffset, bundle.byteLength);
  const out: Buffer[] = [];
  let at = 0;
  while (at < buf.length) {
    if (out.length >= maxEntries) throw new Error(`an entry bundle holds at most ${maxEntries} entries`);
    if (at + 2 > buf.length) throw new Error(`entry bundle truncated in the length of entry ${out.length}`);
    const len = buf.readUInt16BE(at);
    if (at + 2 + len > buf.length) throw new Error(`entry bundle truncated in entry ${out.length}`);
    out.push(Buffer.from(buf.subarray(at + 2, at + 2 + len)));
    at += 2 + len;
  }
  return out;
}
