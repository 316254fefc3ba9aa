// The daemon's cosignature collector against a real witness (in process, real sockets) behind a
// forwarding proxy that counts and can hold requests: a burst of checkpoints costs one request for
// the newest, a lost cosignature file is recovered through the witness's 409, and a refusal is
// reported with the witness's status and answer.
import { afterAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPair, publicKeyRaw } from '../identity/keys.ts';
import { verifierKey } from '../ledger/checkpoint.ts';
import { testPlatform, type TestPlatform } from '../testing.ts';
import { CosignatureCollector } from './collector.ts';
import { verifyCosignature } from './cosignature.ts';
import { startWitnessServer, type RunningWitness } from './server.ts';
import { initWitness, WitnessStore } from './state.ts';

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
});

let grown = 0;
async function grow(p: TestPlatform, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await p.chokepoint.submit(
      p.chokepoint.platformCommand('identity.register', { name: `svc-c${grown++}`, role: 'service', publicKey: publicKeyRaw(generateKeyPair().privateKey).toString('base64') }),
    );
    expect(r.allowed).toBe(true);
  }
}

async function witnessFor(p: TestPlatform, name: string, follow = true): Promise<RunningWitness> {
  const dir = join(mkdtempSync(join(tmpdir(), 'nexus-collector-')), 'w');
  cleanup.push(() => rmSync(join(dir, '..'), { recursive: true, force: true }));
  initWitness(dir, name);
  if (follow) {
    const s = WitnessStore.open(dir);
    s.addLog(p.config.origin, verifierKey(p.config.origin, publicKeyRaw(p.platformKey)));
    s.close();
  }
  const w = await startWitnessServer({ dataDir: dir, port: 0 });
  cleanup.push(() => w.close());
  return w;
}

/** Forwards to `target`, counting requests (with their old size and checkpoint size); `hold()` delays answers until `release()`. */
async function proxy(target: string) {
  const seen: { old: number; size: number }[] = [];
  let gate: Promise<void> | undefined;
  let open: (() => void) | undefined;
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const lines = body.split('\n');
      seen.push({ old: Number(lines[0]!.slice(4)), size: Number(body.split('\n\n')[1]!.split('\n')[1]) });
      await gate;
      const r = await fetch(`${target}${req.url}`, { method: 'POST', body });
      res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'text/plain' });
      res.end(await r.text());
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanup.push(() => new Promise((r) => server.close(r)));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    hold() {
      gate = new Promise((r) => (open = r));
    },
    release() {
      open?.();
      gate = undefined;
    },
  };
}

async function until<T>(f: () => T | undefined | false): Promise<T> {
  for (let i = 0; i < 600; i++) {
    const v = f();
    if (v !== undefined && v !== false) return v;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('condition not reached');
}

function collector(p: TestPlatform, dataDir: string, witnesses: { url: string; vkey: string }[]) {
  const c = new CosignatureCollector({ dataDir, witnesses, consistencyProof: (o, n) => p.chokepoint.ledger.consistencyProof(o, n), minIntervalMs: 0, backoffMs: 50 });
  const off = p.chokepoint.ledger.onCheckpoint((cp) => c.notify(cp));
  cleanup.push(async () => {
    off();
    await c.close();
  });
  return c;
}

describe('CosignatureCollector', () => {
  it('sends the newest checkpoint once per round, never one request per batch', async () => {
    const p = await testPlatform();
    cleanup.push(() => p.cleanup());
    const w = await witnessFor(p, 'collector.test/w1');
    const px = await proxy(w.url);
    const c = collector(p, p.dataDir, [{ url: px.url, vkey: w.vkey }]);
    px.hold();
    await grow(p, 1);
    await until(() => px.seen.length === 1);
    // 20 more commits, each its own checkpoint, while the first request is held.
    await grow(p, 20);
    const newest = p.chokepoint.ledger.size;
    px.release();
    await until(() => c.status()[0]!.cosignedSize === newest);
    expect(px.seen).toHaveLength(2);
    expect(px.seen[1]).toEqual({ old: px.seen[0]!.size, size: newest });
    const note = await p.chokepoint.ledger.checkpoint();
    const lines = c.cosignaturesFor(newest, p.chokepoint.ledger.root());
    expect(lines).toHaveLength(1);
    expect(verifyCosignature(note, lines[0]!, w.vkey).valid).toBe(true);
  });

  it('recovers from a lost cosignature file through the witness 409, and reports a refusal with its status', async () => {
    const p = await testPlatform();
    cleanup.push(() => p.cleanup());
    const w = await witnessFor(p, 'collector.test/w2');
    const stranger = await witnessFor(p, 'collector.test/w3', false);
    const first = collector(p, p.dataDir, [{ url: w.url, vkey: w.vkey }]);
    await grow(p, 2);
    const size = p.chokepoint.ledger.size;
    await until(() => first.status()[0]!.cosignedSize === size);
    await first.close();

    // Another collector with an empty data directory: it starts from old size 0, learns the size from the 409.
    const empty = mkdtempSync(join(tmpdir(), 'nexus-collector-data-'));
    cleanup.push(() => rmSync(empty, { recursive: true, force: true }));
    const px = await proxy(w.url);
    const sp = await proxy(stranger.url);
    const second = collector(p, empty, [
      { url: px.url, vkey: w.vkey },
      { url: sp.url, vkey: stranger.vkey },
    ]);
    await grow(p, 1);
    const newer = p.chokepoint.ledger.size;
    await until(() => second.status()[0]!.cosignedSize === newer && second.status()[1]!.lastError);
    expect(px.seen.slice(0, 2)).toEqual([
      { old: 0, size: newer },
      { old: size, size: newer },
    ]);
    const [ok, refused] = second.status();
    expect(ok).toMatchObject({ name: 'collector.test/w2', cosignedSize: newer, lastError: null, lagging: false });
    // The witness that does not follow this log: 404 with its answer, lagging, nothing cosigned.
    expect(refused).toMatchObject({ name: 'collector.test/w3', cosignedSize: 0, lagging: true, lastError: { kind: 'unknown-log', status: 404 } });
    expect(refused!.lastError!.message).toContain('does not follow this log');
    expect(second.cosignaturesFor(newer, p.chokepoint.ledger.root())).toHaveLength(1);
  });
});
