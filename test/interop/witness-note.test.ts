// The platform's checkpoint and the witnesses' cosignatures opened by golang.org/x/mod/sumdb/note
// (Debian golang-golang-x-mod-dev, built offline with golang-go). x/mod verifies the platform's
// Ed25519 note signature with its own verifier; it has no cosignature/v1 (type 0x04) verifier, so
// test/interop/go/cosigned-note/main.go gives note.Open one written from the C2SP specification,
// and note.Open does the parsing and the key name + key ID matching of every signature line.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { publicKeyRaw } from '../../src/core/identity/keys.ts';
import { verifierKey } from '../../src/core/ledger/checkpoint.ts';
import { testPlatform, type TestPlatform } from '../../src/core/testing.ts';
import { requestCosignature } from '../../src/core/witness/client.ts';
import { initWitness, WitnessStore } from '../../src/core/witness/state.ts';
import { spawnWitness, type WitnessProcess } from '../../src/core/witness/testing.ts';

const run = promisify(execFile);
const X_MOD = '/usr/share/gocode/src/golang.org/x/mod';
const hasGo = !spawnSync('go', ['version']).error && existsSync(join(X_MOD, 'sumdb', 'note', 'note.go'));
if (!hasGo) console.warn('witness interop: go or golang.org/x/mod not found (apt-get install golang-go golang-golang-x-mod-dev); skipping');

const SOURCE = fileURLToPath(new URL('./go/cosigned-note/main.go', import.meta.url));

interface Opened {
  ok: boolean;
  error?: string;
  text?: string;
  verified?: { name: string; keyHash: string }[];
  unverified?: { name: string; keyHash: string }[];
}

describe.skipIf(!hasGo)('cosigned checkpoints opened by golang.org/x/mod/sumdb/note', { timeout: 240_000 }, () => {
  let work: string;
  let prog: string;
  let t: TestPlatform;
  const witnesses: { dir: string; proc: WitnessProcess; vkey: string }[] = [];
  let logVkey: string;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'nexus-go-note-'));
    // Offline build against the Debian source of x/mod; the build cache outlives the run.
    const src = join(work, 'src');
    mkdirSync(src);
    copyFileSync(SOURCE, join(src, 'main.go'));
    writeFileSync(join(src, 'go.mod'), `module nexus.test/cosignednote\n\ngo 1.19\n\nrequire golang.org/x/mod v0.7.0\n\nreplace golang.org/x/mod => ${X_MOD}\n`);
    prog = join(work, 'cosigned-note');
    await run('go', ['build', '-o', prog, '.'], {
      cwd: src,
      env: { ...process.env, GOPROXY: 'off', GOFLAGS: '-mod=mod', GOPATH: join(work, 'gopath'), GOCACHE: join(tmpdir(), 'nexus-go-build-cache'), GOTOOLCHAIN: 'local', GO111MODULE: 'on' },
      timeout: 200_000,
    });

    t = await testPlatform();
    await t.register('alice', 'creator');
    logVkey = verifierKey(t.config.origin, publicKeyRaw(t.platformKey));
    for (const name of ['witness.test/go1', 'witness.test/go2']) {
      const dir = join(work, name.replace('/', '-'));
      const { vkey } = initWitness(dir, name);
      const s = WitnessStore.open(dir);
      s.addLog(t.config.origin, logVkey);
      s.close();
      witnesses.push({ dir, vkey, proc: await spawnWitness(dir) });
    }
  }, 240_000);

  afterAll(async () => {
    for (const w of witnesses) await w.proc.stop();
    await t?.cleanup();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  async function open(note: string, logVkeys: string[], witnessVkeys: string[]): Promise<Opened> {
    const file = join(work, `in-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(file, JSON.stringify({ note, logVkeys, witnessVkeys }));
    const { stdout } = await run(prog, [file], { timeout: 60_000 });
    return JSON.parse(stdout) as Opened;
  }

  /** The log grows by one entry; both witnesses cosign its new checkpoint (from the size each cosigned last). */
  const cosignedSize = new Map<string, number>();
  async function cosignedNote(): Promise<{ note: string; lines: string[] }> {
    await t.register(`creator-${cosignedSize.size}-${Date.now()}`, 'creator');
    const note = await t.chokepoint.ledger.checkpoint();
    const size = t.chokepoint.ledger.size;
    const lines: string[] = [];
    for (const w of witnesses) {
      const old = cosignedSize.get(w.vkey) ?? 0;
      const r = await requestCosignature(w.proc.url, note, old, old ? t.chokepoint.ledger.consistencyProof(old, size) : [], { witnessVkey: w.vkey });
      if (!r.ok) throw new Error(`${w.vkey}: ${r.kind} ${r.message}`);
      cosignedSize.set(w.vkey, size);
      lines.push(...r.cosignatures);
    }
    return { note: note + lines.map((l) => `${l}\n`).join(''), lines };
  }

  it("verifies the platform's signature with x/mod's own Ed25519 verifier", async () => {
    const note = await t.chokepoint.ledger.checkpoint();
    const r = await open(note, [logVkey], []);
    expect(r).toMatchObject({ ok: true, verified: [{ name: t.config.origin, keyHash: logVkey.split('+')[1] }] });
    expect(r.text).toBe(note.slice(0, note.indexOf('\n\n') + 1));
    // A signature moved to another tree size does not verify.
    const lines = note.split('\n');
    lines[1] = String(Number(lines[1]) + 1);
    expect((await open(lines.join('\n'), [logVkey], [])).error).toMatch(/invalid signature/);
  });

  it("verifies both witnesses' cosignatures and the platform's signature on one note", async () => {
    const { note, lines } = await cosignedNote();
    const all = await open(note, [logVkey], witnesses.map((w) => w.vkey));
    expect(all.ok, all.error).toBe(true);
    expect(all.verified).toEqual([
      { name: t.config.origin, keyHash: logVkey.split('+')[1] },
      ...witnesses.map((w) => ({ name: w.vkey.split('+')[0], keyHash: w.vkey.split('+')[1] })),
    ]);
    // A client that trusts only the first witness: its cosignature alone opens the note, the rest are unknown keys.
    const one = await open(note, [], [witnesses[0]!.vkey]);
    expect(one).toMatchObject({ ok: true, verified: [{ name: 'witness.test/go1' }] });
    expect(one.unverified).toHaveLength(2);

    // One bit of the first cosignature's timestamp changed: note.Open rejects the note.
    const raw = Buffer.from(lines[0]!.split(' ')[2]!, 'base64');
    raw[11]! ^= 0x01;
    const tampered = note.replace(lines[0]!, `${lines[0]!.split(' ').slice(0, 2).join(' ')} ${raw.toString('base64')}`);
    expect((await open(tampered, [logVkey], witnesses.map((w) => w.vkey))).error).toBe(`invalid signature for key ${witnesses[0]!.vkey.split('+').slice(0, 2).join('+')}`);
  });

  it('x/mod itself does not know cosignature/v1 keys (type 0x04)', async () => {
    const { note } = await cosignedNote();
    expect((await open(note, [witnesses[0]!.vkey], [])).error).toMatch(/unknown verifier algorithm/);
  });
});
