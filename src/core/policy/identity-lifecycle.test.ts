import { afterEach, describe, expect, it } from 'vitest';
import { generateKeyPair, publicKeyRaw } from '../identity/keys.ts';
import { signRotationProof } from '../identity/rotation.ts';
import { NotRecorded } from './chokepoint.ts';
import { verifyStore } from './verify.ts';
import { deniedBy, testPlatform, type Actor, type TestPlatform } from '../testing.ts';

// Identity lifecycle: a rotation is signed by the current key AND proven by the new one; the id
// stays; the old key stops at once; the verifier accepts each entry under the key current then.
// A revocation is final: the key signs nothing more (refused, not recorded).

let p: TestPlatform | undefined;
afterEach(async () => {
  await p?.cleanup();
  p = undefined;
});

const b64 = (k: Actor['key']) => publicKeyRaw(k).toString('base64');

async function rotate(t: TestPlatform, who: Actor, opts: { proveWith?: Actor['key']; origin?: string } = {}) {
  const { privateKey } = generateKeyPair();
  const claim = { origin: opts.origin ?? t.config.origin, identity: who.id, from: b64(who.key), to: b64(privateKey) };
  const proof = signRotationProof(opts.proveWith ?? privateKey, claim);
  const r = await t.as(who, 'identity.rotate', { identity: who.id, publicKey: claim.to, proof }, { actor: who.id });
  return { r, next: { ...who, key: privateKey } };
}

const refusal = (e: unknown) => (e instanceof NotRecorded ? e.why : `not refused: ${String(e)}`);

describe('identity.rotate', () => {
  it('keeps the id, switches the key at once, and replays clean', async () => {
    p = await testPlatform();
    const alice = await p.register('alice', 'creator');
    expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    const { r, next } = await rotate(p, alice);
    expect(r.allowed).toBe(true);
    const row = await p.store.get<{ public_key: string }>('SELECT public_key FROM identities WHERE id = ?', [alice.id]);
    expect(row?.public_key).toBe(b64(next.key));
    // The old key: refused, not recorded, and the refusal says the key was rotated.
    const size = p.chokepoint.ledger.size;
    const old = await p.as(alice, 'imvu.scale', { imvu: 'IMVU-001', cpu_cores: 3 }).catch((e: unknown) => e);
    expect(refusal(old)).toBe('bad-signature');
    expect((old as Error).message).toMatch(/rotated at ledger entry/);
    expect(p.chokepoint.ledger.size).toBe(size);
    // The new key acts for the same identity (its id is not the hash of the new key).
    expect((await p.as(next, 'imvu.scale', { imvu: 'IMVU-001', cpu_cores: 3 }, { actor: alice.id })).allowed).toBe(true);
    // Entries signed before the rotation verify under the key current then; after, under the new one.
    expect((await verifyStore(p.store)).problems).toEqual([]);
    // Twice in a row: the chain of keys replays too, and no key is ever reused.
    const again = await rotate(p, next);
    expect(again.r.allowed).toBe(true);
    expect((await verifyStore(p.store)).problems).toEqual([]);
  });

  it('needs the proof of the new key, for this platform', async () => {
    p = await testPlatform();
    const alice = await p.register('alice', 'creator');
    const stranger = generateKeyPair().privateKey;
    expect(deniedBy((await rotate(p, alice, { proveWith: stranger })).r)).toEqual([1]);
    expect(deniedBy((await rotate(p, alice, { origin: 'other.example/log' })).r)).toEqual([1]);
    // alice's key still works: nothing changed.
    expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
  });

  it("refuses another identity's key, a retired key, and rotating someone else", async () => {
    p = await testPlatform();
    const alice = await p.register('alice', 'creator');
    const bob = await p.register('bob', 'creator');
    // to bob's key: bob holds that key, so the proof is valid, but the key is taken
    const claim = { origin: p.config.origin, identity: alice.id, from: b64(alice.key), to: b64(bob.key) };
    const taken = await p.as(alice, 'identity.rotate', { identity: alice.id, publicKey: claim.to, proof: signRotationProof(bob.key, claim) });
    expect(deniedBy(taken)).toEqual([0]);
    // back to a retired key
    const { next } = await rotate(p, alice);
    const back = { origin: p.config.origin, identity: alice.id, from: b64(next.key), to: b64(alice.key) };
    const reuse = await p.as(next, 'identity.rotate', { identity: alice.id, publicKey: back.to, proof: signRotationProof(alice.key, back) }, { actor: alice.id });
    expect(deniedBy(reuse)).toEqual([0]);
    expect(reuse.gates.find((g) => g.gate === 0)?.reason).toMatch(/never used again/);
    // bob cannot rotate alice
    const { privateKey } = generateKeyPair();
    const c2 = { origin: p.config.origin, identity: alice.id, from: b64(next.key), to: b64(privateKey) };
    expect(deniedBy(await p.as(bob, 'identity.rotate', { identity: alice.id, publicKey: c2.to, proof: signRotationProof(privateKey, c2) }))).toEqual([1]);
    // a rotated-to key cannot be registered as a second identity
    const dup = await p.chokepoint.submit(
      (await import('../identity/envelope.ts')).signCommand(next.key, 'identity.register', { name: 'alice2', role: 'creator', publicKey: b64(next.key) }, { origin: p.config.origin }),
    );
    expect(deniedBy(dup)).toEqual([0]);
  });
});

describe('identity.revoke', () => {
  it('self-revocation is final: the key signs nothing more and nothing more is recorded', async () => {
    p = await testPlatform();
    const alice = await p.register('alice', 'creator');
    expect((await p.as(alice, 'identity.revoke', { identity: alice.id, reason: 'laptop stolen' })).allowed).toBe(true);
    const size = p.chokepoint.ledger.size;
    const after = await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' }).catch((e: unknown) => e);
    expect(refusal(after)).toBe('revoked');
    expect(p.chokepoint.ledger.size).toBe(size);
    expect((await verifyStore(p.store)).problems).toEqual([]);
  });

  it('the platform revokes admins and services; nobody revokes a creator but itself', async () => {
    p = await testPlatform();
    const alice = await p.register('alice', 'creator');
    const ops = await p.register('ops', 'admin');
    const platform: Actor = { name: 'platform', id: p.chokepoint.platformId, key: p.platformKey };
    expect(deniedBy(await p.as(ops, 'identity.revoke', { identity: alice.id }))).toEqual([1]);
    expect(deniedBy(await p.as(platform, 'identity.revoke', { identity: alice.id }))).toEqual([1]);
    expect(deniedBy(await p.as(alice, 'identity.revoke', { identity: ops.id }))).toEqual([1]);
    expect((await p.as(platform, 'identity.revoke', { identity: ops.id, reason: 'left the team' })).allowed).toBe(true);
    // revoking again changes nothing: refused by gate 0, never an allowed entry
    expect(deniedBy(await p.as(platform, 'identity.revoke', { identity: ops.id }))).toEqual([0]);
    expect(refusal(await p.as(ops, 'imvu.suspend', { imvu: 'IMVU-001', reason: 'x' }).catch((e: unknown) => e))).toBe('revoked');
    expect((await verifyStore(p.store)).problems).toEqual([]);
  });
});

describe('no-op commands are never allowed entries', () => {
  it('member.add of a member is refused (gate 0)', async () => {
    p = await testPlatform();
    const alice = await p.register('alice', 'creator');
    const carol = await p.register('carol', 'member');
    expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    expect((await p.as(alice, 'member.add', { imvu: 'IMVU-001', identity: carol.id })).allowed).toBe(true);
    const twice = await p.as(alice, 'member.add', { imvu: 'IMVU-001', identity: carol.id });
    expect(deniedBy(twice)).toEqual([0]);
    expect(twice.gates.find((g) => g.gate === 0)?.reason).toMatch(/already a member.*no change/);
  });

  it('suspending a suspended IMVU and scaling to the same envelope are refused (gate 15)', async () => {
    p = await testPlatform();
    const alice = await p.register('alice', 'creator');
    const ops = await p.register('ops', 'admin');
    expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    expect(deniedBy(await p.as(alice, 'imvu.scale', { imvu: 'IMVU-001', cpu_cores: 2 }))).toEqual([15]);
    expect((await p.as(ops, 'imvu.suspend', { imvu: 'IMVU-001', reason: 'audit' })).allowed).toBe(true);
    expect(deniedBy(await p.as(ops, 'imvu.suspend', { imvu: 'IMVU-001', reason: 'again' }))).toEqual([15]);
    expect((await verifyStore(p.store)).problems).toEqual([]);
  });
});
