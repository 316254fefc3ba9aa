// Portable SQL (SQLite today; written to translate directly to PostgreSQL).

export const LEDGER_DDL = `
CREATE TABLE IF NOT EXISTS ledger_entries (
  idx INTEGER PRIMARY KEY,
  data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger_nodes (
  level INTEGER NOT NULL,
  idx INTEGER NOT NULL,
  hash BLOB NOT NULL,
  PRIMARY KEY (level, idx)
);
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
  size INTEGER PRIMARY KEY,
  note TEXT NOT NULL
);
-- Only for the start's gap check (COUNT(*) of the entries, src/core/policy/integrity.ts): SQLite
-- counts through the smallest b-tree, and the table's own holds every entry's bytes (1.5 s of the
-- start at 1,000,000 entries); this one holds two integers a row (10 ms).
CREATE INDEX IF NOT EXISTS ledger_entries_count ON ledger_entries (idx);
`;

export const LEDGER_TABLES = ['ledger_entries', 'ledger_nodes', 'ledger_checkpoints'] as const;

/**
 * The digest of the projections (src/core/store/digest.ts) at each checkpoint's tree size,
 * written in the same transaction as the checkpoint. Append-only like the ledger tables.
 */
export const INTEGRITY_DDL = `
CREATE TABLE IF NOT EXISTS projection_digests (
  size INTEGER PRIMARY KEY,
  digest TEXT NOT NULL
);
`;

export const INTEGRITY_TABLES = ['projection_digests'] as const;

/** Append-only by trigger: defence in depth; the proof of integrity is the Merkle tree. */
export function appendOnlyTriggersDdl(table: string): string {
  return `
CREATE TRIGGER IF NOT EXISTS ${table}_no_update BEFORE UPDATE ON ${table}
BEGIN SELECT RAISE(ABORT, 'ledger is append-only: UPDATE refused on ${table}'); END;
CREATE TRIGGER IF NOT EXISTS ${table}_no_delete BEFORE DELETE ON ${table}
BEGIN SELECT RAISE(ABORT, 'ledger is append-only: DELETE refused on ${table}'); END;
`;
}

/** The queryable state. Rebuilt from the ledger by replay; only the projection writer mutates it. */
export const PROJECTION_TABLES: Record<string, { ddl: string; key: string }> = {
  platform: {
    key: 'id',
    ddl: `CREATE TABLE IF NOT EXISTS platform (id TEXT PRIMARY KEY, origin TEXT NOT NULL, suffix TEXT NOT NULL, edge_address TEXT NOT NULL, entry INTEGER NOT NULL)`,
  },
  identities: {
    key: 'id',
    ddl: `CREATE TABLE IF NOT EXISTS identities (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, role TEXT NOT NULL, public_key TEXT NOT NULL, entry INTEGER NOT NULL)`,
  },
  /**
   * Keys an identity no longer signs with (identity.rotate, identity.revoke): `why` is 'rotated'
   * (replaced by the key in identities.public_key from entry `entry` on) or 'revoked' (the key in
   * identities.public_key is this one: the identity signs nothing more). A key is never used twice.
   */
  retired_keys: {
    key: 'public_key',
    ddl: `CREATE TABLE IF NOT EXISTS retired_keys (public_key TEXT PRIMARY KEY, identity TEXT NOT NULL, why TEXT NOT NULL, entry INTEGER NOT NULL)`,
  },
  imvus: {
    key: 'id',
    ddl: `CREATE TABLE IF NOT EXISTS imvus (id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, name TEXT NOT NULL UNIQUE, owner TEXT NOT NULL, jurisdiction TEXT NOT NULL, status TEXT NOT NULL, domain TEXT NOT NULL, stage_domain TEXT NOT NULL, created_at TEXT NOT NULL, entry INTEGER NOT NULL)`,
  },
  /**
   * What each IMVU runs (compute.deploy) and whether it should run (compute.start/stop/restart);
   * burst_until: when the CPU burst raised by the compute service ends ('' when not bursting).
   */
  workloads: {
    key: 'imvu',
    ddl: `CREATE TABLE IF NOT EXISTS workloads (imvu TEXT PRIMARY KEY, blueprint TEXT NOT NULL, desired TEXT NOT NULL, burst_until TEXT NOT NULL, burst_multiplier INTEGER NOT NULL, entry INTEGER NOT NULL)`,
  },
  envelopes: {
    key: 'imvu',
    ddl: `CREATE TABLE IF NOT EXISTS envelopes (imvu TEXT PRIMARY KEY, cpu_cores INTEGER NOT NULL, memory_gb INTEGER NOT NULL, storage_gb INTEGER NOT NULL, iops INTEGER NOT NULL, burst_multiplier INTEGER NOT NULL, burst_minutes INTEGER NOT NULL, entry INTEGER NOT NULL)`,
  },
  members: {
    key: 'imvu, identity',
    ddl: `CREATE TABLE IF NOT EXISTS members (imvu TEXT NOT NULL, identity TEXT NOT NULL, entry INTEGER NOT NULL, PRIMARY KEY (imvu, identity))`,
  },
  domains: {
    key: 'name',
    ddl: `CREATE TABLE IF NOT EXISTS domains (name TEXT PRIMARY KEY, imvu TEXT NOT NULL, kind TEXT NOT NULL, entry INTEGER NOT NULL)`,
  },
  /**
   * Every proper ancestor of every domain in `domains` (`b.example.com` and `example.com` for
   * `a.b.example.com`): gate 3 finds a domain inside a name by one indexed lookup, not by a scan.
   */
  domain_ancestors: {
    key: 'ancestor, name',
    ddl: `CREATE TABLE IF NOT EXISTS domain_ancestors (ancestor TEXT NOT NULL, name TEXT NOT NULL, entry INTEGER NOT NULL, PRIMARY KEY (ancestor, name))`,
  },
  zones: {
    key: 'name',
    ddl: `CREATE TABLE IF NOT EXISTS zones (name TEXT PRIMARY KEY, imvu TEXT NOT NULL, serial INTEGER NOT NULL, entry INTEGER NOT NULL)`,
  },
  records: {
    key: 'id',
    ddl: `CREATE TABLE IF NOT EXISTS records (id TEXT PRIMARY KEY, zone TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL, value TEXT NOT NULL, ttl INTEGER NOT NULL, entry INTEGER NOT NULL)`,
  },
  mailboxes: {
    key: 'address',
    ddl: `CREATE TABLE IF NOT EXISTS mailboxes (address TEXT PRIMARY KEY, imvu TEXT NOT NULL, entry INTEGER NOT NULL)`,
  },
  /** App passwords (mail.password.set): one per mailbox, bound to the identity that set it; only scrypt hashes. */
  mail_passwords: {
    key: 'address',
    ddl: `CREATE TABLE IF NOT EXISTS mail_passwords (address TEXT PRIMARY KEY, imvu TEXT NOT NULL, identity TEXT NOT NULL, hash TEXT NOT NULL, entry INTEGER NOT NULL)`,
  },
  routes: {
    key: 'imvu',
    ddl: `CREATE TABLE IF NOT EXISTS routes (imvu TEXT PRIMARY KEY, policy TEXT NOT NULL, entry INTEGER NOT NULL)`,
  },
  consents: {
    key: 'entry',
    ddl: `CREATE TABLE IF NOT EXISTS consents (entry INTEGER PRIMARY KEY, subject TEXT NOT NULL, imvu TEXT NOT NULL, purpose TEXT NOT NULL, granted INTEGER NOT NULL, at TEXT NOT NULL)`,
  },
  notifications: {
    key: 'entry',
    // `source`: the identity whose refused attempts a notice aggregates (NULL for other notices).
    ddl: `CREATE TABLE IF NOT EXISTS notifications (entry INTEGER PRIMARY KEY, recipient TEXT NOT NULL, imvu TEXT NOT NULL, about INTEGER NOT NULL, gate INTEGER NOT NULL, message TEXT NOT NULL, at TEXT NOT NULL, source TEXT)`,
  },
  /** The exit of an IMVU (gate 13): started, archive ready (its digest), ended (confirmed or expired), released, deleted. */
  exits: {
    key: 'imvu',
    ddl: `CREATE TABLE IF NOT EXISTS exits (imvu TEXT PRIMARY KEY, started_at TEXT NOT NULL, ready_at TEXT, archive_sha256 TEXT, archive_size INTEGER, manifest_sha256 TEXT, tree_size INTEGER, ready_entry INTEGER, exited_at TEXT, how TEXT, exited_entry INTEGER, released_at TEXT, deleted_at TEXT, entry INTEGER NOT NULL)`,
  },
  /** The certificate the gateway serves for each IMVU (certificate.issued, by ACME): names space-separated, serial hex, SHA-256 of the DER. */
  certificates: {
    key: 'imvu',
    ddl: `CREATE TABLE IF NOT EXISTS certificates (imvu TEXT PRIMARY KEY, names TEXT NOT NULL, serial TEXT NOT NULL, sha256 TEXT NOT NULL, not_before TEXT NOT NULL, not_after TEXT NOT NULL, issuer TEXT NOT NULL, directory TEXT NOT NULL, at TEXT NOT NULL, entry INTEGER NOT NULL)`,
  },
  /** Platforms whose domain transfer codes this platform takes (platform.peer). */
  peers: {
    key: 'origin, public_key',
    ddl: `CREATE TABLE IF NOT EXISTS peers (origin TEXT NOT NULL, public_key TEXT NOT NULL, entry INTEGER NOT NULL, PRIMARY KEY (origin, public_key))`,
  },
  /** An IMVU re-imported from another platform's exit archive (imvu.import): the signed reference to that platform's log. */
  imports: {
    key: 'imvu',
    ddl: `CREATE TABLE IF NOT EXISTS imports (imvu TEXT PRIMARY KEY, origin TEXT NOT NULL, platform_key TEXT NOT NULL, tree_size INTEGER NOT NULL, root_hash TEXT NOT NULL, archive_sha256 TEXT NOT NULL, manifest_sha256 TEXT NOT NULL, entry INTEGER NOT NULL)`,
  },
  /**
   * The parts a header declared (`parts` of imvu.import, or of domain.transfer): `header` is the
   * SHA-256 of that entry's body (canonical JSON) the parts name, `zone` the zone their records
   * join, `entry` the imvu.import.part that recorded it, 0 while outstanding (the zone is not served).
   */
  import_parts: {
    key: 'header, part',
    ddl: `CREATE TABLE IF NOT EXISTS import_parts (imvu TEXT NOT NULL, zone TEXT NOT NULL, part INTEGER NOT NULL, header TEXT NOT NULL, sha256 TEXT NOT NULL, records INTEGER NOT NULL, entry INTEGER NOT NULL, PRIMARY KEY (header, part))`,
  },
  /** DKIM keys per IMVU and selector; `state`: active (signs), published (rotation standby), retired (still published). `since`: when it entered that state. */
  dkim_keys: {
    key: 'imvu, selector',
    ddl: `CREATE TABLE IF NOT EXISTS dkim_keys (imvu TEXT NOT NULL, selector TEXT NOT NULL, public_key TEXT NOT NULL, state TEXT NOT NULL, since TEXT NOT NULL, entry INTEGER NOT NULL, PRIMARY KEY (imvu, selector))`,
  },
  /** DNSSEC keys of zones (public halves; the private keys stay under DATA/keys/dnssec/), several per zone during a rollover; states as for DKIM; imvu '' for the platform's own zone. */
  dnssec_keys: {
    key: 'zone, public_key',
    ddl: `CREATE TABLE IF NOT EXISTS dnssec_keys (zone TEXT NOT NULL, imvu TEXT NOT NULL, algorithm INTEGER NOT NULL, flags INTEGER NOT NULL, public_key TEXT NOT NULL, state TEXT NOT NULL, since TEXT NOT NULL, entry INTEGER NOT NULL, PRIMARY KEY (zone, public_key))`,
  },
  /** The plan limits in force (the latest `plan.publish`). */
  plan: {
    key: 'id',
    ddl: `CREATE TABLE IF NOT EXISTS plan (id TEXT PRIMARY KEY, cpu_cores INTEGER NOT NULL, memory_gb INTEGER NOT NULL, storage_gb INTEGER NOT NULL, iops INTEGER NOT NULL, imvus_per_creator INTEGER NOT NULL, entry INTEGER NOT NULL)`,
  },
  /** Approvals above the plan (`quota.approve`): the latest per subject (an IMVU or a creator) is in force; NULL fields approve nothing. */
  quota_approvals: {
    key: 'kind, subject',
    ddl: `CREATE TABLE IF NOT EXISTS quota_approvals (kind TEXT NOT NULL, subject TEXT NOT NULL, cpu_cores INTEGER, memory_gb INTEGER, storage_gb INTEGER, iops INTEGER, imvus INTEGER, reason TEXT NOT NULL, entry INTEGER NOT NULL, PRIMARY KEY (kind, subject))`,
  },
  /** Billing (src/core/handshake): price books by entry, read for the period in force without a ledger scan. */
  price_books: {
    key: 'entry',
    ddl: `CREATE TABLE IF NOT EXISTS price_books (entry INTEGER PRIMARY KEY, version INTEGER NOT NULL, currency TEXT NOT NULL, effective_from TEXT NOT NULL, body TEXT NOT NULL)`,
  },
  /** Published capacities (capacity.publish), each in force for intervals starting at or after at_ms. */
  capacities: {
    key: 'entry',
    ddl: `CREATE TABLE IF NOT EXISTS capacities (entry INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, dns_queries_per_second INTEGER NOT NULL, link_bytes_per_second INTEGER NOT NULL, mail_messages_per_second INTEGER NOT NULL)`,
  },
  /** The one identity that reports each metric (meter.register), from since_ms on. */
  meters: {
    key: 'metric',
    ddl: `CREATE TABLE IF NOT EXISTS meters (metric TEXT PRIMARY KEY, identity TEXT NOT NULL, since_ms INTEGER NOT NULL, entry INTEGER NOT NULL)`,
  },
  /** Every envelope an IMVU has had and since when, to bound usage over any interval. */
  envelope_history: {
    key: 'imvu, entry',
    ddl: `CREATE TABLE IF NOT EXISTS envelope_history (imvu TEXT NOT NULL, entry INTEGER NOT NULL, at_ms INTEGER NOT NULL, cpu_cores INTEGER NOT NULL, memory_gb INTEGER NOT NULL, storage_gb INTEGER NOT NULL, iops INTEGER NOT NULL, burst_multiplier INTEGER NOT NULL, PRIMARY KEY (imvu, entry))`,
  },
  /** Summed usage per IMVU, period and metric (decimal strings), and where the last reported interval ended. */
  usage_totals: {
    key: 'imvu, period, metric',
    ddl: `CREATE TABLE IF NOT EXISTS usage_totals (imvu TEXT NOT NULL, period TEXT NOT NULL, metric TEXT NOT NULL, quantity TEXT NOT NULL, last_end_ms INTEGER NOT NULL, entry INTEGER NOT NULL, PRIMARY KEY (imvu, period, metric))`,
  },
  /** Summed revenue per IMVU and period (one currency: the price book's). */
  revenue_totals: {
    key: 'imvu, period',
    ddl: `CREATE TABLE IF NOT EXISTS revenue_totals (imvu TEXT NOT NULL, period TEXT NOT NULL, currency TEXT NOT NULL, amount TEXT NOT NULL, first_entry INTEGER NOT NULL, entry INTEGER NOT NULL, PRIMARY KEY (imvu, period))`,
  },
  /** The usage and revenue entries of each IMVU and period (a statement lists them). */
  billing_entries: {
    key: 'entry',
    ddl: `CREATE TABLE IF NOT EXISTS billing_entries (entry INTEGER PRIMARY KEY, imvu TEXT NOT NULL, period TEXT NOT NULL, kind TEXT NOT NULL)`,
  },
  /** Periods sealed by period.close ('closing' until the entry marked complete). */
  period_closes: {
    key: 'period',
    ddl: `CREATE TABLE IF NOT EXISTS period_closes (period TEXT PRIMARY KEY, status TEXT NOT NULL, last_imvu TEXT NOT NULL, entry INTEGER NOT NULL)`,
  },
  /** The statement totals each period.close sealed. */
  period_statements: {
    key: 'period, imvu',
    ddl: `CREATE TABLE IF NOT EXISTS period_statements (period TEXT NOT NULL, imvu TEXT NOT NULL, currency TEXT NOT NULL, usage_total TEXT NOT NULL, revenue_total TEXT NOT NULL, total TEXT NOT NULL, creator TEXT NOT NULL, platform TEXT NOT NULL, entry INTEGER NOT NULL, PRIMARY KEY (period, imvu))`,
  },
  /**
   * Claims of domains outside the platform suffix that are not proven yet (gate 3): several IMVUs may
   * claim one name; the first to prove it gets it (a row in `domains` and a zone); a claim lapses at
   * `expires_at`.
   */
  domain_claims: {
    key: 'name, imvu',
    ddl: `CREATE TABLE IF NOT EXISTS domain_claims (name TEXT NOT NULL, imvu TEXT NOT NULL, token TEXT NOT NULL, expires_at TEXT NOT NULL, entry INTEGER NOT NULL, PRIMARY KEY (name, imvu))`,
  },
  /** Name servers of the platform's own zone (`platform.zone`), served there with their addresses. */
  nameservers: {
    key: 'name, address',
    ddl: `CREATE TABLE IF NOT EXISTS nameservers (name TEXT NOT NULL, address TEXT NOT NULL, entry INTEGER NOT NULL, PRIMARY KEY (name, address))`,
  },
  /** Recorded snapshots of each IMVU (snapshot.create, gate 12): the OCI manifest digest and what it covers. */
  snapshots: {
    key: 'imvu, digest',
    ddl: `CREATE TABLE IF NOT EXISTS snapshots (imvu TEXT NOT NULL, digest TEXT NOT NULL, size TEXT NOT NULL, layer TEXT NOT NULL, entries INTEGER NOT NULL, data_bytes TEXT NOT NULL, blueprint TEXT, envelope TEXT NOT NULL, at TEXT NOT NULL, entry INTEGER NOT NULL, PRIMARY KEY (imvu, digest))`,
  },
  /** Every rollback of an IMVU to one of its snapshots (snapshot.rollback). */
  snapshot_rollbacks: {
    key: 'entry',
    ddl: `CREATE TABLE IF NOT EXISTS snapshot_rollbacks (entry INTEGER PRIMARY KEY, imvu TEXT NOT NULL, digest TEXT NOT NULL, at TEXT NOT NULL)`,
  },
  /** Replay guard for gate 1: every nonce a verified signature has spent, allowed or denied. */
  nonces: {
    key: 'actor, nonce',
    ddl: `CREATE TABLE IF NOT EXISTS nonces (actor TEXT NOT NULL, nonce TEXT NOT NULL, entry INTEGER NOT NULL, PRIMARY KEY (actor, nonce))`,
  },
  /** Which entries are about which IMVU (src/core/policy/imvu-index.ts): a creator's view reads its own history through the key. */
  imvu_entries: {
    key: 'imvu, entry',
    ddl: `CREATE TABLE IF NOT EXISTS imvu_entries (imvu TEXT NOT NULL, entry INTEGER NOT NULL, PRIMARY KEY (imvu, entry))`,
  },
};

export const PROJECTION_INDEXES = `
CREATE INDEX IF NOT EXISTS records_zone ON records (zone, name);
CREATE INDEX IF NOT EXISTS import_parts_zone ON import_parts (zone, entry);
CREATE INDEX IF NOT EXISTS consents_subject ON consents (subject);
CREATE INDEX IF NOT EXISTS consents_imvu ON consents (imvu, entry);
CREATE INDEX IF NOT EXISTS notifications_recipient ON notifications (recipient);
CREATE INDEX IF NOT EXISTS billing_entries_imvu ON billing_entries (imvu, period);
CREATE INDEX IF NOT EXISTS billing_entries_period ON billing_entries (period, imvu);
CREATE INDEX IF NOT EXISTS usage_totals_metric ON usage_totals (imvu, metric, last_end_ms);
CREATE INDEX IF NOT EXISTS price_books_from ON price_books (effective_from, entry);
CREATE INDEX IF NOT EXISTS capacities_at ON capacities (at_ms, entry);
CREATE INDEX IF NOT EXISTS notifications_source ON notifications (imvu, source);
CREATE INDEX IF NOT EXISTS nonces_entry ON nonces (actor, entry);
CREATE INDEX IF NOT EXISTS identities_key ON identities (public_key);
CREATE INDEX IF NOT EXISTS identities_role ON identities (role);
CREATE INDEX IF NOT EXISTS retired_keys_identity ON retired_keys (identity, entry);
CREATE INDEX IF NOT EXISTS imvus_lower_name ON imvus (lower(name));
CREATE INDEX IF NOT EXISTS imvus_entry ON imvus (entry);
CREATE INDEX IF NOT EXISTS imvus_owner ON imvus (owner, status);
CREATE INDEX IF NOT EXISTS members_identity ON members (identity);
CREATE INDEX IF NOT EXISTS domains_imvu ON domains (imvu, entry);
CREATE INDEX IF NOT EXISTS zones_imvu ON zones (imvu);
CREATE INDEX IF NOT EXISTS zones_entry ON zones (entry);
CREATE INDEX IF NOT EXISTS dnssec_keys_entry ON dnssec_keys (entry);
CREATE INDEX IF NOT EXISTS mailboxes_imvu ON mailboxes (imvu, address);
CREATE INDEX IF NOT EXISTS domain_claims_imvu ON domain_claims (imvu, expires_at);
CREATE INDEX IF NOT EXISTS domain_claims_expiry ON domain_claims (expires_at);
CREATE INDEX IF NOT EXISTS records_zone_type ON records (zone, type, name);
CREATE INDEX IF NOT EXISTS dkim_keys_state ON dkim_keys (state, imvu);
`;
