import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { generateKeyPair, identityIdFromPublicKey, loadPrivateKey, publicKeyRaw, savePrivateKey } from './identity/keys.ts';
import { signCommand } from './identity/envelope.ts';
import { Chokepoint, type ChokepointOptions } from './policy/chokepoint.ts';
import { Integrity, integrityNotices } from './policy/integrity.ts';
import { takeCloseSeal, writeCloseSeal } from './policy/close-seal.ts';
import { openStore, type Store } from './store/index.ts';
import { DEFAULT_PRICES } from './handshake/default-prices.ts';
import { DEFAULT_CAPACITY } from './handshake/metering.ts';
import { DEFAULT_PLAN, type PlanLimits } from './policy/commands.ts';
import { PLATFORM_CONFIG_FILE, PLATFORM_KEY_FILE, isInitialised } from './platform-files.ts';

// A data directory: nexus.db (ledger + projections), keys/platform.key (0600), platform.json.

export interface PlatformConfig {
  origin: string;
  suffix: string;
  edgeAddress: string;
}

export { PLATFORM_CONFIG_FILE, PLATFORM_KEY_FILE, isInitialised };

export interface OpenPlatform {
  dataDir: string;
  store: Store;
  chokepoint: Chokepoint;
  platformKey: KeyObject;
  platformId: string;
  config: PlatformConfig;
  /** Projection digests, the checkpoint file, the periodic check (src/core/policy/integrity.ts). */
  integrity: Integrity;
  close(): Promise<void>;
}

/** What initialisation takes besides the platform config: the plan limits to publish (defaults: DEFAULT_PLAN). */
export interface PlatformInit extends Partial<PlatformConfig> {
  plan?: Partial<PlanLimits>;
}

/** Creates a data directory with a fresh platform key, the genesis entry (entry 0), the default price book and the plan. */
export async function initDataDir(dataDir: string, cfg: PlatformInit = {}, opts: Partial<ChokepointOptions> = {}): Promise<OpenPlatform> {
  if (isInitialised(dataDir)) throw new Error(`${dataDir} is already initialised`);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const { privateKey } = generateKeyPair();
  const id = identityIdFromPublicKey(publicKeyRaw(privateKey));
  const config: PlatformConfig = {
    origin: cfg.origin ?? `nexus.local/${id.slice(0, 12)}`,
    suffix: cfg.suffix ?? 'world',
    edgeAddress: cfg.edgeAddress ?? '127.0.0.1',
  };
  savePrivateKey(join(dataDir, PLATFORM_KEY_FILE), privateKey);
  const p = await openWithKey(dataDir, privateKey, config, opts);
  const receipt = await p.chokepoint.submit(
    signCommand(privateKey, 'platform.genesis', {
      name: 'platform',
      publicKey: publicKeyRaw(privateKey).toString('base64'),
      origin: config.origin,
      suffix: config.suffix,
      edgeAddress: config.edgeAddress,
    }, { origin: config.origin, ...(opts.clock ? { ts: opts.clock().toISOString() } : {}) }),
  );
  if (!receipt.allowed) throw new Error(`genesis refused: ${JSON.stringify(receipt.gates)}`);
  // Billing starts with a published price book, so usage is never priced at an unknown rate.
  const prices = await p.chokepoint.submit(
    p.chokepoint.platformCommand('pricebook.publish', {
      version: 1,
      currency: 'USD',
      effectiveFrom: (opts.clock?.() ?? new Date()).toISOString().slice(0, 7),
      prices: DEFAULT_PRICES,
    }),
  );
  if (!prices.allowed) throw new Error(`default price book refused: ${JSON.stringify(prices.gates)}`);
  // Usage is bounded by what the platform can serve: the capacities are public from the start.
  const capacity = await p.chokepoint.submit(p.chokepoint.platformCommand('capacity.publish', { ...DEFAULT_CAPACITY }));
  if (!capacity.allowed) throw new Error(`default capacities refused: ${JSON.stringify(capacity.gates)}`);
  // The plan limits are ledger data, so replay and verification never depend on configuration.
  const plan = await p.chokepoint.submit(p.chokepoint.platformCommand('plan.publish', { ...DEFAULT_PLAN, ...(cfg.plan ?? {}) }));
  if (!plan.allowed) throw new Error(`plan refused: ${JSON.stringify(plan.gates)}`);
  // Written last: a directory without it is not initialised and can be initialised again.
  writeFileSync(join(dataDir, PLATFORM_CONFIG_FILE), JSON.stringify(config, null, 2) + '\n', { mode: 0o600 });
  return p;
}

/**
 * Opens the store and the chokepoint, then checks them (src/core/policy/integrity.ts): throws
 * LostHistoryError if acknowledged entries are missing, and rebuilds projections that differ from
 * the ledger (recording an integrity alarm) before anything is served.
 */
async function openWithKey(dataDir: string, platformKey: KeyObject, config: PlatformConfig, opts: OpenOptions = {}): Promise<OpenPlatform> {
  const { bulk, ...chokepointOpts } = opts;
  opts = chokepointOpts;
  // Taken (and removed) before the database is opened: the seal vouches for the file as it was closed.
  const sealed = takeCloseSeal(dataDir, config.origin, publicKeyRaw(platformKey));
  const store = openStore(dataDir, bulk ? { bulk } : {});
  const provision = opts.provision;
  // The creators' notifications of an integrity alarm come with it, like any other follow-up.
  const withNotices: NonNullable<ChokepointOptions['provision']> = async (command, index, db, prepared) => [
    ...(provision ? await provision(command, index, db, prepared) : []),
    ...(await integrityNotices(command, index, db)),
  ];
  let chokepoint: Chokepoint | undefined;
  let integrity: Integrity;
  try {
    chokepoint = await Chokepoint.open(store, { ...opts, provision: withNotices, platformKey, origin: config.origin });
    integrity = await Integrity.open({ dataDir, store, chokepoint, platformKey, origin: config.origin, sealed });
  } catch (err) {
    await chokepoint?.close();
    await store.close();
    throw err;
  }
  const cp = chokepoint;
  return {
    dataDir,
    store,
    chokepoint: cp,
    platformKey,
    platformId: cp.platformId,
    config,
    integrity,
    async close() {
      await integrity.close();
      await cp.close();
      const state = await integrity.sealState().catch((err: unknown) => `cannot count the stored entries: ${(err as Error).message}`);
      await store.close();
      // Nothing commits any more and the WAL is folded into the file: the next start may skip its
      // scan and its count. No seal: the next start scans every row, as after a crash.
      if (typeof state === 'string') return;
      try {
        writeCloseSeal(dataDir, config.origin, platformKey, state);
      } catch {
        // As above.
      }
    },
  };
}

/**
 * `bulk`: commits are not fsynced one by one, the store is synced once when closed: a bulk load
 * (bench/scale/build.ts --fast) that answers no one. Never for a daemon that acknowledges commands.
 */
export type OpenOptions = Partial<ChokepointOptions> & { bulk?: boolean };

export async function openDataDir(dataDir: string, opts: OpenOptions = {}): Promise<OpenPlatform> {
  if (!isInitialised(dataDir)) throw new Error(`${dataDir} is not a nexus data directory (run \`nexus init --data ${dataDir}\`)`);
  const config = JSON.parse(readFileSync(join(dataDir, PLATFORM_CONFIG_FILE), 'utf8')) as PlatformConfig;
  const key = loadPrivateKey(join(dataDir, PLATFORM_KEY_FILE));
  return openWithKey(dataDir, key, config, opts);
}
