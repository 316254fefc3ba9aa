// Infrastructure service identities (DNS today; mail and the gateway later): each service signs
// its own commands (usage reports, gate 6) with its own Ed25519 key, kept in the data directory at
// keys/services/<name>.key (0600). The platform registers the identity the first time the daemon
// starts (a platform-signed identity.register with role `service`, through the chokepoint).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { signCommand } from './identity/envelope.ts';
import { generateKeyPair, identityIdFromPublicKey, loadPrivateKey, publicKeyRaw, savePrivateKey } from './identity/keys.ts';
import type { OpenPlatform } from './platform.ts';

export interface ServiceIdentity {
  name: string;
  id: string;
  key: KeyObject;
  /** The ledger entry that registered it, when this call did. */
  registeredAt?: number;
}

export function serviceKeyPath(dataDir: string, name: string): string {
  return join(dataDir, 'keys', 'services', `${name}.key`);
}

/**
 * Loads (or creates) the key of service `name` and makes sure the ledger knows it as a service
 * identity of that name. Throws one line if the name belongs to another key or role: the service
 * would otherwise sign with a key nobody can verify.
 */
export async function ensureServiceIdentity(platform: OpenPlatform, name: string): Promise<ServiceIdentity> {
  const file = serviceKeyPath(platform.dataDir, name);
  let key: KeyObject;
  if (existsSync(file)) key = loadPrivateKey(file);
  else {
    key = generateKeyPair().privateKey;
    savePrivateKey(file, key);
  }
  const raw = publicKeyRaw(key);
  const id = identityIdFromPublicKey(raw);
  const db = platform.store;
  const mine = await db.get<{ name: string; role: string }>('SELECT name, role FROM identities WHERE id = ?', [id]);
  if (mine) {
    if (mine.role !== 'service' || mine.name !== name)
      throw new Error(`the key in ${file} is registered as ${mine.name} (${mine.role}), not as the service ${name}`);
    return { name, id, key };
  }
  const other = await db.get<{ id: string; role: string }>('SELECT id, role FROM identities WHERE name = ?', [name]);
  if (other)
    throw new Error(`identity name '${name}' belongs to ${other.id} (${other.role}), not to the key in ${file}; restore that key file to run the ${name} service`);
  const receipt = await platform.chokepoint.submit(signCommand(platform.platformKey, 'identity.register', { name, role: 'service', publicKey: raw.toString('base64') }, { origin: platform.config.origin }));
  if (!receipt.allowed) {
    const why = receipt.gates.filter((g) => g.status === 'deny').map((g) => `gate ${g.gate}: ${g.reason ?? 'denied'}`).join('; ');
    throw new Error(`registering the ${name} service identity was refused (ledger entry ${receipt.index}): ${why}`);
  }
  return { name, id, key, registeredAt: receipt.index };
}

/**
 * Makes `identity` the one meter of `metrics` in the ledger (a platform-signed `meter.register`,
 * gates 6 and 17), unless it already is. Registration never reaches back: only intervals that
 * start after the entry can be reported. Returns the entry's index when this call registered.
 */
export async function ensureMeter(platform: OpenPlatform, identity: ServiceIdentity, metrics: readonly string[]): Promise<number | undefined> {
  const missing: string[] = [];
  for (const metric of metrics) {
    const row = await platform.store.get<{ identity: string }>('SELECT identity FROM meters WHERE metric = ?', [metric]);
    if (row?.identity !== identity.id) missing.push(metric);
  }
  if (missing.length === 0) return undefined;
  const receipt = await platform.chokepoint.submit(platform.chokepoint.platformCommand('meter.register', { identity: identity.id, metrics: missing }));
  if (!receipt.allowed) {
    const why = receipt.gates.filter((g) => g.status === 'deny').map((g) => `gate ${g.gate}: ${g.reason ?? 'denied'}`).join('; ');
    throw new Error(`registering ${identity.name} as the meter of ${missing.join(', ')} was refused (ledger entry ${receipt.index}): ${why}`);
  }
  return receipt.index;
}
