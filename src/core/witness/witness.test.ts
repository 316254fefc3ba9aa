// The witness as a separate process over real sockets, fed checkpoints and consistency proofs of
// real ledgers: it cosigns growth, and refuses wrong old sizes (409), forged proofs (422), a
// rewritten history signed with the same platform key, checkpoints not signed by the log's key
// (403) and logs it does not follow (404) — also after kill -9 and restart, and under racing requests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createHash } from 'node:crypto';
import { generateKeyPair, publicKeyRaw } from '../identity/keys.ts';
import { openCheckpoint, parseVerifierKey, signCheckpoint, verifierKey } from '../ledger/checkpoint.ts';
import { openDataDir, type OpenPlatform } from '../platform.ts';
import { testPlatform, type TestPlatform } from '../testing.ts';
import { requestCosignature, verifyCosignature, type CosignatureResult } from './client.ts';
import { formatAddCheckpointRequest } from './request.ts';
import { initWitness, WitnessStore, type LogStatus } from './state.ts';
import { initWitnessDir, nexus, spawnWitness, type WitnessProcess } from './testing.ts';

const cleanup: (() => Promise<unknown> | unknown)[] = [];
afterAll(async () => {
  for (const f of cleanup.reverse()) await f();
});

interface Seen {
  note: string;
  size: number;
}

function platformVkey(p: OpenPlatform): string {
  return verifierKey(p.config.origin, publicKeyRaw(p.platformKey));
}

async function latest(p: OpenPlatform): Promise<Seen> {
  const note = await p.chokepoint.ledger.checkpoint();
  return { note, size: p.chokepoint.ledger.size };
}

let grown = 0;
/** `n` new entries through the chokepoint (the platform registers service identities). */
async function grow(p: OpenPlatform, n: number): Promise<Seen> {
  for (let i = 0; i < n; i++) {
    const r = await p.chokepoint.submit(
      p.chokepoint.platformCommand('identity.register', { name: `svc-${process.pid}-${grown++}`, role: 'service', publicKey: publicKeyRaw(generateKeyPair().privateKey).toString('base64') }),
    );
    if (!r.allowed) throw new Error(`growth refused: ${JSON.stringify(r.gates)}`);
  }
  return latest(p);
}

/** What `nexus witness add-log` does, in process (the CLI path itself is tested once, below). */
function addLog(dir: string, p: OpenPlatform): void {
  const s = WitnessStore.open(dir);
  try {
    s.addLog(p.config.origin, platformVkey(p));
  } finally {
    s.close();
  }
}

/** The witness's state as `nexus witness show --json` prints it, read in process. */
function state(dir: string): { vkey: string; logs: LogStatus[] } {
  const s = WitnessStore.open(dir);
  try {
    return { vkey: s.vkey, logs: s.logs() };
  } finally {
    s.close();
  }
}

function tmpWitnessDir(): string {
  const dir = join(mkdtempSync(join(tmpdir(), 'nexus-witness-')), 'w');
  cleanup.push(() => rmSync(dirname(dir), { recursive: true, force: true }));
  return dir;
}

/** A witness: created and told about its logs through the CLI (`viaCli`) or in process, then served as its own process. */
async function witnessProcess(name: string, follow: OpenPlatform[], viaCli = false): Promise<{ dir: string; w: WitnessProcess; vkey: string }> {
  let dir: string;
  let vkey: string;
  if (viaCli) {
    ({ dir, vkey } = await initWitnessDir(name));
    cleanup.push(() => rmSync(dirname(dir), { recursive: true, force: true }));
    for (const p of follow) {
      const r = await nexus('witness', 'add-log', '--data', dir, '--origin', p.config.origin, '--vkey', platformVkey(p));
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`Following ${p.config.origin}`);
    }
  } else {
    dir = tmpWitnessDir();
    vkey = initWitness(dir, name).vkey;
    for (const p of follow) addLog(dir, p);
  }
  const w = await spawnWitness(dir);
  cleanup.push(() => w.stop());
  expect(w.vkey).toBe(vkey);
  return { dir, w, vkey };
}

async function post(url: string, body: string | Buffer, method = 'POST', path = '/add-checkpoint'): Promise<{ status: number; type: string; text: string }> {
  const res = await fetch(`${url}${path}`, { method, ...(method === 'GET' ? {} : { body: typeof body === 'string' ? body : new Uint8Array(body) }) });
  return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
}

function cosigned(r: CosignatureResult): string {
  if (!r.ok) throw new Error(`expected a cosignature, got ${r.kind}: ${r.message}`);
  expect(r.cosignatures).toHaveLength(1);
  return r.cosignatures[0]!;
}


let t: TestPlatform;
let w1: { dir: string; w: WitnessProcess; vkey: string };
let w2: { dir: string; w: WitnessProcess; vkey: string };

// Child processes start slowly on a loaded machine: generous deadlines, no timing assertions.
const SLOW = { timeout: 240_000 };

beforeAll(async () => {
  t = await testPlatform();
  cleanup.push(() => t.cleanup());
  await t.register('alice', 'creator');
  [w1, w2] = await Promise.all([witnessProcess('witness.test/w1', [t], true), witnessProcess('witness.test/w2', [t])]);
}, 240_000);

describe('nexus witness serve (a separate process)', SLOW, () => {
  it('cosigns the first checkpoint (old 0) and then growth with a valid proof; two witnesses with their own keys both cosign', async () => {
    const first = await latest(t);
    const line1 = cosigned(await requestCosignature(w1.w.url, first.note, 0, [], { witnessVkey: w1.vkey }));
    const check = verifyCosignature(first.note, line1, w1.vkey);
    expect(check).toMatchObject({ valid: true, name: 'witness.test/w1' });

    const next = await grow(t, 3);
    const proof = t.chokepoint.ledger.consistencyProof(first.size, next.size);
    expect(proof.length).toBeGreaterThan(0);
    const line2 = cosigned(await requestCosignature(w1.w.url, next.note, first.size, proof, { witnessVkey: w1.vkey }));
    const later = verifyCosignature(next.note, line2, w1.vkey);
    expect(later.valid && check.valid && later.timestamp >= check.timestamp).toBe(true);

    // The second witness has never seen this log: it starts from 0, with its own key.
    const other = cosigned(await requestCosignature(w2.w.url, next.note, 0, []));
    expect(verifyCosignature(next.note, other, w2.vkey).valid).toBe(true);
    expect(verifyCosignature(next.note, other, w1.vkey).valid).toBe(false);
    expect(verifyCosignature(next.note, line2, w2.vkey).valid).toBe(false);
    // The cosignature is over this checkpoint only.
    expect(verifyCosignature(first.note, line2, w1.vkey).valid).toBe(false);

    // Appended to the log's note, both cosignatures and the log's signature sit in one signed note.
    const cosignedNote = `${next.note}${line2}\n${other}\n`;
    expect(openCheckpoint(cosignedNote, [parseVerifierKey(platformVkey(t))], t.config.origin).checkpoint.size).toBe(next.size);

    const shown = state(w1.dir);
    expect(shown.vkey).toBe(w1.vkey);
    expect(shown.logs).toEqual([expect.objectContaining({ origin: t.config.origin, cosigned: expect.objectContaining({ size: next.size }), evidence: 0 })]);
  });

  it('answers a wrong old size with 409 and the size it cosigned (text/x.tlog.size), and re-cosigns the same checkpoint', async () => {
    const at = state(w1.dir).logs[0]!.cosigned!.size;
    const next = await grow(t, 2);
    const proofFrom0 = t.chokepoint.ledger.consistencyProof(1, next.size);
    const raw = await post(w1.w.url, formatAddCheckpointRequest({ oldSize: 1, proof: proofFrom0, note: next.note }));
    expect(raw).toEqual({ status: 409, type: 'text/x.tlog.size', text: `${at}\n` });
    const typed = await requestCosignature(w1.w.url, next.note, 0, []);
    expect(typed).toMatchObject({ ok: false, kind: 'conflict', knownSize: at });

    // With the size it learnt, the log retries and gets its cosignature.
    cosigned(await requestCosignature(w1.w.url, next.note, at, t.chokepoint.ledger.consistencyProof(at, next.size), { witnessVkey: w1.vkey }));
    // The same checkpoint again (old = size, empty proof): cosigned again.
    cosigned(await requestCosignature(w1.w.url, next.note, next.size, [], { witnessVkey: w1.vkey }));
    // An old size beyond the checkpoint's size is a bad request (400), whatever the witness's state.
    expect(await requestCosignature(w1.w.url, next.note, next.size + 1, [])).toMatchObject({ ok: false, kind: 'bad-request', message: expect.stringMatching(/larger than the checkpoint's size/) });
  });

  it('refuses a forged consistency proof with 422 and keeps its state', async () => {
    const at = state(w1.dir).logs[0]!.cosigned!.size;
    const next = await grow(t, 5);
    const proof = t.chokepoint.ledger.consistencyProof(at, next.size);
    for (const forged of [
      proof.map((h, i) => (i === proof.length - 1 ? createHash('sha256').update(h).digest() : h)),
      proof.slice(1),
      [...proof, proof[0]!],
      t.chokepoint.ledger.consistencyProof(at - 1, next.size),
    ]) {
      const r = await requestCosignature(w1.w.url, next.note, at, forged);
      expect(r).toMatchObject({ ok: false, kind: 'unprocessable' });
    }
    expect(state(w1.dir).logs[0]!.cosigned!.size).toBe(at);
    cosigned(await requestCosignature(w1.w.url, next.note, at, proof, { witnessVkey: w1.vkey }));
  });

  it('refuses a rewritten history signed with the same platform key, and keeps the evidence', async () => {
    const p = await testPlatform();
    await p.register('bob', 'creator');
    addLog(w1.dir, p); // the running witness follows it at once
    const base = await latest(p);
    cosigned(await requestCosignature(w1.w.url, base.note, 0, [], { witnessVkey: w1.vkey }));

    // The operator keeps a copy of the data directory, then lets the two copies diverge.
    await p.close();
    const forkDir = mkdtempSync(join(tmpdir(), 'nexus-fork-'));
    cpSync(p.dataDir, forkDir, { recursive: true });
    const honest = await openDataDir(p.dataDir);
    const rewritten = await openDataDir(forkDir);
    cleanup.push(async () => {
      await honest.close();
      await rewritten.close();
      rmSync(p.dataDir, { recursive: true, force: true });
      rmSync(forkDir, { recursive: true, force: true });
    });
    const seen = await grow(honest, 2);
    cosigned(await requestCosignature(w1.w.url, seen.note, base.size, honest.chokepoint.ledger.consistencyProof(base.size, seen.size), { witnessVkey: w1.vkey }));

    const fork = await grow(rewritten, 2);
    expect(fork.size).toBe(seen.size);
    // A real attack: the fork's checkpoint is validly signed by the platform, with another root.
    const forkCp = openCheckpoint(fork.note, [parseVerifierKey(platformVkey(p))], p.config.origin).checkpoint;
    expect(forkCp.rootHash.equals(openCheckpoint(seen.note, [parseVerifierKey(platformVkey(p))]).checkpoint.rootHash)).toBe(false);

    // Same size, other root: 409 (the witness is at this size already).
    const same = await post(w1.w.url, formatAddCheckpointRequest({ oldSize: seen.size, proof: [], note: fork.note }));
    expect(same).toEqual({ status: 409, type: 'text/x.tlog.size', text: `${seen.size}\n` });
    // The fork's own proof from the base (a stale old size): 409.
    expect(await requestCosignature(w1.w.url, fork.note, base.size, rewritten.chokepoint.ledger.consistencyProof(base.size, fork.size))).toMatchObject({ kind: 'conflict', knownSize: seen.size });
    // The fork grows past and proves itself from its own tree at the witness's size: 422.
    const longer = await grow(rewritten, 1);
    expect(await requestCosignature(w1.w.url, longer.note, seen.size, rewritten.chokepoint.ledger.consistencyProof(seen.size, longer.size))).toMatchObject({ kind: 'unprocessable' });

    const log = state(w1.dir).logs.find((l) => l.origin === p.config.origin)!;
    expect(log.cosigned!.size).toBe(seen.size);
    expect(log.evidence).toBe(2);
    expect(w1.w.stderr.join('')).toContain(`refused a checkpoint of ${p.config.origin} at size ${longer.size} that is inconsistent with the one cosigned at size ${seen.size}`);
    const shown = await nexus('witness', 'show', '--data', w1.dir);
    expect(shown.stdout).toContain(w1.vkey);
    expect(shown.stdout).toMatch(new RegExp(`${p.config.origin.replace(/[.]/g, '\\.')}\\s+${seen.size}\\s.*\\s2\\n`));
    expect(shown.stdout).toMatch(/signed checkpoints inconsistent with one this witness cosigned/);

    // The honest log keeps going.
    const more = await grow(honest, 1);
    cosigned(await requestCosignature(w1.w.url, more.note, seen.size, honest.chokepoint.ledger.consistencyProof(seen.size, more.size), { witnessVkey: w1.vkey }));
  });

  it('refuses a checkpoint not signed by the log key (403), a log it does not follow (404), and malformed or oversized requests', async () => {
    const cur = await latest(t);
    const at = state(w2.dir).logs[0]!.cosigned!.size;
    const proof = t.chokepoint.ledger.consistencyProof(at, cur.size);
    const { checkpoint } = openCheckpoint(cur.note, [parseVerifierKey(platformVkey(t))]);

    // Signed by another key under the platform's name: that key is unknown, so no trusted signature.
    const impostor = signCheckpoint(checkpoint, t.config.origin, generateKeyPair().privateKey);
    expect(await requestCosignature(w2.w.url, impostor, at, proof)).toMatchObject({ ok: false, kind: 'forbidden' });
    // The platform's signature moved onto another tree size.
    const lines = cur.note.split('\n');
    lines[1] = String(cur.size + 1);
    expect(await requestCosignature(w2.w.url, lines.join('\n'), at, proof)).toMatchObject({ ok: false, kind: 'forbidden' });

    // A log the witness does not follow.
    const stranger = await testPlatform();
    cleanup.push(() => stranger.cleanup());
    expect(await requestCosignature(w2.w.url, (await latest(stranger)).note, 0, [])).toMatchObject({ ok: false, kind: 'unknown-log' });

    expect(await post(w2.w.url, 'old 0\n')).toMatchObject({ status: 400 });
    expect(await post(w2.w.url, Buffer.from([0xff, 0xfe, 0x00]))).toMatchObject({ status: 400 });
    expect(await post(w2.w.url, Buffer.alloc(200 * 1024, 0x41))).toMatchObject({ status: 413 });
    // Chunked, with no length announced: cut off at the bound all the same.
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 5; i++) c.enqueue(new Uint8Array(64 * 1024).fill(0x41));
        c.close();
      },
    });
    // The witness answers 413 and closes; a client still writing may see the reset first. Either way
    // nothing past the bound is read.
    const chunked = await fetch(`${w2.w.url}/add-checkpoint`, { method: 'POST', body: stream, duplex: 'half' } as RequestInit).then(
      (r) => r.status,
      (err: unknown) => String((err as { cause?: { code?: string } }).cause?.code ?? err),
    );
    expect(['413', 'ECONNRESET', 'EPIPE']).toContain(String(chunked));
    expect(await post(w2.w.url, '', 'GET')).toMatchObject({ status: 405 });
    expect(await post(w2.w.url, 'x', 'POST', '/other')).toMatchObject({ status: 404 });
    // None of that moved the witness.
    expect(state(w2.dir).logs[0]!.cosigned!.size).toBe(at);
    expect(state(w2.dir).logs[0]!.evidence).toBe(0);
  });

  it('cosigns exactly one of many racing requests from the same old size', async () => {
    const at = state(w2.dir).logs[0]!.cosigned!.size;
    const cur = await latest(t);
    cosigned(await requestCosignature(w2.w.url, cur.note, at, t.chokepoint.ledger.consistencyProof(at, cur.size)));
    const candidates: Seen[] = [];
    for (let i = 0; i < 8; i++) candidates.push(await grow(t, 1));
    const results = await Promise.all(candidates.map((c) => requestCosignature(w2.w.url, c.note, cur.size, t.chokepoint.ledger.consistencyProof(cur.size, c.size))));
    const won = results.flatMap((r, i) => (r.ok ? [candidates[i]!] : []));
    expect(won).toHaveLength(1);
    for (const r of results) if (!r.ok) expect(r).toMatchObject({ kind: 'conflict', knownSize: won[0]!.size });
    expect(state(w2.dir).logs[0]!.cosigned!.size).toBe(won[0]!.size);
  });

  it('keeps its state across kill -9 right after a 200, and still refuses what is inconsistent with it', async () => {
    const w3 = await witnessProcess('witness.test/w3', [t]);
    const cur = await latest(t);
    const line = cosigned(await requestCosignature(w3.w.url, cur.note, 0, [], { witnessVkey: w3.vkey }));
    expect((await w3.w.stop('SIGKILL')).signal).toBe('SIGKILL');

    const again = await spawnWitness(w3.dir);
    cleanup.push(() => again.stop());
    expect(again.vkey).toBe(w3.vkey);
    expect(await requestCosignature(again.url, cur.note, 0, [])).toMatchObject({ kind: 'conflict', knownSize: cur.size });
    // The platform's key signs another root at the size the witness cosigned: refused.
    const other = t.chokepoint.ledger.signCheckpoint(cur.size, createHash('sha256').update('another history').digest());
    expect(await requestCosignature(again.url, other, cur.size, [])).toMatchObject({ kind: 'conflict', knownSize: cur.size });
    const next = await grow(t, 2);
    const proof = t.chokepoint.ledger.consistencyProof(cur.size, next.size);
    expect(await requestCosignature(again.url, next.note, cur.size, proof.slice(0, -1))).toMatchObject({ kind: 'unprocessable' });
    const line2 = cosigned(await requestCosignature(again.url, next.note, cur.size, proof, { witnessVkey: w3.vkey }));
    const [a, b] = [verifyCosignature(cur.note, line, w3.vkey), verifyCosignature(next.note, line2, w3.vkey)];
    expect(a.valid && b.valid && b.timestamp >= a.timestamp).toBe(true);
    // A graceful stop exits 0.
    expect(await again.stop()).toEqual({ code: 0, signal: null });
  });

  it('reports an unreachable witness as a typed refusal', async () => {
    const w4 = await witnessProcess('witness.test/w4', [t]);
    const { url } = w4.w;
    await w4.w.stop();
    expect(await requestCosignature(url, (await latest(t)).note, 0, [], { timeoutMs: 2000 })).toMatchObject({ ok: false, kind: 'unreachable', message: expect.stringMatching(/connection refused/) });
  });
});

describe('nexus witness init / add-log / show / serve refusals', SLOW, () => {
  it('refuses to init twice, a bad name, a log key that is not one, a directory without a witness, and a witness whose state is lost', async () => {
    const nowhere = tmpWitnessDir();
    const lost = tmpWitnessDir();
    initWitness(lost, 'witness.test/lost');
    rmSync(join(lost, 'witness.db'));
    const [again, badName, badKey, twice, json, serve, serveLost, help] = await Promise.all([
      nexus('witness', 'init', '--data', w1.dir, '--name', 'x'),
      nexus('witness', 'init', '--data', tmpWitnessDir(), '--name', 'has space'),
      nexus('witness', 'add-log', '--data', w1.dir, '--origin', t.config.origin, '--vkey', w1.vkey),
      nexus('witness', 'add-log', '--data', w1.dir, '--origin', t.config.origin, '--vkey', platformVkey(t)),
      nexus('witness', 'show', '--data', w1.dir, '--json'),
      nexus('witness', 'serve', '--data', nowhere, '--port', '0'),
      nexus('witness', 'serve', '--data', lost, '--port', '0'),
      nexus('witness', 'serve', '--help'),
    ]);
    expect([again.code, again.stderr]).toEqual([2, expect.stringMatching(/already holds a witness key/)]);
    expect([badName.code, badName.stderr]).toEqual([2, expect.stringMatching(/invalid witness name/)]);
    expect([badKey.code, badKey.stderr]).toEqual([2, expect.stringMatching(/not a log verifier key/)]);
    expect([twice.code, twice.stdout]).toEqual([0, expect.stringMatching(/Already following/)]);
    expect(JSON.parse(json.stdout)).toMatchObject({ name: 'witness.test/w1', vkey: w1.vkey, logs: expect.arrayContaining([expect.objectContaining({ origin: t.config.origin })]) });
    expect([serve.code, serve.stderr]).toEqual([2, expect.stringMatching(/is not a witness data directory; run `nexus witness init/)]);
    // Without its state a witness could cosign a fork of what it vouched for: it refuses to start.
    expect([serveLost.code, serveLost.stderr]).toEqual([2, expect.stringMatching(/state is lost, and it must not cosign again with this key/)]);
    expect([help.code, help.stdout]).toEqual([0, expect.stringMatching(/--data <dir>/)]);
  });
});
