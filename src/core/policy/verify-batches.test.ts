// Signatures checked on worker threads go there a chunk at a time (a round trip per command cost
// about what the verification does), and with pipelineVerify the main thread commits what is
// checked while the workers check the rest: the decisions stay those of checking inline.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signCommand } from '../identity/envelope.ts';
import { generateKeyPair, identityIdFromPublicKey, publicKeyRaw } from '../identity/keys.ts';
import { VerifyPool } from '../identity/verify-pool.ts';
import { initDataDir } from '../platform.ts';
import { NotRecorded } from './chokepoint.ts';

afterEach(() => vi.restoreAllMocks());

async function burst(pipelineVerify: boolean): Promise<{ messages: number; items: number; decisions: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-vbatch-'));
  const q = await initDataDir(dir, {}, { parallelVerify: true, pipelineVerify });
  try {
    const { privateKey } = generateKeyPair();
    const raw = publicKeyRaw(privateKey);
    const id = identityIdFromPublicKey(raw);
    const origin = q.config.origin;
    expect((await q.chokepoint.submit(signCommand(privateKey, 'identity.register', { name: 'zed', role: 'creator', publicKey: raw.toString('base64') }, { origin }))).allowed).toBe(true);
    expect((await q.chokepoint.submit(signCommand(privateKey, 'imvu.create', { name: 'Zed', owner: id, jurisdiction: 'US-CCPA' }, { origin }))).allowed).toBe(true);
    const mallory = generateKeyPair().privateKey;
    const commands = Array.from({ length: 200 }, (_, i) => {
      const good = signCommand(privateKey, 'consent.record', { imvu: 'IMVU-001', subject: id, purpose: `p${i}`, granted: true }, { origin });
      return i % 7 === 0 ? { ...good, sig: signCommand(mallory, 'consent.record', good.command.body, { origin }).sig } : good;
    });
    const spy = vi.spyOn(VerifyPool.prototype, 'verifyMany');
    spy.mockClear();
    const receipts = await Promise.all(commands.map((c) => q.chokepoint.submit(c).catch((err: unknown) => err as NotRecorded)));
    const decisions = receipts.map((r) => (r instanceof NotRecorded ? r.why : r.allowed ? 'allowed' : 'denied'));
    const counted = { messages: spy.mock.calls.length, items: spy.mock.calls.reduce((n, [items]) => n + items.length, 0) };
    spy.mockRestore();
    return { ...counted, decisions };
  } finally {
    await q.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('verification on worker threads', () => {
  it('sends a burst of 200 signatures in chunks of 64, and decides as inline, pipelined or not', async () => {
    const want = Array.from({ length: 200 }, (_, i) => (i % 7 === 0 ? 'bad-signature' : 'allowed'));
    for (const pipelineVerify of [false, true]) {
      const r = await burst(pipelineVerify);
      expect(r.items, `pipelineVerify ${pipelineVerify}`).toBe(200);
      expect(r.messages, `pipelineVerify ${pipelineVerify}`).toBe(4);
      expect(r.decisions, `pipelineVerify ${pipelineVerify}`).toEqual(want);
    }
  }, 120_000);
});
