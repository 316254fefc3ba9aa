// Helpers for tests: a real data directory in a temp folder, real keys, real signatures.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, type KeyObject } from 'node:crypto';
import { generateKeyPair, identityIdFromPublicKey, publicKeyRaw } from './identity/keys.ts';
import { signCommand, type SignOptions } from './identity/envelope.ts';
import { initDataDir, type OpenPlatform, type PlatformInit } from './platform.ts';
import type { CommandType, Json, Role } from './types.ts';
import type { ChokepointOptions, Receipt } from './policy/chokepoint.ts';

export interface Actor {
  name: string;
  id: string;
  key: KeyObject;
}

export interface TestPlatform extends OpenPlatform {
  register(name: string, role: Exclude<Role, 'platform'>): Promise<Actor>;
  as(actor: Actor, type: CommandType, body: { [k: string]: Json }, opts?: Partial<SignOptions>): Promise<Receipt>;
  /**
   * The whole exit of `imvu` by its creator `owner`: exit, an archive recorded ready by the
   * platform (a stand-in digest: the archive itself is src/imvu/exit's business), confirmed.
   */
  exitNow(owner: Actor, imvu: string): Promise<Receipt>;
  cleanup(): Promise<void>;
}

/**
 * `provision`: the chokepoint's provisioning hook for the temp data directory (e.g. `provisioner`
 * from src/imvu/provision.ts). `clock`: the platform clock (entry times), for timed rules; commands
 * signed by `as` then carry that clock's time too.
 */
export async function testPlatform(
  opts: {
    provision?: (dataDir: string) => NonNullable<ChokepointOptions['provision']>;
    prepare?: ChokepointOptions['prepare'];
    clock?: () => Date;
    plan?: PlatformInit['plan'];
    /** Signatures checked ahead on worker threads, as the daemon does. */
    parallelVerify?: boolean;
  } = {},
): Promise<TestPlatform> {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-test-'));
  const p = await initDataDir(dir, opts.plan ? { plan: opts.plan } : {}, {
    ...(opts.provision ? { provision: opts.provision(dir) } : {}),
    ...(opts.prepare ? { prepare: opts.prepare } : {}),
    ...(opts.clock ? { clock: opts.clock } : {}),
    ...(opts.parallelVerify ? { parallelVerify: true } : {}),
  });
  // Commands are signed at the platform's clock, so they fall inside gate 1's window around it.
  const ts = () => (opts.clock ? { ts: opts.clock().toISOString() } : {});
  const t: TestPlatform = {
    ...p,
    async register(name, role) {
      const { privateKey } = generateKeyPair();
      const raw = publicKeyRaw(privateKey);
      const signer = role === 'creator' || role === 'member' ? privateKey : p.platformKey;
      const r = await p.chokepoint.submit(signCommand(signer, 'identity.register', { name, role, publicKey: raw.toString('base64') }, { origin: p.config.origin, ...ts() }));
      if (!r.allowed) throw new Error(`register ${name} refused: ${JSON.stringify(r.gates)}`);
      return { name, id: identityIdFromPublicKey(raw), key: privateKey };
    },
    as(actor, type, body, opts) {
      return p.chokepoint.submit(signCommand(actor.key, type, body, { origin: p.config.origin, ...ts(), ...opts }));
    },
    async exitNow(owner, imvu) {
      const started = await t.as(owner, 'imvu.exit', { imvu });
      if (!started.allowed) return started;
      const digest = createHash('sha256').update(`archive of ${imvu}`).digest('hex');
      const ready = await p.chokepoint.submit(
        p.chokepoint.platformCommand('imvu.exit.ready', { imvu, archive: { sha256: digest, size: 1 }, manifest: digest, treeSize: started.index + 1 }),
      );
      if (!ready.allowed) throw new Error(`exit ready refused: ${JSON.stringify(ready.gates)}`);
      return t.as(owner, 'imvu.exit.confirm', { imvu, archive: digest });
    },
    async cleanup() {
      await p.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return t;
}

export function deniedBy(r: Receipt): number[] {
  return r.gates.filter((g) => g.status === 'deny').map((g) => g.gate);
}
