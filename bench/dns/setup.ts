// The benchmark's data directory: `zones` IMVUs, each with its signed zone (keys provisioned as the
// daemon does at imvu.create) and a few records. Made once and reused (creating 1,000 IMVUs makes
// 1,000 RSA DKIM keys and 1,000 ECDSA zone keys: minutes on a loaded machine).
import { isInitialised, initDataDir, openDataDir, type OpenPlatform } from '../../src/core/platform.ts';
import { generateKeyPair, identityIdFromPublicKey, publicKeyRaw } from '../../src/core/identity/keys.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { provisioner } from '../../src/imvu/provision.ts';
import type { CommandType, Json } from '../../src/core/types.ts';

export const zoneName = (i: number) => `imvu${String(i + 1).padStart(3, '0')}.world`;

/** Zones of the hot set (the first ones), which get `RECORDS`. */
export const HOT_ZONES = 20;

/** The records the hot set's zones get besides what imvu.create makes (SOA, NS, MX, TXT, DKIM). */
export const RECORDS = (zone: string) =>
  [
    ['www', 'A', '192.0.2.10'],
    ['www', 'AAAA', '2001:db8::10'],
    ['shop', 'CNAME', `www.${zone}.`],
    ['_sip._tcp', 'SRV', `10 60 5060 www.${zone}.`],
  ] as const;

/** One creator holds every IMVU: a plan that allows it. */
const PLAN = { cpu_cores: 1024, memory_gb: 65_536, storage_gb: 1_000_000, iops: 5000, imvus_per_creator: 10_000 };

export async function prepare(dir: string, zones: number, log = console.log): Promise<{ platform: OpenPlatform; zones: string[] }> {
  const platform = isInitialised(dir) ? await openDataDir(dir) : await initDataDir(dir, { plan: PLAN }, { provision: provisioner(dir) });
  const have = await platform.store.all<{ name: string }>('SELECT name FROM zones ORDER BY name');
  const present = new Set(have.map((r) => r.name));
  if (present.size >= zones) return { platform, zones: Array.from({ length: zones }, (_, i) => zoneName(i)) };
  // Made where it stopped: the creator is looked up again on a second run.
  const { privateKey } = generateKeyPair();
  const raw = publicKeyRaw(privateKey);
  const creator = identityIdFromPublicKey(raw);
  const submit = async (type: CommandType, body: { [k: string]: Json }) => {
    const r = await platform.chokepoint.submit(signCommand(privateKey, type, body, { origin: platform.config.origin }));
    if (!r.allowed) throw new Error(`${type} refused: ${JSON.stringify(r.gates)}`);
  };
  await submit('identity.register', { name: `bench${Date.now()}`, role: 'creator', publicKey: raw.toString('base64') });
  const t0 = Date.now();
  for (let i = present.size; i < zones; i++) {
    await submit('imvu.create', { name: `Bench${i}`, owner: creator, jurisdiction: 'US-CCPA' });
    const zone = zoneName(i);
    // The hot set's zones get a few more records; every zone has imvu.create's (apex A, NS, MX, TXT, mail, _dmarc, DKIM).
    if (i < HOT_ZONES) for (const [name, type, value] of RECORDS(zone)) await submit('dns.record.add', { zone, name, type, value });
    if ((i + 1) % 100 === 0) log(`${i + 1} zones (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  }
  return { platform, zones: Array.from({ length: zones }, (_, i) => zoneName(i)) };
}
