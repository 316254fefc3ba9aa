import type { GateResult } from '../../types.ts';
import { deny, isMember, isOwner, pass, type Gate, type GateContext } from '../gate.ts';
import { EXIT_CONFIRM_DAYS, EXIT_GRACE_DAYS, EXIT_RETENTION_DAYS } from '../vocabulary.ts';
import { imvuTouched } from './platform-powers.ts';
import { checkImport, checkImportPart } from './import.ts';

// Exit needs the creator's signature and nothing else: no status (suspended included) and no
// other party's approval can stand in its way. While an IMVU is exiting, nobody but its creator
// and members may change it (threat 2.5, 4.3: no retaliation, no sabotage), except what keeps it
// running as before: its meters, notices, re-signing of its unchanged zones, the renewal of its
// certificates (ACME challenge and issuance), and the exit's own
// steps. Those steps are timed by entry times, so the platform can neither end an exit before the
// creator could fetch the archive nor delete the data before the retention.

export interface ExitRow {
  imvu: string;
  started_at: string;
  ready_at: string | null;
  archive_sha256: string | null;
  exited_at: string | null;
  released_at: string | null;
  deleted_at: string | null;
  [k: string]: string | number | null;
}

const DAY_MS = 86_400_000;
const EXIT_STEPS = new Set(['imvu.exit', 'imvu.exit.ready', 'imvu.exit.confirm', 'imvu.exit.expire', 'imvu.purge']);
/** What others may still sign about an exiting IMVU: nothing that changes what it is served or pays. */
const DURING_EXIT = new Set(['notify.creator', 'usage.report', 'revenue.record', 'dnssec.resign', 'domain.verified', 'imvu.exit.ready', 'imvu.exit.expire', 'acme.challenge', 'certificate.issued']);

/** What may touch an IMVU whose import's parts are not all recorded. */
const DURING_IMPORT = new Set(['imvu.import.part', 'notify.creator']);

const days = (from: string, to: string) => (Date.parse(to) - Date.parse(from)) / DAY_MS;

async function exitRow(ctx: GateContext, imvu: string): Promise<ExitRow | undefined> {
  return ctx.db.get<ExitRow>('SELECT * FROM exits WHERE imvu = ?', [imvu]);
}

async function step(ctx: GateContext): Promise<GateResult> {
  if (ctx.command.type === 'imvu.import') return checkImport(ctx);
  if (ctx.command.type === 'imvu.import.part') return checkImportPart(ctx);
  const imvu = ctx.imvu;
  if (!imvu) return deny(13, `unknown IMVU ${String(ctx.body.imvu)}`);
  const role = ctx.actor?.role;
  const type = ctx.command.type;
  const row = await exitRow(ctx, imvu.id);
  switch (type) {
    case 'imvu.exit':
      if (!isOwner(ctx)) return deny(13, `exit of ${imvu.id} needs its creator's signature`);
      if (imvu.status === 'exiting' || imvu.status === 'exited') return deny(13, `${imvu.id} is already ${imvu.status}: no change`);
      return pass(13, `exit by the creator accepted (status was ${imvu.status})`);
    case 'imvu.exit.ready':
      if (role !== 'platform') return deny(13, `only the platform records ${imvu.id}'s finished archive`);
      if (imvu.status !== 'exiting') return deny(13, `${imvu.id} is ${imvu.status}, not exiting`);
      if (Number(ctx.body.treeSize) > ctx.index) return deny(13, `the archive cannot prove history up to ${String(ctx.body.treeSize)}: the log holds ${ctx.index} entries`);
      return pass(13, `archive of ${imvu.id} ready`);
    case 'imvu.exit.confirm':
      if (!isOwner(ctx)) return deny(13, `only ${imvu.id}'s creator confirms its exit`);
      if (imvu.status !== 'exiting') return deny(13, `${imvu.id} is ${imvu.status}, not exiting`);
      if (!row?.archive_sha256) return deny(13, `${imvu.id}'s archive is not ready yet`);
      if (row.archive_sha256 !== ctx.body.archive) return deny(13, `the archive confirmed (${String(ctx.body.archive)}) is not the one recorded (${row.archive_sha256})`);
      return pass(13, `the creator confirmed the download of ${imvu.id}'s archive`);
    case 'imvu.exit.expire':
      if (role !== 'platform') return deny(13, `only the platform ends an unconfirmed exit`);
      if (imvu.status !== 'exiting') return deny(13, `${imvu.id} is ${imvu.status}, not exiting`);
      if (!row?.ready_at) return deny(13, `${imvu.id}'s archive is not ready: the exit cannot end before the creator can fetch it`);
      if (days(row.ready_at, ctx.at) < EXIT_CONFIRM_DAYS)
        return deny(13, `${imvu.id}'s archive was ready at ${row.ready_at}; an unconfirmed exit ends ${EXIT_CONFIRM_DAYS} days after that at the earliest`);
      return pass(13, `unconfirmed for ${EXIT_CONFIRM_DAYS} days after the archive was ready`);
    case 'imvu.purge': {
      if (role !== 'platform' && role !== 'admin') return deny(13, `only an admin or the platform purges an exited IMVU`);
      if (imvu.status !== 'exited' || !row?.exited_at) return deny(13, `${imvu.id} is ${imvu.status}: only an exited IMVU's data is ever purged`);
      const stage = String(ctx.body.stage);
      const [wait, done] = stage === 'release' ? [EXIT_GRACE_DAYS, row.released_at] : [EXIT_RETENTION_DAYS, row.deleted_at];
      if (done) return deny(13, `${imvu.id} was already purged (${stage}) at ${done}: no change`);
      if (days(row.exited_at, ctx.at) < wait)
        return deny(13, `${imvu.id} exited at ${row.exited_at}: its data is kept ${wait} days (${stage === 'release' ? 'grace' : 'retention'}) before a ${stage}`);
      return pass(13, `${stage} of ${imvu.id}, ${wait} days after its exit`);
    }
    default:
      return deny(13, `${type} is not an exit step`);
  }
}

/** Any other command that touches an exiting IMVU, signed by someone other than its creator or members; any at all that touches an importing one. */
async function duringExit(ctx: GateContext): Promise<GateResult | undefined> {
  const touched = await imvuTouched(ctx);
  // An import not yet whole takes its own parts and nothing else (it is not served meanwhile).
  if (touched?.status === 'importing' && !DURING_IMPORT.has(ctx.command.type))
    return deny(13, `${touched.id} is still importing: its declared parts come first (${ctx.command.type} refused)`);
  if (touched?.status !== 'exiting' || DURING_EXIT.has(ctx.command.type) || !ctx.actor) return undefined;
  if (ctx.actor.id === touched.owner || (await isMember(ctx, touched.id, ctx.actor.id))) return undefined;
  if (ctx.actor.role === 'service') return undefined;
  return deny(13, `${touched.id} is exiting: nobody but its creator and members may change it until the exit ends (${ctx.command.type} by ${ctx.actor.name} refused)`);
}

export const gate: Gate = {
  number: 13,
  name: 'Exit Portability',
  enforcedIn:
    'src/core/policy/gates/13-exit-portability.ts (creator signature only; status never blocks; an exiting IMVU is frozen against others; archive, confirmation and purge timed by the ledger) and src/imvu/exit/ (the archive)',
  guards: [...EXIT_STEPS, 'imvu.import', 'imvu.import.part'] as Gate['guards'],
  status: 'enforced',
  check: step,
  beyond: duringExit,
};
