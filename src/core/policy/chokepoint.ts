// The chokepoint: the one path by which state changes. verify (gate 1) -> gates -> ledger
// (allowed or denied, with reasons) -> projections (only if allowed).
import { z } from 'zod';
import type { KeyObject } from 'node:crypto';
import { cachedPublicKey, identityIdFromPublicKey, publicKeyRaw } from '../identity/keys.ts';
import { commandSigningBytes, isCanonicalSignature, signCommand, signingBytesOfJson, verifyCommandSignature } from '../identity/envelope.ts';
import { VerifyPool, type VerifyItem } from '../identity/verify-pool.ts';
import { Ledger, decodeEntry, elideEntry, encodeEntryWith, type Appender, type SavedCheckpoint } from '../ledger/ledger.ts';
import { canonicalBytes, canonicalJson } from '../ledger/canonical.ts';
import { parsePriceBook } from '../handshake/index.ts';
import type { SqlReader, Store, WriteTx } from '../store/index.ts';
import { COMMAND_TYPES, type Command, type CommandType, type Decision, type GateResult, type Json, type LedgerEntry, type SignedCommand } from '../types.ts';
import { BODY_SCHEMAS, formatZodError } from './commands.ts';
import { deny, pass, type GateContext, type IdentityRow, type ImvuRow, type PlatformRow } from './gate.ts';
import { GATES } from './gates/index.ts';
import { REFUSAL_NOTICE_INTERVAL_MS } from './gates/platform-powers.ts';
import { preconditions } from './preconditions.ts';
import { applyCommand } from './projection-writer.ts';
import { indexEntry, zoneOwnerBefore } from './imvu-index.ts';

/** Commands older or newer than this, relative to the platform clock at append time, are refused. */
export const DEFAULT_WINDOW_MS = 5 * 60 * 1000;
/** A command envelope larger than this is refused before it is parsed further. */
export const MAX_COMMAND_BYTES = 64 * 1024;

const Envelope = z
  .object({
    command: z
      .object({
        v: z.literal(1),
        // Any name here: an unknown type signed by a registered identity is recorded and denied (gate 0).
        type: z.string().regex(/^[a-z][a-z0-9.-]{0,63}$/, 'must be a command type such as imvu.create'),
        actor: z.string().min(1).max(64),
        origin: z.string().min(1).max(255),
        nonce: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/, 'must be 16-64 base64url characters'),
        ts: z.string().datetime({ message: 'must be an ISO-8601 UTC time' }),
        body: z.record(z.string(), z.unknown()),
      })
      .strict(),
    sig: z.string().max(88).refine(isCanonicalSignature, 'must be 64 bytes in standard base64 with padding (one spelling only)'),
  })
  .strict();

/** Why an attempt was not authenticated (and so is refused without a ledger entry). */
export type Unauthenticated = 'oversize' | 'malformed' | 'bad-key' | 'bad-signature' | 'unknown-identity' | 'replay' | 'wrong-origin' | 'rate-limited' | 'revoked';

/**
 * For a signature that fails: whether one of the identity's two most recently retired keys made it
 * (a client still using a rotated key), to say so in the refusal. Bounded work on a failure path.
 */
async function retiredSigner(db: SqlReader, actor: IdentityRow, signed: SignedCommand): Promise<string> {
  const rows = await db.all<{ public_key: string; why: string; entry: number }>('SELECT public_key, why, entry FROM retired_keys WHERE identity = ? ORDER BY entry DESC LIMIT 2', [actor.id]);
  for (const r of rows) {
    try {
      if (verifyCommandSignature(signed, cachedPublicKey(r.public_key))) return `: it was signed with a key ${r.why} at ledger entry ${r.entry}, which signs nothing more`;
    } catch {
      // a stored key that does not parse proves nothing
    }
  }
  return '';
}

export interface Verdict {
  decision: Decision;
  /**
   * Set when the attempt is not proved to come from a registered identity (or a valid
   * self-registration) for this platform, first use of its nonce: it is refused and not recorded,
   * so nobody can grow the log at will. The decision says the same for a verifier replaying old logs.
   */
  unauthenticated?: Unauthenticated;
  /** With `rate-limited`: when the identity may submit again. */
  retryAfterMs?: number;
  command?: Command;
  /** Set when the signature verified: the nonce is spent whether the command is allowed or not. */
  spent?: { actor: string; nonce: string };
  imvu?: ImvuRow;
  actor?: IdentityRow;
  /** The platform row decide() read (applying the command reads the same row, unchanged since). */
  platform?: PlatformRow;
}

function denied(gates: GateResult[]): Decision {
  return { allowed: false, gates };
}

export interface DecideOptions {
  windowMs?: number;
  /**
   * A signature verdict computed ahead of time for this input and key (base64), if any. It counts
   * only if it was computed over `message`, the bytes this decision verifies (one form: a body the
   * schema reads differently from the raw input, `__proto__` say, is verified as the schema reads it).
   */
  preverified?: (input: unknown, publicKey: string, message: Buffer) => boolean | undefined;
  /**
   * Per-identity admission, asked once the signature, origin and nonce are proved and before any
   * gate runs: milliseconds to wait, or undefined to go on. Live submissions only, never replay.
   */
  admit?: (actor: IdentityRow) => number | undefined;
  /**
   * canonicalJson(input), if the caller has it (the chokepoint serialised every input to copy it):
   * sizes and the signed bytes are then read off it instead of serialising the command again.
   */
  canonical?: (input: unknown) => string | undefined;
}

/**
 * The canonical JSON of the command inside `envelope`, the canonical JSON of the signed envelope
 * `input` (exactly `command` and `sig`, so `{"command":<command>,"sig":<sig>}` in JCS order),
 * provided the parsed copy `signed` holds the very members of `input`: the schema's copy drops
 * what it cannot hold as an own member (a body key `__proto__`), and the gates and the signature
 * check must see the same command as always.
 */
function commandJsonOf(envelope: string, input: unknown, signed: SignedCommand): string | undefined {
  const raw = (input as { command?: Record<string, unknown> }).command;
  const cmd = signed.command as unknown as Record<string, unknown>;
  if (!raw || typeof raw !== 'object') return undefined;
  const keys = Object.keys(raw);
  if (keys.length !== Object.keys(cmd).length) return undefined;
  for (const k of keys) if (k !== 'body' && raw[k] !== cmd[k]) return undefined;
  const rawBody = raw.body as Record<string, unknown>;
  const body = cmd.body as Record<string, unknown>;
  const bodyKeys = Object.keys(rawBody);
  if (bodyKeys.length !== Object.keys(body).length) return undefined;
  for (const k of bodyKeys) if (!Object.hasOwn(body, k) || body[k] !== rawBody[k]) return undefined;
  const head = '{"command":';
  const tail = `,"sig":${JSON.stringify(signed.sig)}}`;
  if (!envelope.startsWith(head) || !envelope.endsWith(tail)) return undefined;
  return envelope.slice(head.length, envelope.length - tail.length);
}

/** Decides a command against the state in `db` as of ledger position `index` and platform time `at`. Pure in (db, input, index, at). */
export async function decide(db: SqlReader, input: unknown, index: number, at: string, opts: DecideOptions = {}): Promise<Verdict> {
  const windowMs = opts.windowMs ?? DEFAULT_WINDOW_MS;
  const audit = pass(11, `recorded as ledger entry ${index}`);
  const unauth = (why: Unauthenticated, reason: string, extra: Partial<Verdict> = {}): Verdict => ({ ...extra, unauthenticated: why, decision: denied([deny(1, reason), audit]) });
  // The canonical copy has the members and spelling of JSON.stringify(input), in another order.
  const known = opts.canonical?.(input);
  const size = Buffer.byteLength(known ?? JSON.stringify(input) ?? '');
  if (size > MAX_COMMAND_BYTES) return unauth('oversize', `command of ${size} bytes exceeds ${MAX_COMMAND_BYTES}`);
  const parsed = Envelope.safeParse(input);
  if (!parsed.success) return unauth('malformed', `not a signed command: ${formatZodError(parsed.error)}`);
  const signed = parsed.data as SignedCommand;
  const cmd = signed.command;
  const commandJson = known !== undefined ? commandJsonOf(known, input, signed) : undefined;
  const message = commandJson !== undefined ? signingBytesOfJson(commandJson) : undefined;
  const platform = await db.get<PlatformRow>('SELECT * FROM platform LIMIT 1');

  // Gate 1, first half: who signed, and is it fresh.
  let key: KeyObject;
  let keyB64: string;
  const actor = await db.get<IdentityRow>('SELECT * FROM identities WHERE id = ?', [cmd.actor]);
  const selfCertifying = cmd.type === 'platform.genesis' || (cmd.type === 'identity.register' && !actor);
  try {
    if (selfCertifying) {
      keyB64 = String(cmd.body.publicKey ?? '');
      if (identityIdFromPublicKey(Buffer.from(keyB64, 'base64')) !== cmd.actor) return unauth('bad-key', 'actor id does not match the public key it registers');
    } else {
      if (!actor) return unauth('unknown-identity', `unknown identity ${cmd.actor}`);
      keyB64 = actor.public_key;
    }
    key = cachedPublicKey(keyB64);
  } catch (err) {
    return unauth('bad-key', `bad public key: ${(err as Error).message}`);
  }
  const signatureOk = (message && opts.preverified?.(input, keyB64, message)) ?? verifyCommandSignature(signed, key, message);
  if (!signatureOk) return unauth('bad-signature', `signature does not verify for ${actor?.name ?? cmd.actor}${actor ? await retiredSigner(db, actor, signed) : ''}`);
  // A revoked identity signs nothing more: its key may be in anyone's hands, so what it signs is
  // refused like a forgery (not recorded, counted as noise).
  const revoked = actor && (await db.get<{ entry: number }>("SELECT entry FROM retired_keys WHERE public_key = ? AND why = 'revoked'", [actor.public_key]));
  if (revoked) return unauth('revoked', `${actor.name} was revoked at ledger entry ${revoked.entry}; its key signs nothing more`);
  const spent = { actor: cmd.actor, nonce: cmd.nonce };
  const base = { command: cmd, actor };
  // Bound to one platform: the origin is in the signed bytes, so a command copied from another
  // platform's public log cannot be replayed here.
  const origin = cmd.type === 'platform.genesis' ? String(cmd.body.origin) : platform?.origin;
  if (cmd.origin !== origin) return unauth('wrong-origin', `command is signed for platform '${cmd.origin}', not for this platform ('${origin ?? 'none'}')`, base);
  // Anyone can resend a command from the public log: a replay proves nothing about who sent it.
  if (await db.get('SELECT 1 AS x FROM nonces WHERE actor = ? AND nonce = ?', [cmd.actor, cmd.nonce]))
    return unauth('replay', `nonce ${cmd.nonce} was already used: replayed command`, base);
  const wait = actor && opts.admit?.(actor);
  if (wait) return unauth('rate-limited', `${actor.name} is over its rate of submissions; retry in ${Math.ceil(wait / 1000)} s`, { ...base, retryAfterMs: wait });
  const skew = Math.abs(Date.parse(cmd.ts) - Date.parse(at));
  if (!(skew <= windowMs))
    return { ...base, spent, decision: denied([deny(1, `timestamp ${cmd.ts} is outside the allowed window of ${windowMs / 1000}s around ${at}`), audit]) };

  // The body, then facts every gate may rely on.
  if (!(COMMAND_TYPES as readonly string[]).includes(cmd.type))
    return { ...base, spent, decision: denied([deny(0, `unknown command type ${cmd.type}; known: ${COMMAND_TYPES.join(', ')}`), audit]) };
  const schema = BODY_SCHEMAS[cmd.type];
  const body = schema.safeParse(cmd.body);
  if (!body.success) return { ...base, spent, decision: denied([deny(0, `invalid ${cmd.type}: ${formatZodError(body.error)}`), audit]) };
  // Every entry must fit a C2SP entry bundle (a uint16 length); the decision and envelope add a few KiB.
  // The body is part of the command: a command that fits fits its body.
  const bodyBytes = commandJson !== undefined && Buffer.byteLength(commandJson) <= MAX_COMMAND_BODY_BYTES ? 0 : canonicalBytes(cmd.body).length;
  if (bodyBytes > MAX_COMMAND_BODY_BYTES)
    return { ...base, spent, decision: denied([deny(0, `the ${cmd.type} body is ${bodyBytes} bytes; at most ${MAX_COMMAND_BODY_BYTES} fit one ledger entry`), audit]) };
  if (cmd.type === 'pricebook.publish') {
    // The body here; when it may take effect is gate 6's (src/core/policy/gates/06-revenue-metering.ts).
    try {
      parsePriceBook(cmd.body);
    } catch (err) {
      return { ...base, spent, decision: denied([deny(0, `invalid price book: ${(err as Error).message}`), audit]) };
    }
  }
  // The gates see the very object that was signed and will be written (the schemas never transform).
  const b = cmd.body as Record<string, unknown>;
  const imvu = typeof b.imvu === 'string' ? await db.get<ImvuRow>('SELECT * FROM imvus WHERE id = ?', [b.imvu]) : undefined;
  const ctx: GateContext = { command: cmd, body: b, actor, imvu, platform, index, at, db };
  const results: GateResult[] = [];
  const pre = await preconditions(ctx);
  if (pre) results.push(deny(0, pre));
  for (const gate of GATES) {
    if (gate.guards === 'all' || gate.guards.includes(cmd.type)) results.push(await gate.check(ctx));
    else if (gate.beyond) {
      const r = await gate.beyond(ctx);
      if (r) results.push(r);
    }
  }
  return { ...base, spent, imvu, platform, decision: { allowed: results.every((r) => r.status !== 'deny'), gates: results } };
}

/** Signatures per message to a verification worker. */
const VERIFY_CHUNK = 64;

/** Longest run of command processing inside one batch before the event loop gets a turn. */
const YIELD_AFTER_MS = 4;

/** Reason prefix of a command the gates allowed but the state could not take (recorded as denied). */
export const NOT_APPLIED = 'could not be applied: ';

async function spendNonce(tx: WriteTx, v: Verdict, index: number): Promise<void> {
  if (v.spent) await tx.run('INSERT OR IGNORE INTO nonces (actor, nonce, entry) VALUES (?, ?, ?)', [v.spent.actor, v.spent.nonce, index]);
}

/**
 * Applies an allowed command inside its own savepoint. If the state cannot take it, nothing of it
 * stays, and the verdict becomes a denial with the reason: one command never fails the others of
 * its batch, and its nonce is spent like any denied command's.
 */
async function applyIsolated(tx: WriteTx, v: Verdict, index: number, at: string, more?: () => Promise<void>): Promise<Verdict> {
  if (!v.decision.allowed || !v.command) return v;
  await tx.run('SAVEPOINT apply');
  try {
    // decide() read it in this transaction and nothing since (the nonce) writes the platform row.
    const platform = v.platform ?? (await tx.get<PlatformRow>('SELECT * FROM platform LIMIT 1'));
    await applyCommand(tx, index, v.command, at, platform);
    await more?.();
    await tx.run('RELEASE apply');
    return v;
  } catch (err) {
    await tx.run('ROLLBACK TO apply');
    await tx.run('RELEASE apply');
    const reason = `${NOT_APPLIED}${String((err as Error)?.message ?? err).split('\n')[0]!.slice(0, 300)}`;
    return { ...v, decision: { allowed: false, gates: [...v.decision.gates, deny(0, reason)] } };
  }
}

/**
 * Replays one recorded entry into `tx` (a fresh store, for the verifier) and returns the decision
 * the gates reach now. An entry recorded as not applied is checked against the gates and then left
 * unapplied, as it was: the platform refused it (a refusal of service is visible, never hidden).
 */
export async function replayEntry(tx: WriteTx, entry: LedgerEntry, opts: DecideOptions = {}): Promise<Decision> {
  const ownerBefore = await zoneOwnerBefore(tx, entry);
  const decision = await replayDecision(tx, entry, opts);
  await indexEntry(tx, entry, ownerBefore);
  return decision;
}

async function replayDecision(tx: WriteTx, entry: LedgerEntry, opts: DecideOptions): Promise<Decision> {
  if (entry.elided) return replayElided(tx, entry);
  const v = await decide(tx, entry.command, entry.index, entry.at, opts);
  await spendNonce(tx, v, entry.index);
  const refused = entry.decision?.gates?.find?.((g) => g.gate === 0 && g.status === 'deny' && g.reason?.startsWith(NOT_APPLIED));
  if (refused && v.decision.allowed) return { allowed: false, gates: [...v.decision.gates, refused] };
  return (await applyIsolated(tx, v, entry.index, entry.at)).decision;
}

/**
 * Applies the effect of a recorded entry that says `allowed` to `tx`, without deciding again: the
 * entry carries its decision. For a reader who holds only part of the log (a creator's monitor,
 * `nexus audit watch`) and projects its own entries into a scratch store to see what the platform
 * should serve; the gates need the whole log and are the verifier's business. Never called on the
 * platform's store. Throws if the state cannot take the entry (the caller reports it).
 */
export async function projectRecorded(tx: WriteTx, entry: LedgerEntry): Promise<void> {
  if (!entry.decision?.allowed || entry.elided || !entry.command?.command) return;
  await tx.run('SAVEPOINT project');
  try {
    const platform = await tx.get<PlatformRow>('SELECT * FROM platform LIMIT 1');
    await applyCommand(tx, entry.index, entry.command.command, entry.at, platform);
    await tx.run('RELEASE project');
  } catch (err) {
    await tx.run('ROLLBACK TO project');
    await tx.run('RELEASE project');
    throw err;
  }
}

/** Re-exported: where the log's own encoding rules live (src/core/ledger/ledger.ts). */
export { MAX_DENIED_BODY_BYTES } from '../ledger/ledger.ts';
/** The largest command body recorded as it is: its entry, with the decision, stays under the 65,535 bytes of a tlog-tiles entry bundle. */
export const MAX_COMMAND_BODY_BYTES = 48 * 1024;


/**
 * An elided entry cannot have its signature checked again (the signed body is gone). What replay
 * can still check: it is a denial (so it changed nothing), its actor was a registered identity
 * then, and its nonce was unused; the nonce is spent as it was.
 */
async function replayElided(tx: WriteTx, entry: LedgerEntry): Promise<Decision> {
  const cmd = entry.command?.command;
  const problem = (why: string): Decision => ({ allowed: false, gates: [deny(1, `elided entry: ${why}`)] });
  if (!cmd || entry.decision?.allowed !== false) return problem('only a denied command may be stored without its body');
  if (!(await tx.get('SELECT 1 AS x FROM identities WHERE id = ?', [cmd.actor]))) return problem(`${cmd.actor} was not a registered identity`);
  if (await tx.get('SELECT 1 AS x FROM nonces WHERE actor = ? AND nonce = ?', [cmd.actor, cmd.nonce])) return problem(`nonce ${cmd.nonce} was already used`);
  await tx.run('INSERT INTO nonces (actor, nonce, entry) VALUES (?, ?, ?)', [cmd.actor, cmd.nonce, entry.index]);
  return entry.decision;
}

/** An attempt refused before anything was recorded: not authenticated, or over its rate. */
export class NotRecorded extends Error {
  constructor(
    readonly why: Unauthenticated,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
  }
}

export interface Receipt {
  index: number;
  allowed: boolean;
  gates: GateResult[];
  /** Entries the platform appended because of this one (notifications, provisioning). */
  followUps: Receipt[];
  /** The entry's recorded time (with the command and the decision, it gives the entry's bytes). */
  at?: string;
  /**
   * The signed checkpoint saved by the batch that committed this entry: the first one that
   * includes it. Set once the batch is durable; an inclusion proof against it can be computed
   * from the stored tree at any time after (src/api/receipts.ts).
   */
  checkpoint?: SavedCheckpoint;
}

/** Gives a receipt and its follow-ups the checkpoint of the batch that committed them. */
function stamp(r: Receipt, checkpoint: SavedCheckpoint | undefined): void {
  if (!checkpoint) return;
  r.checkpoint = checkpoint;
  for (const f of r.followUps) stamp(f, checkpoint);
}

export interface FollowUp {
  type: CommandType;
  body: { [k: string]: Json };
}

export interface ChokepointOptions {
  platformKey: KeyObject;
  origin: string;
  clock?: () => Date;
  /**
   * Nonces of the platform's own commands (default: 16 random bytes). Only a reproducible build
   * (bench/scale's comparison of its two paths) sets it, together with `clock`.
   */
  nonce?: () => string;
  windowMs?: number;
  maxBatch?: number;
  /** Verify signatures on worker threads ahead of the commit loop (the daemon turns this on). */
  parallelVerify?: boolean;
  /**
   * With parallelVerify: commit the commands whose signatures are already checked instead of
   * waiting for every verdict of the batch, so the main thread gates and appends while the
   * workers check the rest. Batches get smaller and commits more frequent: for a bulk load, whose
   * commits are not fsynced (bench/scale's fast build), not for the daemon.
   */
  pipelineVerify?: boolean;
  /** Per-identity admission for live submissions (see DecideOptions.admit). */
  admit?: DecideOptions['admit'];
  /** Platform-originated commands to append after an allowed one (e.g. DKIM keys for a new IMVU). */
  provision?: (command: Command, index: number, db: SqlReader, prepared?: unknown) => Promise<FollowUp[]>;
  /**
   * Work for `provision` done before the batch's write transaction (key generation for
   * `imvu.create`): called once per submitted command, its result is handed to `provision` for
   * that command only (never to another), and dropped if the command is refused. Undefined: none.
   */
  prepare?: (command: Command) => Promise<unknown> | undefined;
}

interface Pending {
  input: unknown;
  /** Set once `ready` has resolved. */
  settled?: boolean;
  /** `ready` waits on work made for it (an `imvu.create`'s keys), not only on its signature check. */
  slow?: boolean;
  /** Set for submitPrepared(): makes the input inside the batch's transaction. */
  prepare?: (tx: WriteTx) => Promise<SignedCommand | undefined>;
  ready: Promise<void>;
  resolve: (r: Receipt | undefined) => void;
  reject: (e: unknown) => void;
}

/** The actor a submission names (not yet checked: it only orders the submissions waiting). */
function actorOf(input: unknown): string | undefined {
  const actor = (input as { command?: { actor?: unknown } } | null)?.command?.actor;
  return typeof actor === 'string' ? actor : undefined;
}

/**
 * A canonical (JCS) copy: the object decided on and applied has exactly the bytes and key order
 * that are recorded, so a replay from the recorded bytes writes identical projections.
 */
function plainCopy(input: unknown, canonical?: WeakMap<object, string>): unknown {
  try {
    if (input === undefined) return null;
    const json = canonicalJson(input);
    const copy = JSON.parse(json) as unknown;
    // Kept for decide() and the entry's encoding; nothing writes to the copy (the gates see the
    // schema's copy, and what is recorded must be what was signed).
    if (canonical && typeof copy === 'object' && copy !== null) canonical.set(copy, json);
    return copy;
  } catch {
    return { unserialisable: true };
  }
}

export class Chokepoint {
  private pending: Pending[] = [];
  private flushing = false;
  private readonly pool: VerifyPool | undefined;
  private readonly verdicts = new WeakMap<object, { key: string; ok: boolean; message: Buffer }>();
  /** What `opts.prepare` made for a submitted input, keyed by that very object. */
  private readonly prepared = new WeakMap<object, unknown>();
  /** Set while every pending submission waits on keys: a new submission wakes the flush once ready. */
  private wake: (() => void) | undefined;
  private readonly knownKeys = new Map<string, string>();
  private verifyQueue: { item: VerifyItem; done: (ok: boolean | undefined) => void }[] = [];
  /** canonicalJson() of each copied input, keyed by the copy: serialised once, used for every size, signature and entry. */
  private readonly canonical = new WeakMap<object, string>();
  readonly platformId: string;

  private constructor(
    readonly store: Store,
    readonly ledger: Ledger,
    private readonly opts: ChokepointOptions,
    /** Time of the newest entry: no entry is ever appended with an earlier one. */
    private lastAt: string | undefined,
  ) {
    this.platformId = identityIdFromPublicKey(publicKeyRaw(opts.platformKey));
    this.pool = opts.parallelVerify ? new VerifyPool() : undefined;
  }

  async close(): Promise<void> {
    await this.pool?.close();
  }

  static async open(store: Store, opts: ChokepointOptions): Promise<Chokepoint> {
    const ledger = await Ledger.open(store, { origin: opts.origin, keyName: opts.origin, platformKey: opts.platformKey });
    const [last] = ledger.size ? await store.readEntries(ledger.size - 1, ledger.size) : [];
    return new Chokepoint(store, ledger, opts, last ? decodeEntry(last).at : undefined);
  }

  /** Signs a command as the platform (for genesis, notifications, provisioning). */
  platformCommand(type: CommandType, body: { [k: string]: Json }): SignedCommand {
    // The actor is the key's id, computed once (deriving it per command costs a key export).
    return signCommand(this.opts.platformKey, type, body, { origin: this.opts.origin, actor: this.platformId, ts: this.now(), ...(this.opts.nonce ? { nonce: this.opts.nonce() } : {}) });
  }

  /** The platform clock, never earlier than the last entry's time: entry times only move forward. */
  private now(notBefore?: string): string {
    const t = (this.opts.clock?.() ?? new Date()).toISOString();
    return notBefore !== undefined && t < notBefore ? notBefore : t;
  }

  /**
   * Submits a command. Concurrent submissions are committed together (group commit); the promise
   * resolves only after the batch, its ledger entries and the new signed checkpoint are durable.
   */
  submit(raw: unknown): Promise<Receipt> {
    // Rejects with NotRecorded for an attempt that is not authenticated (nothing is appended).
    const input = plainCopy(raw, this.canonical);
    const verified = this.pool ? this.preverify(input) : Promise.resolve();
    const keys = this.prepareFor(input);
    const ready = keys ? Promise.all([verified, keys]).then(() => undefined) : verified;
    return new Promise<Receipt>((resolve, reject) => {
      const p: Pending = { input, ready, slow: keys !== undefined, resolve: (r) => resolve(r!), reject };
      void ready.then(() => (p.settled = true));
      this.pending.push(p);
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => void this.flush());
      } else if (this.wake) void ready.then(this.wake);
    });
  }

  /**
   * Runs `prepare` in a batch transaction of its own and processes the platform command it returns
   * like a submitted one, so that what `prepare` writes and that command's entry commit together
   * (an integrity repair and its alarm, src/core/policy/integrity.ts). Undefined if it returns none.
   */
  submitPrepared(prepare: (tx: WriteTx) => Promise<SignedCommand | undefined>): Promise<Receipt | undefined> {
    return new Promise<Receipt | undefined>((resolve, reject) => {
      this.pending.push({ input: undefined, prepare, ready: Promise.resolve(), settled: true, resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  /**
   * Runs `opts.prepare` outside any transaction; undefined when it has nothing to make. A failure
   * leaves `provision` to do the work itself.
   */
  private prepareFor(input: unknown): Promise<void> | undefined {
    let made: Promise<unknown> | undefined;
    try {
      const cmd = (input as SignedCommand | undefined)?.command;
      if (!cmd || typeof cmd.type !== 'string' || typeof cmd.body !== 'object' || !cmd.body) return undefined;
      made = this.opts.prepare?.(cmd);
    } catch {
      return undefined;
    }
    return made?.then(
      (v) => void this.prepared.set(input as object, v),
      () => undefined, // provision() makes what is missing inside the transaction
    );
  }

  /** Checks the signature on a worker thread; decide() uses the verdict only if it ends up using the same key. */
  private async preverify(input: unknown): Promise<void> {
    try {
      const signed = input as SignedCommand;
      const cmd = signed?.command;
      if (!cmd || typeof cmd.actor !== 'string' || typeof signed.sig !== 'string' || typeof cmd.body !== 'object' || !cmd.body) return;
      let key = this.knownKeys.get(cmd.actor);
      if (!key) {
        const row = await this.store.get<{ public_key: string }>('SELECT public_key FROM identities WHERE id = ?', [cmd.actor]);
        key = row?.public_key ?? (typeof cmd.body.publicKey === 'string' ? cmd.body.publicKey : undefined);
        if (row) this.knownKeys.set(cmd.actor, row.public_key);
      }
      if (!key) return;
      const message = commandSigningBytes(cmd);
      const ok = await this.verifySoon({ message, publicKey: key, sig: signed.sig });
      if (ok !== undefined) this.verdicts.set(signed, { key, ok, message });
    } catch {
      // Anything odd is left to decide(), which verifies on the spot.
    }
  }

  /** Asks for one verification; those asked for in the same turn go to the workers together. */
  private verifySoon(item: VerifyItem): Promise<boolean | undefined> {
    return new Promise((done) => {
      if (this.verifyQueue.length === 0) setImmediate(() => this.sendVerifications());
      this.verifyQueue.push({ item, done });
    });
  }

  /**
   * One message per chunk instead of one per command (a round trip costs about what a
   * verification does); chunks small enough that the first verdicts are back while the workers
   * check the rest.
   */
  private sendVerifications(): void {
    const queue = this.verifyQueue;
    this.verifyQueue = [];
    for (let i = 0; i < queue.length; i += VERIFY_CHUNK) {
      const chunk = queue.slice(i, i + VERIFY_CHUNK);
      this.pool!.verifyMany(chunk.map((c) => c.item)).then(
        (oks) => chunk.forEach((c, j) => c.done(oks[j])),
        () => chunk.forEach((c) => c.done(undefined)),
      );
    }
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      // A prepared submission runs in a batch of its own: if it fails, nothing else fails with it.
      const prepared = this.pending.findIndex((p) => p.prepare);
      let take = prepared === 0 ? 1 : prepared > 0 ? Math.min(prepared, this.opts.maxBatch ?? 1024) : (this.opts.maxBatch ?? 1024);
      let batch: Pending[];
      if (!this.opts.pipelineVerify || take === 1) batch = take === 1 ? this.pending.splice(0, 1) : await this.readyBatch(take);
      else {
        // The first command's verdict, then every one after it already checked (never fewer than one).
        await this.pending[0]!.ready;
        let n = 1;
        while (n < take && n < this.pending.length && this.pending[n]!.settled) n++;
        take = n;
        batch = this.pending.splice(0, take);
      }
      await Promise.all(batch.map((p) => p.ready));
      try {
        const { result: receipts, checkpoint } = await this.ledger.batchWithCheckpoint(async (log, tx) => {
          const out: (Receipt | NotRecorded | undefined)[] = [];
          let slice = performance.now();
          for (const p of batch) {
            // A large batch (a meter's flush, a burst of clients) must not hold the event loop for
            // its whole length: DNS answers and reads run between slices. The transaction stays
            // open; the store runs one write transaction at a time, and readers see only commits.
            if (performance.now() - slice > YIELD_AFTER_MS) {
              await new Promise((r) => setImmediate(r));
              slice = performance.now();
            }
            if (!p.prepare) {
              out.push(await this.process(tx, log, p.input));
              continue;
            }
            const made = await p.prepare(tx);
            out.push(made === undefined ? undefined : await this.process(tx, log, plainCopy(made, this.canonical)));
          }
          return out;
        });
        batch.forEach((p, i) => {
          const r = receipts[i];
          if (r instanceof NotRecorded) p.reject(r);
          else {
            if (r) stamp(r, checkpoint);
            p.resolve(r);
          }
        });
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
    this.flushing = false;
  }

  /**
   * The next batch, in submission order: the first `max` submissions (none past a prepared one)
   * but those whose keys are still being made (an `imvu.create` when the pool is empty: hundreds
   * of ms each) and the later submissions of the same actors, whose order is kept. So a consent
   * record sent while creations wait for their keys is decided at once, not after them;
   * submissions of different actors in flight together have no order to keep. Waits while every
   * one is held.
   */
  private async readyBatch(max: number): Promise<Pending[]> {
    for (;;) {
      // A prepared submission still goes alone, also one that came while this waited.
      const stop = this.pending.findIndex((p) => p.prepare);
      if (stop === 0) return this.pending.splice(0, 1);
      const scan = this.pending.slice(0, stop < 0 ? max : Math.min(stop, max));
      const held = new Set<string>();
      const batch: Pending[] = [];
      for (const p of scan) {
        const actor = actorOf(p.input);
        if ((p.slow && !p.settled) || (actor !== undefined && held.has(actor))) {
          if (actor !== undefined) held.add(actor);
        } else batch.push(p);
      }
      if (batch.length === scan.length) return this.pending.splice(0, scan.length);
      if (batch.length > 0) {
        const taken = new Set(batch);
        this.pending = this.pending.filter((p) => !taken.has(p));
        return batch;
      }
      // Every one waits, on its keys or behind its actor's: until the first keys are ready (`settled`
      // is set by a reaction queued before this one), or a new submission comes (it may be ready).
      await new Promise<void>((wake) => {
        this.wake = wake;
        void Promise.race(scan.filter((p) => p.slow && !p.settled).map((p) => p.ready)).then(() => wake());
      });
      this.wake = undefined;
    }
  }

  private async process(tx: WriteTx, log: Appender, input: unknown): Promise<Receipt | NotRecorded> {
    const at = this.now(this.lastAt);
    const index = log.next;
    const verdict = await decide(tx, input, index, at, {
      windowMs: this.opts.windowMs,
      preverified: (signed, key, message) => {
        const v = typeof signed === 'object' && signed ? this.verdicts.get(signed) : undefined;
        return v && v.key === key && v.message.equals(message) ? v.ok : undefined;
      },
      ...(this.opts.admit ? { admit: this.opts.admit } : {}),
      canonical: (i) => (typeof i === 'object' && i !== null ? this.canonical.get(i) : undefined),
    });
    const inputJson = typeof input === 'object' && input !== null ? this.canonical.get(input) : undefined;
    if (verdict.unauthenticated) {
      const why = verdict.decision.gates.find((g) => g.status === 'deny')?.reason ?? verdict.unauthenticated;
      return new NotRecorded(verdict.unauthenticated, why, verdict.retryAfterMs);
    }
    this.lastAt = at;
    await spendNonce(tx, verdict, index);
    // The command and everything the platform does because of it (provisioning, notifications)
    // stand or fall together; the entry itself is appended first, so follow-ups come after it.
    const followUps: Receipt[] = [];
    const mark = log.mark();
    // Taken, not read: what was prepared for this input serves its first processing only.
    const prepared = typeof input === 'object' && input ? this.prepared.get(input) : undefined;
    if (prepared !== undefined) this.prepared.delete(input as object);
    // The per-IMVU index row goes in with the entry, as it is recorded (replayEntry does the same).
    const ownerBefore = await zoneOwnerBefore(tx, { command: input as SignedCommand });
    const final = await applyIsolated(tx, verdict, index, at, async () => {
      const entry: LedgerEntry = { v: 1, index, at, command: input as SignedCommand, decision: verdict.decision };
      await log.append(encodeEntryWith(entry, inputJson));
      await indexEntry(tx, entry, ownerBefore);
      for (const f of await this.followUps(tx, verdict, index, at, prepared)) followUps.push(await this.platformFollowUp(tx, log, f));
    });
    if (final !== verdict || !verdict.decision.allowed) {
      log.reset(mark);
      followUps.length = 0;
      const entry = elideEntry({ v: 1, index, at, command: input as SignedCommand, decision: final.decision });
      await log.append(encodeEntryWith(entry, inputJson));
      await indexEntry(tx, entry, entry.elided ? undefined : ownerBefore);
      for (const f of await this.followUps(tx, final, index, at)) followUps.push(await this.platformFollowUp(tx, log, f));
    }
    // A rotated key: the cached key of the pre-verification is no longer the identity's.
    if (final.decision.allowed && final.command?.type === 'identity.rotate') this.knownKeys.delete(final.command.actor);
    return { index, at, allowed: final.decision.allowed, gates: final.decision.gates, followUps };
  }

  private async platformFollowUp(tx: WriteTx, log: Appender, f: FollowUp): Promise<Receipt> {
    const r = await this.process(tx, log, this.platformCommand(f.type, f.body));
    // The platform's own commands are always authenticated; anything else is a bug to surface.
    if (r instanceof NotRecorded) throw new Error(`platform ${f.type} was not accepted: ${r.message}`);
    return r;
  }

  /**
   * What the platform appends because of an entry: provisioning (the hook), and notices to the
   * creator of the IMVU it touches: every platform-signed change (the platform's enumerated
   * powers, gate 17), every suspension or resumption by an admin, and refused attempts by anyone
   * but the creator, at most one notice per source identity per interval (the gate checks that
   * rule against the `notifications` projection, so a replay reaches the same decisions).
   */
  private async followUps(tx: WriteTx, v: Verdict, index: number, at: string, prepared?: unknown): Promise<FollowUp[]> {
    const cmd = v.command;
    if (!cmd) return [];
    const provisioned = v.decision.allowed && this.opts.provision ? await this.opts.provision(cmd, index, tx, prepared) : [];
    if (cmd.type === 'notify.creator') return provisioned;
    const imvu = v.imvu ?? (typeof cmd.body.zone === 'string' ? await zoneImvu(tx, cmd.body.zone) : undefined);
    if (!imvu) return provisioned;
    const who = v.actor ? `${v.actor.name} (${v.actor.role})` : cmd.actor;
    const notify = (gate: number, message: string, extra: { [k: string]: Json } = {}): FollowUp => ({
      type: 'notify.creator',
      body: { imvu: imvu.id, recipient: imvu.owner, about: index, gate, message: message.slice(0, 1000), ...extra },
    });
    if (!v.decision.allowed) {
      if (!v.actor || v.actor.id === imvu.owner) return [];
      const denials = v.decision.gates.filter((g) => g.status === 'deny');
      const blocked = denials.find((g) => g.gate !== 0) ?? denials[0];
      if (!blocked) return [];
      const last = await tx.get<{ at: string; about: number }>('SELECT at, about FROM notifications WHERE imvu = ? AND source = ? ORDER BY entry DESC LIMIT 1', [imvu.id, v.actor.id]);
      if (last && Date.parse(at) - Date.parse(last.at) < REFUSAL_NOTICE_INTERVAL_MS) return [];
      const attempts = await refusedAttempts(tx, imvu.id, v.actor.id, last ? Number(last.about) : -1, index);
      const since = attempts > 1 ? ` (${attempts} refused attempts by ${who} since ${last ? `the notice of ${last.at}` : 'the first'})` : '';
      return [notify(blocked.gate, `${who} tried ${cmd.type} on ${imvu.id}: BLOCKED by gate ${blocked.gate}: ${blocked.reason}${since}`, { source: v.actor.id, attempts })];
    }
    const out: FollowUp[] = [...provisioned];
    if ((cmd.type === 'imvu.suspend' || cmd.type === 'imvu.resume') && v.actor?.id !== imvu.owner)
      out.push(notify(15, `${who} performed ${cmd.type} on ${imvu.id}${cmd.body.reason ? `: ${String(cmd.body.reason)}` : ''}`));
    const noticed = provisioned.some((f) => f.type === 'notify.creator' && f.body.imvu === imvu.id);
    if (v.actor?.role === 'platform' && !noticed) {
      const power = v.decision.gates.find((g) => g.gate === 17)?.reason ?? cmd.type;
      out.push(notify(17, `the platform performed ${cmd.type} on ${imvu.id}: ${power}`));
    }
    return out;
  }
}

async function zoneImvu(db: SqlReader, zone: string): Promise<{ id: string; owner: string } | undefined> {
  return db.get<{ id: string; owner: string }>('SELECT i.id AS id, i.owner AS owner FROM zones z JOIN imvus i ON i.id = z.imvu WHERE z.name = ?', [zone]);
}

/** Refused attempts by `actor` about `imvu` in entries (after, upTo]: the count a refusal notice reports. */
async function refusedAttempts(tx: WriteTx, imvu: string, actor: string, after: number, upTo: number): Promise<number> {
  const rows = await tx.all<{ entry: number }>('SELECT entry FROM nonces WHERE actor = ? AND entry > ? AND entry <= ? ORDER BY entry', [actor, after, upTo]);
  const entries = new Set(rows.map((r) => Number(r.entry)));
  entries.add(upTo);
  const zones = new Set((await tx.all<{ name: string }>('SELECT name FROM zones WHERE imvu = ?', [imvu])).map((z) => z.name));
  let n = 0;
  for (const e of entries) {
    const row = await tx.get<{ data: Buffer }>('SELECT data FROM ledger_entries WHERE idx = ?', [e]);
    if (!row) continue;
    const entry = decodeEntry(row.data);
    const body = entry.command?.command?.body as Record<string, unknown> | undefined;
    if (entry.decision.allowed || !body) continue;
    if (body.imvu === imvu || (typeof body.zone === 'string' && zones.has(body.zone))) n++;
  }
  return Math.max(n, 1);
}
