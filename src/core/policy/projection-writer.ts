// The only code that mutates projections. Imported by the chokepoint alone (enforced by the
// `no-restricted-imports` rule in eslint.config.js); everything else submits a signed command.
import { identityIdFromPublicKey } from '../identity/keys.ts';
import type { WriteTx } from '../store/index.ts';
import type { Command } from '../types.ts';
import { DEFAULT_ENVELOPE, ENVELOPE_FIELDS } from './commands.ts';
import type { PlatformRow } from './gate.ts';
import { absoluteName, imvuDomainsFor } from './naming.ts';

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
      await tx.run('INSERT INTO domains (name, imvu, kind, entry) VALUES (?, ?, ?, ?)', [primary, id, 'primary', index]);
      await tx.run('INSERT INTO zones (name, imvu, serial, entry) VALUES (?, ?, ?, ?)', [primary, id, 1, index]);
      const ns = `ns1.${platform.suffix}.`;
      let n = 0;
      await addRecord(tx, index, n++, primary, primary, 'NS', ns);
      await addRecord(tx, index, n++, primary, primary, 'A', platform.edge_address);
      await addRecord(tx, index, n++, primary, stage, 'A', platform.edge_address);
      await addRecord(tx, index, n++, primary, primary, 'MX', `10 mail.${primary}.`);
      await addRecord(tx, index, n++, primary, `mail.${primary}`, 'A', platform.edge_address);
      await addRecord(tx, index, n++, primary, primary, 'TXT', 'v=spf1 mx -all');
      await addRecord(tx, index, n++, primary, `_dmarc.${primary}`, 'TXT', `v=DMARC1; p=reject; rua=mailto:admin@${primary}`);
      for (const local of ['creator', 'admin'])
        await tx.run('INSERT INTO mailboxes (address, imvu, entry) VALUES (?, ?, ?)', [`${local}@${primary}`, id, index]);
      await tx.run('INSERT INTO routes (imvu, policy, entry) VALUES (?, ?, ?)', [id, JSON.stringify(defaultTrafficPolicy()), index]);
      return;
    }
    case 'imvu.scale': {
      for (const f of ENVELOPE_FIELDS)
        if (typeof b[f] === 'number') await tx.run(`UPDATE envelopes SET ${f} = ?, entry = ? WHERE imvu = ?`, [b[f] as number, index, String(b.imvu)]);
      return;
    }
    case 'imvu.suspend':
      await tx.run("UPDATE imvus SET status = 'suspended' WHERE id = ?", [String(b.imvu)]);
      return;
    case 'imvu.resume':
      await tx.run("UPDATE imvus SET status = 'active' WHERE id = ? AND status = 'suspended'", [String(b.imvu)]);
      return;
    case 'imvu.exit':
      await tx.run("UPDATE imvus SET status = 'exited' WHERE id = ?", [String(b.imvu)]);
      return;
    case 'member.add':
      await tx.run('INSERT OR IGNORE INTO members (imvu, identity, entry) VALUES (?, ?, ?)', [String(b.imvu), String(b.identity), index]);
      return;
    case 'domain.claim':
      await tx.run('INSERT INTO domains (name, imvu, kind, entry) VALUES (?, ?, ?, ?)', [String(b.domain), String(b.imvu), 'custom', index]);
      await tx.run('INSERT INTO zones (name, imvu, serial, entry) VALUES (?, ?, ?, ?)', [String(b.domain), String(b.imvu), 1, index]);
      return;
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
      await tx.run('INSERT INTO notifications (entry, recipient, imvu, about, gate, message, at) VALUES (?, ?, ?, ?, ?, ?, ?)', [
        index,
        String(b.recipient),
        String(b.imvu),
        b.about as number,
        b.gate as number,
        String(b.message),
        at,
      ]);
      return;
    case 'dkim.publish': {
      const imvu = String(b.imvu);
      const zone = await tx.get<{ domain: string }>('SELECT domain FROM imvus WHERE id = ?', [imvu]);
      if (!zone) throw new Error(`unknown IMVU ${imvu}`);
      await tx.run('INSERT OR REPLACE INTO dkim_keys (imvu, selector, public_key, entry) VALUES (?, ?, ?, ?)', [imvu, String(b.selector), String(b.publicKey), index]);
      await tx.run("DELETE FROM records WHERE zone = ? AND name = ? AND type = 'TXT'", [zone.domain, `${String(b.selector)}._domainkey.${zone.domain}`]);
      await addRecord(tx, index, 0, zone.domain, `${String(b.selector)}._domainkey.${zone.domain}`, 'TXT', `v=DKIM1; k=rsa; p=${String(b.publicKey)}`);
      await bumpSerial(tx, zone.domain);
      return;
    }
    case 'dnssec.publish': {
      // The zone's DNSKEY changes: its serial moves like for any other record (secondaries follow it).
      const zone = String(b.zone).toLowerCase();
      const flags = b.flags as number;
      const algorithm = b.algorithm as number;
      // The key tag is derived from the key wherever it is needed (src/domains/dnssec), not stored.
      await tx.run('INSERT OR REPLACE INTO dnssec_keys (zone, imvu, algorithm, flags, public_key, entry) VALUES (?, ?, ?, ?, ?, ?)', [
        zone,
        String(b.imvu),
        algorithm,
        flags,
        String(b.publicKey),
        index,
      ]);
      await bumpSerial(tx, zone);
      return;
    }
    case 'dnssec.resign':
      // No record changes: the new serial makes secondaries transfer the zone (and fresh signatures) again.
      await bumpSerial(tx, String(b.zone).toLowerCase());
      return;
    // Ledger-only facts: the statement reads them from the log itself.
    case 'usage.report':
    case 'revenue.record':
    case 'pricebook.publish':
      return;
    // A record of a repair, not a change of state: the notifications it causes are entries of their own.
    case 'integrity.alarm':
      return;
  }
}
