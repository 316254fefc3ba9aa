// The user's side of nexus: NEXUS_HOME holds the private keys (never sent anywhere), a name -> id
// map of the identities created here, the pinned platform keys and the newest checkpoint seen
// of each platform's log.
//
//   NEXUS_HOME/                       (0700; default $XDG_CONFIG_HOME/nexus or ~/.config/nexus)
//     keys/<name>.key                 Ed25519 private key, PKCS#8 PEM, 0600 (dir 0700)
//     keys/<name>.key.pending         a key being registered (create/import); gone once the daemon answers
//     keys/<name>.key.next            a rotation's new key until the daemon has recorded it
//     keys/<name>.key.retired-<N>     a key rotated away at ledger entry N (kept, signs nothing more)
//     keys/<name>.key.revoked-<N>     the key of an identity revoked at ledger entry N (kept, signs nothing more)
//     identities.json                 { "<name>": "<id>" }
//     rotations.json                  { "<name>": { id, publicKey, entry } }: the current key of an identity whose key was rotated
//     platforms.json                  { "<daemon url>": { id, publicKey, origin, pinnedAt } }   trust on first use
//     checkpoints/<platform id>.note  newest checkpoint seen of that platform's log (signed note)
//     receipts/<platform id>/<index>.json  the receipt of every command sent from here (src/cli/receipts.ts); kept for good
//     alarms/<code>.json              open alarms (log rewritten, platform key changed); every call fails while one is open
//     evidence/<time>-<code>.json     acknowledged alarms, kept as evidence
//     witnesses.json                  { witnesses: [{ name, vkey, addedAt }], require: K }   the witness policy
//     evidence/<time>-served-<code>.json  what `nexus audit watch` found served against the ledger
//     watch/<platform id>.json        the ledger size up to which `nexus audit watch` has shown entries
//     verified/<platform id>.json     the tree's right edge at the size `nexus audit verify` last checked, for
//                                     a reader without the whole log to check only what is new next time
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmdirSync, unlinkSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { writeFileAtomic } from '../core/durable.ts';
import { identityIdFromPublicKey, isIdentityId, loadPrivateKey, publicKeyRaw, savePrivateKey } from '../core/identity/keys.ts';
import { usage } from './errors.ts';
import { fsyncDir } from '../core/durable.ts';

export const NAME_RE = /^[a-z][a-z0-9-]{1,31}$/;

export function defaultHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.NEXUS_HOME) return resolve(env.NEXUS_HOME);
  const config = env.XDG_CONFIG_HOME || join(homedir(), '.config');
  return resolve(config, 'nexus');
}

export { writeFileAtomic };

function readJson<T>(path: string, fallback: T): T {
  if (!existsSync(path)) return fallback;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as T;
  } catch (err) {
    throw usage(`${path} is not valid JSON (${(err as Error).message}); fix or remove it`);
  }
}

/**
 * What a reader keeps of a log it verified: the roots of the complete subtrees at `size` (largest
 * first, hex), the root they hash to, and whether that check replayed the whole log through the gates.
 */
export interface VerifiedEdge {
  size: number;
  root: string;
  edge: { level: number; hash: string }[];
  replayed: boolean;
}

function parseVerifiedEdge(raw: unknown): VerifiedEdge | undefined {
  if (!raw || typeof raw !== 'object') return undefined;
  const v = raw as Partial<VerifiedEdge>;
  const hex = (h: unknown): h is string => typeof h === 'string' && /^[0-9a-f]{64}$/.test(h);
  if (!Number.isSafeInteger(v.size) || (v.size as number) < 0 || !hex(v.root) || typeof v.replayed !== 'boolean' || !Array.isArray(v.edge)) return undefined;
  if (!v.edge.every((n) => n && Number.isSafeInteger(n.level) && n.level >= 0 && n.level < 64 && hex(n.hash))) return undefined;
  // The levels are the binary digits of the size, largest first: anything else is not an edge.
  const levels = v.edge.map((n) => n.level);
  const expected: number[] = [];
  for (let level = 52; level >= 0; level--) if (Math.floor((v.size as number) / 2 ** level) % 2 === 1) expected.push(level);
  if (levels.join() !== expected.join()) return undefined;
  return { size: v.size as number, root: v.root, edge: v.edge.map((n) => ({ level: n.level, hash: n.hash })), replayed: v.replayed };
}

export interface PinnedPlatform {
  id: string;
  publicKey: string;
  origin: string;
  pinnedAt: string;
}

/** The creator's witness policy: a checkpoint is trusted only if at least `require` of these cosigned it. */
export interface WitnessPolicy {
  witnesses: { name: string; vkey: string; addedAt: string }[];
  /** 0: no policy (cosignatures are not required). */
  require: number;
}

export interface LocalIdentity {
  name: string;
  id: string;
  key: KeyObject;
}

export class Home {
  constructor(readonly dir: string) {}

  private path(...parts: string[]): string {
    return join(this.dir, ...parts);
  }

  ensure(): void {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  // --- identities -------------------------------------------------------------------------

  keyPath(name: string): string {
    return this.path('keys', `${name}.key`);
  }

  identities(): Record<string, string> {
    return readJson<Record<string, string>>(this.path('identities.json'), {});
  }

  /** Saves a key and its name at once (for keys registered elsewhere: tests, imports of a known identity). */
  saveIdentity(name: string, key: KeyObject): string {
    this.ensure();
    const id = identityIdFromPublicKey(publicKeyRaw(key));
    savePrivateKey(this.keyPath(name), key);
    chmodSync(dirname(this.keyPath(name)), 0o700);
    const all = this.identities();
    all[name] = id;
    writeFileAtomic(this.path('identities.json'), JSON.stringify(all, null, 2) + '\n');
    return id;
  }

  /**
   * Puts a key that is about to be registered on disk (keys/<name>.key.pending, 0600, durable), so
   * a crash while the daemon records it cannot lose a registered key. Returns what it created, for
   * discardStaged(): a failed registration leaves nothing behind.
   */
  stageKey(name: string, key: KeyObject, suffix: 'pending' | 'next' = 'pending'): string[] {
    const created = [this.dir, this.path('keys')].filter((d) => !existsSync(d));
    this.ensure();
    const file = `${this.keyPath(name)}.${suffix}`;
    savePrivateKey(file, key);
    chmodSync(dirname(file), 0o700);
    fsyncDir(dirname(file));
    return created;
  }

  stagedKeyPath(name: string, suffix: 'pending' | 'next' = 'pending'): string {
    return `${this.keyPath(name)}.${suffix}`;
  }

  /** Removes a staged key that was never registered (it guards nothing) and the directories staging created. */
  discardStaged(name: string, created: string[] = [], suffix: 'pending' | 'next' = 'pending'): void {
    const file = this.stagedKeyPath(name, suffix);
    if (existsSync(file)) unlinkSync(file);
    for (const d of [...created].reverse()) {
      try {
        rmdirSync(d);
      } catch {
        // not empty: something else lives there now
      }
    }
  }

  /** The daemon recorded the registration: the staged key becomes the identity's key. */
  commitStaged(name: string, id: string): void {
    renameSync(this.stagedKeyPath(name), this.keyPath(name));
    fsyncDir(dirname(this.keyPath(name)));
    const all = this.identities();
    all[name] = id;
    writeFileAtomic(this.path('identities.json'), JSON.stringify(all, null, 2) + '\n');
  }

  /** rotations.json: the current key of each identity whose key was rotated (its id is no longer its key's). */
  rotations(): Record<string, { id: string; publicKey: string; entry: number }> {
    return readJson<Record<string, { id: string; publicKey: string; entry: number }>>(this.path('rotations.json'), {});
  }

  /** The daemon recorded the rotation at `entry`: the old key is kept aside (retired), the new one takes its place. */
  commitRotation(name: string, id: string, entry: number): void {
    const key = this.keyPath(name);
    const next = this.stagedKeyPath(name, 'next');
    const publicKey = publicKeyRaw(loadPrivateKey(next)).toString('base64');
    if (existsSync(key)) renameSync(key, `${key}.retired-${entry}`);
    renameSync(next, key);
    fsyncDir(dirname(key));
    const all = this.rotations();
    all[name] = { id, publicKey, entry };
    writeFileAtomic(this.path('rotations.json'), JSON.stringify(all, null, 2) + '\n');
  }

  /** A rotated identity registered afresh (a new platform): its id is now its current key's own, and no rotation applies. */
  adoptId(name: string, id: string): void {
    const all = this.identities();
    all[name] = id;
    writeFileAtomic(this.path('identities.json'), JSON.stringify(all, null, 2) + '\n');
    const rot = this.rotations();
    if (Object.hasOwn(rot, name)) {
      delete rot[name];
      writeFileAtomic(this.path('rotations.json'), JSON.stringify(rot, null, 2) + '\n');
    }
  }

  /** The daemon recorded the revocation at `entry`: the name is forgotten here, its key kept aside (it signs nothing more). */
  retireRevoked(name: string, entry: number): string {
    const key = this.keyPath(name);
    const kept = `${key}.revoked-${entry}`;
    if (existsSync(key)) renameSync(key, kept);
    const all = this.identities();
    delete all[name];
    writeFileAtomic(this.path('identities.json'), JSON.stringify(all, null, 2) + '\n');
    const rot = this.rotations();
    if (Object.hasOwn(rot, name)) {
      delete rot[name];
      writeFileAtomic(this.path('rotations.json'), JSON.stringify(rot, null, 2) + '\n');
    }
    return kept;
  }

  /** The local name of an identity given by name or id, if this machine holds its key. */
  localName(nameOrId: string): string | undefined {
    const all = this.identities();
    if (Object.hasOwn(all, nameOrId)) return nameOrId;
    if (isIdentityId(nameOrId)) return Object.keys(all).find((n) => all[n] === nameOrId);
    return undefined;
  }

  /** Loads the key of a local identity (by name or id); a usage error if this machine does not hold it. */
  signer(nameOrId: string): LocalIdentity {
    const name = this.localName(nameOrId);
    if (!name) {
      const known = Object.keys(this.identities());
      throw usage(
        `no key for identity '${nameOrId}' in ${this.dir}` +
          (known.length ? ` (local identities: ${known.join(', ')})` : ' (create one with `nexus identity create NAME --role creator`)'),
      );
    }
    const file = this.keyPath(name);
    if (!existsSync(file)) throw usage(`the key file of '${name}' is missing: ${file}`);
    const key = loadPrivateKey(file);
    const raw = publicKeyRaw(key);
    const id = this.identities()[name]!;
    // The key of the id (as registered), or the identity's current key after a rotation.
    const rotated = this.rotations()[name];
    const ok = identityIdFromPublicKey(raw) === id || (rotated?.id === id && rotated.publicKey === raw.toString('base64'));
    if (!ok) throw usage(`${file} holds the key of ${identityIdFromPublicKey(raw)}, not of '${name}' (${id})`);
    return { name, id, key };
  }

  // --- consent pseudonyms ------------------------------------------------------------------

  /** IMVUs (of the platform with this log origin) for which `name` recorded consent under a pseudonym. */
  consentImvus(name: string, origin: string): string[] {
    const all = readJson<Record<string, Record<string, string[]>>>(this.path('consents.json'), {});
    return Object.hasOwn(all, name) && Object.hasOwn(all[name]!, origin) ? [...all[name]![origin]!] : [];
  }

  /** Remembers where a pseudonym was used, so `consent list --subject NAME` finds it without --imvu. */
  rememberConsent(name: string, origin: string, imvu: string): void {
    this.ensure();
    const all = readJson<Record<string, Record<string, string[]>>>(this.path('consents.json'), {});
    const mine = (all[name] ??= {});
    const list = (mine[origin] ??= []);
    if (list.includes(imvu)) return;
    list.push(imvu);
    writeFileAtomic(this.path('consents.json'), JSON.stringify(all, null, 2) + '\n');
  }

  // --- platforms and checkpoints ----------------------------------------------------------

  platforms(): Record<string, PinnedPlatform> {
    return readJson<Record<string, PinnedPlatform>>(this.path('platforms.json'), {});
  }

  /** Forgets the platform pinned for `url` (forget-platform); the caller files it as evidence first. */
  unpinPlatform(url: string): void {
    const all = this.platforms();
    delete all[url];
    writeFileAtomic(this.path('platforms.json'), JSON.stringify(all, null, 2) + '\n');
  }

  pinPlatform(url: string, p: PinnedPlatform): void {
    this.ensure();
    const all = this.platforms();
    all[url] = p;
    writeFileAtomic(this.path('platforms.json'), JSON.stringify(all, null, 2) + '\n');
  }

  checkpointPath(platformId: string): string {
    if (!isIdentityId(platformId)) throw new Error(`not a platform id: ${platformId}`);
    return this.path('checkpoints', `${platformId}.note`);
  }

  savedCheckpoint(platformId: string): string | undefined {
    const file = this.checkpointPath(platformId);
    return existsSync(file) ? readFileSync(file, 'utf8') : undefined;
  }

  saveCheckpoint(platformId: string, note: string): void {
    writeFileAtomic(this.checkpointPath(platformId), note, 0o600);
  }

  // --- the tree edge `audit verify` last checked ----------------------------------------

  verifiedEdgePath(platformId: string): string {
    if (!isIdentityId(platformId)) throw new Error(`not a platform id: ${platformId}`);
    return this.path('verified', `${platformId}.json`);
  }

  /** The edge saved by the last verify, or undefined (none, or one that does not hash to its own root: then start over). */
  verifiedEdge(platformId: string): VerifiedEdge | undefined {
    const raw = readJson<unknown>(this.verifiedEdgePath(platformId), undefined);
    return parseVerifiedEdge(raw);
  }

  saveVerifiedEdge(platformId: string, edge: VerifiedEdge): void {
    mkdirSync(this.path('verified'), { recursive: true, mode: 0o700 });
    writeFileAtomic(this.verifiedEdgePath(platformId), JSON.stringify(edge) + '\n', 0o600);
  }

  // --- witness policy ---------------------------------------------------------------------

  witnessPolicyPath(): string {
    return this.path('witnesses.json');
  }

  witnessPolicy(): WitnessPolicy {
    const file = this.witnessPolicyPath();
    const p = readJson<Partial<WitnessPolicy>>(file, { witnesses: [], require: 0 });
    const ok =
      p && typeof p === 'object' && Array.isArray(p.witnesses) && Number.isSafeInteger(p.require) && (p.require as number) >= 0 && (p.require as number) <= p.witnesses.length &&
      p.witnesses.every((w) => w && typeof w.name === 'string' && typeof w.vkey === 'string');
    if (!ok) throw usage(`${file} is not a witness policy ({ witnesses: [{ name, vkey }], require: K } with K at most the number of witnesses); fix or remove it`);
    return { witnesses: p.witnesses!.map((w) => ({ name: w.name, vkey: w.vkey, addedAt: String(w.addedAt ?? '') })), require: p.require! };
  }

  saveWitnessPolicy(p: WitnessPolicy): void {
    this.ensure();
    writeFileAtomic(this.witnessPolicyPath(), JSON.stringify(p, null, 2) + '\n');
  }

  // --- receipts ---------------------------------------------------------------------------

  receiptDir(platformId: string): string {
    if (!isIdentityId(platformId)) throw new Error(`not a platform id: ${platformId}`);
    return this.path('receipts', platformId);
  }

  // --- alarms -----------------------------------------------------------------------------

  alarmDir(): string {
    return this.path('alarms');
  }

  evidenceDir(): string {
    return this.path('evidence');
  }

  /** `nexus audit watch`'s memory of the entries it has shown: watch/<platform id>.json. */
  watchCursorPath(platformId: string): string {
    if (!isIdentityId(platformId)) throw new Error(`not a platform id: ${platformId}`);
    return this.path('watch', `${platformId}.json`);
  }

  alarmFiles(): string[] {
    const dir = this.alarmDir();
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .sort()
      .map((f) => join(dir, f));
  }
}
