// Checkpoint memory: the creator keeps the platform honest.
//
// On every contact with a daemon the CLI
//   1. refuses to go on while an alarm is open (a rewrite it detected earlier, not yet acknowledged);
//   2. fetches GET /v1/platform and pins the platform key for that URL on first contact (TOFU);
//      a different key or origin later is an alarm;
//   3. fetches GET /v1/ledger/checkpoint and verifies its signature against the pinned key;
//   4. if it saved a checkpoint of this platform before, checks that the new tree extends it
//      (GET /v1/ledger/proof/consistency?from=OLD&to=NEW, RFC 9162 2.1.4.2); a failure is an alarm;
//   5. saves the newer checkpoint.
// With a witness policy (`nexus audit witnesses`, NEXUS_HOME/witnesses.json: K of the creator's
// witnesses), step 3 also requires at least K valid cosignatures (C2SP tlog-cosignature) on the
// checkpoint. The daemon's newest checkpoint may not be cosigned yet (its witnesses answer a moment
// after each commit): the CLI then asks for the newest checkpoint those witnesses cosigned
// (`?cosigners=<key IDs>&min=K`) until one at least as large arrives, for up to NEXUS_WITNESS_WAIT_MS
// (default 3000). Without one it fails with exit 4 naming the missing witnesses, and saves nothing.
// After a command it submitted, it can also check that the ledger entry is its own command and is
// included in the new signed checkpoint (confirmEntry).
//
// An alarm is written to NEXUS_HOME/alarms/<code>.json and makes every later call fail with exit 4
// until the user has looked at the evidence (`nexus audit verify` prints it, with its code) and
// acknowledged it by that code (`nexus audit acknowledge CODE`), which files the evidence under
// NEXUS_HOME/evidence/ and continues from the platform's current checkpoint.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync, mkdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { identityIdFromPublicKey, isIdentityId } from '../core/identity/keys.ts';
import { openCheckpoint } from '../core/ledger/checkpoint.ts';
import { canonicalBytes, canonicalJson } from '../core/ledger/canonical.ts';
import { leafHash, verifyConsistency, verifyInclusion } from '../core/ledger/merkle.ts';
import type { LedgerEntry } from '../core/types.ts';
import type { Client, ReadSigner } from './client.ts';
import { CliError, EXIT, verificationFailed } from './errors.ts';
import { writeFileAtomic, type Home, type PinnedPlatform, type WitnessPolicy } from './home.ts';
import { splitNote } from '../core/ledger/checkpoint.ts';
import { verifyCosignature } from '../core/witness/cosignature.ts';

export interface PlatformInfo {
  id: string;
  origin: string;
  suffix: string;
  publicKey: string;
  verifierKey?: string;
}

export interface SeenCheckpoint {
  note: string;
  size: number;
  rootHash: Buffer;
}

export type AlarmKind = 'rewritten' | 'key-changed';

export interface Alarm {
  code: string;
  kind: AlarmKind;
  /** The one-line message the detecting call failed with. */
  message: string;
  url: string;
  platformId: string;
  detectedAt: string;
  /** rewritten: the checkpoint saved earlier, and the one the platform signed now. */
  saved?: { size: number; note: string };
  seen?: { size: number; note: string };
  proof?: string[];
  /** key-changed: what was pinned and what the daemon presented. */
  pinned?: PinnedPlatform;
  presented?: PlatformInfo;
}

export interface Contact {
  platform: PlatformInfo;
  checkpoint: SeenCheckpoint;
  /** Size of the checkpoint saved before this contact (null on first contact). */
  previousSize: number | null;
}

const HEX32 = /^[0-9a-f]{64}$/;

function hexProof(raw: unknown, what: string): Buffer[] {
  if (!Array.isArray(raw) || raw.length > 64 || !raw.every((h) => typeof h === 'string' && HEX32.test(h)))
    throw verificationFailed(`the daemon's ${what} is malformed (expected an array of hex SHA-256 hashes)`);
  return raw.map((h: string) => Buffer.from(h, 'hex'));
}

function alarmCode(a: Omit<Alarm, 'code'>): string {
  return createHash('sha256').update(canonicalJson(a)).digest('hex').slice(0, 8);
}

function describeAlarmAdvice(): string {
  return 'run `nexus audit verify` to see the evidence and how to acknowledge it, and keep your saved checkpoint as evidence';
}

/** Every open alarm in NEXUS_HOME. */
export function openAlarms(home: Home): Alarm[] {
  return home.alarmFiles().map((f) => JSON.parse(readFileSync(f, 'utf8')) as Alarm);
}

/** Throws exit 4 while an alarm is open: nothing else may talk to a daemon until the user has looked. */
export function assertNoOpenAlarm(home: Home): void {
  const open = openAlarms(home);
  const first = open[0];
  if (!first) return;
  const more = open.length > 1 ? ` (and ${open.length - 1} more alarm${open.length > 2 ? 's' : ''})` : '';
  throw verificationFailed(`${first.message.replace(/; run `nexus audit verify`.*$/, '')}${more}; detected ${first.detectedAt}; ${describeAlarmAdvice()}`);
}

function raise(home: Home, a: Omit<Alarm, 'code'>): never {
  const alarm: Alarm = { code: alarmCode(a), ...a };
  writeFileAtomic(join(home.alarmDir(), `${alarm.code}.json`), JSON.stringify(alarm, null, 2) + '\n');
  throw verificationFailed(alarm.message);
}

/**
 * Acknowledges an open alarm by its code: files it (and both checkpoints) under NEXUS_HOME/evidence,
 * then continues from what the platform presents now (the new key pinned, or the new checkpoint
 * saved as the one later contacts must extend). Returns the evidence file.
 */
export function acknowledge(home: Home, code: string): { alarm: Alarm; evidence: string } {
  const file = join(home.alarmDir(), `${code}.json`);
  if (!/^[0-9a-f]{8}$/.test(code) || !existsSync(file)) {
    const open = openAlarms(home);
    throw new CliError(
      open.length
        ? `no open alarm with code '${code}'; run \`nexus audit verify\` to see the open alarm${open.length > 1 ? 's' : ''} and ${open.length > 1 ? 'their codes' : 'its code'}`
        : `no open alarm with code '${code}' (there are no open alarms)`,
      EXIT.notFound,
    );
  }
  const alarm = JSON.parse(readFileSync(file, 'utf8')) as Alarm;
  const evDir = home.evidenceDir();
  mkdirSync(evDir, { recursive: true, mode: 0o700 });
  const stamp = alarm.detectedAt.replace(/[:.]/g, '-');
  const evidence = join(evDir, `${stamp}-${alarm.code}.json`);
  if (alarm.saved) writeFileSync(join(evDir, `${stamp}-${alarm.code}-saved-${alarm.saved.size}.note`), alarm.saved.note, { mode: 0o600 });
  if (alarm.seen) writeFileSync(join(evDir, `${stamp}-${alarm.code}-seen-${alarm.seen.size}.note`), alarm.seen.note, { mode: 0o600 });
  writeFileSync(evidence, JSON.stringify({ ...alarm, acknowledgedAt: new Date().toISOString() }, null, 2) + '\n', { mode: 0o600 });
  if (alarm.kind === 'rewritten' && alarm.seen) home.saveCheckpoint(alarm.platformId, alarm.seen.note);
  if (alarm.kind === 'key-changed' && alarm.presented) {
    const p = alarm.presented;
    home.pinPlatform(alarm.url, { id: p.id, publicKey: p.publicKey, origin: p.origin, pinnedAt: new Date().toISOString() });
  }
  renameSync(file, join(evDir, `${basename(file, '.json')}.alarm.json`));
  return { alarm, evidence };
}

function parsePlatform(raw: unknown): PlatformInfo {
  const p = raw as Partial<PlatformInfo> | null;
  if (!p || typeof p !== 'object' || typeof p.id !== 'string' || typeof p.origin !== 'string' || typeof p.publicKey !== 'string')
    throw verificationFailed('GET /v1/platform did not return { id, origin, publicKey }');
  const key = Buffer.from(p.publicKey, 'base64');
  if (key.length !== 32 || key.toString('base64') !== p.publicKey) throw verificationFailed('the platform public key is not 32 bytes of base64');
  if (!isIdentityId(p.id) || identityIdFromPublicKey(key) !== p.id)
    throw verificationFailed(`the platform claims id ${p.id}, which is not the id of the key it presents`);
  return { id: p.id, origin: p.origin, suffix: String(p.suffix ?? ''), publicKey: p.publicKey, ...(p.verifierKey ? { verifierKey: p.verifierKey } : {}) };
}

/** Which of the policy's witnesses cosigned `note` (a valid cosignature/v1 line by its key over this checkpoint). */
export function policyQuorum(note: string, policy: WitnessPolicy): { cosigned: string[]; missing: WitnessPolicy['witnesses']; ok: boolean } {
  let lines: string[];
  try {
    lines = splitNote(note).sigs.map((s) => s.line);
  } catch {
    lines = [];
  }
  const cosigned: string[] = [];
  const missing: WitnessPolicy['witnesses'] = [];
  for (const w of policy.witnesses) {
    if (lines.some((l) => verifyCosignature(note, l, w.vkey).valid)) cosigned.push(w.name);
    else missing.push(w);
  }
  return { cosigned, missing, ok: cosigned.length >= policy.require };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class Witness {
  private platformInfo: PlatformInfo | undefined;

  constructor(
    readonly home: Home,
    readonly client: Client,
  ) {}

  /** The daemon's platform, checked against the key pinned for this URL (pinned now on first contact). */
  async platform(): Promise<PlatformInfo> {
    if (this.platformInfo) return this.platformInfo;
    assertNoOpenAlarm(this.home);
    const info = parsePlatform(await this.client.get('/v1/platform'));
    const url = this.client.url;
    const pinned = this.home.platforms()[url];
    if (!pinned) {
      this.home.pinPlatform(url, { id: info.id, publicKey: info.publicKey, origin: info.origin, pinnedAt: new Date().toISOString() });
    } else if (pinned.publicKey !== info.publicKey || pinned.origin !== info.origin) {
      const what = pinned.publicKey !== info.publicKey ? `key ${info.id}` : `origin '${info.origin}'`;
      const was = pinned.publicKey !== info.publicKey ? pinned.id : `'${pinned.origin}'`;
      raise(this.home, {
        kind: 'key-changed',
        message: `the platform at ${url} changed its identity: it presents ${what}, but you pinned ${was} on ${pinned.pinnedAt}; ${describeAlarmAdvice()}`,
        url,
        platformId: pinned.id,
        detectedAt: new Date().toISOString(),
        pinned,
        presented: info,
      });
    }
    this.platformInfo = info;
    return info;
  }

  verifyNote(note: string, info: PlatformInfo, what: string): SeenCheckpoint {
    try {
      const { checkpoint } = openCheckpoint(note, [{ name: info.origin, publicKeyRaw: Buffer.from(info.publicKey, 'base64') }], info.origin);
      return { note, size: checkpoint.size, rootHash: checkpoint.rootHash };
    } catch (err) {
      throw verificationFailed(`${what} does not verify against the platform key ${info.id}: ${(err as Error).message}`);
    }
  }

  /**
   * The platform's latest checkpoint, verified; with a witness policy, one at least as large that
   * enough of the creator's witnesses cosigned (or a verification failure naming the missing ones).
   */
  private async latestTrusted(info: PlatformInfo): Promise<{ note: string; now: SeenCheckpoint }> {
    let note = await this.client.getText('/v1/ledger/checkpoint');
    let now = this.verifyNote(note, info, "the platform's checkpoint");
    const policy = this.home.witnessPolicy();
    if (policy.require === 0) return { note, now };
    let q = policyQuorum(note, policy);
    if (q.ok) return { note, now };
    const first = { size: now.size, q };
    const ids = [...new Set(policy.witnesses.map((w) => w.vkey.split('+')[1] ?? ''))].filter((id) => /^[0-9a-f]{8}$/.test(id)).join(',');
    const waitMs = Number(process.env.NEXUS_WITNESS_WAIT_MS ?? 3000);
    const deadline = Date.now() + (Number.isFinite(waitMs) && waitMs >= 0 ? waitMs : 3000);
    let delay = 50;
    while (Date.now() < deadline && ids) {
      await sleep(Math.min(delay, Math.max(0, deadline - Date.now())));
      delay = Math.min(delay * 2, 500);
      const n = await this.client.getText(`/v1/ledger/checkpoint?cosigners=${ids}&min=${policy.require}`);
      const c = this.verifyNote(n, info, "the platform's checkpoint");
      q = policyQuorum(n, policy);
      if (q.ok && c.size >= first.size) {
        note = n;
        now = c;
        return { note, now };
      }
    }
    const missing = first.q.missing.map((w) => `${w.name} (${w.vkey.split('+')[0]})`).join(', ');
    throw verificationFailed(
      `the platform's checkpoint of tree size ${first.size} has ${first.q.cosigned.length} of the ${policy.require} witness cosignatures your policy requires; ` +
        `missing: ${missing}. The witnesses may be unreachable, or they refused this tree (a rewritten log); it was not saved as trusted ` +
        '(`nexus audit witnesses list` shows your policy)',
    );
  }

  /** Fetches and verifies the platform's latest checkpoint, checks it extends the saved one, saves it. */
  async contact(): Promise<Contact> {
    const info = await this.platform();
    const { note } = await this.latestTrusted(info);
    return this.observe(info, note, { latest: true });
  }

  /**
   * Checks a signed checkpoint of this platform against the saved one and saves it if it is newer.
   * `latest`: it is the platform's newest checkpoint, so it may not be older than the saved one. A
   * receipt's checkpoint may be older (another call saved a newer one since): it must then be a
   * prefix of the saved one. Either way, two checkpoints that are not consistent are an alarm.
   */
  async observe(info: PlatformInfo, note: string, opts: { latest: boolean; what?: string }): Promise<Contact> {
    const now = this.verifyNote(note, info, opts.what ?? "the platform's checkpoint");
    // Under a witness policy only a checkpoint with the quorum becomes the saved one (contact()
    // demands it of the newest); a receipt's, usually not cosigned yet, is checked but not saved.
    const policy = this.home.witnessPolicy();
    const savable = opts.latest || policy.require === 0 || policyQuorum(note, policy).ok;
    const save = (n: string) => {
      if (savable) this.home.saveCheckpoint(info.id, n);
    };
    const savedNote = this.home.savedCheckpoint(info.id);
    if (savedNote === undefined) {
      save(note);
      return { platform: info, checkpoint: now, previousSize: null };
    }
    const saved = this.verifyNote(savedNote, info, `your saved checkpoint (${this.home.checkpointPath(info.id)})`);
    const rewritten = (proof: string[] | undefined, extra = '') =>
      raise(this.home, {
        kind: 'rewritten',
        message:
          (now.size >= saved.size || opts.latest
            ? `the platform's log was rewritten: the checkpoint you saw at tree size ${saved.size} is not a prefix of the tree of size ${now.size}${extra}; `
            : `the platform's log was rewritten: ${opts.what ?? 'its checkpoint'} of tree size ${now.size} is not a prefix of the checkpoint you saw at tree size ${saved.size}${extra}; `) +
          describeAlarmAdvice(),
        url: this.client.url,
        platformId: info.id,
        detectedAt: new Date().toISOString(),
        saved: { size: saved.size, note: savedNote },
        seen: { size: now.size, note },
        ...(proof ? { proof } : {}),
      });
    if (now.size === saved.size) {
      if (!now.rootHash.equals(saved.rootHash)) rewritten(undefined, ' (same size, different root)');
      return { platform: info, checkpoint: now, previousSize: saved.size };
    }
    if (now.size < saved.size) {
      if (opts.latest) rewritten(undefined, ' (entries were removed)');
      const res = await this.client.get<{ proof?: unknown }>('/v1/ledger/proof/consistency', { from: now.size, to: saved.size });
      const proof = hexProof(res.proof, 'consistency proof');
      if (!verifyConsistency(now.size, saved.size, now.rootHash, saved.rootHash, proof)) rewritten(proof.map((p) => p.toString('hex')));
      return { platform: info, checkpoint: now, previousSize: saved.size };
    }
    const res = await this.client.get<{ proof?: unknown }>('/v1/ledger/proof/consistency', { from: saved.size, to: now.size });
    const proof = hexProof(res.proof, 'consistency proof');
    if (!verifyConsistency(saved.size, now.size, saved.rootHash, now.rootHash, proof))
      rewritten(proof.map((p) => p.toString('hex')));
    // Re-read before writing: a concurrent call may have saved a newer one already.
    const current = this.home.savedCheckpoint(info.id);
    if (current === savedNote || current === undefined) save(note);
    else {
      const other = this.verifyNote(current, info, 'your saved checkpoint');
      if (other.size < now.size) save(note);
    }
    return { platform: info, checkpoint: now, previousSize: saved.size };
  }

  /** Fetches one entry as stored, read as `as` (it is bound to the log by an inclusion proof, see checkInclusion). */
  async entry(index: number, as?: ReadSigner): Promise<LedgerEntry> {
    const res = await this.client.get<{ entries?: LedgerEntry[] }>('/v1/ledger/entries', { from: index, to: index + 1 }, as);
    const e = (res.entries ?? []).find((x) => x && x.index === index);
    if (!e || !e.command) throw verificationFailed(`the daemon did not return ledger entry ${index}`);
    return e;
  }

  /** Checks that entry `index` is in the tree of `cp` (RFC 9162 2.1.3.2). */
  async checkInclusion(index: number, entryBytes: Buffer, cp: SeenCheckpoint): Promise<void> {
    return this.checkLeafInclusion(index, leafHash(entryBytes), cp);
  }

  /** Like checkInclusion, from the leaf hash (what a reader gets of an entry withheld from it). */
  async checkLeafInclusion(index: number, leaf: Buffer, cp: SeenCheckpoint): Promise<void> {
    const res = await this.client.get<{ proof?: unknown }>('/v1/ledger/proof/inclusion', { index, size: cp.size });
    const proof = hexProof(res.proof, 'inclusion proof');
    if (!verifyInclusion(leaf, index, cp.size, proof, cp.rootHash))
      throw verificationFailed(`ledger entry ${index} is not included in the platform's signed checkpoint of tree size ${cp.size}`);
  }

  /**
   * After a command this CLI submitted: re-checks the checkpoint (consistency with the saved one),
   * then checks that entry `index` is the command we signed (by its signature) and that it is
   * included in the signed checkpoint. Returns the checkpoint it checked against.
   */
  async confirmEntry(index: number, sig?: string, as?: ReadSigner): Promise<SeenCheckpoint> {
    const { checkpoint } = await this.contact();
    if (index >= checkpoint.size)
      throw verificationFailed(`the platform acknowledged ledger entry ${index}, but its signed checkpoint covers only ${checkpoint.size} entries`);
    const e = await this.entry(index, as);
    if (sig !== undefined && e.command?.sig !== sig) throw verificationFailed(`ledger entry ${index} is not the command this CLI signed`);
    await this.checkInclusion(index, canonicalBytes(e), checkpoint);
    return checkpoint;
  }
}
