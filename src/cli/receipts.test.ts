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
import { checkStoredReceipt, verifyReceipt, type ReceiptPlatform } from './receipts.ts';
import { CliError } from './errors.ts';

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
