import { createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { DNSKEY_TTL_S } from '../../core/policy/gates/platform-powers.ts';
import type { Chokepoint, Receipt } from '../../core/policy/chokepoint.ts';
import { decodeEntry } from '../../core/ledger/ledger.ts';
import type { Store } from '../../core/store/index.ts';
import { writeSecretFile } from '../../imvu/provision.ts';
import { dnssecKeyPath, generateZoneKey, rawPublicKey } from './keys.ts';
import { ALGORITHM_ECDSAP256SHA256 } from './keytag.ts';

// A zone key rollover, driven by the platform in three timed steps (gate 17 checks each against
// entry times, src/core/policy/gates/platform-powers.ts):
//   1. `dnssec.publish` of a new key beside the active one: the DNSKEY RRset holds both and is
//      signed by both; the active key still signs everything else. The creator is notified with
//      the new DS (src/imvu/provision.ts).
//   2. `dnssec.activate`, at least one DNSKEY TTL later (every resolver has seen the new key):
//      the new key signs everything, the old one is retired but stays in the DNSKEY RRset.
//   3. `dnssec.remove` of the retired key, one DNSKEY TTL after that; its private key is deleted.
// A validator that trusts either key's DS validates at every step until the old key is removed.

export interface RolloverPlatform {
  chokepoint: Chokepoint;
  store: Store;
  dataDir: string;
}

interface KeyRow {
  zone: string;
  imvu: string;
  flags: number;
  public_key: string;
  state: string;
  since: string;
  [k: string]: string | number;
}

/** Deletes the private half of a removed key: its own file, or the zone's first key file if that holds it. */
function removePrivateKey(dataDir: string, zone: string, publicKey: Buffer): void {
  rmSync(dnssecKeyPath(dataDir, zone, publicKey), { force: true });
  const first = dnssecKeyPath(dataDir, zone);
  if (existsSync(first) && rawPublicKey(createPrivateKey(readFileSync(first))).equals(publicKey)) rmSync(first, { force: true });
}

/** Step 1: generates a new key for `zone`, stores its private half durably, and publishes it beside the active one. */
export async function startRollover(p: RolloverPlatform, zone: string): Promise<Receipt> {
  const active = await p.store.get<KeyRow>("SELECT zone, imvu, flags, public_key, state, since FROM dnssec_keys WHERE zone = ? AND state = 'active'", [zone]);
  if (!active) throw new Error(`zone ${zone} has no active DNSSEC key to roll`);
  const { publicKey, pem } = await generateZoneKey();
  const path = dnssecKeyPath(p.dataDir, zone, publicKey);
  writeSecretFile(path, pem);
  const r = await p.chokepoint.submit(
    p.chokepoint.platformCommand('dnssec.publish', {
      imvu: active.imvu,
      zone,
      algorithm: ALGORITHM_ECDSAP256SHA256,
      flags: Number(active.flags),
      publicKey: publicKey.toString('base64'),
    }),
  );
  // A refused key is never used: its private half goes.
  if (!r.allowed) rmSync(path, { force: true });
  return r;
}

/** The platform's time: the clock, never earlier than the newest entry (entry times never go back). */
async function platformNow(store: Store): Promise<number> {
  const size = await store.ledgerSize();
  const [last] = size ? await store.readEntries(size - 1, size) : [];
  return Math.max(Date.now(), last ? Date.parse(decodeEntry(last).at) : 0);
}

/**
 * Steps 2 and 3 for every rollover whose wait is over at `now` (milliseconds; default the
 * platform's time): activates standby keys published at least a DNSKEY TTL ago, removes keys
 * retired at least a DNSKEY TTL ago (and their private halves). Returns the receipts of what it
 * submitted.
 */
export async function advanceRollovers(p: RolloverPlatform, at?: number): Promise<Receipt[]> {
  const now = at ?? (await platformNow(p.store));
  const rows = await p.store.all<KeyRow>("SELECT zone, imvu, flags, public_key, state, since FROM dnssec_keys WHERE state IN ('published', 'retired') ORDER BY entry");
  const due = rows.filter((r) => Date.parse(r.since) + DNSKEY_TTL_S * 1000 <= now);
  const out: Receipt[] = [];
  for (const r of due) {
    const body = { imvu: r.imvu, zone: r.zone, publicKey: r.public_key };
    const receipt = await p.chokepoint.submit(p.chokepoint.platformCommand(r.state === 'published' ? 'dnssec.activate' : 'dnssec.remove', body));
    if (receipt.allowed && r.state === 'retired') removePrivateKey(p.dataDir, r.zone, Buffer.from(r.public_key, 'base64'));
    out.push(receipt);
  }
  return out;
}
