import { Command, Option } from 'commander';
import { generateKeyPair, identityIdFromPublicKey, loadPrivateKey, publicKeyRaw } from '../../core/identity/keys.ts';
import { isInitialised, PLATFORM_KEY_FILE } from '../../core/platform-files.ts';
import { join, resolve } from 'node:path';
import { Ctx, receiptLine } from '../context.ts';
import { usage } from '../errors.ts';
import { NAME_RE, type LocalIdentity } from '../home.ts';
import { dataDirOf } from './operator.ts';
import { table } from '../format.ts';

interface IdentityRecord {
  id: string;
  name: string;
  role: string;
  publicKey?: string;
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
      const { platform } = await ctx.connect();
      const byPlatform = REGISTERED_BY_PLATFORM.has(o.role);
      const platformKey = byPlatform ? platformSigner(resolve(dataDirOf(o.data)), platform.id, o.role, ctx.url) : undefined;
      const { privateKey } = generateKeyPair();
      const raw = publicKeyRaw(privateKey);
      // The key is on disk (0600) before the public half leaves the machine: a crash cannot orphan a registered identity.
      const id = ctx.home.saveIdentity(name, privateKey);
      const self: LocalIdentity = { name, id, key: privateKey };
      let s;
      try {
        s = await ctx.submit('POST', '/v1/identities', 'identity.register', { name, role: o.role, publicKey: raw.toString('base64') }, platformKey ?? self);
      } catch (err) {
        ctx.home.forgetIdentity(name);
        throw err;
      }
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
        ...(rec.publicKey ? [`  public key: ${rec.publicKey}`] : []),
        `  local key:  ${local ? ctx.home.keyPath(local) : '(not held on this machine)'}`,
      ]);
    });

  return cmd;
}
