// The platform declares its own zone through the chokepoint like any other change: a
// platform-signed `platform.zone` entry (gates 4 and 17) carries the zone's DNSSEC public key and
// its name servers. The private key is written under `keys/dnssec/<suffix>.pem` (0600, fsynced)
// before the entry is submitted, as for the IMVU zones' keys (src/imvu/provision.ts); a key file
// left by an attempt that never reached the ledger is used rather than replaced.
//
// The daemon calls `ensurePlatformZone` on every start: the first start publishes the key, a later
// one publishes again only when the configured name servers differ from the ledger's.
import { createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { OpenPlatform } from '../../core/platform.ts';
import type { Receipt } from '../../core/policy/chokepoint.ts';
import type { Json } from '../../core/types.ts';
import { writeSecretFile } from '../../imvu/provision.ts';
import { ALGORITHM_ECDSAP256SHA256, CSK_FLAGS, dnssecKeyPath, generateZoneKey, rawPublicKey } from '../dnssec/keys.ts';
import { PLATFORM_ZONE_IMVU } from './zone.ts';

export interface NameServer {
  /** Absolute host name inside the platform's zone, e.g. `ns1.world`. */
  name: string;
  /** IPv4 or IPv6 address. */
  address: string;
}

/** The form `platform.zone` records: names lower case without a final dot, addresses canonical, sorted by name then address, each once. */
export function canonicalNameServers(list: readonly NameServer[]): NameServer[] {
  const out = new Map<string, NameServer>();
  for (const ns of list) {
    const name = ns.name.toLowerCase().replace(/\.$/, '');
    const family = isIP(ns.address);
    if (!family) throw new Error(`name server ${ns.name}: ${ns.address} is not an IP address`);
    const address = family === 6 ? new URL(`http://[${ns.address}]/`).hostname.slice(1, -1) : ns.address;
    out.set(`${name} ${address}`, { name, address });
  }
  return [...out.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, ns]) => ns);
}

/**
 * The name servers when none are configured: `ns1.<suffix>` at the DNS server's address, or at the
 * platform's edge address when the server listens on every address (0.0.0.0, ::) or on a name.
 */
export function defaultNameServers(suffix: string, dnsAddress: string | undefined, edgeAddress: string): NameServer[] {
  const specific = dnsAddress !== undefined && isIP(dnsAddress) !== 0 && dnsAddress !== '0.0.0.0' && dnsAddress !== '::';
  return [{ name: `ns1.${suffix}`, address: specific ? dnsAddress : edgeAddress }];
}

interface PlatformRow {
  suffix: string;
  edge_address: string;
  [k: string]: string | number;
}

interface KeyRow {
  algorithm: number;
  flags: number;
  public_key: string;
  [k: string]: string | number;
}

function refused(receipt: Receipt, suffix: string): Error {
  const why = receipt.gates.filter((g) => g.status === 'deny').map((g) => `gate ${g.gate}: ${g.reason ?? 'denied'}`).join('; ');
  return new Error(`declaring the platform's zone ${suffix} was refused (ledger entry ${receipt.index}): ${why}`);
}

/** The public key of the zone key on disk, creating the key first if there is none. */
async function loadOrCreateKey(dataDir: string, suffix: string): Promise<Buffer> {
  const path = dnssecKeyPath(dataDir, suffix);
  if (existsSync(path)) return rawPublicKey(createPrivateKey(readFileSync(path)));
  const { publicKey, pem } = await generateZoneKey();
  writeSecretFile(path, pem);
  return publicKey;
}

async function submit(platform: OpenPlatform, suffix: string, nameservers: NameServer[], publicKey: string): Promise<Receipt> {
  const body: { [k: string]: Json } = {
    zone: suffix,
    nameservers: nameservers.map((ns) => ({ name: ns.name, address: ns.address })),
    algorithm: ALGORITHM_ECDSAP256SHA256,
    flags: CSK_FLAGS,
    publicKey,
  };
  const receipt = await platform.chokepoint.submit(platform.chokepoint.platformCommand('platform.zone', body));
  if (!receipt.allowed) throw refused(receipt, suffix);
  return receipt;
}

/**
 * Makes sure the ledger declares the platform's zone with these name servers (undefined: keep the
 * ones it declares, or `ns1.<suffix>` at the edge address if it declares none). Returns the receipt
 * of the `platform.zone` it submitted, or undefined when the ledger already says the same. Throws
 * one line when the gates refuse it or when the zone's private key is missing or does not match
 * the key the ledger published (restore `keys/dnssec/<suffix>.pem`: a new key would break every
 * trust anchor configured with the old one).
 */
export async function ensurePlatformZone(platform: OpenPlatform, nameservers?: readonly NameServer[]): Promise<Receipt | undefined> {
  const db = platform.store;
  const row = await db.get<PlatformRow>('SELECT suffix, edge_address FROM platform LIMIT 1');
  if (!row) throw new Error('the ledger has no platform genesis entry');
  const suffix = row.suffix;
  const key = await db.get<KeyRow>('SELECT algorithm, flags, public_key FROM dnssec_keys WHERE zone = ? AND imvu = ?', [suffix, PLATFORM_ZONE_IMVU]);
  const current = await db.all<{ name: string; address: string }>('SELECT name, address FROM nameservers ORDER BY name, address');
  const wanted = canonicalNameServers(
    nameservers && nameservers.length ? nameservers : current.length ? current : defaultNameServers(suffix, undefined, row.edge_address),
  );
  if (!key) return submit(platform, suffix, wanted, (await loadOrCreateKey(platform.dataDir, suffix)).toString('base64'));
  const path = dnssecKeyPath(platform.dataDir, suffix);
  let onDisk: string | undefined;
  try {
    onDisk = rawPublicKey(createPrivateKey(readFileSync(path))).toString('base64');
  } catch (err) {
    throw new Error(`the DNSSEC key of the platform's zone ${suffix} cannot be read from ${path}: ${(err as Error).message.split('\n')[0]}; restore it from a backup`);
  }
  if (onDisk !== key.public_key) throw new Error(`the DNSSEC key in ${path} is not the one the ledger published for the platform's zone ${suffix}; restore the right file`);
  const same = current.length === wanted.length && current.every((c, i) => c.name === wanted[i]!.name && c.address === wanted[i]!.address);
  return same ? undefined : submit(platform, suffix, wanted, key.public_key);
}

/**
 * Submits the platform's zone again as the ledger declares it (same key, same name servers): the
 * zone's serial moves and nothing else, so secondaries transfer it again with fresh signatures
 * (what `dnssec.resign` does for the other zones; src/domains/resign.ts).
 */
export async function restatePlatformZone(platform: OpenPlatform): Promise<Receipt> {
  const db = platform.store;
  const row = await db.get<PlatformRow>('SELECT suffix, edge_address FROM platform LIMIT 1');
  if (!row) throw new Error('the ledger has no platform genesis entry');
  const key = await db.get<KeyRow>('SELECT algorithm, flags, public_key FROM dnssec_keys WHERE zone = ? AND imvu = ?', [row.suffix, PLATFORM_ZONE_IMVU]);
  if (!key) throw new Error(`the platform's zone ${row.suffix} is not declared`);
  const current = await db.all<{ name: string; address: string }>('SELECT name, address FROM nameservers ORDER BY name, address');
  return submit(platform, row.suffix, canonicalNameServers(current), key.public_key);
}
