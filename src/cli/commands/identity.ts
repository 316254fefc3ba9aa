import { Command, Option } from 'commander';
import { existsSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { generateKeyPair, identityIdFromPublicKey, loadPrivateKey, publicKeyRaw } from '../../core/identity/keys.ts';
import { isInitialised, PLATFORM_KEY_FILE } from '../../core/platform-files.ts';
import { join, resolve } from 'node:path';
import { Ctx, receiptLine } from '../context.ts';
import { ApiError } from '../client.ts';
import { usage } from '../errors.ts';
import { NAME_RE, type LocalIdentity } from '../home.ts';
import { dataDirOf } from './operator.ts';
import { table } from '../format.ts';

interface IdentityRecord {
  id: string;
  name: string;
  role: string;
  publicKey?: string;
  status?: 'active' | 'revoked';
  /** Ledger entry from which the current key signs (the registration, or the last rotation). */
  keySince?: number;
  revokedAt?: number | null;
}

/** The daemon's public record of an identity (a key directory), or undefined if it does not know it. */
async function lookup(ctx: Ctx, nameOrId: string): Promise<IdentityRecord | undefined> {
  try {
    return await ctx.client.get<IdentityRecord>(`/v1/identities/${encodeURIComponent(nameOrId)}`);
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return undefined;
    throw err;
  }
}

/**
 * Registers `key` as `name` with the daemon. The key waits on disk as keys/<name>.key.pending while
 * the daemon records it (a crash cannot lose a registered key); once the daemon answers, it becomes
 * the identity's key, or, refused, it is removed with whatever directory staging made: a failed
 * registration leaves no file behind (the receipt of a recorded refusal is kept, as evidence).
 */
async function register(ctx: Ctx, name: string, role: string, key: KeyObject, data: string | undefined) {
  const { platform } = await ctx.connect();
  const byPlatform = REGISTERED_BY_PLATFORM.has(role);
  const platformKey = byPlatform ? platformSigner(resolve(dataDirOf(data)), platform.id, role, ctx.url) : undefined;
  const raw = publicKeyRaw(key);
  const id = identityIdFromPublicKey(raw);
  // Never overwrite a key: one left without its name (an interrupted write) is imported, not replaced.
  const lying = existsSync(ctx.home.keyPath(name)) ? publicKeyRaw(loadPrivateKey(ctx.home.keyPath(name))).toString('base64') : undefined;
  if (lying !== undefined && lying !== publicKeyRaw(key).toString('base64'))
    throw usage(`${ctx.home.keyPath(name)} exists but '${name}' is not in identities.json; register it with \`nexus identity import ${name} --key ${ctx.home.keyPath(name)}\` or move it away`);
  const created = ctx.home.stageKey(name, key);
  let s;
  try {
    s = await ctx.submit('POST', '/v1/identities', 'identity.register', { name, role, publicKey: raw.toString('base64') }, platformKey ?? { name, id, key });
  } catch (err) {
    ctx.home.discardStaged(name, created);
    throw err;
  }
  ctx.home.commitStaged(name, id);
  return { s, id, byPlatform, platform };
}

/** A key left staged by an interrupted create/import: adopted if the daemon registered it under this name, else removed. */
async function settlePending(ctx: Ctx, name: string): Promise<string | undefined> {
  const file = ctx.home.stagedKeyPath(name);
  if (!existsSync(file)) return undefined;
  const key = loadPrivateKey(file);
  const id = identityIdFromPublicKey(publicKeyRaw(key));
  const rec = await lookup(ctx, id);
  if (rec && rec.name === name) {
    ctx.home.commitStaged(name, id);
    return id;
  }
  ctx.home.discardStaged(name);
  return undefined;
}

const REGISTERED_BY_PLATFORM = new Set(['admin', 'service']);

/** The platform key from the operator's data directory, checked to be the daemon's. */
function platformSigner(dataDir: string, platformId: string, role: string, url: string): LocalIdentity {
  if (!isInitialised(dataDir))
    throw usage(
      `${role === 'admin' ? 'an' : 'a'} ${role} identity is registered by the platform, so its registration is signed with the platform key, ` +
        `which lives in the daemon's data directory on the operator's machine; ${dataDir} is not one (pass --data DIR or set NEXUS_DATA)`,
    );
  let key;
  try {
    key = loadPrivateKey(join(dataDir, PLATFORM_KEY_FILE));
  } catch (err) {
    throw usage(`cannot read the platform key in ${dataDir} (${(err as Error).message.split('\n')[0]}); run this on the operator's machine as the user that runs the daemon`);
  }
  const id = identityIdFromPublicKey(publicKeyRaw(key));
  if (id !== platformId) throw usage(`the data directory ${dataDir} belongs to platform ${id}, but the daemon at ${url} is platform ${platformId}`);
  return { name: 'platform', id, key };
}

export function identityCommand(): Command {
  const cmd = new Command('identity').description('create and inspect identities (Ed25519 keys kept under NEXUS_HOME)');

  cmd
    .command('create')
    .description('generate a key pair locally and register its public key with the daemon')
    .argument('<name>', 'identity name: 2-32 of a-z, 0-9 and -, starting with a letter')
    .addOption(new Option('--role <role>', 'role of the identity').choices(['creator', 'member', 'admin', 'service']).makeOptionMandatory())
    .option('--data <dir>', 'admin/service only: the daemon data directory holding the platform key (default: NEXUS_DATA or ./.nexus)')
    .action(async (name: string, o: { role: string; data?: string }, c: Command) => {
      const ctx = Ctx.of(c);
      if (!NAME_RE.test(name)) throw usage(`identity name '${name}' must be 2-32 of a-z, 0-9 and -, starting with a letter`);
      if (Object.hasOwn(ctx.home.identities(), name)) throw usage(`an identity named '${name}' already exists in ${ctx.home.dir}`);
      if (await settlePending(ctx, name)) throw usage(`'${name}' was registered by an earlier, interrupted \`nexus identity create\`; its key is now in ${ctx.home.keyPath(name)}`);
      const { privateKey } = generateKeyPair();
      const { s, id, byPlatform, platform } = await register(ctx, name, o.role, privateKey, o.data);
      ctx.print({ name, id, role: o.role, key: ctx.home.keyPath(name), registeredBy: byPlatform ? 'platform' : 'self', index: s.receipt.index, checkpoint: s.checkpoint.size }, () => [
        `✅ Identity ${name} (${o.role}): ${id}`,
        `✅ Private key: ${ctx.home.keyPath(name)} (mode 0600, never leaves this machine)`,
        byPlatform
          ? `✅ Registered by the platform (${platform.id}), signed with the platform key from the data directory`
          : `✅ Registered by its own signature (self-certifying id)`,
        `✅ ${receiptLine(s)}`,
      ]);
    });

  cmd
    .command('list')
    .description('list the identities whose keys are held under NEXUS_HOME, with their role on the daemon')
    .action(async (_o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const local = ctx.home.identities();
      const remote = await ctx.get<IdentityRecord[] | { identities: IdentityRecord[] }>('/v1/identities');
      const records = Array.isArray(remote) ? remote : (remote.identities ?? []);
      const byId = new Map(records.map((r) => [r.id, r]));
      const rows = Object.entries(local).map(([name, id]) => ({ name, id, role: byId.get(id)?.role ?? null, registered: byId.has(id), key: ctx.home.keyPath(name) }));
      ctx.print(rows, () =>
        rows.length
          ? table(['NAME', 'ID', 'ROLE', 'KEY'], rows.map((r) => [r.name, r.id, r.role ?? '(not registered here)', r.key]))
          : `no identities in ${ctx.home.dir}; create one with \`nexus identity create NAME --role creator\``,
      );
    });

  cmd
    .command('show')
    .description('show one identity (local name, daemon name, or id)')
    .argument('<identity>', 'name or id')
    .action(async (who: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const local = ctx.home.localName(who);
      const key = local ? ctx.home.identities()[local] : undefined;
      const rec = await ctx.get<IdentityRecord>(`/v1/identities/${encodeURIComponent(key ?? who)}`);
      const out = { ...rec, localName: local ?? null, key: local ? ctx.home.keyPath(local) : null };
      ctx.print(out, () => [
        `Identity ${rec.name}`,
        `  id:         ${rec.id}`,
        `  role:       ${rec.role}`,
        ...(rec.publicKey ? [`  public key: ${rec.publicKey}${rec.keySince !== undefined ? ` (signs from ledger entry ${rec.keySince})` : ''}`] : []),
        ...(rec.status ? [`  status:     ${rec.status === 'revoked' ? `revoked at ledger entry ${rec.revokedAt}: signs nothing more` : 'active'}`] : []),
        `  local key:  ${local ? ctx.home.keyPath(local) : '(not held on this machine)'}`,
      ]);
    });

  cmd
    .command('ssh-key')
    .description("a local identity's key in OpenSSH form: the public line (an age recipient) and, with --private-out, the private key file `age -d -i FILE` opens an exit archive's secrets with")
    .argument('<identity>', 'local name or id')
    .option('--private-out <file>', 'write the private key here (mode 0600; refuses to overwrite)')
    .action(async (who: string, o: { privateOut?: string }, c: Command) => {
      const ctx = Ctx.of(c);
      const signer = ctx.home.signer(who);
      const { sshPrivateKey, sshPublicKey } = await import('../../core/identity/openssh.ts');
      if (o.privateOut) {
        const { writeFileSync } = await import('node:fs');
        try {
          writeFileSync(o.privateOut, sshPrivateKey(signer.key, signer.name), { mode: 0o600, flag: 'wx' });
        } catch (err) {
          throw usage(`cannot write ${o.privateOut}: ${(err as NodeJS.ErrnoException).code === 'EEXIST' ? 'it exists' : (err as Error).message}`);
        }
      }
      const pub = sshPublicKey(signer.key);
      ctx.print({ name: signer.name, id: signer.id, sshPublicKey: pub, privateKeyFile: o.privateOut ?? null }, () => [pub, ...(o.privateOut ? [`private key written to ${o.privateOut} (0600)`] : [])]);
    });

  cmd
    .command('import')
    .description('register a key you already hold with this daemon (a new platform, or one started over); without --key, the key NAME holds here')
    .argument('<name>', 'identity name: 2-32 of a-z, 0-9 and -, starting with a letter')
    .option('--key <file>', 'an Ed25519 private key (PKCS#8 PEM), e.g. a keys/NAME.key from another NEXUS_HOME')
    .addOption(new Option('--role <role>', 'role to register it with').choices(['creator', 'member', 'admin', 'service']).default('creator'))
    .option('--data <dir>', 'admin/service only: the daemon data directory holding the platform key (default: NEXUS_DATA or ./.nexus)')
    .action(async (name: string, o: { key?: string; role: string; data?: string }, c: Command) => {
      const ctx = Ctx.of(c);
      if (!NAME_RE.test(name)) throw usage(`identity name '${name}' must be 2-32 of a-z, 0-9 and -, starting with a letter`);
      await settlePending(ctx, name);
      const held = ctx.home.localName(name) ? ctx.home.signer(name) : undefined;
      let key: KeyObject;
      if (o.key) {
        try {
          key = loadPrivateKey(resolve(o.key));
        } catch (err) {
          throw usage(`cannot read an Ed25519 private key from ${o.key} (${(err as Error).message.split('\n')[0]})`);
        }
      } else if (held) key = held.key;
      else throw usage(`no identity '${name}' in ${ctx.home.dir}: give the key to import with --key FILE`);
      const raw = publicKeyRaw(key);
      const id = identityIdFromPublicKey(raw);
      if (held && publicKeyRaw(held.key).toString('base64') !== raw.toString('base64'))
        throw usage(`'${name}' in ${ctx.home.dir} holds another key (${held.id}); import under another name`);
      const other = Object.entries(ctx.home.identities()).find(([n, i]) => i === id && n !== name);
      if (other) throw usage(`that key is already held here as '${other[0]}'`);
      const known = await lookup(ctx, id);
      if (known) {
        // Registered already (e.g. the same key on a new machine): adopted here, nothing recorded.
        if (known.name !== name) throw usage(`the daemon knows this key as '${known.name}'; import it under that name`);
        if (known.status === 'revoked') throw usage(`${name} was revoked at ledger entry ${known.revokedAt}; its key signs nothing more`);
        if (!held) ctx.home.saveIdentity(name, key);
        ctx.print({ name, id, role: known.role, key: ctx.home.keyPath(name), registered: 'already', index: null }, () => [
          `✅ ${name} (${known.role}) is already registered with ${ctx.url} as ${id}: key adopted, nothing recorded (no change)`,
        ]);
        return;
      }
      if (held) {
        // Re-registration of a key held here (the platform was started over): same files, a new entry.
        const { platform } = await ctx.connect();
        const byPlatform = REGISTERED_BY_PLATFORM.has(o.role);
        const platformKey = byPlatform ? platformSigner(resolve(dataDirOf(o.data)), platform.id, o.role, ctx.url) : undefined;
        // A rotated key registers under its own (self-certifying) id here: the new platform never saw the old key.
        const s = await ctx.submit('POST', '/v1/identities', 'identity.register', { name, role: o.role, publicKey: raw.toString('base64') }, platformKey ?? { name, id, key });
        if (held.id !== id) ctx.home.adoptId(name, id);
        ctx.print({ name, id, role: o.role, key: ctx.home.keyPath(name), registered: 'now', index: s.receipt.index }, () => [
          `✅ ${name} (${o.role}) registered with ${ctx.url} as ${id}, with the key held in ${ctx.home.keyPath(name)}`,
          `✅ ${receiptLine(s)}`,
        ]);
        return;
      }
      const { s } = await register(ctx, name, o.role, key, o.data);
      ctx.print({ name, id, role: o.role, key: ctx.home.keyPath(name), registered: 'now', index: s.receipt.index }, () => [
        `✅ ${name} (${o.role}) registered with ${ctx.url} as ${id}`,
        `✅ Private key copied to ${ctx.home.keyPath(name)} (mode 0600)`,
        `✅ ${receiptLine(s)}`,
      ]);
    });

  cmd
    .command('rotate')
    .description("replace an identity's key: signed by the current key, proven by the new one; the id stays, the old key stops at once")
    .argument('<name>', 'a local identity (name or id)')
    .action(async (who: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const name = ctx.home.localName(who);
      if (!name) throw usage(`no key for identity '${who}' in ${ctx.home.dir}; only the holder of the current key rotates it`);
      const { platform } = await ctx.connect();
      const current = ctx.home.signer(name);
      const rec = await lookup(ctx, current.id);
      if (!rec) throw usage(`${name} (${current.id}) is not registered with ${ctx.url}`);
      const nextFile = ctx.home.stagedKeyPath(name, 'next');
      if (existsSync(nextFile)) {
        // An earlier rotation was interrupted: finish it if the daemon recorded it, else start again.
        const staged = publicKeyRaw(loadPrivateKey(nextFile)).toString('base64');
        if (rec.publicKey === staged) {
          ctx.home.commitRotation(name, current.id, rec.keySince ?? -1);
          ctx.print({ name, id: current.id, publicKey: staged, index: rec.keySince ?? null, finished: true }, () => [
            `✅ Finished an interrupted rotation: the daemon had recorded it (ledger entry ${rec.keySince}); ${ctx.home.keyPath(name)} now holds the new key`,
          ]);
          return;
        }
        ctx.home.discardStaged(name, [], 'next');
      }
      if (rec.status === 'revoked') throw usage(`${name} was revoked at ledger entry ${rec.revokedAt}; a revoked identity has no key to rotate`);
      if (rec.publicKey !== publicKeyRaw(current.key).toString('base64'))
        throw usage(`the key in ${ctx.home.keyPath(name)} is not ${name}'s current key on ${ctx.url}; only the current key rotates`);
      const { privateKey } = generateKeyPair();
      const to = publicKeyRaw(privateKey).toString('base64');
      const { signRotationProof } = await import('../../core/identity/rotation.ts');
      const proof = signRotationProof(privateKey, { origin: platform.origin, identity: current.id, from: rec.publicKey, to });
      // The new key is on disk (0600) before the daemon hears of it: a crash cannot leave an identity whose key is lost.
      ctx.home.stageKey(name, privateKey, 'next');
      let s;
      try {
        s = await ctx.submit('POST', '/v1/commands', 'identity.rotate', { identity: current.id, publicKey: to, proof }, current);
      } catch (err) {
        ctx.home.discardStaged(name, [], 'next');
        throw err;
      }
      ctx.home.commitRotation(name, current.id, s.receipt.index);
      ctx.print({ name, id: current.id, publicKey: to, index: s.receipt.index, retiredKey: `${ctx.home.keyPath(name)}.retired-${s.receipt.index}` }, () => [
        `✅ ${name} (${current.id}) now signs with a new key: ${to}`,
        `✅ The old key stopped working at ledger entry ${s.receipt.index}; kept as ${ctx.home.keyPath(name)}.retired-${s.receipt.index} (it signs nothing more)`,
        `✅ ${receiptLine(s)}`,
      ]);
    });

  cmd
    .command('revoke')
    .description('revoke an identity for good: its key signs nothing more (yourself; admins and services also by the platform, with --data)')
    .argument('<identity>', 'a local identity, or (with --data) an admin or service the platform registered')
    .option('--reason <text>', 'why (recorded in the ledger)')
    .option('--data <dir>', 'revoke an admin or service with the platform key from this data directory (default: NEXUS_DATA or ./.nexus)')
    .action(async (who: string, o: { reason?: string; data?: string }, c: Command) => {
      const ctx = Ctx.of(c);
      const { platform } = await ctx.connect();
      const local = o.data === undefined ? ctx.home.localName(who) : undefined;
      const rec = await lookup(ctx, local ? ctx.home.identities()[local]! : who);
      if (!rec) throw usage(`unknown identity '${who}' (neither a local name nor known to the daemon)`);
      if (rec.status === 'revoked') {
        ctx.print({ name: rec.name, id: rec.id, status: 'revoked', index: null, changed: false }, () => [`${rec.name} was already revoked at ledger entry ${rec.revokedAt}: no change, nothing recorded`]);
        return;
      }
      let signer: LocalIdentity;
      if (local) signer = ctx.home.signer(local);
      else if (REGISTERED_BY_PLATFORM.has(rec.role)) signer = platformSigner(resolve(dataDirOf(o.data)), platform.id, rec.role, ctx.url);
      else throw usage(`${rec.name} is a ${rec.role}: only its own key revokes it, and ${ctx.home.dir} does not hold it`);
      const body: { [k: string]: string } = { identity: rec.id };
      if (o.reason) body.reason = o.reason;
      const s = await ctx.submit('POST', '/v1/commands', 'identity.revoke', body, signer);
      const kept = local ? ctx.home.retireRevoked(local, s.receipt.index) : undefined;
      ctx.print({ name: rec.name, id: rec.id, status: 'revoked', index: s.receipt.index, changed: true, ...(kept ? { key: kept } : {}) }, () => [
        `✅ ${rec.name} (${rec.id}) revoked at ledger entry ${s.receipt.index}: its key signs nothing more${o.reason ? ` (${o.reason})` : ''}`,
        ...(kept ? [`✅ Its key is kept as ${kept}; the name is no longer a local identity`] : []),
        `✅ ${receiptLine(s)}`,
      ]);
    });

  cmd
    .command('forget-platform')
    .description("start over with a daemon whose data directory was deleted: forget the platform key pinned for its URL and the checkpoint saved of its log (filed as evidence)")
    .argument('[url]', 'the daemon URL (default: --server, NEXUS_URL, or http://127.0.0.1:7600)')
    .action(async (url: string | undefined, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const { forgetPlatform } = await import('../forget.ts');
      const done = forgetPlatform(ctx.home, url ?? ctx.url);
      const names = Object.keys(ctx.home.identities());
      ctx.print(done, () =>
        done.forgotten
          ? [
              `✅ Forgot platform ${done.platformId} at ${done.url}: its pinned key${done.checkpoint ? ', its saved checkpoint' : ''}${done.alarms.length ? ` and ${done.alarms.length} open alarm(s)` : ''} are filed in ${done.evidence}`,
              `   The next command pins whatever platform answers at ${done.url} (trust on first use).`,
              ...(names.length ? [`   Register your keys with it again: ${names.map((n) => `nexus identity import ${n}`).join('; ')}`] : []),
            ]
          : [`nothing pinned for ${done.url}: no change`],
      );
    });

  return cmd;
}
