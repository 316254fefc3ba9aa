import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { testPlatform, type TestPlatform } from '../core/testing.ts';
import type { Command } from '../core/types.ts';
import { dnssecKeyPath } from '../domains/dnssec/keys.ts';
import { dkimKeyPath, KeyPool, keyPreparer, provisioner, type PreparedKeys } from './provision.ts';

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
});
