// A witness's data directory: its own key and its own state, nothing shared with a platform.
//
//   DIR/witness.key   Ed25519 private key (PKCS#8 PEM, 0600), written once by `nexus witness init`
//   DIR/witness.db    SQLite, WAL, synchronous=FULL: its name, the logs it follows (origin and the
//                     log's verifier keys), the latest checkpoint it cosigned per log, and evidence
//                     (validly signed checkpoints it refused as inconsistent)
//
// The latest cosigned checkpoint is the witness's promise: a commit returns only once it is on disk,
// and a trigger refuses any update that would move a log back or to another root at the same size.
import Database from 'better-sqlite3';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { loadPrivateKey } from '../identity/keys.ts';
import { isValidKeyName, parseVerifierKey, type NoteVerifier } from '../ledger/checkpoint.ts';
import { EMPTY_ROOT } from '../ledger/merkle.ts';
import { cosignerVerifierKey } from './cosignature.ts';
import { fsyncDir } from '../durable.ts';

export const KEY_FILE = 'witness.key';
export const DB_FILE = 'witness.db';
/** Refused checkpoints kept per log: the first ones are the evidence that matters. */
export const MAX_EVIDENCE_PER_LOG = 100;
const MAX_ORIGIN_CHARS = 1024;

const DDL = `
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS logs (origin TEXT PRIMARY KEY, added_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS log_keys (
  origin TEXT NOT NULL REFERENCES logs(origin),
  vkey TEXT NOT NULL,
  added_at INTEGER NOT NULL,
  PRIMARY KEY (origin, vkey)
);
CREATE TABLE IF NOT EXISTS cosigned (
  origin TEXT PRIMARY KEY REFERENCES logs(origin),
  size INTEGER NOT NULL,
  root BLOB NOT NULL,
  note TEXT NOT NULL,
  cosigned_at INTEGER NOT NULL,
  cosignature TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS cosigned_never_back BEFORE UPDATE ON cosigned
  WHEN NEW.size < OLD.size OR (NEW.size = OLD.size AND NEW.root != OLD.root) OR NEW.cosigned_at < OLD.cosigned_at
  BEGIN SELECT RAISE(ABORT, 'a witness never moves a log back or to another root at the same size'); END;
CREATE TRIGGER IF NOT EXISTS cosigned_never_deleted BEFORE DELETE ON cosigned
  BEGIN SELECT RAISE(ABORT, 'a witness never forgets a cosigned checkpoint'); END;
CREATE TABLE IF NOT EXISTS evidence (
  id INTEGER PRIMARY KEY,
  origin TEXT NOT NULL,
  at INTEGER NOT NULL,
  status INTEGER NOT NULL,
  reason TEXT NOT NULL,
  old_size INTEGER NOT NULL,
  proof TEXT NOT NULL,
  note TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS evidence_origin ON evidence(origin);
`;

export class WitnessSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WitnessSetupError';
  }
}

export interface CosignedState {
  size: number;
  root: Buffer;
  /** The checkpoint note as the log signed it (empty before the first cosignature). */
  note: string;
  /** POSIX seconds of the latest cosignature (0 before the first). */
  cosignedAt: number;
  cosignature: string;
}

export interface LogStatus {
  origin: string;
  vkeys: string[];
  /** The latest cosigned checkpoint, or null if the witness has cosigned none for this log. */
  cosigned: { size: number; rootHash: string; cosignedAt: number; note: string; cosignature: string } | null;
  evidence: number;
}

export interface Evidence {
  origin: string;
  at: number;
  status: number;
  reason: string;
  oldSize: number;
  proof: string[];
  note: string;
}

/** A log origin as a checkpoint's first line: non-empty, one line, no control characters, bounded. */
export function checkOrigin(origin: unknown): asserts origin is string {
  // eslint-disable-next-line no-control-regex
  if (typeof origin !== 'string' || origin === '' || origin.length > MAX_ORIGIN_CHARS || /[\u0000-\u001f]/.test(origin))
    throw new WitnessSetupError(`a log origin is one non-empty line of at most ${MAX_ORIGIN_CHARS} characters, without control characters`);
}

export function isWitnessDir(dataDir: string): boolean {
  return existsSync(join(dataDir, KEY_FILE));
}

/**
 * Creates a witness data directory: a new key (0600, written once, fsynced with its directory) and
 * an empty state. Refuses a directory that already holds a witness key.
 */
export function initWitness(dataDir: string, name: string): { name: string; vkey: string; keyFile: string } {
  if (!isValidKeyName(name)) throw new WitnessSetupError(`invalid witness name '${name}': use a schema-less URL such as witness.example.org/w1 (no spaces or '+')`);
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const keyFile = join(dataDir, KEY_FILE);
  const { privateKey } = generateKeyPairSync('ed25519');
  let fd: number;
  try {
    fd = openSync(keyFile, 'wx', 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new WitnessSetupError(`${dataDir} already holds a witness key (${keyFile}); use another --data directory`);
    throw err;
  }
  try {
    writeSync(fd, String(privateKey.export({ format: 'pem', type: 'pkcs8' })));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  fsyncDir(dataDir);
  const db = openDb(join(dataDir, DB_FILE), false);
  try {
    db.prepare('INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)').run('name', name);
  } finally {
    db.close();
  }
  fsyncDir(dataDir);
  return { name, vkey: cosignerVerifierKey(name, rawPublicKey(privateKey)), keyFile };
}

function rawPublicKey(privateKey: KeyObject): Buffer {
  return createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(-32);
}

function openDb(path: string, mustExist: boolean): Database.Database {
  const db = new Database(path, { fileMustExist: mustExist });
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  db.exec(DDL);
  return db;
}

interface CosignedRow {
  size: number;
  root: Buffer;
  note: string;
  cosigned_at: number;
  cosignature: string;
}

export class WitnessStore {
  private constructor(
    readonly dataDir: string,
    private readonly db: Database.Database,
    readonly name: string,
    readonly key: KeyObject,
    readonly vkey: string,
  ) {}

  static open(dataDir: string): WitnessStore {
    const keyFile = join(dataDir, KEY_FILE);
    const dbFile = join(dataDir, DB_FILE);
    if (!existsSync(keyFile)) throw new WitnessSetupError(`${dataDir} is not a witness data directory; run \`nexus witness init --data ${dataDir} --name NAME\` first`);
    // Without its state a witness could cosign a fork of a log it already vouched for: never start afresh silently.
    if (!existsSync(dbFile)) throw new WitnessSetupError(`${dbFile} is missing: the witness's state is lost, and it must not cosign again with this key; restore the file or init a new witness`);
    if ((statSync(keyFile).mode & 0o077) !== 0) throw new WitnessSetupError(`${keyFile} is readable by other users; chmod 600 it`);
    const key = loadPrivateKey(keyFile);
    const db = openDb(dbFile, true);
    const row = db.prepare('SELECT v FROM meta WHERE k = ?').get('name') as { v: string } | undefined;
    if (!row) {
      db.close();
      throw new WitnessSetupError(`${dbFile} has no witness name (an interrupted init?); remove ${dataDir} and run \`nexus witness init\` again`);
    }
    return new WitnessStore(dataDir, db, row.v, key, cosignerVerifierKey(row.v, rawPublicKey(key)));
  }

  close(): void {
    this.db.close();
  }

  /** Follows a log, or adds another key for a log already followed. Returns false if that key was already there. */
  addLog(origin: string, logVkey: string, now = Math.floor(Date.now() / 1000)): boolean {
    checkOrigin(origin);
    try {
      parseVerifierKey(logVkey);
    } catch (err) {
      throw new WitnessSetupError(`not a log verifier key (<name>+<key id>+<base64 Ed25519 key>, as in GET /v1/platform verifierKey): ${(err as Error).message}`);
    }
    return this.db.transaction(() => {
      this.db.prepare('INSERT OR IGNORE INTO logs (origin, added_at) VALUES (?, ?)').run(origin, now);
      return this.db.prepare('INSERT OR IGNORE INTO log_keys (origin, vkey, added_at) VALUES (?, ?, ?)').run(origin, logVkey, now).changes === 1;
    }).immediate();
  }

  /** The keys trusted for a log, or undefined if the witness does not follow it. */
  logKeys(origin: string): NoteVerifier[] | undefined {
    const rows = this.db.prepare('SELECT vkey FROM log_keys WHERE origin = ? ORDER BY added_at, vkey').all(origin) as { vkey: string }[];
    return rows.length ? rows.map((r) => parseVerifierKey(r.vkey)) : undefined;
  }

  cosigned(origin: string): CosignedState {
    const row = this.db.prepare('SELECT size, root, note, cosigned_at, cosignature FROM cosigned WHERE origin = ?').get(origin) as CosignedRow | undefined;
    if (!row) return { size: 0, root: Buffer.from(EMPTY_ROOT), note: '', cosignedAt: 0, cosignature: '' };
    return { size: row.size, root: row.root, note: row.note, cosignedAt: row.cosigned_at, cosignature: row.cosignature };
  }

  saveCosigned(origin: string, s: CosignedState): void {
    this.db
      .prepare(
        'INSERT INTO cosigned (origin, size, root, note, cosigned_at, cosignature) VALUES (?, ?, ?, ?, ?, ?) ' +
          'ON CONFLICT(origin) DO UPDATE SET size = excluded.size, root = excluded.root, note = excluded.note, cosigned_at = excluded.cosigned_at, cosignature = excluded.cosignature',
      )
      .run(origin, s.size, s.root, s.note, s.cosignedAt, s.cosignature);
  }

  /** Keeps a refused, validly signed checkpoint (up to MAX_EVIDENCE_PER_LOG per log). */
  keepEvidence(e: Evidence): void {
    const n = (this.db.prepare('SELECT COUNT(*) AS n FROM evidence WHERE origin = ?').get(e.origin) as { n: number }).n;
    if (n >= MAX_EVIDENCE_PER_LOG) return;
    this.db.prepare('INSERT INTO evidence (origin, at, status, reason, old_size, proof, note) VALUES (?, ?, ?, ?, ?, ?, ?)').run(e.origin, e.at, e.status, e.reason, e.oldSize, e.proof.join('\n'), e.note);
  }

  evidence(origin: string): Evidence[] {
    const rows = this.db.prepare('SELECT origin, at, status, reason, old_size, proof, note FROM evidence WHERE origin = ? ORDER BY id').all(origin) as {
      origin: string;
      at: number;
      status: number;
      reason: string;
      old_size: number;
      proof: string;
      note: string;
    }[];
    return rows.map((r) => ({ origin: r.origin, at: r.at, status: r.status, reason: r.reason, oldSize: r.old_size, proof: r.proof ? r.proof.split('\n') : [], note: r.note }));
  }

  /** Runs `fn` as one IMMEDIATE transaction: it also serialises with another process on the same directory. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  logs(): LogStatus[] {
    const origins = this.db.prepare('SELECT origin FROM logs ORDER BY added_at, origin').all() as { origin: string }[];
    return origins.map(({ origin }) => {
      const vkeys = (this.db.prepare('SELECT vkey FROM log_keys WHERE origin = ? ORDER BY added_at, vkey').all(origin) as { vkey: string }[]).map((r) => r.vkey);
      const row = this.db.prepare('SELECT size, root, note, cosigned_at, cosignature FROM cosigned WHERE origin = ?').get(origin) as CosignedRow | undefined;
      const evidence = (this.db.prepare('SELECT COUNT(*) AS n FROM evidence WHERE origin = ?').get(origin) as { n: number }).n;
      return {
        origin,
        vkeys,
        cosigned: row ? { size: row.size, rootHash: row.root.toString('base64'), cosignedAt: row.cosigned_at, note: row.note, cosignature: row.cosignature } : null,
        evidence,
      };
    });
  }
}
