// The only code that mutates projections. Imported by the chokepoint alone (enforced by the
// `no-restricted-imports` rule in eslint.config.js); everything else submits a signed command.
import { identityIdFromPublicKey } from '../identity/keys.ts';
import type { WriteTx } from '../store/index.ts';
import type { Command } from '../types.ts';
import { DEFAULT_ENVELOPE, ENVELOPE_FIELDS, importHeaderDigest } from './commands.ts';
import type { PlatformRow } from './gate.ts';
import { absoluteName, challengeToken, CLAIM_TTL_MS, imvuDomainsFor, mailRecords } from './naming.ts';
import { instantMillis, periodOfInstant } from '../handshake/period.ts';
import { parsePriceBook } from '../handshake/pricebook.ts';
import { canonicalJson } from '../ledger/canonical.ts';

type Body = Record<string, unknown>;

export const DEFAULT_TTL = 3600;

export function defaultTrafficPolicy() {
  return {
    public: [{ path: '/*', backend: 'public-api' }],
    private: [{ path: '/internal/*', backend: 'private-api', require_identity: true }],
    restricted: [{ path: '/admin/*', backend: 'admin-api', require_roles: ['admin'] }],
  };
}

async function bumpSerial(tx: WriteTx, zone: string): Promise<void> {
  await tx.run('UPDATE zones SET serial = serial + 1 WHERE name = ?', [zone]);
}

/** TTL of a DNS-01 challenge record: short, so a resolver never keeps one past its order. */
const ACME_CHALLENGE_TTL = 60;

async function addRecord(tx: WriteTx, index: number, n: number, zone: string, name: string, type: string, value: string, ttl = DEFAULT_TTL) {
  await tx.run('INSERT INTO records (id, zone, name, type, value, ttl, entry) VALUES (?, ?, ?, ?, ?, ?, ?)', [
    `${index}.${n}`,
    zone,
    name,
    type,
    value,
    ttl,
    index,
  ]);
}

/**
 * The names every IMVU zone's NS RRset holds: the platform zone's name servers (`platform.zone`),
 * or `ns1.<suffix>` until the platform has declared them.
 */
/** A domain and its proper ancestors (domain_ancestors: gate 3's lookup of the domains inside a name). */
async function addDomain(tx: WriteTx, name: string, imvu: string, kind: string, index: number): Promise<void> {
  await tx.run('INSERT INTO domains (name, imvu, kind, entry) VALUES (?, ?, ?, ?)', [name, imvu, kind, index]);
  const labels = name.split('.');
  for (let i = 1; i < labels.length; i++) await tx.run('INSERT INTO domain_ancestors (ancestor, name, entry) VALUES (?, ?, ?)', [labels.slice(i).join('.'), name, index]);
}

async function nameServerNames(tx: WriteTx, platform: PlatformRow): Promise<string[]> {
  const rows = await tx.all<{ name: string }>('SELECT DISTINCT name FROM nameservers ORDER BY name');
  return rows.length ? rows.map((r) => r.name) : [`ns1.${platform.suffix}`];
}

/** Applies an allowed command. Deterministic: the same entries in the same order give the same rows. */
export async function applyCommand(tx: WriteTx, index: number, command: Command, at: string, platform: PlatformRow | undefined): Promise<void> {
  const b = command.body as Body;
  switch (command.type) {
    case 'platform.genesis':
      await tx.run('INSERT INTO platform (id, origin, suffix, edge_address, entry) VALUES (?, ?, ?, ?, ?)', [
        command.actor,
        String(b.origin),
        String(b.suffix),
        String(b.edgeAddress),
        index,
      ]);
      await tx.run('INSERT INTO identities (id, name, role, public_key, entry) VALUES (?, ?, ?, ?, ?)', [
        command.actor,
        'platform',
        'platform',
        String(b.publicKey),
        index,
      ]);
      return;
    case 'identity.register': {
      const id = identityIdFromPublicKey(Buffer.from(String(b.publicKey), 'base64'));
      await tx.run('INSERT INTO identities (id, name, role, public_key, entry) VALUES (?, ?, ?, ?, ?)', [id, String(b.name), String(b.role), String(b.publicKey), index]);
      return;
    }
    case 'identity.rotate': {
      const id = String(b.identity);
      const old = await tx.get<{ public_key: string }>('SELECT public_key FROM identities WHERE id = ?', [id]);
      if (!old) throw new Error(`unknown identity ${id}`);
      await tx.run('INSERT INTO retired_keys (public_key, identity, why, entry) VALUES (?, ?, ?, ?)', [old.public_key, id, 'rotated', index]);
      await tx.run('UPDATE identities SET public_key = ? WHERE id = ?', [String(b.publicKey), id]);
      return;
    }
    case 'identity.revoke': {
      const id = String(b.identity);
      const cur = await tx.get<{ public_key: string }>('SELECT public_key FROM identities WHERE id = ?', [id]);
      if (!cur) throw new Error(`unknown identity ${id}`);
      await tx.run('INSERT INTO retired_keys (public_key, identity, why, entry) VALUES (?, ?, ?, ?)', [cur.public_key, id, 'revoked', index]);
      return;
    }
    case 'imvu.create': {
      if (!platform) throw new Error('no platform');
      const { seq, id, primary, stage } = await imvuDomainsFor(tx, platform);
      const env = { ...DEFAULT_ENVELOPE, ...((b.envelope as Body | undefined) ?? {}) };
      await tx.run(
        'INSERT INTO imvus (id, seq, name, owner, jurisdiction, status, domain, stage_domain, created_at, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        [id, seq, String(b.name), String(b.owner), String(b.jurisdiction), 'active', primary, stage, at, index],
      );
      await tx.run(
        'INSERT INTO envelopes (imvu, cpu_cores, memory_gb, storage_gb, iops, burst_multiplier, burst_minutes, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        [id, env.cpu_cores, env.memory_gb, env.storage_gb, env.iops, env.burst_multiplier, env.burst_minutes, index],
      );
      await recordEnvelope(tx, id, index, at);
      await addDomain(tx, primary, id, 'primary', index);
      await tx.run('INSERT INTO zones (name, imvu, serial, entry) VALUES (?, ?, ?, ?)', [primary, id, 1, index]);
      let n = 0;
      for (const ns of await nameServerNames(tx, platform)) await addRecord(tx, index, n++, primary, primary, 'NS', `${ns}.`);
      await addRecord(tx, index, n++, primary, primary, 'A', platform.edge_address);
      await addRecord(tx, index, n++, primary, stage, 'A', platform.edge_address);
      for (const r of mailRecords(primary, platform.edge_address)) await addRecord(tx, index, n++, primary, r.name, r.type, r.value);
      for (const local of ['creator', 'admin'])
        await tx.run('INSERT INTO mailboxes (address, imvu, entry) VALUES (?, ?, ?)', [`${local}@${primary}`, id, index]);
      await tx.run('INSERT INTO routes (imvu, policy, entry) VALUES (?, ?, ?)', [id, JSON.stringify(defaultTrafficPolicy()), index]);
      return;
    }
    case 'imvu.import': {
      // The IMVU as it was served on the platform it left: same id, owner, zone (records, serial,
      // DNSSEC keys), DKIM selectors, mailboxes and routes; no defaults of its own. The private keys
      // are installed by the provision hook from the verified archive (src/imvu/import/).
      const id = String(b.id);
      const zone = b.zone as ImportedZone;
      const env = { ...DEFAULT_ENVELOPE, ...((b.envelope as Body | undefined) ?? {}) };
      // With declared parts, the zone is not whole yet: `importing` (not served) until the last one.
      const parts = (b.parts as { sha256: string; records: number }[] | undefined) ?? [];
      await tx.run(
        'INSERT INTO imvus (id, seq, name, owner, jurisdiction, status, domain, stage_domain, created_at, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        [id, Number(id.slice('IMVU-'.length)), String(b.name), String(b.owner), String(b.jurisdiction), parts.length ? 'importing' : 'active', zone.name, `stage.${zone.name}`, at, index],
      );
      await declareParts(tx, id, zone.name, b);
      await tx.run(
        'INSERT INTO envelopes (imvu, cpu_cores, memory_gb, storage_gb, iops, burst_multiplier, burst_minutes, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        [id, env.cpu_cores, env.memory_gb, env.storage_gb, env.iops, env.burst_multiplier, env.burst_minutes, index],
      );
      await recordEnvelope(tx, id, index, at);
      await addDomain(tx, zone.name, id, 'primary', index);
      await addImportedZone(tx, index, id, zone, at);
      for (const k of b.dkim as { selector: string; publicKey: string; state: string }[])
        await tx.run('INSERT INTO dkim_keys (imvu, selector, public_key, state, since, entry) VALUES (?, ?, ?, ?, ?, ?)', [id, k.selector, k.publicKey, k.state, at, index]);
      for (const address of b.mailboxes as string[]) await tx.run('INSERT INTO mailboxes (address, imvu, entry) VALUES (?, ?, ?)', [address, id, index]);
      await tx.run('INSERT INTO routes (imvu, policy, entry) VALUES (?, ?, ?)', [id, JSON.stringify(b.routes), index]);
      const source = b.source as { origin: string; platformKey: string; treeSize: number; archive: string; manifest: string; checkpoint: string };
      // The checkpoint's third line: its root hash (gate 13 opened and checked the note).
      const root = source.checkpoint.split('\n')[2] ?? '';
      await tx.run('INSERT INTO imports (imvu, origin, platform_key, tree_size, root_hash, archive_sha256, manifest_sha256, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [
        id,
        source.origin,
        source.platformKey,
        source.treeSize,
        root,
        source.archive,
        source.manifest,
        index,
      ]);
      return;
    }
    case 'imvu.import.part': {
      // Gate 13 checked the part against its declaration; its records join the imported zone.
      // The zone is the header's: the IMVU's own (imvu.import) or a transferred domain (domain.transfer).
      const id = String(b.imvu);
      const header = String(b.import);
      const part = await tx.get<{ zone: string }>('SELECT zone FROM import_parts WHERE header = ? AND part = ? AND imvu = ?', [header, Number(b.part), id]);
      if (!part) throw new Error(`imvu.import.part of an undeclared part ${String(b.part)} of ${header}`);
      let n = 0;
      for (const r of b.records as ImportedZone['records']) await addRecord(tx, index, n++, part.zone, r.name, r.type, r.value, r.ttl);
      await tx.run('UPDATE import_parts SET entry = ? WHERE header = ? AND part = ?', [index, header, Number(b.part)]);
      const left = await tx.get<{ n: number }>('SELECT COUNT(*) AS n FROM import_parts WHERE header = ? AND entry = 0', [header]);
      if (Number(left?.n ?? 0) === 0) await tx.run("UPDATE imvus SET status = 'active' WHERE id = ? AND status = 'importing'", [id]);
      return;
    }
    case 'domain.transfer': {
      const zone = b.zone as ImportedZone;
      await addDomain(tx, zone.name, String(b.imvu), 'custom', index);
      await addImportedZone(tx, index, String(b.imvu), zone, at);
      await declareParts(tx, String(b.imvu), zone.name, b);
      await tx.run('DELETE FROM domain_claims WHERE name = ?', [zone.name]);
      return;
    }
    case 'platform.peer':
      await tx.run('INSERT OR REPLACE INTO peers (origin, public_key, entry) VALUES (?, ?, ?)', [String(b.origin), String(b.publicKey), index]);
      return;
    case 'imvu.scale': {
      for (const f of ENVELOPE_FIELDS)
        if (typeof b[f] === 'number') await tx.run(`UPDATE envelopes SET ${f} = ?, entry = ? WHERE imvu = ?`, [b[f] as number, index, String(b.imvu)]);
      await recordEnvelope(tx, String(b.imvu), index, at);
      return;
    }
    case 'compute.deploy':
      // A new blueprint keeps the desired state (a running workload is redeployed and restarted).
      await tx.run(
        "INSERT INTO workloads (imvu, blueprint, desired, burst_until, burst_multiplier, entry) VALUES (?, ?, 'stopped', '', 1, ?) ON CONFLICT (imvu) DO UPDATE SET blueprint = excluded.blueprint, entry = excluded.entry",
        [String(b.imvu), canonicalJson(b.blueprint), index],
      );
      return;
    case 'compute.start':
    case 'compute.restart':
      await tx.run("UPDATE workloads SET desired = 'running', entry = ? WHERE imvu = ?", [index, String(b.imvu)]);
      return;
    case 'compute.stop':
      await tx.run("UPDATE workloads SET desired = 'stopped', burst_until = '', burst_multiplier = 1, entry = ? WHERE imvu = ?", [index, String(b.imvu)]);
      return;
    case 'compute.exec':
      return;
    case 'compute.burst': {
      const env = await tx.get<{ burst_minutes: number }>('SELECT burst_minutes FROM envelopes WHERE imvu = ?', [String(b.imvu)]);
      if (!env) throw new Error(`${String(b.imvu)} has no envelope`);
      if (b.phase === 'raise')
        await tx.run('UPDATE workloads SET burst_until = ?, burst_multiplier = ?, entry = ? WHERE imvu = ?', [new Date(Date.parse(at) + Number(env.burst_minutes) * 60_000).toISOString(), Number(b.multiplier), index, String(b.imvu)]);
      else await tx.run("UPDATE workloads SET burst_until = '', burst_multiplier = 1, entry = ? WHERE imvu = ?", [index, String(b.imvu)]);
      return;
    }
    case 'imvu.suspend':
      await tx.run("UPDATE imvus SET status = 'suspended' WHERE id = ?", [String(b.imvu)]);
      return;
    case 'imvu.resume':
      await tx.run("UPDATE imvus SET status = 'active' WHERE id = ? AND status = 'suspended'", [String(b.imvu)]);
      return;
    case 'imvu.exit':
      // Still served, metered and billed as before while the archive is built (gate 13 freezes it against others).
      await tx.run("UPDATE imvus SET status = 'exiting' WHERE id = ?", [String(b.imvu)]);
      await tx.run('INSERT OR REPLACE INTO exits (imvu, started_at, entry) VALUES (?, ?, ?)', [String(b.imvu), at, index]);
      return;
    case 'imvu.exit.ready': {
      const archive = b.archive as { sha256: string; size: number };
      await tx.run('UPDATE exits SET ready_at = ?, archive_sha256 = ?, archive_size = ?, manifest_sha256 = ?, tree_size = ?, ready_entry = ? WHERE imvu = ?', [
        at,
        archive.sha256,
        archive.size,
        String(b.manifest),
        Number(b.treeSize),
        index,
        String(b.imvu),
      ]);
      return;
    }
    case 'imvu.exit.confirm':
    case 'imvu.exit.expire':
      await tx.run("UPDATE imvus SET status = 'exited' WHERE id = ?", [String(b.imvu)]);
      await tx.run('UPDATE exits SET exited_at = ?, how = ?, exited_entry = ? WHERE imvu = ?', [at, command.type === 'imvu.exit.confirm' ? 'confirmed' : 'expired', index, String(b.imvu)]);
      return;
    case 'imvu.purge':
      await tx.run(`UPDATE exits SET ${b.stage === 'release' ? 'released_at' : 'deleted_at'} = ? WHERE imvu = ?`, [at, String(b.imvu)]);
      return;
    case 'member.add':
      await tx.run('INSERT OR IGNORE INTO members (imvu, identity, entry) VALUES (?, ?, ?)', [String(b.imvu), String(b.identity), index]);
      return;
    case 'domain.claim': {
      // Pending: no domain row and no zone (nothing is served) until the claimant proves control.
      if (!platform) throw new Error('no platform');
      const name = String(b.domain);
      const imvu = String(b.imvu);
      await tx.run('DELETE FROM domain_claims WHERE expires_at <= ?', [at]);
      await tx.run('INSERT OR REPLACE INTO domain_claims (name, imvu, token, expires_at, entry) VALUES (?, ?, ?, ?, ?)', [
        name,
        imvu,
        challengeToken(platform.origin, index, imvu, name),
        new Date(Date.parse(at) + CLAIM_TTL_MS).toISOString(),
        index,
      ]);
      return;
    }
    case 'domain.verified': {
      const name = String(b.domain);
      await addDomain(tx, name, String(b.imvu), 'custom', index);
      // The first serial is this entry's index: larger than any serial an earlier, released zone of
      // the same name reached (each entry moves a serial by one at most), so secondaries follow.
      await tx.run('INSERT INTO zones (name, imvu, serial, entry) VALUES (?, ?, ?, ?)', [name, String(b.imvu), index, index]);
      // The first to prove wins: every other claim of the name ends here.
      await tx.run('DELETE FROM domain_claims WHERE name = ?', [name]);
      return;
    }
    case 'domain.release': {
      const name = String(b.domain);
      const imvu = String(b.imvu);
      await tx.run('DELETE FROM domain_claims WHERE name = ? AND imvu = ?', [name, imvu]);
      if (await tx.get('SELECT 1 AS x FROM domains WHERE name = ? AND imvu = ?', [name, imvu])) {
        await tx.run('DELETE FROM records WHERE zone = ?', [name]);
        await tx.run('DELETE FROM dnssec_keys WHERE zone = ?', [name]);
        await tx.run('DELETE FROM zones WHERE name = ?', [name]);
        await tx.run('DELETE FROM domains WHERE name = ? AND imvu = ?', [name, imvu]);
        await tx.run('DELETE FROM domain_ancestors WHERE name = ?', [name]);
        // A transferred domain's declared parts go with it: one released before its last part would
        // otherwise stay unserved whoever holds it next, and a transfer again starts afresh.
        await tx.run('DELETE FROM import_parts WHERE zone = ? AND imvu = ?', [name, imvu]);
      }
      return;
    }
    case 'dns.record.add': {
      const zone = String(b.zone);
      await addRecord(tx, index, 0, zone, absoluteName(String(b.name), zone), String(b.type), String(b.value), (b.ttl as number | undefined) ?? DEFAULT_TTL);
      await bumpSerial(tx, zone);
      return;
    }
    case 'dns.record.remove': {
      const zone = String(b.zone);
      const name = absoluteName(String(b.name), zone);
      if (b.value === undefined) await tx.run('DELETE FROM records WHERE zone = ? AND name = ? AND type = ?', [zone, name, String(b.type)]);
      else await tx.run('DELETE FROM records WHERE zone = ? AND name = ? AND type = ? AND value = ?', [zone, name, String(b.type), String(b.value)]);
      await bumpSerial(tx, zone);
      return;
    }
    case 'mailbox.add':
      await tx.run('INSERT INTO mailboxes (address, imvu, entry) VALUES (?, ?, ?)', [String(b.address), String(b.imvu), index]);
      return;
    case 'mailbox.remove':
      await tx.run('DELETE FROM mailboxes WHERE address = ? AND imvu = ?', [String(b.address), String(b.imvu)]);
      // A removed mailbox logs in no more, and one added again later starts without a password.
      await tx.run('DELETE FROM mail_passwords WHERE address = ? AND imvu = ?', [String(b.address), String(b.imvu)]);
      return;
    case 'mail.password.set':
      await tx.run('DELETE FROM mail_passwords WHERE address = ?', [String(b.address)]);
      await tx.run('INSERT INTO mail_passwords (address, imvu, identity, hash, entry) VALUES (?, ?, ?, ?, ?)', [String(b.address), String(b.imvu), command.actor, String(b.hash), index]);
      return;
    case 'mail.password.revoke':
      await tx.run('DELETE FROM mail_passwords WHERE address = ? AND imvu = ?', [String(b.address), String(b.imvu)]);
      return;
    case 'mail.send':
    case 'mail.refusals':
      // Recorded for what gate 5 says about it; it changes no state.
      return;
    case 'route.set':
      await tx.run('UPDATE routes SET policy = ?, entry = ? WHERE imvu = ?', [JSON.stringify(b.policy), index, String(b.imvu)]);
      return;
    case 'consent.record':
      await tx.run('INSERT INTO consents (entry, subject, imvu, purpose, granted, at) VALUES (?, ?, ?, ?, ?, ?)', [
        index,
        String(b.subject),
        String(b.imvu),
        String(b.purpose),
        b.granted ? 1 : 0,
        at,
      ]);
      return;
    case 'notify.creator':
      await tx.run('INSERT INTO notifications (entry, recipient, imvu, about, gate, message, at, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [
        index,
        String(b.recipient),
        String(b.imvu),
        b.about as number,
        b.gate as number,
        String(b.message),
        at,
        typeof b.source === 'string' ? b.source : null,
      ]);
      return;
    case 'dkim.publish': {
      const imvu = String(b.imvu);
      const zone = await tx.get<{ domain: string }>('SELECT domain FROM imvus WHERE id = ?', [imvu]);
      if (!zone) throw new Error(`unknown IMVU ${imvu}`);
      // The first key of an IMVU signs at once (provisioning); a later one waits beside it (rotation, gate 17).
      const first = !(await tx.get('SELECT 1 AS x FROM dkim_keys WHERE imvu = ?', [imvu]));
      await tx.run('INSERT INTO dkim_keys (imvu, selector, public_key, state, since, entry) VALUES (?, ?, ?, ?, ?, ?)', [
        imvu,
        String(b.selector),
        String(b.publicKey),
        first ? 'active' : 'published',
        at,
        index,
      ]);
      await tx.run("DELETE FROM records WHERE zone = ? AND name = ? AND type = 'TXT'", [zone.domain, `${String(b.selector)}._domainkey.${zone.domain}`]);
      await addRecord(tx, index, 0, zone.domain, `${String(b.selector)}._domainkey.${zone.domain}`, 'TXT', `v=DKIM1; k=rsa; p=${String(b.publicKey)}`);
      await bumpSerial(tx, zone.domain);
      return;
    }
    case 'dkim.activate': {
      // Mail is signed with the new selector from now on; the old one stays published (retired).
      const imvu = String(b.imvu);
      // `entry` stays the publication's (what a creator checks the key against); `since` moves.
      await tx.run("UPDATE dkim_keys SET state = 'retired', since = ? WHERE imvu = ? AND state = 'active'", [at, imvu]);
      await tx.run("UPDATE dkim_keys SET state = 'active', since = ? WHERE imvu = ? AND selector = ?", [at, imvu, String(b.selector)]);
      return;
    }
    case 'dkim.remove': {
      const imvu = String(b.imvu);
      const zone = await tx.get<{ domain: string }>('SELECT domain FROM imvus WHERE id = ?', [imvu]);
      if (!zone) throw new Error(`unknown IMVU ${imvu}`);
      await tx.run('DELETE FROM dkim_keys WHERE imvu = ? AND selector = ?', [imvu, String(b.selector)]);
      await tx.run("DELETE FROM records WHERE zone = ? AND name = ? AND type = 'TXT'", [zone.domain, `${String(b.selector)}._domainkey.${zone.domain}`]);
      await bumpSerial(tx, zone.domain);
      return;
    }
    case 'dnssec.publish': {
      // The zone's DNSKEY RRset changes: its serial moves like for any other record (secondaries follow it).
      const zone = String(b.zone);
      // The zone's first key signs at once (provisioning); a later one is published beside it (rollover, gate 17).
      const first = !(await tx.get('SELECT 1 AS x FROM dnssec_keys WHERE zone = ?', [zone]));
      // The key tag is derived from the key wherever it is needed (src/domains/dnssec), not stored.
      await tx.run('INSERT INTO dnssec_keys (zone, imvu, algorithm, flags, public_key, state, since, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [
        zone,
        String(b.imvu),
        b.algorithm as number,
        b.flags as number,
        String(b.publicKey),
        first ? 'active' : 'published',
        at,
        index,
      ]);
      await bumpSerial(tx, zone);
      return;
    }
    case 'dnssec.activate': {
      // Signing switches to the new key; the old one stays in the DNSKEY RRset (retired) until removed.
      const zone = String(b.zone);
      // `entry` stays the publication's (the DS a creator checks is proved by that entry); `since` moves.
      await tx.run("UPDATE dnssec_keys SET state = 'retired', since = ? WHERE zone = ? AND state = 'active'", [at, zone]);
      await tx.run("UPDATE dnssec_keys SET state = 'active', since = ? WHERE zone = ? AND public_key = ?", [at, zone, String(b.publicKey)]);
      await bumpSerial(tx, zone);
      return;
    }
    case 'dnssec.remove': {
      const zone = String(b.zone);
      await tx.run('DELETE FROM dnssec_keys WHERE zone = ? AND public_key = ?', [zone, String(b.publicKey)]);
      await bumpSerial(tx, zone);
      return;
    }
    case 'plan.publish':
      await tx.run('INSERT OR REPLACE INTO plan (id, cpu_cores, memory_gb, storage_gb, iops, imvus_per_creator, entry) VALUES (?, ?, ?, ?, ?, ?, ?)', [
        'plan',
        b.cpu_cores as number,
        b.memory_gb as number,
        b.storage_gb as number,
        b.iops as number,
        b.imvus_per_creator as number,
        index,
      ]);
      return;
    case 'quota.approve': {
      const e = b.envelope as Record<string, number | undefined>;
      const [kind, subject] = typeof b.imvu === 'string' ? ['imvu', b.imvu] : ['creator', String(b.creator)];
      await tx.run(
        'INSERT OR REPLACE INTO quota_approvals (kind, subject, cpu_cores, memory_gb, storage_gb, iops, imvus, reason, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
        [kind, subject, e.cpu_cores ?? null, e.memory_gb ?? null, e.storage_gb ?? null, e.iops ?? null, e.imvus ?? null, String(b.reason), index],
      );
      return;
    }
    case 'dnssec.resign':
      // No record changes: the new serial makes secondaries transfer the zone (and fresh signatures) again.
      await bumpSerial(tx, String(b.zone));
      return;
    case 'platform.zone': {
      // The platform's own zone: its key (imvu '': no IMVU owns it) and its name servers. Its
      // serial is derived from the entries that shape it (src/domains/registry/), so nothing is
      // bumped for it here; an IMVU zone's NS RRset follows a change of the names.
      if (!platform) throw new Error('no platform');
      // One key, never rolled (every resolver's trust anchor): a re-declaration replaces the row.
      await tx.run("DELETE FROM dnssec_keys WHERE zone = ? AND imvu = ''", [String(b.zone)]);
      await tx.run('INSERT INTO dnssec_keys (zone, imvu, algorithm, flags, public_key, state, since, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [
        String(b.zone),
        '',
        b.algorithm as number,
        b.flags as number,
        String(b.publicKey),
        'active',
        at,
        index,
      ]);
      const before = await nameServerNames(tx, platform);
      await tx.run('DELETE FROM nameservers');
      for (const ns of b.nameservers as { name: string; address: string }[])
        await tx.run('INSERT INTO nameservers (name, address, entry) VALUES (?, ?, ?)', [ns.name, ns.address, index]);
      const after = await nameServerNames(tx, platform);
      if (before.join(' ') === after.join(' ')) return;
      let n = 0;
      for (const { domain } of await tx.all<{ domain: string }>('SELECT domain FROM imvus ORDER BY seq')) {
        for (const ns of before) await tx.run("DELETE FROM records WHERE zone = ? AND name = ? AND type = 'NS' AND value = ?", [domain, domain, `${ns}.`]);
        for (const ns of after) await addRecord(tx, index, n++, domain, domain, 'NS', `${ns}.`);
        await bumpSerial(tx, domain);
      }
      return;
    }
    case 'snapshot.create': {
      const c = b.covers as { layer: string; entries: number; data_bytes: string; blueprint?: string; envelope: Record<string, number> };
      await tx.run('INSERT INTO snapshots (imvu, digest, size, layer, entries, data_bytes, blueprint, envelope, at, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)', [
        String(b.imvu),
        String(b.digest),
        String(b.size),
        c.layer,
        c.entries,
        c.data_bytes,
        c.blueprint ?? null,
        canonicalJson(c.envelope),
        at,
        index,
      ]);
      return;
    }
    case 'snapshot.rollback':
      await tx.run('INSERT INTO snapshot_rollbacks (entry, imvu, digest, at) VALUES (?, ?, ?, ?)', [index, String(b.imvu), String(b.digest), at]);
      return;
    case 'acme.challenge': {
      // TXT records of the platform's certificate orders, served like any record of the zone
      // (signed, in ZONEMD and transfers) while the order is in progress.
      const zones = new Set<string>();
      let n = 0;
      for (const r of b.records as { zone: string; name: string; value: string }[]) {
        await tx.run("DELETE FROM records WHERE zone = ? AND name = ? AND type = 'TXT' AND value = ?", [r.zone, r.name, r.value]);
        if (b.action === 'publish') await addRecord(tx, index, n++, r.zone, r.name, 'TXT', r.value, ACME_CHALLENGE_TTL);
        zones.add(r.zone);
      }
      for (const z of zones) await bumpSerial(tx, z);
      return;
    }
    case 'certificate.issued':
      await tx.run('DELETE FROM certificates WHERE imvu = ?', [String(b.imvu)]);
      await tx.run('INSERT INTO certificates (imvu, names, serial, sha256, not_before, not_after, issuer, directory, at, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)', [
        String(b.imvu),
        (b.names as string[]).join(' '),
        String(b.serial),
        String(b.sha256),
        String(b.notBefore),
        String(b.notAfter),
        String(b.issuer),
        String(b.directory),
        at,
        index,
      ]);
      return;
    // A proof request changes nothing: the platform's `domain.verified` answers it.
    case 'domain.verify':
      return;
    // Billing: running totals per IMVU and period, price books, meters, capacities, sealed periods.
    case 'usage.report':
    case 'revenue.record':
    case 'pricebook.publish':
    case 'meter.register':
    case 'capacity.publish':
    case 'period.close':
      await applyBilling(tx, index, command, at);
      return;
    // Ledger-only facts: the counts of refused anonymous attempts, and of requests the gateway refused.
    case 'noise.summary':
    case 'gateway.refusals':
      return;
  }
}

type ImportedZone = { name: string; serial: number; records: { name: string; type: string; value: string; ttl: number }[]; dnssec: { algorithm: number; flags: number; publicKey: string; state: string }[] };

/** A zone exactly as an exit archive holds it: its serial, records and DNSSEC public keys. */
/**
 * The parts a header (`imvu.import`, `domain.transfer`) declares of its zone, outstanding until an
 * `imvu.import.part` records each; while any is, the zone is not served. A header digest repeats
 * only for the very same body (a domain released and transferred again): its parts are owed again.
 */
async function declareParts(tx: WriteTx, imvu: string, zone: string, b: Body): Promise<void> {
  const parts = (b.parts as { sha256: string; records: number }[] | undefined) ?? [];
  if (!parts.length) return;
  const header = importHeaderDigest(b);
  for (const [n, p] of parts.entries())
    await tx.run('INSERT OR REPLACE INTO import_parts (imvu, zone, part, header, sha256, records, entry) VALUES (?, ?, ?, ?, ?, ?, 0)', [imvu, zone, n, header, p.sha256, p.records]);
}

async function addImportedZone(tx: WriteTx, index: number, imvu: string, zone: ImportedZone, at: string): Promise<void> {
  await tx.run('INSERT INTO zones (name, imvu, serial, entry) VALUES (?, ?, ?, ?)', [zone.name, imvu, zone.serial, index]);
  let n = 0;
  for (const r of zone.records) await addRecord(tx, index, n++, zone.name, r.name, r.type, r.value, r.ttl);
  for (const k of zone.dnssec)
    await tx.run('INSERT INTO dnssec_keys (zone, imvu, algorithm, flags, public_key, state, since, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [zone.name, imvu, k.algorithm, k.flags, k.publicKey, k.state, at, index]);
}

/** Keeps every envelope an IMVU has had, with the time it took effect (gate 6 bounds usage by them). */
async function recordEnvelope(tx: WriteTx, imvu: string, index: number, at: string): Promise<void> {
  await tx.run(
    'INSERT INTO envelope_history (imvu, entry, at_ms, cpu_cores, memory_gb, storage_gb, iops, burst_multiplier) SELECT imvu, ?, ?, cpu_cores, memory_gb, storage_gb, iops, burst_multiplier FROM envelopes WHERE imvu = ?',
    [index, instantMillis(at), imvu],
  );
}

type Sealed = { imvu: string; currency: string; usageTotal: string; revenueTotal: string; total: string; creator: string; platform: string };

/** Billing state: running totals per IMVU and period (statements read them), price books, meters, capacities, sealed periods. */
async function applyBilling(tx: WriteTx, index: number, command: Command, at: string): Promise<void> {
  const b = command.body as Body;
  switch (command.type) {
    case 'usage.report': {
      const imvu = String(b.imvu);
      const { start, end } = b.period as { start: string; end: string };
      const period = periodOfInstant(start);
      const endMs = instantMillis(end);
      const metrics = b.metrics as Record<string, string>;
      for (const metric of Object.keys(metrics).sort()) {
        const q = BigInt(metrics[metric]!);
        const row = await tx.get<{ quantity: string }>('SELECT quantity FROM usage_totals WHERE imvu = ? AND period = ? AND metric = ?', [imvu, period, metric]);
        if (row)
          await tx.run('UPDATE usage_totals SET quantity = ?, last_end_ms = ?, entry = ? WHERE imvu = ? AND period = ? AND metric = ?', [
            (BigInt(row.quantity) + q).toString(),
            endMs,
            index,
            imvu,
            period,
            metric,
          ]);
        else
          await tx.run('INSERT INTO usage_totals (imvu, period, metric, quantity, last_end_ms, entry) VALUES (?, ?, ?, ?, ?, ?)', [imvu, period, metric, q.toString(), endMs, index]);
      }
      await tx.run('INSERT INTO billing_entries (entry, imvu, period, kind) VALUES (?, ?, ?, ?)', [index, imvu, period, 'usage']);
      return;
    }
    case 'revenue.record': {
      const imvu = String(b.imvu);
      const period = periodOfInstant(typeof b.at === 'string' ? b.at : command.ts);
      const amount = BigInt(String(b.amount));
      const row = await tx.get<{ amount: string; currency: string }>('SELECT amount, currency FROM revenue_totals WHERE imvu = ? AND period = ?', [imvu, period]);
      if (row && row.currency !== String(b.currency)) throw new Error(`revenue of ${imvu} for ${period} is in ${row.currency}, not ${String(b.currency)}`);
      if (row) await tx.run('UPDATE revenue_totals SET amount = ?, entry = ? WHERE imvu = ? AND period = ?', [(BigInt(row.amount) + amount).toString(), index, imvu, period]);
      else
        await tx.run('INSERT INTO revenue_totals (imvu, period, currency, amount, first_entry, entry) VALUES (?, ?, ?, ?, ?, ?)', [imvu, period, String(b.currency), amount.toString(), index, index]);
      await tx.run('INSERT INTO billing_entries (entry, imvu, period, kind) VALUES (?, ?, ?, ?)', [index, imvu, period, 'revenue']);
      return;
    }
    case 'pricebook.publish': {
      const book = parsePriceBook(b);
      await tx.run('INSERT INTO price_books (entry, version, currency, effective_from, body) VALUES (?, ?, ?, ?, ?)', [index, book.version, book.currency, book.effectiveFrom, canonicalJson(b)]);
      return;
    }
    case 'meter.register':
      for (const metric of b.metrics as string[])
        await tx.run('INSERT OR REPLACE INTO meters (metric, identity, since_ms, entry) VALUES (?, ?, ?, ?)', [metric, String(b.identity), instantMillis(at), index]);
      return;
    case 'capacity.publish':
      await tx.run('INSERT INTO capacities (entry, at_ms, dns_queries_per_second, link_bytes_per_second, mail_messages_per_second) VALUES (?, ?, ?, ?, ?)', [
        index,
        instantMillis(at),
        b.dns_queries_per_second as number,
        b.link_bytes_per_second as number,
        b.mail_messages_per_second as number,
      ]);
      return;
    case 'period.close': {
      const period = String(b.period);
      const statements = b.statements as Sealed[];
      for (const s of statements)
        await tx.run(
          'INSERT INTO period_statements (period, imvu, currency, usage_total, revenue_total, total, creator, platform, entry) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
          [period, s.imvu, s.currency, s.usageTotal, s.revenueTotal, s.total, s.creator, s.platform, index],
        );
      const prev = await tx.get<{ last_imvu: string }>('SELECT last_imvu FROM period_closes WHERE period = ?', [period]);
      const last = statements.at(-1)?.imvu ?? prev?.last_imvu ?? '';
      await tx.run('INSERT OR REPLACE INTO period_closes (period, status, last_imvu, entry) VALUES (?, ?, ?, ?)', [period, b.complete ? 'closed' : 'closing', last, index]);
      return;
    }
    default:
      return;
    // A record of a repair, not a change of state: the notifications it causes are entries of their own.
    case 'integrity.alarm':
      return;
    // A claim about the state, checked by verifiers: the state itself does not change.
    case 'ledger.snapshot':
      return;
  }
}
