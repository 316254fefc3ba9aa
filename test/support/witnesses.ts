// Witnesses for cross-system tests: each initialised and told about a platform's log in process,
// then served as its own process (`nexus witness serve`), as its operator would run it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { publicKeyRaw } from '../../src/core/identity/keys.ts';
import { verifierKey, splitNote } from '../../src/core/ledger/checkpoint.ts';
import type { OpenPlatform } from '../../src/core/platform.ts';
import { initWitness, WitnessStore } from '../../src/core/witness/state.ts';
import { spawnWitness, type WitnessProcess } from '../../src/core/witness/testing.ts';

export interface TestWitness {
  name: string;
  dir: string;
  vkey: string;
  proc: WitnessProcess;
  /** The witness's key ID (8 hex digits), as a cosigners= query names it. */
  keyId: string;
}

/** The platform's checkpoint verifier key (what `GET /v1/platform` serves as verifierKey). */
export function platformVkey(p: OpenPlatform): string {
  return verifierKey(p.config.origin, publicKeyRaw(p.platformKey));
}

/** The platform's raw Ed25519 public key (the key in a vkey is base64, which may itself hold a '+'). */
export function platformPublicKey(p: OpenPlatform): Buffer {
  return Buffer.from(publicKeyRaw(p.platformKey));
}

/** `n` witnesses named witness.test/w1..wn following the platform's log, each its own process. */
export async function startWitnesses(p: OpenPlatform, n: number, cleanup: (() => void)[]): Promise<TestWitness[]> {
  const out: TestWitness[] = [];
  for (let i = 1; i <= n; i++) {
    const root = mkdtempSync(join(tmpdir(), 'nexus-witness-'));
    cleanup.push(() => rmSync(root, { recursive: true, force: true }));
    const dir = join(root, 'w');
    const name = `witness.test/w${i}`;
    const { vkey } = initWitness(dir, name);
    const s = WitnessStore.open(dir);
    try {
      s.addLog(p.config.origin, platformVkey(p));
    } finally {
      s.close();
    }
    const proc = await spawnWitness(dir);
    cleanup.push(() => void proc.stop('SIGKILL'));
    out.push({ name, dir, vkey, proc, keyId: vkey.split('+')[1]! });
  }
  return out;
}

/** The signature lines of a note that are not the platform's (its origin's). */
export function cosignatureLines(note: string): string[] {
  const { text, sigs } = splitNote(note);
  const origin = text.split('\n')[0]!;
  return sigs.filter((s) => s.name !== origin).map((s) => s.line);
}

/** Polls `check` until it returns a value (not undefined/false), for at most `ms`; throws with `what` otherwise. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false>, ms = 30_000): Promise<T> {
  const until = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`gave up waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
