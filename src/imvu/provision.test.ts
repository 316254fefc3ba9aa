import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { testPlatform, type TestPlatform } from '../core/testing.ts';
import type { Command } from '../core/types.ts';
import { dnssecKeyPath } from '../domains/dnssec/keys.ts';
import { dkimKeyPath, generateDkimKey, KeyPool, keyPreparer, provisioner, type PreparedKeys } from './provision.ts';

let p: TestPlatform | undefined;
afterEach(async () => {
  await p?.cleanup();
  p = undefined;
});

/** A preparer that records which keys it handed to which command. */
function recording(): { prepare: (c: Command) => Promise<PreparedKeys> | undefined; given: { name: string; keys: PreparedKeys }[]; pool: KeyPool } {
  const pool = new KeyPool(0);
  const inner = keyPreparer(pool);
  const given: { name: string; keys: PreparedKeys }[] = [];
  return {
    pool,
    given,
    prepare(c) {
      const made = inner(c) as Promise<PreparedKeys> | undefined;
      return made?.then((keys) => {
        given.push({ name: String(c.body.name), keys });
        return keys;
      });
    },
  };
}

describe('imvu.create keys made before the write transaction', () => {
  it('publishes and stores the keys prepared for that very command', async () => {
    const r = recording();
    p = await testPlatform({ provision: provisioner, prepare: r.prepare });
    const alice = await p.register('alice', 'creator');
    const receipt = await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' });
    expect(receipt.allowed).toBe(true);
    expect(r.given.map((g) => g.name)).toEqual(['Gallery']);
    const keys = r.given[0]!.keys;
    const dkim = receipt.followUps.find((f) => f.gates.some((g) => g.gate === 17) && f.index === receipt.index + 1);
    expect(dkim).toBeDefined();
    const published = await p.store.get<{ public_key: string }>("SELECT public_key FROM dkim_keys WHERE imvu = 'IMVU-001'");
    expect(published?.public_key).toBe(keys.dkim.publicKeyDer.toString('base64'));
    const onDisk = createPrivateKey(readFileSync(dkimKeyPath(p.dataDir, 'IMVU-001'), 'utf8'));
    expect(onDisk.equals(keys.dkim.privateKey)).toBe(true);
    const zoneKey = await p.store.get<{ public_key: string }>("SELECT public_key FROM dnssec_keys WHERE zone = 'imvu001.world'");
    expect(zoneKey?.public_key).toBe(keys.zone.publicKey.toString('base64'));
    expect(readFileSync(dnssecKeyPath(p.dataDir, 'imvu001.world'), 'utf8')).toBe(keys.zone.pem);
  });

  it('drops the keys of a refused creation: no later command gets them', async () => {
    const r = recording();
    p = await testPlatform({ provision: provisioner, prepare: r.prepare });
    const alice = await p.register('alice', 'creator');
    expect((await p.as(alice, 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    const refused = await p.as(alice, 'imvu.create', { name: 'gallery', owner: alice.id, jurisdiction: 'US-CCPA' });
    expect(refused.allowed).toBe(false);
    expect((await p.as(alice, 'imvu.create', { name: 'Shop', owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    expect(r.given.map((g) => g.name)).toEqual(['Gallery', 'gallery', 'Shop']);
    const keys = (await p.store.all<{ public_key: string }>('SELECT public_key FROM dkim_keys ORDER BY imvu')).map((k) => k.public_key);
    const b64 = (k: PreparedKeys) => k.dkim.publicKeyDer.toString('base64');
    expect(keys).toEqual([b64(r.given[0]!.keys), b64(r.given[2]!.keys)]);
    expect(keys).not.toContain(b64(r.given[1]!.keys));
  });

  it('concurrent creations each get their own keys', async () => {
    const r = recording();
    p = await testPlatform({ provision: provisioner, prepare: r.prepare });
    const alice = await p.register('alice', 'creator');
    const names = ['A1', 'A2', 'A3'];
    const receipts = await Promise.all(names.map((name) => p!.as(alice, 'imvu.create', { name, owner: alice.id, jurisdiction: 'US-CCPA' })));
    expect(receipts.every((x) => x.allowed)).toBe(true);
    const rows = await p.store.all<{ name: string; public_key: string }>('SELECT i.name AS name, k.public_key AS public_key FROM imvus i JOIN dkim_keys k ON k.imvu = i.id');
    for (const row of rows) expect(row.public_key).toBe(r.given.find((g) => g.name === row.name)!.keys.dkim.publicKeyDer.toString('base64'));
    expect(new Set(rows.map((x) => x.public_key)).size).toBe(3);
  });

  it("a command of another actor is not held behind creations waiting for their keys; one actor's own order is kept", async () => {
    // Creations named Held* wait for their keys until released, as with an empty pool and slow keys.
    const release: (() => void)[] = [];
    const inner = keyPreparer(new KeyPool(0));
    const prepare = (c: Command) => {
      const made = inner(c);
      if (!made || !String(c.body.name).startsWith('Held')) return made;
      return new Promise((resolve) => release.push(() => resolve(made)));
    };
    p = await testPlatform({ provision: provisioner, prepare });
    const alice = await p.register('alice', 'creator');
    const bob = await p.register('bob', 'creator');
    expect((await p.as(bob, 'imvu.create', { name: 'Bobs', owner: bob.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
    const held = ['Held1', 'Held2'].map((name) => p!.as(alice, 'imvu.create', { name, owner: alice.id, jurisdiction: 'US-CCPA' }));
    // Alice's next command has nothing to wait for, but comes after hers that wait.
    const after = p.as(alice, 'imvu.create', { name: 'After', owner: alice.id, jurisdiction: 'US-CCPA' });
    const consent = p.as(bob, 'consent.record', { imvu: 'IMVU-001', subject: bob.id, purpose: 'newsletter', granted: true });
    const first = await Promise.race([consent.then((r) => ({ consent: r })), after.then(() => 'alice first'), new Promise((r) => setTimeout(() => r('timed out'), 10_000))]);
    expect(first).toMatchObject({ consent: { allowed: true } });
    while (release.length < 2) await new Promise((r) => setTimeout(r, 10));
    release.forEach((r) => r());
    const [h1, h2] = await Promise.all(held);
    const a = await after;
    const c = await consent;
    expect([h1!.allowed, h2!.allowed, a.allowed]).toEqual([true, true, true]);
    expect(c.index).toBeLessThan(h1!.index);
    expect(h1!.index).toBeLessThan(h2!.index);
    expect(h2!.index).toBeLessThan(a.index);
  });

  it('makes keys on a thread of its own: file operations on the libuv pool are not queued behind them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'nexus-keygen-'));
    try {
      let done = 0;
      const keys = Promise.all(Array.from({ length: 8 }, () => generateDkimKey().then(() => done++)));
      // An fsync through fs/promises, as the checkpoint file's after every commit.
      const fh = await open(join(dir, 'f'), 'w');
      await fh.writeFile('x');
      await fh.sync();
      await fh.close();
      // Eight RSA-2048 keys on the pool's four threads held the open() behind five of them; one at
      // a time on their own thread, the file is done before the second (each takes tens of ms).
      expect(done).toBeLessThan(4);
      expect((await keys).length).toBe(8);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
