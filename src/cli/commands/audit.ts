import { Command } from 'commander';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { identityIdFromPublicKey, loadPrivateKey, publicKeyRaw } from '../../core/identity/keys.ts';
import { canonicalBytes, canonicalJson } from '../../core/ledger/canonical.ts';
import { MemoryTree, leafHash } from '../../core/ledger/merkle.ts';
import { Frontier } from '../../core/ledger/ledger.ts';
import { PLATFORM_KEY_FILE } from '../../core/platform-files.ts';
import { formatMinor, split } from '../../core/handshake/split.ts';
import type { StatementJson } from '../../core/handshake/statement.ts';
import type { LedgerEntry } from '../../core/types.ts';
import { currency, imvuId, int, minorUnits, month } from '../args.ts';
import { Ctx } from '../context.ts';
import { ApiError } from '../client.ts';
import { CliError, EXIT, notFound, usage, verificationFailed } from '../errors.ts';
import { table } from '../format.ts';
import { acknowledge, openAlarms, type Alarm, type SeenCheckpoint } from '../witness.ts';
import { parseCosignerVerifierKey } from '../../core/witness/cosignature.ts';
import { NAME_RE, type VerifiedEdge, type WitnessPolicy } from '../home.ts';
import { checkReceipts, keptReceipts, receiptCosignatures, receiptFailure, upgradeReceipts, type ReceiptCheck, type ReceiptCosignatures, type ReceiptUpgrade } from '../receipts.ts';
import { dataDirOf } from './operator.ts';
import { watchCommand } from './watch.ts';
import { auditLogCommand } from './audit-log.ts';

const PAGE = 1000;

export interface VerifiedLog {
  /** The entries the reader may see, in index order (withheld ones are left out). */
  entries: LedgerEntry[];
  tree: MemoryTree;
  /** The leaf hash of every index (computed here from the bytes of an entry the reader sees). */
  leaves: Buffer[];
  /** How many entries were withheld from the reader (it got their leaf hashes only). */
  withheld: number;
}

type Served = LedgerEntry | { index: number; leafHash: string; withheld: true };

/**
 * Fetches entries [0, cp.size) page by page, as one signed reader, and checks them as an outsider:
 * consecutive indices, and the Merkle root recomputed from their bytes (and the leaf hashes of the
 * entries withheld from this reader) equal to the root of the platform's signed checkpoint (the
 * platform signs the tree, which binds every entry: gate 17). With `prior`, only the entries after
 * it are fetched.
 */
export async function fetchVerifiedLog(ctx: Ctx, cp: SeenCheckpoint, prior?: VerifiedLog): Promise<VerifiedLog> {
  // A log verified earlier (against a checkpoint this one extends) is continued, not fetched again:
  // the root recomputed over its leaves and the new ones must still be the new checkpoint's.
  if (prior && prior.leaves.length > cp.size) throw verificationFailed(`the platform's signed checkpoint covers ${cp.size} entries, fewer than the ${prior.leaves.length} verified before`);
  const entries: LedgerEntry[] = prior ? [...prior.entries] : [];
  const leaves: Buffer[] = prior ? [...prior.leaves] : [];
  const tree = new MemoryTree();
  for (const leaf of leaves) tree.appendLeafHash(leaf);
  let withheld = prior?.withheld ?? 0;
  await fetchLeaves(ctx, leaves.length, cp.size, (leaf, entry) => {
    if (entry) entries.push(entry);
    else withheld++;
    leaves.push(leaf);
    tree.appendLeafHash(leaf);
  });
  const root = tree.size ? tree.root() : undefined;
  if (root && !root.equals(cp.rootHash))
    throw verificationFailed(`the Merkle root recomputed from the ${cp.size} entries the daemon serves is not the root of its signed checkpoint: the entries were changed`);
  return { entries, tree, leaves, withheld };
}

/**
 * Fetches entries [from, to) page by page as the signed reader, in index order, and hands each
 * one's leaf hash to `visit` (computed here from the bytes of an entry the reader sees; as served
 * for a withheld one, which comes without its entry).
 */
async function fetchLeaves(ctx: Ctx, from: number, to: number, visit: (leaf: Buffer, entry?: LedgerEntry) => void): Promise<void> {
  const as = await ctx.reader();
  let next = from;
  while (next < to) {
    const res = await ctx.get<{ entries?: Served[] }>('/v1/ledger/entries', { from: next, to: Math.min(next + PAGE, to) }, as ? { as } : {});
    const page = (res.entries ?? []).filter((e) => e && typeof e.index === 'number' && e.index >= next && e.index < to).sort((a, b) => a.index - b.index);
    if (!page.length) throw verificationFailed(`the daemon returned no ledger entries from index ${next}, but its signed checkpoint covers ${to}`);
    for (const e of page) {
      if (e.index !== next) throw verificationFailed(`ledger entry ${next} is missing (the daemon skipped to ${e.index})`);
      if ('withheld' in e && e.withheld === true) {
        if (typeof e.leafHash !== 'string' || !/^[0-9a-f]{64}$/.test(e.leafHash)) throw verificationFailed(`withheld ledger entry ${e.index} has no valid leaf hash`);
        visit(Buffer.from(e.leafHash, 'hex'));
      } else {
        const entry = e as LedgerEntry;
        visit(leafHash(canonicalBytes(entry)), entry);
      }
      next++;
    }
  }
}

/** The right edge of the tree over `leaves`, as a reader keeps it between two verifications. */
function edgeOf(leaves: Buffer[], replayed: boolean): VerifiedEdge {
  const f = new Frontier(0, []);
  for (const leaf of leaves) f.appendLeafHash(leaf);
  return edgeRecord(f, replayed);
}

function edgeRecord(f: Frontier, replayed: boolean): VerifiedEdge {
  return { size: f.size, root: f.root().toString('hex'), edge: f.edge().map((n) => ({ level: n.level, hash: n.hash.toString('hex') })), replayed };
}

function sampleIndices(size: number, n: number): number[] {
  const s = new Set<number>();
  if (size === 0) return [];
  s.add(0);
  s.add(size - 1);
  while (s.size < Math.min(n, size)) s.add(Math.floor(Math.random() * size));
  return [...s].sort((a, b) => a - b);
}

function indent(text: string, by = '    '): string {
  return text
    .replace(/\n$/, '')
    .split('\n')
    .map((l) => by + l)
    .join('\n');
}

function alarmReport(a: Alarm, home: string): string[] {
  const lines = [`✗ ALARM ${a.code} (detected ${a.detectedAt}) at ${a.url}`, `  ${a.message.replace(/; run `nexus audit verify`.*$/, '')}`];
  if (a.kind === 'rewritten') {
    if (a.saved) lines.push(`  the checkpoint you saved earlier (tree size ${a.saved.size}), signed by the platform:`, indent(a.saved.note));
    if (a.seen) lines.push(`  the checkpoint the platform signed now (tree size ${a.seen.size}):`, indent(a.seen.note));
    if (a.proof) lines.push(`  the consistency proof it gave (${a.proof.length} hashes) does not connect the two`);
    lines.push('  Both checkpoints are signed with the same platform key: together they show that the platform changed history it had already published.');
  } else {
    lines.push(`  pinned:    ${a.pinned?.id} (origin ${a.pinned?.origin}, pinned ${a.pinned?.pinnedAt})`, `  presented: ${a.presented?.id} (origin ${a.presented?.origin})`);
  }
  lines.push(
    `  Evidence: ${join(home, 'alarms', `${a.code}.json`)} (keep a copy)`,
    `  When you have looked: nexus audit acknowledge ${a.code}`,
    a.kind === 'rewritten'
      ? "  (this files the evidence under NEXUS_HOME/evidence and continues from the platform's current checkpoint)"
      : '  (this files the evidence under NEXUS_HOME/evidence and pins the key the daemon presents now)',
  );
  return lines;
}

/**
 * While an alarm is open the checkpoint memory cannot be trusted, but the receipts still can: each
 * is checked against the platform's current checkpoint, verified with the key pinned for this URL.
 */
async function receiptsDuringAlarm(ctx: Ctx): Promise<{ checks: ReceiptCheck[]; skipped?: string }> {
  const pinned = ctx.home.platforms()[ctx.url];
  if (!pinned || !keptReceipts(ctx.home, pinned.id).length) return { checks: [] };
  try {
    const note = await ctx.client.getText('/v1/ledger/checkpoint');
    const current = ctx.witness.verifyNote(note, { id: pinned.id, origin: pinned.origin, publicKey: pinned.publicKey, suffix: '' }, "the platform's checkpoint");
    return { checks: await checkReceipts(ctx.client, ctx.home, pinned.id, current) };
  } catch (err) {
    return { checks: [], skipped: (err as Error).message };
  }
}

function receiptLines(checks: ReceiptCheck[]): string[] {
  const bad = checks.filter((c) => !c.ok);
  if (!checks.length) return [];
  if (!bad.length) return [`✅ ${checks.length} kept receipt${checks.length > 1 ? 's' : ''}: every entry is still in the log (consistency from each receipt's checkpoint, inclusion at its index)`];
  return [`✗ ${bad.length} of ${checks.length} kept receipts: the entry is no longer in the log as the receipt proves`, ...bad.map((c) => `  ✗ ${receiptFailure(c)}`)];
}

/** "2 (w1, w2)", "1 (w1) + 1 not in your policy", "2, not verified (no witness policy)". */
function cosignatureText(c: ReceiptCosignatures, withPolicy: boolean): string {
  if (!c.lines.length) return '0';
  if (!withPolicy) return `${c.lines.length}, not verified (no witness policy)`;
  const verified = c.verified.length ? `${c.verified.length} (${c.verified.join(', ')})` : '0';
  return c.unverified ? `${verified} + ${c.unverified} not by your witnesses` : verified;
}

function upgradeLines(upgrades: ReceiptUpgrade[]): string[] {
  const done = upgrades.filter((u) => u.added > 0);
  const skipped = upgrades.filter((u) => u.skipped);
  const lines: string[] = [];
  if (done.length)
    lines.push(
      `✅ ${done.length} kept receipt${done.length > 1 ? 's' : ''} upgraded with the witness cosignatures ${done.length > 1 ? 'their checkpoints' : 'its checkpoint'} gained since: ` +
        done.map((u) => `entry ${u.index} (+${u.added})`).join(', '),
    );
  if (skipped[0]) lines.push(`- ${skipped.length} kept receipt${skipped.length > 1 ? 's' : ''} not upgraded: ${skipped[0].skipped}`);
  return lines;
}

async function verifyOnline(ctx: Ctx, o: { sample: number; full?: boolean }): Promise<void> {
  const failWithAlarms = async (alarms: Alarm[]) => {
    const { checks, skipped } = await receiptsDuringAlarm(ctx);
    const bad = checks.filter((c) => !c.ok);
    ctx.print({ ok: false, alarms, receipts: checks, ...(skipped ? { receiptsNotChecked: skipped } : {}) }, () => [
      ...alarms.flatMap((a) => alarmReport(a, ctx.home.dir)),
      ...receiptLines(checks),
      ...(skipped ? [`- Kept receipts not checked: ${skipped}`] : []),
    ]);
    if (bad[0]) throw verificationFailed(`${receiptFailure(bad[0])}${bad.length > 1 ? ` (and ${bad.length - 1} more receipts)` : ''}; ${alarms.length} open alarm${alarms.length > 1 ? 's' : ''}`);
  };
  const alarms = openAlarms(ctx.home);
  if (alarms.length) {
    await failWithAlarms(alarms);
    throw verificationFailed(`${alarms.length} open alarm${alarms.length > 1 ? 's' : ''}: the platform's log or key does not match what you saw before`);
  }
  let contact;
  try {
    contact = await ctx.connect();
  } catch (err) {
    const fresh = openAlarms(ctx.home);
    if (fresh.length) await failWithAlarms(fresh);
    throw err;
  }
  const { platform, checkpoint: cp, previousSize } = contact;
  const savedEdge = o.full ? undefined : continuableEdge(ctx, platform.id, cp);
  const tree = savedEdge ? await verifyTail(ctx, cp, savedEdge, o.sample) : await verifyWhole(ctx, cp, o.sample);
  const snapshot = await checkServedSnapshot(ctx, cp);
  const violation = tree.problems[0]?.message;
  // Receipts whose checkpoint the witnesses have cosigned since are upgraded first (one request per
  // checkpoint size, only for receipts not yet cosigned as the policy asks).
  const upgrades = await upgradeReceipts(ctx.client, ctx.home, platform.id, ctx.home.witnessPolicy());
  // Every receipt kept here must still be in the log: checked even when nothing else is wrong,
  // because a rewrite consistent with itself passes everything above when no checkpoint was saved.
  const receipts = await checkReceipts(ctx.client, ctx.home, platform.id, cp);
  const badReceipts = receipts.filter((c) => !c.ok);
  const reader = await ctx.reader();
  const ok = !violation && !badReceipts.length;
  if (ok) ctx.home.saveVerifiedEdge(platform.id, tree.edge);
  const report = {
    ok,
    mode: 'online',
    url: ctx.url,
    platform: platform.id,
    origin: platform.origin,
    size: cp.size,
    root: cp.size ? cp.rootHash.toString('hex') : null,
    consistentWithSaved: previousSize,
    incrementalFrom: savedEdge ? savedEdge.size : null,
    inclusionSampled: tree.sample,
    reader: reader ? { name: reader.name, id: reader.id } : null,
    readable: tree.readable,
    withheld: tree.withheld,
    replayed: tree.edge.replayed,
    snapshot,
    problems: tree.problems,
    receipts,
    upgraded: upgrades.filter((u) => u.added > 0),
  };
  const notReplayed = (withheld: number) =>
    `- Replay through the 17 gates not done: it needs the whole log, and ${withheld} entries concern IMVUs that are not yours (an admin's \`nexus audit verify\`, or \`nexus audit verify --data\` on a copy of the data directory, replays everything)`;
  const fetched = cp.size - (savedEdge?.size ?? 0);
  ctx.print(report, () => [
    `✅ Checkpoint: tree size ${cp.size}, signed by ${platform.origin} with the platform key pinned for ${ctx.url} (${platform.id})`,
    previousSize === null
      ? `✅ First contact: this checkpoint is now your saved checkpoint (${ctx.home.checkpointPath(platform.id)})`
      : previousSize === cp.size
        ? `✅ Identical to your saved checkpoint of tree size ${previousSize}`
        : `✅ Consistent with your saved checkpoint of tree size ${previousSize}: the log only grew`,
    savedEdge
      ? `✅ Only what is new: ${fetched} entries after the tree size ${savedEdge.size} you verified before (${tree.readable} readable, ${tree.withheld} withheld as leaf hashes): the Merkle root recomputed here from your saved tree edge (${ctx.home.verifiedEdgePath(platform.id)}) and their bytes equals the root the platform signed (\`--full\` fetches the whole log again)`
      : tree.withheld
        ? `✅ ${cp.size} entries fetched (${tree.readable} readable by ${reader?.name ?? 'you'}, ${tree.withheld} withheld as leaf hashes): the Merkle root recomputed here from their bytes equals the root the platform signed`
        : `✅ ${cp.size} entries fetched: the Merkle root recomputed here from their bytes equals the root the platform signed`,
    tree.sample.length ? `✅ Inclusion proofs verified for ${tree.sample.length} sampled entries (${tree.sample.join(', ')})` : '- No new entry to check an inclusion proof for',
    snapshot
      ? `✅ The signed state snapshot the platform serves (entry ${snapshot.index}, state digest ${snapshot.digest.slice(0, 16)}…) is that ledger.snapshot entry of this log (inclusion proof against the signed checkpoint): \`nexus audit verify --data --from-snapshot\` may start there, and a full verify checks its digest`
      : '- The platform serves no signed state snapshot (ledger.snapshot) yet',
    violation
      ? `✗ Replay through the gates: ${violation}`
      : savedEdge
        ? '- Replay through the 17 gates not done: only what is new since your last verification was fetched, and a replay needs the whole log (`--full` fetches it; an admin\'s `nexus audit verify` or `nexus audit verify --data` replays everything)'
        : !tree.edge.replayed
          ? notReplayed(tree.withheld)
        : `✅ Replayed ${cp.size} entries through the 17 gates: every recorded decision holds, entry times never go back, sealed statements match`,
    ...upgradeLines(upgrades),
    ...receiptLines(receipts),
  ]);
  if (violation) throw verificationFailed(violation);
  if (badReceipts[0]) throw verificationFailed(`${receiptFailure(badReceipts[0])}${badReceipts.length > 1 ? ` (and ${badReceipts.length - 1} more receipts)` : ''}`);
}

/**
 * The newest signed state snapshot the API serves (GET /v1/ledger/snapshot) must be a ledger.snapshot
 * entry of the log just verified: below the checkpoint's size, included in it (inclusion proof), allowed,
 * and recording the index and digest served. What the digest is worth is for a full verify to say.
 */
async function checkServedSnapshot(ctx: Ctx, cp: SeenCheckpoint): Promise<{ index: number; digest: string } | null> {
  let served: { index?: unknown; digest?: unknown };
  try {
    served = await ctx.get<{ index?: unknown; digest?: unknown }>('/v1/ledger/snapshot');
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
  const index = Number(served.index);
  const digest = String(served.digest);
  const bad = (why: string) => verificationFailed(`the signed state snapshot the platform serves (entry ${String(served.index)}, digest ${digest.slice(0, 16)}…) ${why}`);
  if (!Number.isSafeInteger(index) || index < 1 || !/^[0-9a-f]{64}$/.test(digest)) throw bad('is not an entry index and a SHA-256 digest');
  if (index >= cp.size) throw bad(`is not in the log: the signed checkpoint covers ${cp.size} entries`);
  const page = await ctx.get<{ entries?: Served[] }>('/v1/ledger/entries', { from: index, to: index + 1 });
  const got = (page.entries ?? []).find((x) => x && x.index === index);
  if (!got || 'withheld' in got) throw bad(`is not what the log holds there: entry ${index} was ${got ? 'withheld from you' : 'not served'}`);
  const e = got as LedgerEntry;
  await ctx.witness.checkInclusion(index, canonicalBytes(e), cp);
  const body = (e.command?.command?.body ?? {}) as { size?: unknown; digest?: unknown };
  if (e.command?.command?.type !== 'ledger.snapshot' || !e.decision?.allowed) throw bad(`is not what the log holds there: entry ${index} is ${e.command?.command?.type ?? 'no command'}${e.decision?.allowed ? '' : ' (denied)'}`);
  if (body.size !== index || body.digest !== digest) throw bad(`does not match the ledger.snapshot at entry ${index}, which records tree size ${String(body.size)} and digest ${String(body.digest).slice(0, 16)}…`);
  return { index, digest };
}

interface TreeCheck {
  edge: VerifiedEdge;
  readable: number;
  withheld: number;
  sample: number[];
  problems: { kind: string; message: string }[];
}

/** The whole log: every entry fetched, the root recomputed, sampled proofs, and the replay when nothing is withheld. */
async function verifyWhole(ctx: Ctx, cp: SeenCheckpoint, sampleSize: number): Promise<TreeCheck> {
  const { entries, leaves, withheld } = await fetchVerifiedLog(ctx, cp);
  const sample = sampleIndices(cp.size, sampleSize);
  for (const i of sample) await ctx.witness.checkLeafInclusion(i, leaves[i]!, cp);
  // Replay every entry through the same gates, as the offline verifier does (entry times never go
  // back, and every sealed period's statements follow from the entries). The gates decide from the
  // state all earlier entries built, so a replay needs the whole log: a reader from whom entries
  // are withheld (they concern other IMVUs) has checked the tree and its own entries' bytes, and
  // leaves the replay to an admin or to `audit verify --data` on a copy of the data directory.
  let problems: { kind: string; message: string }[] = [];
  if (!withheld) {
    const { replayEntries } = await import('../../core/policy/verify.ts');
    problems = await replayEntries(entries);
  }
  return { edge: edgeOf(leaves, !withheld), readable: entries.length, withheld, sample, problems };
}

/**
 * A reader who cannot replay (entries are withheld from it) and verified the tree before keeps its
 * right edge: only the entries after it are fetched, and the root recomputed from the edge and
 * their leaves must be the signed one. That is as strong as fetching everything again: every
 * earlier leaf is bound by the edge this reader computed itself.
 */
async function verifyTail(ctx: Ctx, cp: SeenCheckpoint, saved: VerifiedEdge, sampleSize: number): Promise<TreeCheck> {
  const f = frontierOf(saved);
  const leaves: Buffer[] = [];
  let readable = 0;
  let withheld = 0;
  await fetchLeaves(ctx, saved.size, cp.size, (leaf, entry) => {
    f.appendLeafHash(leaf);
    leaves.push(leaf);
    if (entry) readable++;
    else withheld++;
  });
  if (cp.size && !f.root().equals(cp.rootHash))
    throw verificationFailed(
      `the Merkle root recomputed from the tree you verified at size ${saved.size} and the ${cp.size - saved.size} entries the daemon serves since is not the root of its signed checkpoint: the entries were changed`,
    );
  const sample = sampleIndices(leaves.length, sampleSize).map((i) => saved.size + i);
  for (const i of sample) await ctx.witness.checkLeafInclusion(i, leaves[i - saved.size]!, cp);
  return { edge: edgeRecord(f, false), readable, withheld, sample, problems: [] };
}

function frontierOf(e: VerifiedEdge): Frontier {
  return new Frontier(
    e.size,
    e.edge.map((n) => ({ level: n.level, hash: Buffer.from(n.hash, 'hex') })),
  );
}

/** The saved edge, if this reader may continue from it: one that never replayed, intact, not beyond the checkpoint. */
function continuableEdge(ctx: Ctx, platformId: string, cp: SeenCheckpoint): VerifiedEdge | undefined {
  const e = ctx.home.verifiedEdge(platformId);
  if (!e || e.replayed) return undefined;
  // A file that does not hash to its own root is not what this CLI wrote: start over from entry 0.
  if (frontierOf(e).root().toString('hex') !== e.root) return undefined;
  if (e.size > cp.size) throw verificationFailed(`the platform's signed checkpoint covers ${cp.size} entries, fewer than the ${e.size} you verified before`);
  return e;
}

function savedCheckpointFor(ctx: Ctx, dataDir: string, explicit: string | undefined): { note?: string; from?: string } {
  if (explicit) {
    if (!existsSync(explicit)) throw notFound(`no such checkpoint file: ${explicit}`);
    return { note: readFileSync(explicit, 'utf8'), from: explicit };
  }
  // The platform id follows from its key; an export without the key is verified without a saved checkpoint.
  try {
    const id = identityIdFromPublicKey(publicKeyRaw(loadPrivateKey(join(dataDir, PLATFORM_KEY_FILE))));
    const note = ctx.home.savedCheckpoint(id);
    return note ? { note, from: ctx.home.checkpointPath(id) } : {};
  } catch {
    return {};
  }
}

async function verifyOffline(ctx: Ctx, dataDir: string, checkpointFile: string | undefined, snapshots: { fromSnapshot?: string; saveSnapshot?: string } = {}): Promise<void> {
  const { verifyDataDir } = await import('../../core/policy/verify.ts');
  if (!existsSync(dataDir)) throw notFound(`no such data directory: ${dataDir}`);
  const saved = savedCheckpointFor(ctx, dataDir, checkpointFile);
  let report;
  try {
    report = await verifyDataDir(dataDir, { ...(saved.note ? { savedCheckpoint: saved.note } : {}), ...snapshots });
  } catch (err) {
    throw verificationFailed(`cannot verify ${dataDir}: ${(err as Error).message}`);
  }
  ctx.print({ mode: 'offline', dataDir, savedCheckpoint: saved.from ?? null, ...report }, () =>
    report.ok
      ? [
          `✅ ${dataDir}: ${report.size} entries, root ${report.root}`,
          `✅ The tree recomputed from the entry bytes matches the platform's signed checkpoint${report.checkpointSize !== null ? ` (tree size ${report.checkpointSize})` : ''}`,
          `✅ Every stored checkpoint (${report.checkpoints}) is signed by the platform key and has the log's root at its size`,
          report.checkpointFile !== null
            ? `✅ The checkpoint file outside the database (tree size ${report.checkpointFile}) is signed by the platform key and matches the log`
            : `- No checkpoint file in ${dataDir} (a copy without it, or a data directory from before it)`,
          ...(saved.from ? [`✅ Extends your saved checkpoint (${saved.from})`] : []),
          report.fromSnapshot !== null
            ? `✅ Replayed entries ${report.fromSnapshot} to ${report.size - 1} through the 17 gates from your snapshot of tree size ${report.fromSnapshot}, whose state digest the platform signed in entry ${report.fromSnapshot} (ledger.snapshot; the ${report.fromSnapshot} entries before it were hashed: they are the ones it was verified against): every recorded decision holds, the ${report.comparedRows ?? 0} projection rows those entries touched and the recorded digests match the replay (rows they did not touch are not compared: a full verify does)`
            : `✅ Replayed through the 17 gates: every recorded decision holds, and the projections and their recorded digests match the replay`,
          ...(report.snapshotEntries ? [`✅ ${report.snapshotEntries} signed ledger.snapshot entr${report.snapshotEntries > 1 ? 'ies record' : 'y records'} the state digest the replay computes at ${report.snapshotEntries > 1 ? 'their' : 'its'} index`] : []),
          ...(report.snapshotSaved ? [`✅ Snapshot of the verified state at the newest signed ledger.snapshot written to ${report.snapshotSaved}: --from-snapshot ${report.snapshotSaved} replays only what comes after it`] : []),
          ...(report.snapshotNotSaved ? [`- No snapshot written: ${report.snapshotNotSaved} (the daemon signs one every --snapshot-every entries)`] : []),
        ]
      : [`✗ ${dataDir}: ${report.problems.length} problem${report.problems.length > 1 ? 's' : ''}`, ...report.problems.map((p) => `  ✗ ${p.message}`)],
  );
  if (!report.ok) throw verificationFailed(`${dataDir} does not verify: ${report.problems[0]?.message}`);
}

/** Who gets what, in one sentence a creator can read without knowing the ledger. */
export function plainWords(s: StatementJson, owner: string | undefined, closed: boolean): string {
  const m = (v: string) => formatMinor(BigInt(v), s.currency);
  const creator = owner ? `the creator, ${owner},` : 'the creator';
  if (BigInt(s.total) === 0n) return `In plain words: nothing was billed or earned for ${s.imvu} in ${s.period}${closed ? '' : ' so far'}, so nobody owes anybody anything.`;
  const parts = [BigInt(s.usageTotal) > 0n ? `${m(s.usageTotal)} of metered usage` : '', BigInt(s.revenueTotal) > 0n ? `${m(s.revenueTotal)} of revenue` : ''].filter(Boolean).join(' and ');
  return (
    `In plain words: ${s.imvu} ${closed ? 'had' : 'has had'} ${m(s.total)} in ${s.period} (${parts}). ` +
    `Of that, ${creator} gets ${m(s.creator)} (55%, rounded in the creator's favour) and the platform gets ${m(s.platform)} (45%)${closed ? '' : '; the month is still open, so these can grow'}.`
  );
}

function statementLines(s: StatementJson): string[] {
  const m = (v: string) => formatMinor(BigInt(v), s.currency);
  const lines = [`Statement ${s.imvu}, ${s.period} (${s.currency}${s.priceBookVersion !== null ? `, price book v${s.priceBookVersion}` : ''})`];
  if (s.lines.length) {
    lines.push(
      table(
        ['  METRIC', 'QUANTITY', 'PRICE', 'CHARGE'],
        s.lines.map((l) => [`  ${l.metric}`, l.quantity, `${m(l.amount)} per ${l.per}`, m(l.charge)]),
      ),
    );
  }
  for (const [cat, v] of Object.entries(s.categories)) lines.push(`  ${`${cat}_cost:`.padEnd(16)} ${m(v)}`);
  lines.push(
    `  ${'usage:'.padEnd(16)} ${m(s.usageTotal)}`,
    `  ${'revenue:'.padEnd(16)} ${m(s.revenueTotal)}`,
    `  ${'total:'.padEnd(16)} ${m(s.total)}`,
    '',
    `  ${'creator_share:'.padEnd(16)} ${m(s.creator)} (55%)`,
    `  ${'platform_share:'.padEnd(16)} ${m(s.platform)} (45%)`,
  );
  const t = BigInt(s.total);
  const sp = split(t);
  const holds = BigInt(s.creator) + BigInt(s.platform) === t && sp.creator === BigInt(s.creator);
  lines.push(
    '',
    holds
      ? `✅ creator + platform = total, creator = ceil(total × 55 / 100)`
      : `✗ the split does not hold: expected creator ${m(sp.creator.toString())}, platform ${m(sp.platform.toString())}`,
    `  from ledger entries: ${s.entries.length ? s.entries.join(', ') : 'none'}`,
  );
  return lines;
}

export function auditCommand(): Command {
  const audit = new Command('audit').description('the tamper-evident log: read it, verify it, and the 55-45 statements');

  audit.addCommand(auditLogCommand());

  audit
    .command('verify')
    .description('verify the log: offline with --data (replay everything), or online against the daemon (checkpoint, tree, proofs, replay, and every kept receipt still in the log, upgraded with the witness cosignatures its checkpoint gained); a reader from whom entries are withheld checks only the entries since its last verification, from the tree edge it kept')
    .option('--data <dir>', 'verify this data directory (or a copy) offline instead of asking the daemon')
    .option('--checkpoint <file>', 'offline: a saved checkpoint the log must extend (default: yours for that platform)')
    .option('--sample <n>', 'online: how many entries to check inclusion proofs for', int(1, 1000), 8)
    .option('--full', 'online: fetch and check the whole log even when only the entries since your last verification are needed')
    .option('--save-snapshot <dir>', "offline: if the log verifies, keep the verified state at the log's newest signed ledger.snapshot entry in this directory (replaced)")
    .option(
      '--from-snapshot <dir>',
      'offline: replay only the entries after a snapshot written by --save-snapshot, refused unless a signed ledger.snapshot entry at its tree size records its state digest (the entries before it are hashed, not replayed; only the projection rows the replayed entries touch are compared)',
    )
    .action(async (o: { data?: string; checkpoint?: string; sample: number; full?: boolean; saveSnapshot?: string; fromSnapshot?: string }, c: Command) => {
      const ctx = Ctx.of(c);
      if ((o.saveSnapshot !== undefined || o.fromSnapshot !== undefined) && o.data === undefined) throw usage('--save-snapshot and --from-snapshot go with --data');
      if (o.data !== undefined)
        return verifyOffline(ctx, resolve(dataDirOf(o.data)), o.checkpoint, {
          ...(o.fromSnapshot !== undefined ? { fromSnapshot: resolve(o.fromSnapshot) } : {}),
          ...(o.saveSnapshot !== undefined ? { saveSnapshot: resolve(o.saveSnapshot) } : {}),
        });
      return verifyOnline(ctx, o);
    });

  audit.addCommand(witnessPolicyCommand());

  audit
    .command('receipts')
    .description("list the receipts kept under NEXUS_HOME for the platform at --server (each checked here on its own: signature and inclusion proof) and their witness cosignatures, first upgrading those whose checkpoint the witnesses cosigned since (one request per checkpoint size); `nexus audit verify` checks they are all still in the log")
    .option('--all', 'every platform this NEXUS_HOME holds receipts of, not only the one at --server')
    .action(async (o: { all?: boolean }, c: Command) => {
      const ctx = Ctx.of(c);
      const pinned = ctx.home.platforms()[ctx.url];
      const root = join(ctx.home.dir, 'receipts');
      const policy = ctx.home.witnessPolicy();
      // The receipts of the platform at --server whose checkpoint the witnesses cosigned since are
      // upgraded first (verified with the key pinned for it; the daemon being down only skips this).
      const upgrades = pinned && !openAlarms(ctx.home).length ? await upgradeReceipts(ctx.client, ctx.home, pinned.id, policy) : [];
      const ids = o.all || !pinned ? (existsSync(root) ? readdirSync(root).filter((d) => /^nx1[a-z2-7]{32}$/.test(d)).sort() : []) : [pinned.id];
      const withPolicy = policy.witnesses.length > 0;
      const cosigned = (c: ReceiptCosignatures | undefined) => ({
        cosignatures: c?.lines.length ?? null,
        cosigners: c?.verified ?? [],
        unverifiedCosignatures: c?.unverified ?? null,
        cosignatureText: c ? cosignatureText(c, withPolicy) : '?',
      });
      const rows = ids.flatMap((id) =>
        keptReceipts(ctx.home, id).map((k) => {
          const e = k.verified?.receipt.entry;
          return {
            platform: id,
            index: k.index ?? null,
            type: e?.command?.command?.type ?? null,
            actor: e?.command?.command?.actor ?? null,
            allowed: e ? e.decision.allowed : null,
            at: e?.at ?? null,
            checkpointSize: k.verified?.checkpoint.size ?? null,
            ...cosigned(k.verified ? receiptCosignatures(k.verified.receipt, policy) : undefined),
            file: k.file,
            ok: !!k.verified,
            ...(k.problem ? { problem: k.problem } : {}),
          };
        }),
      );
      ctx.print({ receipts: rows, upgraded: upgrades.filter((u) => u.added > 0) }, () => {
        if (!rows.length) return `no receipts in ${root}${pinned && !o.all ? ` for ${pinned.id} (${ctx.url})` : ''}`;
        const lines = [
          table(
            ['INDEX', 'COMMAND', 'DECISION', 'AT', 'CHECKPOINT', 'COSIGNATURES', 'RECEIPT'],
            rows.map((r) => [
              String(r.index ?? '?'),
              r.type ?? '?',
              r.allowed === null ? '?' : r.allowed ? 'allowed' : 'denied',
              r.at ?? '?',
              r.checkpointSize === null ? '?' : `size ${r.checkpointSize}`,
              r.cosignatureText,
              r.ok ? 'ok' : `✗ ${r.problem}`,
            ]),
          ),
          ...upgradeLines(upgrades),
        ];
        if (ids.length > 1) lines.unshift(`platforms: ${ids.join(', ')}`);
        return lines;
      });
      const bad = rows.find((r) => !r.ok);
      if (bad) throw verificationFailed(`the kept receipt ${bad.file} does not verify on its own: ${bad.problem}`);
    });
  audit.addCommand(watchCommand());

  audit
    .command('acknowledge')
    .description('acknowledge an alarm you have looked at (`nexus audit verify` shows it and its code); the evidence is kept')
    .argument('<code>', 'the alarm code shown by `nexus audit verify`')
    .action(async (code: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const { alarm, evidence } = acknowledge(ctx.home, code);
      ctx.print({ acknowledged: alarm.code, kind: alarm.kind, evidence }, () => [
        `✅ Alarm ${alarm.code} acknowledged; evidence kept in ${evidence}`,
        alarm.kind === 'rewritten'
          ? `✅ From now on the platform's log must extend its checkpoint of tree size ${alarm.seen?.size}`
          : `✅ ${alarm.url} is now pinned to platform ${alarm.presented?.id}`,
      ]);
    });

  audit
    .command('report')
    .description('the 55-45 statement of an IMVU for a month (default: the current month, UTC), and who gets what, in plain words')
    .requiredOption('--imvu <id>', 'IMVU id', imvuId)
    .option('--month <YYYY-MM>', 'the month (default: the current month, UTC)', month)
    .option('--verify', 'also recompute the statement here from the verified ledger and compare')
    .action(async (opts: { imvu: string; month?: string; verify?: boolean }, c: Command) => {
      const ctx = Ctx.of(c);
      const o = { ...opts, month: opts.month ?? new Date().toISOString().slice(0, 7) };
      // The daemon answers from its running totals; a closed period's totals are the ones sealed by its period.close entry.
      const { closedBy = null, ...s } = await ctx.get<StatementJson & { closedBy?: number | null }>(`/v1/statements/${o.imvu}/${o.month}`);
      let recomputed: 'match' | undefined;
      if (o.verify) {
        const { checkpoint } = await ctx.connect();
        const { entries } = await fetchVerifiedLog(ctx, checkpoint);
        const [{ statement, statementToJson }, { PeriodCloseBody, sealedDifference, sealedTotals }] = await Promise.all([
          import('../../core/handshake/statement.ts'),
          import('../../core/handshake/close.ts'),
        ]);
        let mine: StatementJson;
        try {
          mine = statementToJson(statement(entries, o.imvu, o.month));
        } catch (err) {
          throw verificationFailed(`cannot recompute the statement from the ledger: ${(err as Error).message}`);
        }
        // The daemon may have appended entries after the checkpoint we verified; compare what both cover.
        const upTo = checkpoint.size;
        const theirs = { ...s, entries: s.entries.filter((i) => i < upTo) };
        if (s.entries.some((i) => i >= upTo) || canonicalJson(mine) !== canonicalJson(theirs))
          throw verificationFailed(`the daemon's statement for ${o.imvu} ${o.month} (total ${s.total}, creator ${s.creator}) differs from the one recomputed from the verified ledger (total ${mine.total}, creator ${mine.creator})`);
        // A sealed period: the seal itself must be in the verified log and say the same.
        if (closedBy !== null) {
          const close = entries[closedBy];
          const body = close?.decision.allowed && close.command.command.type === 'period.close' ? PeriodCloseBody.safeParse(close.command.command.body) : undefined;
          if (!body?.success || body.data.period !== o.month)
            throw verificationFailed(`the daemon says ${o.month} was closed by ledger entry ${closedBy}, but the verified log has no such period.close there`);
          const sealed = body.data.statements.find((x) => x.imvu === o.imvu);
          const diff = sealed ? sealedDifference(sealed, sealedTotals(statement(entries, o.imvu, o.month))) : BigInt(mine.total) === 0n ? undefined : `${o.imvu} is not listed`;
          if (diff) throw verificationFailed(`the period.close in ledger entry ${closedBy} does not match the ledger for ${o.imvu}: ${diff}`);
        }
        recomputed = 'match';
      }
      const sp = split(BigInt(s.total));
      const holds = BigInt(s.creator) + BigInt(s.platform) === BigInt(s.total) && sp.creator === BigInt(s.creator);
      const owner = await ctx
        .get<{ owner?: { id: string; name?: string | null } }>(`/v1/imvus/${encodeURIComponent(o.imvu)}`)
        .then((i) => i.owner?.name ?? i.owner?.id)
        .catch(() => undefined);
      const plain = plainWords(s, owner, closedBy !== null);
      ctx.print(recomputed ? { ...s, closedBy, verified: true, summary: plain } : { ...s, closedBy, summary: plain }, () => [
        ...statementLines(s),
        '',
        plain,
        closedBy !== null ? `  period closed: totals sealed by ledger entry ${closedBy}` : `  period open: totals can still grow`,
        ...(recomputed ? [`✅ Recomputed here from the ${'verified'} ledger: identical`] : []),
      ]);
      if (!holds) throw verificationFailed(`the statement's split does not hold: total ${s.total}, creator ${s.creator}, platform ${s.platform}`);
    });

  audit
    .command('split')
    .description('the 55-45 split of a total in minor units (computed here, with the same code as the platform)')
    .requiredOption('--total <minor>', 'total in minor units (e.g. cents)', minorUnits)
    .option('--currency <code>', 'currency', currency, 'USD')
    .action((o: { total: bigint; currency: string }, c: Command) => {
      const ctx = Ctx.of(c);
      const sp = split(o.total);
      const ok = sp.creator + sp.platform === sp.total && sp.creator * 100n >= sp.total * 55n && (sp.creator - 1n) * 100n < sp.total * 55n;
      ctx.print({ total: sp.total.toString(), creator: sp.creator.toString(), platform: sp.platform.toString(), currency: o.currency, ok }, () => [
        `total:          ${formatMinor(sp.total, o.currency)}`,
        `creator_share:  ${formatMinor(sp.creator, o.currency)} (55%, rounded up to the minor unit)`,
        `platform_share: ${formatMinor(sp.platform, o.currency)} (45%)`,
        ok ? '✅ creator + platform = total' : '✗ the split does not hold',
      ]);
      if (!ok) throw new CliError('the split does not hold', EXIT.verification);
    });

  return audit;
}

function policyLines(p: WitnessPolicy): string[] {
  const head =
    p.require === 0
      ? p.witnesses.length
        ? `No witness cosignatures required yet (${p.witnesses.length} witness${p.witnesses.length > 1 ? 'es' : ''} listed): run \`nexus audit witnesses require K\``
        : 'No witness policy: checkpoints are trusted without cosignatures (`nexus audit witnesses add NAME VKEY`, then `require K`)'
      : `Every checkpoint must be cosigned by at least ${p.require} of these ${p.witnesses.length} witness${p.witnesses.length > 1 ? 'es' : ''}:`;
  return [head, ...(p.witnesses.length ? [table(['NAME', 'VERIFIER KEY', 'ADDED'], p.witnesses.map((w) => [w.name, w.vkey, w.addedAt]))] : [])];
}

/** `nexus audit witnesses add|list|remove|require`: the creator's witness policy, under NEXUS_HOME. */
function witnessPolicyCommand(): Command {
  const cmd = new Command('witnesses').description(
    'your witness policy: trust a checkpoint only if at least K of your witnesses cosigned it (checked on every contact with a daemon; a shortfall fails with exit 4 and names the missing witnesses)',
  );
  cmd
    .command('add')
    .description("add a witness you trust, by a local name and its verifier key (what `nexus witness init` printed for it, from its operator)")
    .argument('<name>', 'a local name for it (lower case letters, digits and -)')
    .argument('<vkey>', 'its verifier key: <name>+<key id>+<base64 key>')
    .action((name: string, vkey: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      if (!NAME_RE.test(name)) throw usage(`invalid witness name '${name}': 2-32 lower case letters, digits and -, starting with a letter`);
      try {
        parseCosignerVerifierKey(vkey);
      } catch (err) {
        throw usage(`invalid verifier key for witness ${name}: ${(err as Error).message}`);
      }
      const p = ctx.home.witnessPolicy();
      if (p.witnesses.some((w) => w.name === name)) throw usage(`you already have a witness named ${name} (\`nexus audit witnesses remove ${name}\` first)`);
      const same = p.witnesses.find((w) => w.vkey === vkey);
      if (same) throw usage(`that key is already your witness ${same.name}`);
      p.witnesses.push({ name, vkey, addedAt: new Date().toISOString() });
      ctx.home.saveWitnessPolicy(p);
      ctx.print({ added: name, policy: p }, () => [`✅ Witness ${name} added`, ...policyLines(p)]);
    });
  cmd
    .command('list')
    .description('show your witnesses and how many must cosign')
    .action((_o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const p = ctx.home.witnessPolicy();
      ctx.print(p, () => policyLines(p));
    });
  cmd
    .command('remove')
    .description('remove a witness from your policy (refused while the policy would then require more witnesses than it lists)')
    .argument('<name>', 'its local name')
    .action((name: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const p = ctx.home.witnessPolicy();
      if (!p.witnesses.some((w) => w.name === name)) throw usage(`you have no witness named ${name}`);
      if (p.require > p.witnesses.length - 1)
        throw usage(`your policy requires ${p.require} cosignatures; without ${name} only ${p.witnesses.length - 1} witness${p.witnesses.length - 1 === 1 ? ' is' : 'es are'} left: lower it first (\`nexus audit witnesses require ${p.witnesses.length - 1}\`)`);
      p.witnesses = p.witnesses.filter((w) => w.name !== name);
      ctx.home.saveWitnessPolicy(p);
      ctx.print({ removed: name, policy: p }, () => [`✅ Witness ${name} removed`, ...policyLines(p)]);
    });
  cmd
    .command('require')
    .description('how many of your witnesses must cosign a checkpoint before it is trusted (0: none)')
    .argument('<k>', 'a whole number from 0 to the number of your witnesses', int(0, 32))
    .action((k: number, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const p = ctx.home.witnessPolicy();
      if (k > p.witnesses.length) throw usage(`you have ${p.witnesses.length} witness${p.witnesses.length === 1 ? '' : 'es'}; cannot require ${k} cosignatures (\`nexus audit witnesses add NAME VKEY\` first)`);
      p.require = k;
      ctx.home.saveWitnessPolicy(p);
      ctx.print({ policy: p }, () => policyLines(p));
    });
  return cmd;
}
