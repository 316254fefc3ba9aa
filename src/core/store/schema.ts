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
  imvus: {
    key: 'id',
    ddl: `CREATE TABLE IF NOT EXISTS imvus (id TEXT PRIMARY KEY, seq INTEGER NOT NULL UNIQUE, name TEXT NOT NULL UNIQUE, owner TEXT NOT NULL, jurisdiction TEXT NOT NULL, status TEXT NOT NULL, domain TEXT NOT NULL, stage_domain TEXT NOT NULL, created_at TEXT NOT NULL, entry INTEGER NOT NULL)`,
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
    ddl: `CREATE TABLE IF NOT EXISTS notifications (entry INTEGER PRIMARY KEY, recipient TEXT NOT NULL, imvu TEXT NOT NULL, about INTEGER NOT NULL, gate INTEGER NOT NULL, message TEXT NOT NULL, at TEXT NOT NULL)`,
  },
  dkim_keys: {
    key: 'imvu',
    ddl: `CREATE TABLE IF NOT EXISTS dkim_keys (imvu TEXT PRIMARY KEY, selector TEXT NOT NULL, public_key TEXT NOT NULL, entry INTEGER NOT NULL)`,
  },
  /** DNSSEC keys of zones (public halves; the private keys stay under DATA/keys/dnssec/). */
  dnssec_keys: {
    key: 'zone',
    ddl: `CREATE TABLE IF NOT EXISTS dnssec_keys (zone TEXT PRIMARY KEY, imvu TEXT NOT NULL, algorithm INTEGER NOT NULL, flags INTEGER NOT NULL, public_key TEXT NOT NULL, entry INTEGER NOT NULL)`,
  },
  /** Replay guard for gate 1: every nonce a verified signature has spent, allowed or denied. */
  nonces: {
    key: 'actor, nonce',
    ddl: `CREATE TABLE IF NOT EXISTS nonces (actor TEXT NOT NULL, nonce TEXT NOT NULL, entry INTEGER NOT NULL, PRIMARY KEY (actor, nonce))`,
  },
};

export const PROJECTION_INDEXES = `
CREATE INDEX IF NOT EXISTS records_zone ON records (zone, name);
CREATE INDEX IF NOT EXISTS consents_subject ON consents (subject);
CREATE INDEX IF NOT EXISTS notifications_recipient ON notifications (recipient);
`;
