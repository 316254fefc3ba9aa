// The daemon's log read as C2SP tlog-tiles by a client written here from the specifications
// (c2sp.org/tlog-tiles, tlog-checkpoint, signed-note; RFC 6962 / RFC 9162 for the tree), against a
// real daemon process. The client shares no code with the server: its own tile paths, its own
// RFC 6962 hashing with node:crypto, its own checkpoint parsing and Ed25519 note verification, its
// own proof construction and verification. It trusts only the platform's public key, taken from
// the data directory the test created (as a tlog client is configured out of band).
//
// It fetches the checkpoint and tiles only; as an admin, the entry bundles too.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, createPublicKey, verify, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { initDataDir } from '../../src/core/platform.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { signRead } from '../../src/api/read-auth.ts';
import { newKey, type Actor } from '../support/api.ts';
import { spawnDaemon, type DaemonProcess } from '../support/daemon.ts';

// ---------------------------------------------------------------------------------------------
// The client

const sha256 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
};
const hashLeaf = (data: Uint8Array) => sha256(Buffer.from([0]), data);
const hashChildren = (l: Uint8Array, r: Uint8Array) => sha256(Buffer.from([1]), l, r);

/** Largest power of two strictly below n (n >= 2). */
function splitBelow(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}
const isPowerOfTwo = (n: number) => n >= 1 && 2 ** Math.round(Math.log2(n)) === n;

/** <N> as the specification writes it: 3-digit groups, "x" before all but the last. */
function indexElements(n: number): string {
  let digits = String(n);
  while (digits.length % 3 !== 0) digits = `0${digits}`;
  const groups = digits.match(/.{3}/g)!;
  return groups.map((g, i) => (i === groups.length - 1 ? g : `x${g}`)).join('/');
}

interface Checkpoint {
  origin: string;
  size: number;
  root: Buffer;
}

/** Parses and verifies a signed note carrying a checkpoint: one Ed25519 signature by `name` with `publicKey` must verify. */
function openCheckpoint(note: string, name: string, publicKey: KeyObject, publicRaw: Buffer): Checkpoint {
  const cut = note.lastIndexOf('\n\n');
  if (!note.endsWith('\n') || cut < 0) throw new Error('not a signed note');
  const text = note.slice(0, cut + 1);
  const sigLines = note.slice(cut + 2, -1).split('\n');
  const keyId = sha256(Buffer.from(name), Buffer.from([0x0a, 0x01]), publicRaw).subarray(0, 4);
  let verified = false;
  for (const line of sigLines) {
    const m = /^\u2014 (\S+) ([A-Za-z0-9+/=]+)$/.exec(line);
    if (!m) throw new Error(`malformed signature line ${JSON.stringify(line)}`);
    const blob = Buffer.from(m[2]!, 'base64');
    if (m[1] !== name || !blob.subarray(0, 4).equals(keyId)) continue; // another signer
    if (blob.length !== 68 || !verify(null, Buffer.from(text), publicKey, blob.subarray(4))) throw new Error('the log signature does not verify');
    verified = true;
  }
  if (!verified) throw new Error('no signature by the log');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3 || !/^(0|[1-9][0-9]*)$/.test(lines[1]!)) throw new Error('malformed checkpoint');
  const root = Buffer.from(lines[2]!, 'base64');
  if (root.length !== 32 || root.toString('base64') !== lines[2]) throw new Error('malformed root hash');
  return { origin: lines[0]!, size: Number(lines[1]), root };
}

/** The tree of one checkpoint, read from its tiles (fetched once each). */
class TiledTree {
  readonly fetched: string[] = [];
  private readonly tiles = new Map<string, Promise<Buffer>>();

  constructor(
    private readonly base: string,
    readonly size: number,
  ) {}

  /** The tile (level, index) as this tree holds it: full, or partial with the width its size implies. */
  tile(level: number, index: number): Promise<Buffer> {
    const count = Math.floor(this.size / 256 ** level);
    const width = Math.min(256, count - index * 256);
    if (width <= 0) throw new Error(`tile ${level}/${index} is not in a tree of ${this.size}`);
    const path = `tile/${level}/${indexElements(index)}${width < 256 ? `.p/${width}` : ''}`;
    let p = this.tiles.get(path);
    if (!p) {
      p = (async () => {
        this.fetched.push(path);
        const res = await fetch(`${this.base}/${path}`);
        if (res.status !== 200) throw new Error(`${path}: HTTP ${res.status}`);
        const body = Buffer.from(await res.arrayBuffer());
        if (body.length !== width * 32) throw new Error(`${path}: ${body.length} bytes, expected ${width * 32}`);
        return body;
      })();
      this.tiles.set(path, p);
    }
    return p;
  }

  /** Hash of the complete subtree of 2^height leaves starting at leaf k * 2^height. */
  async subtree(height: number, k: number): Promise<Buffer> {
    const level = Math.floor(height / 8);
    const within = height % 8;
    const span = 2 ** within;
    const first = k * span; // position among the level's tile hashes
    const tile = await this.tile(level, Math.floor(first / 256));
    const at = first % 256;
    let row: Buffer[] = [];
    for (let i = 0; i < span; i++) row.push(tile.subarray((at + i) * 32, (at + i + 1) * 32));
    while (row.length > 1) {
      const next: Buffer[] = [];
      for (let i = 0; i < row.length; i += 2) next.push(hashChildren(row[i]!, row[i + 1]!));
      row = next;
    }
    return row[0]!;
  }

  /** MTH(D[start:end]) (RFC 6962 2.1). */
  async mth(start: number, end: number): Promise<Buffer> {
    const n = end - start;
    if (n === 0) return sha256();
    if (isPowerOfTwo(n) && start % n === 0) return this.subtree(Math.log2(n), start / n);
    const k = splitBelow(n);
    return hashChildren(await this.mth(start, start + k), await this.mth(start + k, end));
  }

  root(): Promise<Buffer> {
    return this.mth(0, this.size);
  }

  /** RFC 9162 2.1.3.1 PATH(m, D[n]), leaf to root. */
  async inclusionProof(m: number): Promise<Buffer[]> {
    const walk = async (m: number, start: number, end: number): Promise<Buffer[]> => {
      const n = end - start;
      if (n <= 1) return [];
      const k = splitBelow(n);
      return m - start < k ? [...(await walk(m, start, start + k)), await this.mth(start + k, end)] : [...(await walk(m, start + k, end)), await this.mth(start, start + k)];
    };
    return walk(m, 0, this.size);
  }

  /** RFC 9162 2.1.4.1 PROOF(m, D[n]). */
  async consistencyProof(m: number): Promise<Buffer[]> {
    const sub = async (m: number, start: number, end: number, b: boolean): Promise<Buffer[]> => {
      const n = end - start;
      if (m === n) return b ? [] : [await this.mth(start, end)];
      const k = splitBelow(n);
      return m <= k ? [...(await sub(m, start, start + k, b)), await this.mth(start + k, end)] : [...(await sub(m - k, start + k, end, false)), await this.mth(start, start + k)];
    };
    return m === 0 || m === this.size ? [] : sub(m, 0, this.size, true);
  }
}

/** RFC 9162 2.1.3.2. */
function verifyInclusion(leaf: Buffer, index: number, size: number, proof: Buffer[], root: Buffer): boolean {
  if (index >= size) return false;
  let fn = index;
  let sn = size - 1;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      r = hashChildren(p, r);
      if (fn % 2 === 0) while (fn % 2 === 0 && fn !== 0) [fn, sn] = [fn / 2, Math.floor(sn / 2)];
    } else r = hashChildren(r, p);
    [fn, sn] = [Math.floor(fn / 2), Math.floor(sn / 2)];
  }
  return sn === 0 && r.equals(root);
}

/** RFC 9162 2.1.4.2 (0 < first < second). */
function verifyConsistency(first: number, second: number, firstRoot: Buffer, secondRoot: Buffer, proof: Buffer[]): boolean {
  if (!(0 < first && first < second) || proof.length === 0) return false;
  const path = isPowerOfTwo(first) ? [firstRoot, ...proof] : [...proof];
  let fn = first - 1;
  let sn = second - 1;
  while (fn % 2 === 1) [fn, sn] = [Math.floor(fn / 2), Math.floor(sn / 2)];
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = hashChildren(c, fr);
      sr = hashChildren(c, sr);
      if (fn % 2 === 0) while (fn % 2 === 0 && fn !== 0) [fn, sn] = [fn / 2, Math.floor(sn / 2)];
    } else sr = hashChildren(sr, c);
    [fn, sn] = [Math.floor(fn / 2), Math.floor(sn / 2)];
  }
  return sn === 0 && fr.equals(firstRoot) && sr.equals(secondRoot);
}

/** An entry bundle: big-endian uint16 length, then the entry. */
function splitBundle(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < b.length; ) {
    if (at + 2 > b.length) throw new Error('truncated bundle');
    const len = b.readUInt16BE(at);
    if (at + 2 + len > b.length) throw new Error('truncated bundle');
    out.push(b.subarray(at + 2, at + 2 + len));
    at += 2 + len;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The daemon

let dir: string;
let daemon: DaemonProcess;
let origin: string;
let logKey: KeyObject;
let logKeyRaw: Buffer;
let platform: Actor;
let ops: Actor;
let base: string;
let first: Checkpoint;
let current: Checkpoint;

async function post(body: unknown): Promise<number> {
  const res = await fetch(`${daemon.url}/v1/identities`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  await res.arrayBuffer();
  return res.status;
}

/** Registers `n` creators (one entry each), a few at a time. */
async function grow(n: number, tag: string): Promise<void> {
  for (let i = 0; i < n; i += 20) {
    const statuses = await Promise.all(
      Array.from({ length: Math.min(20, n - i) }, (_, j) => {
        const k = newKey();
        return post(signCommand(k.key, 'identity.register', { name: `${tag}${i + j}`, role: 'creator', publicKey: k.publicKey }, { origin }));
      }),
    );
    expect(statuses.every((s) => s === 201)).toBe(true);
  }
}

async function checkpoint(): Promise<Checkpoint> {
  const res = await fetch(`${base}/checkpoint`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
  const c = openCheckpoint(await res.text(), origin, logKey, logKeyRaw);
  expect(c.origin).toBe(origin);
  return c;
}

async function adminGet(path: string): Promise<Response> {
  return fetch(path, { headers: { ...signRead(ops.key, ops.id, 'GET', path) } });
}

describe('the log as C2SP tlog-tiles, read by an independent client', { timeout: 240_000 }, () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nexus-tiles-'));
    const init = await initDataDir(dir);
    origin = init.config.origin;
    logKey = createPublicKey(init.platformKey);
    logKeyRaw = Buffer.from(logKey.export({ format: 'jwk' }).x!, 'base64url');
    platform = { name: 'platform', id: init.platformId, key: init.platformKey };
    await init.close();
    daemon = await spawnDaemon(dir, ['--no-dns']);
    base = `${daemon.url}/tlog`;
    const k = newKey();
    expect(await post(signCommand(platform.key, 'identity.register', { name: 'ops', role: 'admin', publicKey: k.publicKey }, { origin }))).toBe(201);
    ops = { name: 'ops', id: k.id, key: k.key };
    await grow(300, 'early');
    first = await checkpoint();
    await grow(460, 'late');
    current = await checkpoint();
  }, 200_000);

  afterAll(async () => {
    await daemon?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the checkpoint verifies, and its root is recomputed from the tiles alone', async () => {
    expect(first.size).toBeGreaterThan(256);
    expect(current.size).toBeGreaterThan(512);
    const tree = new TiledTree(base, current.size);
    expect((await tree.root()).equals(current.root)).toBe(true);
    // The root needs two tiles: the partial level-1 tile (one hash per full level-0 tile) and the
    // partial level-0 tile (no level 2 below 65,536 entries).
    const w0 = current.size % 256;
    const w1 = Math.floor(current.size / 256);
    expect(new Set(tree.fetched)).toEqual(new Set([`tile/1/000.p/${w1}`, ...(w0 ? [`tile/0/${indexElements(w1)}.p/${w0}`] : [])]));
    // Each level-1 hash is the Merkle tree hash of a full level-0 tile.
    const level1 = await tree.tile(1, 0);
    for (let n = 0; n < w1; n++) {
      const full = await tree.tile(0, n);
      let row = Array.from({ length: 256 }, (_, i) => full.subarray(i * 32, (i + 1) * 32));
      while (row.length > 1) row = Array.from({ length: row.length / 2 }, (_, i) => hashChildren(row[2 * i]!, row[2 * i + 1]!));
      expect(row[0]!.equals(level1.subarray(n * 32, (n + 1) * 32)), `level-1 hash ${n}`).toBe(true);
    }
    // A client that is served one wrong hash computes another root.
    const lying = new TiledTree(base, current.size);
    const tile = Buffer.from(await lying.tile(1, 0));
    tile[33]! ^= 1;
    (lying as unknown as { tiles: Map<string, Promise<Buffer>> }).tiles.set(`tile/1/000.p/${w1}`, Promise.resolve(tile));
    expect((await lying.root()).equals(current.root)).toBe(false);
  });

  it("an earlier checkpoint's partial tiles are still served, and give its root", async () => {
    const old = new TiledTree(base, first.size);
    expect((await old.root()).equals(first.root)).toBe(true);
    expect(old.fetched.some((p) => p.includes('.p/'))).toBe(true);
  });

  it('inclusion proofs built from tiles verify for entries taken from the entry bundles', async () => {
    const tree = new TiledTree(base, current.size);
    for (const index of [0, 1, 255, 256, 300, first.size - 1, current.size - 1]) {
      const bundle = Math.floor(index / 256);
      const width = Math.min(256, current.size - bundle * 256);
      const res = await adminGet(`${base}/tile/entries/${indexElements(bundle)}${width < 256 ? `.p/${width}` : ''}`);
      expect(res.status, `bundle ${bundle}`).toBe(200);
      const entry = splitBundle(Buffer.from(await res.arrayBuffer()))[index % 256]!;
      expect(JSON.parse(entry.toString('utf8')).index).toBe(index);
      const proof = await tree.inclusionProof(index);
      expect(verifyInclusion(hashLeaf(entry), index, current.size, proof, current.root), `entry ${index}`).toBe(true);
      expect(verifyInclusion(hashLeaf(Buffer.concat([entry, Buffer.from(' ')])), index, current.size, proof, current.root)).toBe(false);
    }
  });

  it('a consistency proof built from tiles links the earlier checkpoint to the current one', async () => {
    const tree = new TiledTree(base, current.size);
    const proof = await tree.consistencyProof(first.size);
    expect(verifyConsistency(first.size, current.size, first.root, current.root, proof)).toBe(true);
    const other = Buffer.from(first.root);
    other[0]! ^= 1;
    expect(verifyConsistency(first.size, current.size, other, current.root, proof)).toBe(false);
  });

  it("every entry of every bundle (as an admin) hashes to its level-0 tile's hash", async () => {
    const tree = new TiledTree(base, current.size);
    for (let n = 0; n * 256 < current.size; n++) {
      const width = Math.min(256, current.size - n * 256);
      const res = await adminGet(`${base}/tile/entries/${indexElements(n)}${width < 256 ? `.p/${width}` : ''}`);
      expect(res.status).toBe(200);
      const entries = splitBundle(Buffer.from(await res.arrayBuffer()));
      expect(entries.length).toBe(width);
      const tile = await tree.tile(0, n);
      entries.forEach((e, i) => expect(hashLeaf(e).equals(tile.subarray(i * 32, (i + 1) * 32)), `entry ${n * 256 + i}`).toBe(true));
    }
    expect((await fetch(`${base}/tile/entries/000`)).status).toBe(401);
  });
});
