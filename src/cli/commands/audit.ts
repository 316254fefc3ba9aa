import { Command } from 'commander';
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { identityIdFromPublicKey, loadPrivateKey, publicKeyRaw } from '../../core/identity/keys.ts';
import { canonicalBytes, canonicalJson } from '../../core/ledger/canonical.ts';
import { MemoryTree, leafHash } from '../../core/ledger/merkle.ts';
import { PLATFORM_KEY_FILE } from '../../core/platform-files.ts';
import { formatMinor, split } from '../../core/handshake/split.ts';
import type { StatementJson } from '../../core/handshake/statement.ts';
import type { LedgerEntry } from '../../core/types.ts';
import { currency, imvuId, int, minorUnits, month } from '../args.ts';
import { Ctx } from '../context.ts';
import { CliError, EXIT, usage, verificationFailed } from '../errors.ts';
import { table } from '../format.ts';
import { acknowledge, openAlarms, type Alarm, type SeenCheckpoint } from '../witness.ts';
import { dataDirOf } from './operator.ts';
import { identityNames } from './imvu.ts';

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
 * platform signs the tree, which binds every entry: gate 17).
 */
export async function fetchVerifiedLog(ctx: Ctx, cp: SeenCheckpoint): Promise<VerifiedLog> {
  const entries: LedgerEntry[] = [];
  const leaves: Buffer[] = [];
  const tree = new MemoryTree();
  const as = await ctx.reader();
  let withheld = 0;
  while (leaves.length < cp.size) {
    const from = leaves.length;
    const res = await ctx.get<{ entries?: Served[] }>('/v1/ledger/entries', { from, to: Math.min(from + PAGE, cp.size) }, as ? { as } : {});
    const page = (res.entries ?? []).filter((e) => e && typeof e.index === 'number' && e.index >= from && e.index < cp.size).sort((a, b) => a.index - b.index);
    if (!page.length) throw verificationFailed(`the daemon returned no ledger entries from index ${from}, but its signed checkpoint covers ${cp.size}`);
    for (const e of page) {
      if (e.index !== leaves.length) throw verificationFailed(`ledger entry ${leaves.length} is missing (the daemon skipped to ${e.index})`);
      let leaf: Buffer;
      if ('withheld' in e && e.withheld === true) {
        if (typeof e.leafHash !== 'string' || !/^[0-9a-f]{64}$/.test(e.leafHash)) throw verificationFailed(`withheld ledger entry ${e.index} has no valid leaf hash`);
        leaf = Buffer.from(e.leafHash, 'hex');
        withheld++;
      } else {
        const entry = e as LedgerEntry;
        leaf = leafHash(canonicalBytes(entry));
        entries.push(entry);
      }
      leaves.push(leaf);
      tree.appendLeafHash(leaf);
    }
  }
  const root = tree.size ? tree.root() : undefined;
  if (root && !root.equals(cp.rootHash))
    throw verificationFailed(`the Merkle root recomputed from the ${cp.size} entries the daemon serves is not the root of its signed checkpoint: the entries were changed`);
  return { entries, tree, leaves, withheld };
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

async function verifyOnline(ctx: Ctx, o: { sample: number }): Promise<void> {
  const alarms = openAlarms(ctx.home);
  if (alarms.length) {
    ctx.print({ ok: false, alarms }, () => alarms.flatMap((a) => alarmReport(a, ctx.home.dir)));
    throw verificationFailed(`${alarms.length} open alarm${alarms.length > 1 ? 's' : ''}: the platform's log or key does not match what you saw before`);
  }
  let contact;
  try {
    contact = await ctx.connect();
  } catch (err) {
    const fresh = openAlarms(ctx.home);
    if (fresh.length) ctx.print({ ok: false, alarms: fresh }, () => fresh.flatMap((a) => alarmReport(a, ctx.home.dir)));
    throw err;
  }
  const { platform, checkpoint: cp, previousSize } = contact;
  const { entries, tree, leaves, withheld } = await fetchVerifiedLog(ctx, cp);
  const sample = sampleIndices(cp.size, o.sample);
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
  const violation = problems[0]?.message;
  const reader = await ctx.reader();
  const report = {
    ok: !violation,
    mode: 'online',
    url: ctx.url,
    platform: platform.id,
    origin: platform.origin,
    size: cp.size,
    root: tree.size ? tree.root().toString('hex') : null,
    consistentWithSaved: previousSize,
    inclusionSampled: sample,
    reader: reader ? { name: reader.name, id: reader.id } : null,
    readable: entries.length,
    withheld,
    replayed: !withheld,
    problems,
  };
  ctx.print(report, () => [
    `✅ Checkpoint: tree size ${cp.size}, signed by ${platform.origin} with the platform key pinned for ${ctx.url} (${platform.id})`,
    previousSize === null
      ? `✅ First contact: this checkpoint is now your saved checkpoint (${ctx.home.checkpointPath(platform.id)})`
      : previousSize === cp.size
        ? `✅ Identical to your saved checkpoint of tree size ${previousSize}`
        : `✅ Consistent with your saved checkpoint of tree size ${previousSize}: the log only grew`,
    withheld
      ? `✅ ${cp.size} entries fetched (${entries.length} readable by ${reader?.name ?? 'you'}, ${withheld} withheld as leaf hashes): the Merkle root recomputed here from their bytes equals the root the platform signed`
      : `✅ ${cp.size} entries fetched: the Merkle root recomputed here from their bytes equals the root the platform signed`,
    `✅ Inclusion proofs verified for ${sample.length} sampled entries (${sample.join(', ')})`,
    violation
      ? `✗ Replay through the gates: ${violation}`
      : withheld
        ? `- Replay through the 17 gates not done: it needs the whole log, and ${withheld} entries concern IMVUs that are not yours (an admin's \`nexus audit verify\`, or \`nexus audit verify --data\` on a copy of the data directory, replays everything)`
        : `✅ Replayed ${cp.size} entries through the 17 gates: every recorded decision holds, entry times never go back, sealed statements match`,
  ]);
  if (violation) throw verificationFailed(violation);
}

function savedCheckpointFor(ctx: Ctx, dataDir: string, explicit: string | undefined): { note?: string; from?: string } {
  if (explicit) {
    if (!existsSync(explicit)) throw usage(`no such checkpoint file: ${explicit}`);
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

async function verifyOffline(ctx: Ctx, dataDir: string, checkpointFile: string | undefined): Promise<void> {
  const { verifyDataDir } = await import('../../core/policy/verify.ts');
  if (!existsSync(dataDir)) throw usage(`no such data directory: ${dataDir}`);
  const saved = savedCheckpointFor(ctx, dataDir, checkpointFile);
  let report;
  try {
    report = await verifyDataDir(dataDir, saved.note ? { savedCheckpoint: saved.note } : {});
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
          `✅ Replayed through the 17 gates: every recorded decision holds, and the projections and their recorded digests match the replay`,
        ]
      : [`✗ ${dataDir}: ${report.problems.length} problem${report.problems.length > 1 ? 's' : ''}`, ...report.problems.map((p) => `  ✗ ${p.message}`)],
  );
  if (!report.ok) throw verificationFailed(`${dataDir} does not verify: ${report.problems[0]?.message}`);
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

  audit
    .command('log')
    .description('print ledger entries (who asked what, and what the gates said)')
    .option('--imvu <id>', 'only entries about this IMVU', imvuId)
    .option('--from <n>', 'first index', int(0, Number.MAX_SAFE_INTEGER))
    .option('--limit <n>', 'at most this many entries', int(1, 1000), 100)
    .action(async (o: { imvu?: string; from?: number; limit: number }, c: Command) => {
      const ctx = Ctx.of(c);
      const entries: Served[] = [];
      let from: number | undefined = o.from ?? 0;
      let size: number | null = null;
      while (from !== undefined && entries.length < o.limit) {
        const res: { entries?: Served[]; size?: number; next?: number } = await ctx.get('/v1/ledger/entries', {
          from,
          to: o.imvu ? undefined : from + (o.limit - entries.length),
          imvu: o.imvu,
        });
        entries.push(...(res.entries ?? []).slice(0, o.limit - entries.length));
        size = res.size ?? size;
        from = res.next;
      }
      const names = ctx.json ? new Map<string, string>() : await identityNames(ctx);
      ctx.print({ entries, size }, () =>
        entries.length
          ? entries.map((e) => {
              if ('withheld' in e) return `#${e.index}  (withheld: it concerns others; leaf hash ${String(e.leafHash).slice(0, 16)}…)`;
              const cmd = e.command?.command;
              const deny = e.decision.gates.find((g) => g.status === 'deny');
              const who = names.get(cmd?.actor ?? '') ?? cmd?.actor ?? '?';
              const subject = cmd?.body && typeof cmd.body.imvu === 'string' ? ` ${cmd.body.imvu}` : '';
              return `#${e.index}  ${e.at}  ${(cmd?.type ?? '?').padEnd(17)} ${who}${subject}  ${e.decision.allowed ? 'ALLOWED' : `DENIED gate ${deny?.gate}: ${deny?.reason ?? ''}`}`;
            })
          : 'no entries',
      );
    });

  audit
    .command('verify')
    .description('verify the log: offline with --data (replay everything), or online against the daemon (checkpoint, tree, proofs, replay)')
    .option('--data <dir>', 'verify this data directory (or a copy) offline instead of asking the daemon')
    .option('--checkpoint <file>', 'offline: a saved checkpoint the log must extend (default: yours for that platform)')
    .option('--sample <n>', 'online: how many entries to check inclusion proofs for', int(1, 1000), 8)
    .action(async (o: { data?: string; checkpoint?: string; sample: number }, c: Command) => {
      const ctx = Ctx.of(c);
      if (o.data !== undefined) return verifyOffline(ctx, resolve(dataDirOf(o.data)), o.checkpoint);
      return verifyOnline(ctx, o);
    });

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
    .description('the 55-45 statement of an IMVU for a month')
    .requiredOption('--imvu <id>', 'IMVU id', imvuId)
    .requiredOption('--month <YYYY-MM>', 'the month', month)
    .option('--verify', 'also recompute the statement here from the verified ledger and compare')
    .action(async (o: { imvu: string; month: string; verify?: boolean }, c: Command) => {
      const ctx = Ctx.of(c);
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
      ctx.print(recomputed ? { ...s, closedBy, verified: true } : { ...s, closedBy }, () => [
        ...statementLines(s),
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
