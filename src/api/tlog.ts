// The ledger served as C2SP tlog-tiles under /tlog/ (docs/API.md, "The log as tiles"): the
// checkpoint, hash tiles and entry bundles, computed from the stored tree (src/core/ledger/tiles.ts):
// a tile costs one range read of the nodes or entries it holds, never a scan of the log.
//
// Hash tiles and the checkpoint are public. Entry bundles follow the read rules (read-access.ts):
// an admin or the platform reads any; another identity a bundle only if it may see every entry in
// it. Full tiles never change and are cached for a year; partial ones and the checkpoint briefly.
import { decodeEntry } from '../core/ledger/ledger.ts';
import { EntryTooLargeError, TILE_WIDTH, encodeBundle, TilePathError, parseTilePath, readBundleEntries, readHashTile, tilePath, tileWidthAt, type TileRef } from '../core/ledger/tiles.ts';
import { servedCheckpoint } from './checkpoint.ts';
import { HttpError } from './http-error.ts';
import type { ReadScope } from './read-access.ts';
import type { ApiContext, Reply } from './routes.ts';

/** Full tiles and bundles: their bytes never change. */
export const IMMUTABLE_CACHE = 'public, max-age=31536000, immutable';
/** Partial tiles: the same bytes for as long as they are served, but replaced by the full tile as the log grows. */
export const PARTIAL_CACHE = 'public, max-age=60';
/** The checkpoint changes with every commit. */
export const TLOG_CHECKPOINT_CACHE = 'public, max-age=5';
/** Entry bundles need a signed read: only the reader's own cache may keep them. */
export const PRIVATE_IMMUTABLE_CACHE = 'private, max-age=31536000, immutable';
export const PRIVATE_PARTIAL_CACHE = 'private, max-age=60';

const OCTETS = 'application/octet-stream';

/** GET /tlog/checkpoint: the same note as GET /v1/ledger/checkpoint, cosignatures included (checkpoint.ts). */
export async function checkpointReply(ctx: ApiContext): Promise<Reply> {
  const served = await servedCheckpoint(ctx);
  if (!served) throw new HttpError(503, 'the ledger has no checkpoint yet');
  return { body: served.note, contentType: 'text/plain; charset=utf-8' };
}

function parse(path: string): TileRef {
  try {
    return parseTilePath(path);
  } catch (err) {
    if (err instanceof TilePathError) throw new HttpError(400, `not a tile path (C2SP tlog-tiles: tile/<L>/<N>[.p/<W>] or tile/entries/<N>[.p/<W>]): ${err.message}`);
    throw err;
  }
}

/** 404 for a tile the tree does not hold (yet): never cached, it may exist a moment later. */
function notInTree(ref: TileRef, size: number): HttpError {
  const have = tileWidthAt(size, ref.level, ref.index);
  const what = have === 0 ? 'nothing' : have === TILE_WIDTH ? 'the full tile' : `a partial tile of width ${have}`;
  return new HttpError(404, `${tilePath(ref)} is not in the tree of ${size} entries (it holds ${what} there)`, { 'cache-control': 'no-store' });
}

/** GET /tlog/tile/<L>/<N>[.p/<W>]: `path` is what follows /tlog/tile/. */
export async function hashTileReply(ctx: ApiContext, path: string): Promise<Reply> {
  const ref = parse(path);
  // /tlog/tile/entries/... has its own route; this one only sees "entries" without an index.
  if (ref.level === 'entries') throw new HttpError(400, 'entry bundles are at /tlog/tile/entries/<N>');
  const store = ctx.platform.store;
  const size = await store.ledgerSize();
  const tile = await readHashTile(store, size, ref);
  if (!tile) throw notInTree(ref, size);
  return { body: tile, contentType: OCTETS, headers: { 'cache-control': ref.width === TILE_WIDTH ? IMMUTABLE_CACHE : PARTIAL_CACHE } };
}

/** GET /tlog/tile/entries/<N>[.p/<W>] (a signed read): `path` is what follows /tlog/tile/entries/. */
export async function bundleReply(ctx: ApiContext, path: string, scope: ReadScope): Promise<Reply> {
  const ref = parse(`entries/${path}`);
  const store = ctx.platform.store;
  const size = await store.ledgerSize();
  const entries = await readBundleEntries(store, size, ref);
  if (!entries) throw notInTree(ref, size);
  const first = ref.index * TILE_WIDTH;
  const range = `GET /v1/ledger/entries?from=${first}&to=${first + entries.length}`;
  if (!scope.all) {
    const withheld: number[] = [];
    entries.forEach((data, i) => {
      if (!scope.sees(decodeEntry(data))) withheld.push(first + i);
    });
    if (withheld.length)
      throw new HttpError(
        403,
        `${scope.reader.name} may not read ${withheld.length} of the ${entries.length} entries of this bundle (the first is entry ${withheld[0]}); ${range} gives every entry it may read in full and the others as leaf hashes`,
      );
  }
  let body: Buffer;
  try {
    body = encodeBundle(entries, first);
  } catch (err) {
    // Not reachable while every entry is at most 65,535 bytes; if one is not, this bundle cannot
    // be served in the tlog-tiles format at all (the hash tiles still prove it): say so and where it is.
    if (err instanceof EntryTooLargeError) throw new HttpError(500, `${err.message}; ${range} serves it`);
    throw err;
  }
  return { body, contentType: OCTETS, headers: { 'cache-control': ref.width === TILE_WIDTH ? PRIVATE_IMMUTABLE_CACHE : PRIVATE_PARTIAL_CACHE } };
}
