// The chokepoint's `provision` hook: what the platform does on its own after an allowed command.
// For `imvu.create` it makes the IMVU's DKIM key: the private half is written (0600, fsynced)
// under the data directory before the command is acknowledged, the public half is published
// by a platform-signed `dkim.publish` follow-up, which the projection writer turns into the
// `<selector>._domainkey` TXT record. The follow-up runs in the same transaction as the
// creation, so a failure anywhere rolls both back.
// Every new zone (the IMVU's own at `imvu.create`, a claimed one when it is proven, `domain.verified`) gets a DNSSEC
// key the same way: private half under `keys/dnssec/<zone>.pem`, public half in a platform-signed
// `dnssec.publish` follow-up (src/domains/dnssec/keys.ts). A later `dnssec.publish` (a rollover,
// src/domains/dnssec/rollover.ts) gets a notice to the creator with the new DS.
import { createPublicKey, type KeyObject } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ChokepointOptions, FollowUp } from '../core/policy/chokepoint.ts';
import type { SqlReader } from '../core/store/index.ts';
import type { Command } from '../core/types.ts';
import { DNSKEY_TTL_S } from '../core/policy/gates/platform-powers.ts';
import { keyViews } from '../domains/dnssec/ds.ts';
import { ALGORITHM_ECDSAP256SHA256, CSK_FLAGS, dnssecKeyPath, generateZoneKey } from '../domains/dnssec/keys.ts';
import { fsyncDir } from '../core/durable.ts';
import { generatePrivateKey } from '../core/keygen.ts';
import { installImportedKeys, type ImportedKeys } from './import/keys.ts';

export const DKIM_SELECTOR = 'nexus1';
export const DKIM_KEY_DIR = join('keys', 'dkim');


/** Where the DKIM private key of an IMVU lives in a data directory. */
export function dkimKeyPath(dataDir: string, imvu: string): string {
  if (!/^IMVU-\d{3,9}$/.test(imvu)) throw new Error(`not an IMVU id: ${imvu}`);
  return join(dataDir, DKIM_KEY_DIR, `${imvu}.pem`);
}

/** Where a DKIM selector's private key lives: nexus1 at `dkimKeyPath`, a rotated selector beside it. */
export function dkimSelectorKeyPath(dataDir: string, imvu: string, selector: string): string {
  if (!/^nexus[1-9]\d{0,8}$/.test(selector)) throw new Error(`not a DKIM selector: ${selector}`);
  const first = dkimKeyPath(dataDir, imvu);
  return selector === DKIM_SELECTOR ? first : join(dirname(first), `${imvu}.${selector}.pem`);
}

/**
 * Writes `pem` to `path` with mode 0600 from the first byte, durably: temp file, fsync, rename,
 * fsync of the directory. Leaves no temp file behind on failure.
 */
export function writeSecretFile(path: string, pem: string): void {
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  try {
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, pem);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  fsyncDir(dir);
  fsyncDir(dirname(dir));
}

/** Generates an RSA-2048 DKIM key pair (on the key thread, src/core/keygen.ts: never on libuv's pool). */
export async function generateDkimKey(): Promise<{ privateKey: KeyObject; publicKeyDer: Buffer }> {
  const privateKey = await generatePrivateKey('rsa2048');
  return { privateKey, publicKeyDer: createPublicKey(privateKey).export({ type: 'spki', format: 'der' }) };
}

type ZoneKey = Awaited<ReturnType<typeof generateZoneKey>>;
type DkimKey = Awaited<ReturnType<typeof generateDkimKey>>;

/** The keys of one `imvu.create`, made before its write transaction (ChokepointOptions.prepare). */
export interface PreparedKeys {
  dkim: DkimKey;
  zone: ZoneKey;
}

function isPreparedKeys(x: unknown): x is PreparedKeys {
  return typeof x === 'object' && x !== null && 'dkim' in x && 'zone' in x;
}

/**
 * Keys made ahead of need, so that an `imvu.create` does not wait for RSA key generation (tens of
 * milliseconds of CPU) and nothing waits for it inside the write transaction. Each key is handed
 * out once, to one command, and held only in memory: a key lost with the process was never used.
 * The pool refills one key at a time on the thread pool, so a burst of creations drains it and
 * the steady rate is that of generation.
 */
export class KeyPool {
  private readonly ready: PreparedKeys[] = [];
  private filling = false;
  private closed = false;

  /** `parallel`: key sets asked for at once while filling (the key thread, src/core/keygen.ts, makes them one after another). */
  constructor(
    private readonly target = 32,
    private readonly parallel = 1,
  ) {}

  /** The keys for one `imvu.create`: from the pool if it has some, else made now (outside any transaction). */
  async take(): Promise<PreparedKeys> {
    const keys = this.ready.shift() ?? (await makeKeys());
    this.refill();
    return keys;
  }

  /** Starts filling in the background (a daemon calls this at start). */
  refill(): void {
    if (this.filling || this.closed || this.ready.length >= this.target) return;
    this.filling = true;
    void (async () => {
      try {
        while (!this.closed && this.ready.length < this.target) {
          const n = Math.min(this.parallel, this.target - this.ready.length);
          this.ready.push(...(await Promise.all(Array.from({ length: n }, makeKeys))));
        }
      } catch {
        // generation failing is retried at the next take(); take() makes its own meanwhile
      } finally {
        this.filling = false;
      }
    })();
  }

  get size(): number {
    return this.ready.length;
  }

  close(): void {
    this.closed = true;
    this.ready.length = 0;
  }
}

async function makeKeys(): Promise<PreparedKeys> {
  const [dkim, zone] = await Promise.all([generateDkimKey(), generateZoneKey()]);
  return { dkim, zone };
}

/** The chokepoint `prepare` hook: the keys of an `imvu.create`, made before its transaction. */
export function keyPreparer(pool: KeyPool): NonNullable<ChokepointOptions['prepare']> {
  return (command: Command) => (command.type === 'imvu.create' ? pool.take() : command.type === 'dkim.rotate' ? generateDkimKey() : undefined);
}

function isDkimKey(x: unknown): x is DkimKey {
  return typeof x === 'object' && x !== null && 'privateKey' in x && 'publicKeyDer' in x;
}

/**
 * A requested DKIM rotation's first step (`dkim.rotate`, by the creator or a member): the next
 * selector's private half written durably, its public half published by the platform beside the
 * active key (gate 17 checks the sequence; the chokepoint notifies the creator). The later steps
 * are timed: src/mail/signing/rotate.ts.
 */
async function rotationStart(dataDir: string, imvu: string, db: SqlReader, prepared?: unknown): Promise<FollowUp[]> {
  const active = await db.get<{ selector: string }>("SELECT selector FROM dkim_keys WHERE imvu = ? AND state = 'active'", [imvu]);
  if (!active) throw new Error(`dkim.rotate of ${imvu} was allowed but it has no active DKIM key`);
  const selector = `nexus${Number(active.selector.replace(/^nexus/, '')) + 1}`;
  const { privateKey, publicKeyDer } = isDkimKey(prepared) ? prepared : await generateDkimKey();
  writeSecretFile(dkimSelectorKeyPath(dataDir, imvu, selector), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  return [{ type: 'dkim.publish', body: { imvu, selector, publicKey: publicKeyDer.toString('base64') } }];
}

/** Generates a zone's DNSSEC key (a combined signing key), writes the private half durably, and returns its `dnssec.publish`. */
export async function provisionDnssecKey(dataDir: string, imvu: string, zone: string, made?: ZoneKey): Promise<FollowUp> {
  const { publicKey, pem } = made ?? (await generateZoneKey());
  writeSecretFile(dnssecKeyPath(dataDir, zone), pem);
  return { type: 'dnssec.publish', body: { imvu, zone, algorithm: ALGORITHM_ECDSAP256SHA256, flags: CSK_FLAGS, publicKey: publicKey.toString('base64') } };
}

/**
 * The notice of a DNSSEC rollover's first step, with the new DS: the creator adds it at the
 * parent while both keys are published (the platform's other notices say what it did; this one
 * says what the creator has to do).
 */
async function rolloverNotice(command: Command, index: number, db: SqlReader): Promise<FollowUp[]> {
  const zone = String(command.body.zone);
  const keys = await keyViews(db, zone);
  const fresh = keys.find((k) => k.publicKey === command.body.publicKey);
  const active = keys.find((k) => k.state === 'active');
  if (!fresh || fresh.state !== 'published' || !active) return [];
  const owner = await db.get<{ owner: string }>('SELECT owner FROM imvus WHERE id = ?', [fresh.imvu]);
  if (!owner) return [];
  const from = new Date(Date.parse(fresh.since) + DNSKEY_TTL_S * 1000).toISOString();
  const message =
    `DNSSEC key rollover of ${zone}: new key ${fresh.keyTag} published beside key ${active.keyTag}; it signs from ${from} at the earliest, ` +
    `and key ${active.keyTag} stays published until ${DNSKEY_TTL_S}s after that. Add this DS at the parent now: ${fresh.ds} ` +
    `(remove DS ${active.keyTag} once key ${active.keyTag} is removed).`;
  return [{ type: 'notify.creator', body: { imvu: fresh.imvu, recipient: owner.owner, about: index, gate: 17, message } }];
}

/** The chokepoint `provision` hook for a data directory. */
export function provisioner(dataDir: string): NonNullable<ChokepointOptions['provision']> {
  return async (command: Command, index: number, db: SqlReader, prepared?: unknown): Promise<FollowUp[]> => {
    if (command.type === 'dnssec.publish') return rolloverNotice(command, index, db);
    if (command.type === 'dkim.rotate') return rotationStart(dataDir, String(command.body.imvu), db, prepared);
    // A claimed domain gets its zone, and so its key, only once its claimant has proved control.
    if (command.type === 'domain.verified') {
      const zone = await db.get<{ name: string; imvu: string }>('SELECT name, imvu FROM zones WHERE entry = ?', [index]);
      if (!zone) throw new Error(`domain.verified entry ${index} was allowed but created no zone`);
      return [await provisionDnssecKey(dataDir, zone.imvu, zone.name)];
    }
    // A re-import: the keys come from the verified archive, never new (the parent's DS stays valid).
    if (command.type === 'imvu.import' || command.type === 'domain.transfer') {
      const b = command.body as unknown as { id?: string; imvu?: string; source?: { archive: string }; zone: ImportedKeys['zone']; dkim?: ImportedKeys['dkim'] };
      const imvu = String(b.id ?? b.imvu);
      const archive = b.source?.archive ?? (await db.get<{ archive_sha256: string }>('SELECT archive_sha256 FROM imports WHERE imvu = ?', [imvu]))?.archive_sha256;
      if (!archive) throw new Error(`${imvu} has no import to take keys from`);
      installImportedKeys(dataDir, { imvu, archive, zone: b.zone, dkim: b.dkim ?? [] }, command.type === 'imvu.import');
      return [];
    }
    if (command.type !== 'imvu.create') return [];
    const row = await db.get<{ id: string; domain: string }>('SELECT id, domain FROM imvus WHERE entry = ?', [index]);
    if (!row) throw new Error(`imvu.create entry ${index} was allowed but created no IMVU`);
    // Keys made before the transaction for this very command (keyPreparer), else made here.
    const keys = isPreparedKeys(prepared) ? prepared : undefined;
    const { privateKey, publicKeyDer } = keys?.dkim ?? (await generateDkimKey());
    writeSecretFile(dkimKeyPath(dataDir, row.id), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
    return [
      { type: 'dkim.publish', body: { imvu: row.id, selector: DKIM_SELECTOR, publicKey: publicKeyDer.toString('base64') } },
      await provisionDnssecKey(dataDir, row.id, row.domain, keys?.zone),
    ];
  };
}
