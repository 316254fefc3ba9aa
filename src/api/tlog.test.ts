// /tlog/ over real HTTP: the checkpoint, hash tiles and entry bundles (C2SP tlog-tiles), who may
// read the bundles, the cache headers, and hostile paths. The tree is built so that entries
// 256..511 are all alice's: bundle 1 is hers in full, bundle 0 is not.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { leafHash } from '../core/ledger/merkle.ts';
import { decodeBundle } from '../core/ledger/tiles.ts';
import { startTestApi, type Actor, type TestApi } from '../../test/support/api.ts';
import { signRead } from './read-auth.ts';

let api: TestApi;
let alice: Actor; // creator; entries 256..511 are hers
let bob: Actor; // creator with no IMVU
let ops: Actor; // admin

interface Raw {
  status: number;
  headers: Headers;
  bytes: Buffer;
}

async function raw(path: string, actor: Actor | null = null, method = 'GET'): Promise<Raw> {
  const headers = actor ? { ...signRead(actor.key, actor.id, method, api.url + path) } : {};
  const res = await fetch(api.url + path, { method, headers });
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
}

const json = (r: Raw) => JSON.parse(r.bytes.toString('utf8')) as { error: string };

beforeAll(async () => {
  api = await startTestApi();
  alice = await api.register('alice', 'creator');
  bob = await api.register('bob', 'creator');
  ops = await api.register('ops', 'admin');
  const imvu = (await api.createImvu(alice, 'Alpha')).body.imvu as { domain: string };
  // Other people's registrations up to entry 255, then 256 commands of alice's.
  for (let i = 0; (await api.size()) < 256; i++) await api.register(`filler${i}`, 'creator');
  expect(await api.size()).toBe(256);
  for (let i = 0; i < 256; i++) {
    const r = await api.as(alice, 'POST', `/v1/zones/${imvu.domain}/records`, 'dns.record.add', { zone: imvu.domain, name: `h${i}`, type: 'A', value: `192.0.2.${i % 250}` });
    expect(r.status, r.text).toBe(201);
  }
  expect(await api.size()).toBe(512);
}, 120_000);
afterAll(async () => api.close());

describe('/tlog/checkpoint', () => {
  it('is the note /v1/ledger/checkpoint serves, as text/plain, cached for seconds only', async () => {
    const t = await raw('/tlog/checkpoint');
    const v1 = await raw('/v1/ledger/checkpoint');
    expect(t.status).toBe(200);
    expect(t.bytes.toString()).toBe(v1.bytes.toString());
    expect(t.bytes.toString().split('\n')[1]).toBe('512');
    expect(t.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(t.headers.get('cache-control')).toBe('public, max-age=5');
  });
});

describe('hash tiles: public, immutable when full', () => {
  it('a full tile: 256 leaf hashes, application/octet-stream, cached for a year', async () => {
    const r = await raw('/tlog/tile/0/001');
    expect(r.status).toBe(200);
    expect(r.bytes.length).toBe(8192);
    expect(r.headers.get('content-type')).toBe('application/octet-stream');
    expect(r.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    const proof = await api.get<{ leafHash: string }>('/v1/ledger/proof/inclusion?index=300');
    expect(r.bytes.subarray((300 - 256) * 32, (300 - 255) * 32).toString('hex')).toBe(proof.body.leafHash);
  });

  it('partial tiles: the level-1 tile of width 2, and any prefix of a tile the tree holds; cached briefly', async () => {
    const r = await raw('/tlog/tile/1/000.p/2');
    expect(r.status).toBe(200);
    expect(r.bytes.length).toBe(64);
    expect(r.headers.get('cache-control')).toBe('public, max-age=60');
    // A partial tile of an earlier checkpoint (size 300) is the prefix of the full tile it became.
    const p = await raw('/tlog/tile/0/001.p/44');
    const full = await raw('/tlog/tile/0/001');
    expect(p.status).toBe(200);
    expect(p.bytes.equals(full.bytes.subarray(0, 44 * 32))).toBe(true);
    expect((await raw('/tlog/tile/0/001', null, 'HEAD')).status).toBe(200);
  });

  it('beyond the tree: 404, not cached', async () => {
    for (const path of ['0/002', '0/002.p/1', '1/000', '1/000.p/3', '2/000.p/1', '0/x001/000', '7/000.p/1']) {
      const r = await raw(`/tlog/tile/${path}`);
      expect(r.status, path).toBe(404);
      expect(r.headers.get('cache-control'), path).toBe('no-store');
      expect(json(r).error).toMatch(/not in the tree of 512 entries/);
    }
  });

  it('malformed paths: 400 (or 404 for no route), never a 500', async () => {
    for (const path of ['/tlog/tile/00/000', '/tlog/tile/0/0', '/tlog/tile/0/x000/001', '/tlog/tile/0/000.p/256', '/tlog/tile/0/000.p/0', '/tlog/tile/64/000', '/tlog/tile/entries', '/tlog/tile/0/000.p', `/tlog/tile/0/${'x123/'.repeat(60)}000`]) {
      const r = await raw(path);
      expect(r.status, path).toBe(400);
      expect(json(r).error, path).toMatch(/not a tile path|invalid path/);
    }
    for (const path of ['/tlog/tile', '/tlog/', '/tlog/checkpoint/x']) expect((await raw(path)).status, path).toBe(404);
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 60 }), async (s) => {
        const r = await raw(`/tlog/tile/${encodeURI(s).replace(/[?#]/g, '')}`);
        expect([200, 400, 404]).toContain(r.status);
      }),
      { numRuns: 150 },
    );
  });
});

describe('entry bundles: the read rules', () => {
  it('unsigned: 401 with Accept-Signature', async () => {
    const r = await raw('/tlog/tile/entries/000');
    expect(r.status).toBe(401);
    expect(r.headers.get('accept-signature')).toMatch(/ed25519/);
  });

  it("an admin reads any bundle, privately cached; its entries hash to the level-0 tile's hashes", async () => {
    for (const n of ['000', '001']) {
      const r = await raw(`/tlog/tile/entries/${n}`, ops);
      expect(r.status).toBe(200);
      expect(r.headers.get('content-type')).toBe('application/octet-stream');
      expect(r.headers.get('cache-control')).toBe('private, max-age=31536000, immutable');
      const entries = decodeBundle(r.bytes);
      expect(entries.length).toBe(256);
      const tile = (await raw(`/tlog/tile/0/${n}`)).bytes;
      entries.forEach((e, i) => expect(leafHash(e).equals(tile.subarray(i * 32, (i + 1) * 32))).toBe(true));
    }
    const partial = await raw('/tlog/tile/entries/001.p/3', ops);
    expect(partial.status).toBe(200);
    expect(partial.headers.get('cache-control')).toBe('private, max-age=60');
    expect(decodeBundle(partial.bytes).length).toBe(3);
    expect((await raw('/tlog/tile/entries/002', ops)).status).toBe(404);
    expect((await raw('/tlog/tile/entries/000.p/999', ops)).status).toBe(400);
  });

  it('a creator reads a bundle only when it may see every entry in it; otherwise 403 pointing to /v1/ledger/entries', async () => {
    const own = await raw('/tlog/tile/entries/001', alice);
    expect(own.status).toBe(200);
    expect(decodeBundle(own.bytes).every((e) => (JSON.parse(e.toString()) as { command: { command: { actor: string } } }).command.command.actor === alice.id)).toBe(true);
    // The genesis is public to every registered identity.
    expect((await raw('/tlog/tile/entries/000.p/1', bob)).status).toBe(200);
    const mixed = await raw('/tlog/tile/entries/000', alice);
    expect(mixed.status).toBe(403);
    expect(json(mixed).error).toMatch(/GET \/v1\/ledger\/entries\?from=0&to=256/);
    const other = await raw('/tlog/tile/entries/001', bob);
    expect(other.status).toBe(403);
    expect(json(other).error).toMatch(/bob may not read 256 of the 256 entries/);
  });
});

describe('every entry fits an entry bundle', () => {
  it('a command body over 48 KiB is refused at gate 0 (its entry elided); the largest body recorded as it is still fits a bundle', async () => {
    const imvu = ((await api.get<{ imvus: { id: string }[] }>('/v1/imvus')).body.imvus[0]!).id;
    const route = (i: number, pad: number) => ({ path: `/${String(i).padStart(4, '0')}${'p'.repeat(pad)}`, backend: `web-${'b'.repeat(50)}:8080` });
    const body = (count: number, pad = 200) => ({ imvu, policy: { public: Array.from({ length: count }, (_, i) => route(i, i === 0 ? pad : 200)), private: [], restricted: [] } });
    const bodyBytes = (count: number, pad?: number) => Buffer.byteLength(JSON.stringify(body(count, pad)));
    // Near the 64 KiB HTTP limit: refused, and the refusal's entry is small.
    let count = 1;
    while (JSON.stringify(api.sign(alice, 'route.set', body(count + 1))).length <= 64 * 1024 - 20) count++;
    const big = await api.as(alice, 'PUT', `/v1/imvus/${imvu}/routes`, 'route.set', body(count));
    expect(big.status, big.text).toBe(400);
    expect(big.body.error).toMatch(/gate 0: the route\.set body is \d+ bytes; at most 49152 fit one ledger entry/);
    // Just under the cap: recorded as it is, and served in its bundle.
    count = 1;
    while (bodyBytes(count + 1) <= 48 * 1024) count++;
    let pad = 200;
    while (pad < 250 && bodyBytes(count, pad + 1) <= 48 * 1024) pad++;
    const r = await api.as(alice, 'PUT', `/v1/imvus/${imvu}/routes`, 'route.set', body(count, pad));
    expect(r.status, r.text).toBe(200);
    for (const index of [big.body.index as number, r.body.index as number]) {
      const n = Math.floor(index / 256);
      const width = (await api.size()) - n * 256;
      const bundle = await raw(`/tlog/tile/entries/${String(n).padStart(3, '0')}${width < 256 ? `.p/${width}` : ''}`, ops);
      expect(bundle.status).toBe(200);
      // Walk the bundle to the entry: each is a big-endian uint16 length and its bytes.
      let off = 0;
      for (let k = n * 256; k < index; k++) off += 2 + bundle.bytes.readUInt16BE(off);
      const len = bundle.bytes.readUInt16BE(off);
      const proof = await api.get<{ leafHash: string }>(`/v1/ledger/proof/inclusion?index=${index}`);
      const leaf = leafHash(bundle.bytes.subarray(off + 2, off + 2 + len)).toString('hex');
      expect(leaf).toBe(proof.body.leafHash);
    }
  });
});
