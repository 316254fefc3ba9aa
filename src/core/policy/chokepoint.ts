// The chokepoint: the one path by which state changes. verify (gate 1) -> gates -> ledger
// (allowed or denied, with reasons) -> projections (only if allowed).
import { z } from 'zod';
import type { KeyObject } from 'node:crypto';
import { cachedPublicKey, identityIdFromPublicKey, publicKeyRaw } from '../identity/keys.ts';
import { commandSigningBytes, isCanonicalSignature, signCommand, verifyCommandSignature } from '../identity/envelope.ts';
import { VerifyPool } from '../identity/verify-pool.ts';
import { Ledger, decodeEntry, encodeEntry, type Appender } from '../ledger/ledger.ts';
import { canonicalJson } from '../ledger/canonical.ts';
import { parsePriceBook, assertPriceBookTiming, periodOfInstant } from '../handshake/index.ts';
import type { SqlReader, Store, WriteTx } from '../store/index.ts';
import { COMMAND_TYPES, type Command, type CommandType, type Decision, type GateResult, type Json, type LedgerEntry, type SignedCommand } from '../types.ts';
import { BODY_SCHEMAS, formatZodError } from './commands.ts';
import { deny, pass, type GateContext, type IdentityRow, type ImvuRow, type PlatformRow } from './gate.ts';
import { GATES } from './gates/index.ts';
import { preconditions } from './preconditions.ts';
import { applyCommand } from './projection-writer.ts';

/** Commands older or newer than this, relative to the platform clock at append time, are refused. */
export const DEFAULT_WINDOW_MS = 5 * 60 * 1000;
/** A command envelope larger than this is refused before it is parsed further. */
export const MAX_COMMAND_BYTES = 64 * 1024;

const Envelope = z
  .object({
    command: z
      .object({
        v: z.literal(1),
        type: z.enum(COMMAND_TYPES),
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

export interface Verdict {
  decision: Decision;
  command?: Command;
  /** Set when the signature verified: the nonce is spent whether the command is allowed or not. */
  spent?: { actor: string; nonce: string };
  imvu?: ImvuRow;
  actor?: IdentityRow;
}

function denied(gates: GateResult[]): Decision {
  return { allowed: false, gates };
}

export interface DecideOptions {
  windowMs?: number;
  /** A signature verdict computed ahead of time for this input and key (base64), if any. */
  preverified?: (input: unknown, publicKey: string) => boolean | undefined;
}

/** Decides a command against the state in `db` as of ledger position `index` and platform time `at`. Pure in (db, input, index, at). */
export async function decide(db: SqlReader, input: unknown, index: number, at: string, opts: DecideOptions = {}): Promise<Verdict> {
  const windowMs = opts.windowMs ?? DEFAULT_WINDOW_MS;
  const audit = pass(11, `recorded as ledger entry ${index}`);
  const size = Buffer.byteLength(JSON.stringify(input) ?? '');
  if (size > MAX_COMMAND_BYTES) return { decision: denied([deny(1, `command of ${size} bytes exceeds ${MAX_COMMAND_BYTES}`), audit]) };
  const parsed = Envelope.safeParse(input);
  if (!parsed.success) return { decision: denied([deny(1, `not a signed command: ${formatZodError(parsed.error)}`), audit]) };
  const signed = parsed.data as SignedCommand;
  const cmd = signed.command;
  const platform = await db.get<PlatformRow>('SELECT * FROM platform LIMIT 1');

  // Gate 1, first half: who signed, and is it fresh.
  let key: KeyObject;
  let keyB64: string;
  const actor = await db.get<IdentityRow>('SELECT * FROM identities WHERE id = ?', [cmd.actor]);
  const selfCertifying = cmd.type === 'platform.genesis' || (cmd.type === 'identity.register' && !actor);
  try {
    if (selfCertifying) {
      keyB64 = String(cmd.body.publicKey ?? '');
      if (identityIdFromPublicKey(Buffer.from(keyB64, 'base64')) !== cmd.actor)
        return { decision: denied([deny(1, 'actor id does not match the public key it registers'), audit]) };
    } else {
      if (!actor) return { decision: denied([deny(1, `unknown identity ${cmd.actor}`), audit]) };
      keyB64 = actor.public_key;
    }
    key = cachedPublicKey(keyB64);
  } catch (err) {
    return { decision: denied([deny(1, `bad public key: ${(err as Error).message}`), audit]) };
  }
  const signatureOk = opts.preverified?.(input, keyB64) ?? verifyCommandSignature(signed, key);
  if (!signatureOk) return { decision: denied([deny(1, `signature does not verify for ${actor?.name ?? cmd.actor}`), audit]) };
  const spent = { actor: cmd.actor, nonce: cmd.nonce };
  const base = { command: cmd, actor };
  // Bound to one platform: the origin is in the signed bytes, so a command copied from another
  // platform's public log cannot be replayed here.
  const origin = cmd.type === 'platform.genesis' ? String(cmd.body.origin) : platform?.origin;
  if (cmd.origin !== origin)
    return { ...base, spent, decision: denied([deny(1, `command is signed for platform '${cmd.origin}', not for this platform ('${origin ?? 'none'}')`), audit]) };
  if (await db.get('SELECT 1 AS x FROM nonces WHERE actor = ? AND nonce = ?', [cmd.actor, cmd.nonce]))
    return { ...base, decision: denied([deny(1, `nonce ${cmd.nonce} was already used: replayed command`), audit]) };
  const skew = Math.abs(Date.parse(cmd.ts) - Date.parse(at));
  if (!(skew <= windowMs))
    return { ...base, spent, decision: denied([deny(1, `timestamp ${cmd.ts} is outside the allowed window of ${windowMs / 1000}s around ${at}`), audit]) };

  // The body, then facts every gate may rely on.
  const schema = BODY_SCHEMAS[cmd.type];
  const body = schema.safeParse(cmd.body);
  if (!body.success) return { ...base, spent, decision: denied([deny(0, `invalid ${cmd.type}: ${formatZodError(body.error)}`), audit]) };
  if (cmd.type === 'pricebook.publish') {
    try {
      const book = parsePriceBook(cmd.body);
      // Before the first IMVU exists no usage can have been recorded, so a book for the current
      // period changes no price anyone was charged: that is how a new platform starts billing.
      const untouched = !(await db.get('SELECT 1 AS x FROM imvus LIMIT 1'));
      if (!(untouched && book.effectiveFrom === periodOfInstant(at))) assertPriceBookTiming(cmd.body as never, at);
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
    if (gate.guards !== 'all' && !gate.guards.includes(cmd.type)) continue;
    results.push(await gate.check(ctx));
  }
  return { ...base, spent, imvu, decision: { allowed: results.every((r) => r.status !== 'deny'), gates: results } };
}

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
    const platform = await tx.get<PlatformRow>('SELECT * FROM platform LIMIT 1');
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
  const v = await decide(tx, entry.command, entry.index, entry.at, opts);
  await spendNonce(tx, v, entry.index);
  const refused = entry.decision?.gates?.find?.((g) => g.gate === 0 && g.status === 'deny' && g.reason?.startsWith(NOT_APPLIED));
  if (refused && v.decision.allowed) return { allowed: false, gates: [...v.decision.gates, refused] };
  return (await applyIsolated(tx, v, entry.index, entry.at)).decision;
}

export interface Receipt {
  index: number;
  allowed: boolean;
  gates: GateResult[];
  /** Entries the platform appended because of this one (notifications, provisioning). */
  followUps: Receipt[];
}

export interface FollowUp {
  type: CommandType;
  body: { [k: string]: Json };
}

export interface ChokepointOptions {
  platformKey: KeyObject;
  origin: string;
  clock?: () => Date;
  windowMs?: number;
  maxBatch?: number;
  /** Verify signatures on worker threads ahead of the commit loop (the daemon turns this on). */
  parallelVerify?: boolean;
  /** Platform-originated commands to append after an allowed one (e.g. DKIM keys for a new IMVU). */
  provision?: (command: Command, index: number, db: SqlReader) => Promise<FollowUp[]>;
}

interface Pending {
  input: unknown;
  /** Set for submitPrepared(): makes the input inside the batch's transaction. */
  prepare?: (tx: WriteTx) => Promise<SignedCommand | undefined>;
  ready: Promise<void>;
  resolve: (r: Receipt | undefined) => void;
  reject: (e: unknown) => void;
}

/**
 * A canonical (JCS) copy: the object decided on and applied has exactly the bytes and key order
 * that are recorded, so a replay from the recorded bytes writes identical projections.
 */
function plainCopy(input: unknown): unknown {
  try {
    return input === undefined ? null : (JSON.parse(canonicalJson(input)) as unknown);
  } catch {
    return { unserialisable: true };
  }
}

const NOTIFY_GATES = new Set([14, 15]);

export class Chokepoint {
  private pending: Pending[] = [];
  private flushing = false;
  private readonly pool: VerifyPool | undefined;
  private readonly verdicts = new WeakMap<object, { key: string; ok: boolean }>();
  private readonly knownKeys = new Map<string, string>();
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
    return signCommand(this.opts.platformKey, type, body, { origin: this.opts.origin, ts: this.now() });
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
    const input = plainCopy(raw);
    const ready = this.pool ? this.preverify(input) : Promise.resolve();
    return new Promise<Receipt>((resolve, reject) => {
      this.pending.push({ input, ready, resolve: (r) => resolve(r!), reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  /**
   * Runs `prepare` in a batch transaction of its own and processes the platform command it returns
   * like a submitted one, so that what `prepare` writes and that command's entry commit together
   * (an integrity repair and its alarm, src/core/policy/integrity.ts). Undefined if it returns none.
   */
  submitPrepared(prepare: (tx: WriteTx) => Promise<SignedCommand | undefined>): Promise<Receipt | undefined> {
    return new Promise<Receipt | undefined>((resolve, reject) => {
      this.pending.push({ input: undefined, prepare, ready: Promise.resolve(), resolve, reject });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => void this.flush());
      }
    });
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
      const [ok] = await this.pool!.verifyMany([{ message: commandSigningBytes(cmd), publicKey: key, sig: signed.sig }]);
      this.verdicts.set(signed, { key, ok: ok! });
    } catch {
      // Anything odd is left to decide(), which verifies on the spot.
    }
  }

  private async flush(): Promise<void> {
    while (this.pending.length > 0) {
      // A prepared submission runs in a batch of its own: if it fails, nothing else fails with it.
      const prepared = this.pending.findIndex((p) => p.prepare);
      const batch = this.pending.splice(0, prepared === 0 ? 1 : prepared > 0 ? Math.min(prepared, this.opts.maxBatch ?? 1024) : (this.opts.maxBatch ?? 1024));
      await Promise.all(batch.map((p) => p.ready));
      try {
        const receipts = await this.ledger.batch(async (log, tx) => {
          const out: (Receipt | undefined)[] = [];
          for (const p of batch) {
            if (!p.prepare) {
              out.push(await this.process(tx, log, p.input));
              continue;
            }
            const made = await p.prepare(tx);
            out.push(made === undefined ? undefined : await this.process(tx, log, plainCopy(made)));
          }
          return out;
        });
        batch.forEach((p, i) => p.resolve(receipts[i]));
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
    this.flushing = false;
  }

  private async process(tx: WriteTx, log: Appender, input: unknown): Promise<Receipt> {
    const at = this.now(this.lastAt);
    this.lastAt = at;
    const index = log.next;
    const verdict = await decide(tx, input, index, at, {
      windowMs: this.opts.windowMs,
      preverified: (signed, key) => {
        const v = typeof signed === 'object' && signed ? this.verdicts.get(signed) : undefined;
        return v && v.key === key ? v.ok : undefined;
      },
    });
    await spendNonce(tx, verdict, index);
    // The command and everything the platform does because of it (provisioning, notifications)
    // stand or fall together; the entry itself is appended first, so follow-ups come after it.
    const followUps: Receipt[] = [];
    const mark = log.mark();
    const final = await applyIsolated(tx, verdict, index, at, async () => {
      await log.append(encodeEntry({ v: 1, index, at, command: input as SignedCommand, decision: verdict.decision }));
      for (const f of await this.followUps(tx, verdict, index)) followUps.push(await this.process(tx, log, this.platformCommand(f.type, f.body)));
    });
    if (final !== verdict || !verdict.decision.allowed) {
      log.reset(mark);
      followUps.length = 0;
      await log.append(encodeEntry({ v: 1, index, at, command: input as SignedCommand, decision: final.decision }));
      for (const f of await this.followUps(tx, final, index)) followUps.push(await this.process(tx, log, this.platformCommand(f.type, f.body)));
    }
    return { index, allowed: final.decision.allowed, gates: final.decision.gates, followUps };
  }

  private async followUps(tx: WriteTx, v: Verdict, index: number): Promise<FollowUp[]> {
    const cmd = v.command;
    if (!cmd) return [];
    const provisioned = v.decision.allowed && this.opts.provision ? await this.opts.provision(cmd, index, tx) : [];
    if (!v.imvu || cmd.type === 'notify.creator') return provisioned;
    const who = v.actor ? `${v.actor.name} (${v.actor.role})` : cmd.actor;
    const notify = (gate: number, message: string): FollowUp => ({
      type: 'notify.creator',
      body: { imvu: v.imvu!.id, recipient: v.imvu!.owner, about: index, gate, message },
    });
    if (!v.decision.allowed) {
      const blocked = v.decision.gates.find((g) => g.status === 'deny' && NOTIFY_GATES.has(g.gate));
      return blocked ? [notify(blocked.gate, `${who} tried ${cmd.type} on ${v.imvu.id}: BLOCKED by gate ${blocked.gate}: ${blocked.reason}`)] : [];
    }
    const out: FollowUp[] = [...provisioned];
    if ((cmd.type === 'imvu.suspend' || cmd.type === 'imvu.resume') && v.actor?.id !== v.imvu.owner)
      out.push(notify(15, `${who} performed ${cmd.type} on ${v.imvu.id}${cmd.body.reason ? `: ${String(cmd.body.reason)}` : ''}`));
    return out;
  }
}
