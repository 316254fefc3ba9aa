// Receipts from the chokepoint as the API builds them, verified with the CLI's own code: every
// receipt of random batches verifies; a receipt with any byte of its proof or checkpoint changed,
// or with another decision or time, does not.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { generateKeyPair, identityIdFromPublicKey, publicKeyRaw } from '../core/identity/keys.ts';
import { signCommand } from '../core/identity/envelope.ts';
import type { Receipt } from '../core/policy/chokepoint.ts';
import { testPlatform, type TestPlatform } from '../core/testing.ts';
import type { SignedCommand } from '../core/types.ts';
import { receiptProof, receiptView } from '../api/receipts.ts';
import { checkStoredReceipt, keptReceipts, saveReceipt, upgradeReceipts, verifyReceipt, type ReceiptPlatform } from './receipts.ts';
import { CliError } from './errors.ts';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCheckpoint, signCheckpoint, splitNote } from '../core/ledger/checkpoint.ts';
import { cosign, cosignerVerifierKey } from '../core/witness/cosignature.ts';
import { ApiError } from './client.ts';
import { Home, type WitnessPolicy } from './home.ts';

let p: TestPlatform;
let platform: ReceiptPlatform;
let n = 0;

beforeAll(async () => {
  p = await testPlatform();
  platform = { id: p.chokepoint.platformId, origin: p.config.origin, publicKey: publicKeyRaw(p.platformKey).toString('base64') };
});
afterAll(async () => p.cleanup());

/** A self-registration: allowed for a creator, denied (and recorded) for an admin, which the platform must register. */
function registration(role: 'creator' | 'admin'): SignedCommand {
  const { privateKey } = generateKeyPair();
  const raw = publicKeyRaw(privateKey);
  return signCommand(privateKey, 'identity.register', { name: `r${n++}-${identityIdFromPublicKey(raw).slice(3, 9)}`, role, publicKey: raw.toString('base64') }, { origin: p.config.origin });
}

/** What the API answers for a recorded command (src/api/routes.ts). */
function answer(r: Receipt): Record<string, unknown> {
  return { ...receiptView(r), at: r.at, receipt: receiptProof(p.chokepoint.ledger, r) };
}

function rejects(fn: () => unknown): boolean {
  try {
    fn();
    return false;
  } catch (err) {
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).code).toBe(4);
    return true;
  }
}

const batches = fc.array(fc.array(fc.constantFrom<'creator' | 'admin'>('creator', 'creator', 'admin'), { minLength: 1, maxLength: 6 }), { minLength: 1, maxLength: 3 });

describe('receipts', () => {
  it('every receipt of random concurrent batches verifies, against the checkpoint of its own batch', async () => {
    await fc.assert(
      fc.asyncProperty(batches, async (rounds) => {
        for (const roles of rounds) {
          const signed = roles.map(registration);
          const receipts = await Promise.all(signed.map((s) => p.chokepoint.submit(s)));
          receipts.forEach((r, i) => {
            expect(r.allowed).toBe(roles[i] === 'creator');
            const body = answer(r);
            const v = verifyReceipt(platform, 'http://127.0.0.1:1', signed[i]!, body);
            // The first checkpoint that includes the entry: the one saved by its batch, kept by the store.
            expect(v.checkpoint.size).toBe(r.checkpoint!.size);
            expect(v.checkpoint.size).toBeGreaterThan(r.index);
            const kept = checkStoredReceipt(JSON.parse(JSON.stringify(v.receipt)));
            expect(typeof kept).not.toBe('string');
          });
          // A batch signs one checkpoint: the receipts committed together share it.
          const sizes = new Set(receipts.map((r) => r.checkpoint!.size));
          for (const size of sizes) expect(await p.store.checkpointAt(size)).toBe(receipts.find((r) => r.checkpoint!.size === size)!.checkpoint!.note);
        }
      }),
      { numRuns: 15 },
    );
  });

  it('a receipt with any byte of its proof or checkpoint changed, or another decision, time or command, does not verify', async () => {
    const signed = [registration('creator'), registration('admin'), registration('creator')];
    const receipts = await Promise.all(signed.map((s) => p.chokepoint.submit(s)));
    const answers = receipts.map(answer);
    answers.forEach((a, i) => expect(verifyReceipt(platform, 'u', signed[i]!, a).receipt.index).toBe(receipts[i]!.index));
    await fc.assert(
      fc.property(fc.nat(2), fc.nat(), fc.integer({ min: 1, max: 255 }), fc.boolean(), (which, at, xor, inProof) => {
        const a = answers[which]!;
        const r = a.receipt as { index: number; checkpoint: string; inclusionProof: string[] };
        let changed: typeof r;
        if (inProof && r.inclusionProof.length) {
          const bytes = Buffer.concat(r.inclusionProof.map((h) => Buffer.from(h, 'hex')));
          bytes[at % bytes.length]! ^= xor;
          changed = { ...r, inclusionProof: r.inclusionProof.map((_h, k) => bytes.subarray(k * 32, k * 32 + 32).toString('hex')) };
        } else {
          const bytes = Buffer.from(r.checkpoint, 'utf8');
          bytes[at % bytes.length]! ^= xor;
          changed = { ...r, checkpoint: bytes.toString('utf8') };
        }
        expect(rejects(() => verifyReceipt(platform, 'u', signed[which]!, { ...a, receipt: changed }))).toBe(true);
      }),
      { numRuns: 500 },
    );
    const a = answers[0]!;
    // Another decision, another time, another index, another command: the proof no longer fits.
    expect(rejects(() => verifyReceipt(platform, 'u', signed[0]!, { ...a, allowed: false }))).toBe(true);
    expect(rejects(() => verifyReceipt(platform, 'u', signed[0]!, { ...a, at: new Date(0).toISOString() }))).toBe(true);
    expect(rejects(() => verifyReceipt(platform, 'u', signed[2]!, a))).toBe(true);
    expect(rejects(() => verifyReceipt(platform, 'u', signed[0]!, { ...a, receipt: undefined }))).toBe(true);
    // Signed by another key than the pinned one.
    const other = { ...platform, publicKey: publicKeyRaw(generateKeyPair().privateKey).toString('base64') };
    expect(rejects(() => verifyReceipt(other, 'u', signed[0]!, a))).toBe(true);
  });

  it('a kept receipt whose entry, leaf or proof was edited does not check on its own', async () => {
    const s = registration('creator');
    const r = await p.chokepoint.submit(s);
    const kept = verifyReceipt(platform, 'u', s, answer(r)).receipt;
    const copy = () => JSON.parse(JSON.stringify(kept)) as typeof kept;
    expect(typeof checkStoredReceipt(copy())).toBe('object');
    const edited = copy();
    edited.entry.decision.allowed = false;
    expect(checkStoredReceipt(edited)).toBe('its entry does not hash to its leaf hash');
    const moved = copy();
    moved.index += 1;
    expect(checkStoredReceipt(moved)).toMatch(/its entry is not entry/);
    const proof = copy();
    proof.inclusionProof = proof.inclusionProof.slice(1);
    expect(checkStoredReceipt(proof)).toMatch(/inclusion proof does not show the entry/);
  });
});

describe('receipt upgrade (hostile daemon answers)', () => {
  const witness = (name: string) => {
    const { privateKey } = generateKeyPair();
    return { name, key: privateKey, vkey: cosignerVerifierKey(name, publicKeyRaw(privateKey)) };
  };
  const w1 = witness('w1.example');
  const w3 = witness('w3.example');
  const now = 1_700_000_000;

  /** Two receipts of one batch, kept in a fresh NEXUS_HOME; a fake daemon that serves `serve(note)` for any size. */
  async function setUp(serve: (note: string) => string | Error) {
    const dir = mkdtempSync(join(tmpdir(), 'nexus-upgrade-'));
    const home = new Home(dir);
    const signed = [registration('creator'), registration('creator')];
    const receipts = await Promise.all(signed.map((s) => p.chokepoint.submit(s)));
    const files = receipts.map((r, i) => saveReceipt(home, verifyReceipt(platform, 'u', signed[i]!, answer(r)).receipt));
    const note = (JSON.parse(readFileSync(files[0]!, 'utf8')) as { checkpoint: string }).checkpoint;
    const asked: string[] = [];
    const client = {
      getText: async (path: string) => {
        asked.push(path);
        const r = serve(note);
        if (r instanceof Error) throw r;
        return r;
      },
    };
    const read = () => files.map((f) => (JSON.parse(readFileSync(f, 'utf8')) as { checkpoint: string }).checkpoint);
    return { dir, home, files, note, asked, client, read, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  }
  const text = (note: string) => splitNote(note).text;
  const policy = (require: number, ...ws: { name: string; vkey: string }[]): WitnessPolicy => ({ require, witnesses: ws.map((w) => ({ name: w.name, vkey: w.vkey, addedAt: '' })) });

  it('keeps only the cosignatures of the policy, asks once per size, and not again once cosigned', async () => {
    const forged = (note: string) => {
      const real = cosign(text(note), w1.name, w1.key, now);
      const raw = Buffer.from(real.split(' ')[2]!, 'base64');
      raw[raw.length - 1]! ^= 1;
      return `\u2014 ${w1.name} ${raw.toString('base64')}`;
    };
    const t = await setUp((note) => note + [forged(note), cosign(text(note), w3.name, w3.key, now), cosign(text(note), w1.name, w1.key, now)].map((l) => `${l}\n`).join(''));
    try {
      const up = await upgradeReceipts(t.client, t.home, platform.id, policy(1, w1));
      expect(t.asked).toHaveLength(1);
      expect(up.map((u) => u.added)).toEqual([1, 1]);
      for (const cp of t.read()) {
        const lines = splitNote(cp).sigs.map((s) => s.line);
        expect(lines).toEqual([splitNote(t.note).sigs[0]!.line, cosign(text(t.note), w1.name, w1.key, now)]);
      }
      expect(keptReceipts(t.home, platform.id).every((k) => k.verified)).toBe(true);
      expect(await upgradeReceipts(t.client, t.home, platform.id, policy(1, w1))).toEqual([]);
      expect(t.asked).toHaveLength(1);
    } finally {
      t.cleanup();
    }
  });

  it('with no policy keeps every well-formed cosignature line, and nothing malformed', async () => {
    const short = `\u2014 w9.example ${randomBytes(20).toString('base64')}`;
    const t = await setUp((note) => note + [short, cosign(text(note), w3.name, w3.key, now)].map((l) => `${l}\n`).join(''));
    try {
      const up = await upgradeReceipts(t.client, t.home, platform.id, policy(0));
      expect(up[0]).toMatchObject({ added: 1, cosignatures: { verified: [], unverified: 1 } });
      expect(splitNote(t.read()[0]!).sigs.map((s) => s.name)).toEqual([platform.origin, w3.name]);
    } finally {
      t.cleanup();
    }
  });

  it('refuses another checkpoint served at the same size, and leaves the receipt as it was when the daemon refuses', async () => {
    const other = (note: string) => {
      const cp = parseCheckpoint(text(note));
      const forked = signCheckpoint({ ...cp, rootHash: randomBytes(32) }, platform.origin, p.platformKey);
      return forked + `${cosign(text(forked), w1.name, w1.key, now)}\n`;
    };
    const t = await setUp(other);
    try {
      const before = t.read();
      const up = await upgradeReceipts(t.client, t.home, platform.id, policy(1, w1));
      expect(up.map((u) => [u.added, u.skipped])).toEqual([
        [0, 'the daemon serves another checkpoint text at that tree size'],
        [0, 'the daemon serves another checkpoint text at that tree size'],
      ]);
      expect(t.read()).toEqual(before);
    } finally {
      t.cleanup();
    }
    const gone = await setUp(() => new ApiError('not found', 1, 404, { error: 'no checkpoint saved at that size' }));
    try {
      const before = gone.read();
      const up = await upgradeReceipts(gone.client, gone.home, platform.id, policy(1, w1));
      expect(up.every((u) => u.added === 0 && /did not serve its checkpoint/.test(u.skipped ?? ''))).toBe(true);
      expect(gone.read()).toEqual(before);
    } finally {
      gone.cleanup();
    }
  });
});
