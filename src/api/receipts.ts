// From a chokepoint receipt to an HTTP status, as docs/API.md specifies:
//   allowed -> 200 (201 for a creation); not applied by the platform -> 503; gate 0 -> 400 (404 when the IMVU or zone it names does
//   not exist); gate 1 -> 401; any other gate -> 403 (404 for a zone that is not hosted here).
import { NOT_APPLIED, type Receipt } from '../core/policy/chokepoint.ts';
import type { Ledger } from '../core/ledger/ledger.ts';
import type { SqlReader } from '../core/store/index.ts';
import type { CommandType, GateResult } from '../core/types.ts';

/** Commands that bring a named thing into existence answer 201. */
export const CREATIONS: ReadonlySet<CommandType> = new Set<CommandType>([
  'identity.register',
  'imvu.create',
  'member.add',
  'domain.claim',
  'dns.record.add',
  'mailbox.add',
]);

function field(input: unknown, name: string): unknown {
  const command = (input as { command?: { body?: Record<string, unknown> } } | null)?.command;
  const body = command?.body;
  return body !== null && typeof body === 'object' ? body[name] : undefined;
}

export function commandType(input: unknown): unknown {
  const command = (input as { command?: unknown } | null)?.command;
  return command !== null && typeof command === 'object' ? (command as { type?: unknown }).type : undefined;
}

async function namesMissing(db: SqlReader, input: unknown, what: 'imvu' | 'zone'): Promise<boolean> {
  const v = field(input, what);
  if (typeof v !== 'string') return false;
  const sql = what === 'imvu' ? 'SELECT 1 AS x FROM imvus WHERE id = ?' : 'SELECT 1 AS x FROM zones WHERE name = ?';
  return !(await db.get(sql, [what === 'zone' ? v.toLowerCase() : v]));
}

export interface Outcome {
  status: number;
  /** "gate N: reason" of the deciding denial. */
  error?: string;
}

const oneLine = (g: GateResult) => `gate ${g.gate}: ${(g.reason ?? 'denied').replace(/\s+/g, ' ')}`;

export async function outcome(db: SqlReader, input: unknown, receipt: Receipt): Promise<Outcome> {
  if (receipt.allowed) {
    const type = commandType(input) as CommandType;
    return { status: CREATIONS.has(type) ? 201 : 200 };
  }
  const denies = receipt.gates.filter((g) => g.status === 'deny');
  // Gate 0 is only reached once the signature verified, so reporting it first leaks nothing.
  const g0 = denies.find((g) => g.gate === 0);
  // The platform could not apply an allowed command (e.g. a key file could not be written): it is
  // recorded as denied with the reason; the client may sign it again later.
  if (g0?.reason?.startsWith(NOT_APPLIED)) return { status: 503, error: oneLine(g0) };
  if (g0) {
    const missing = (await namesMissing(db, input, 'imvu')) || (await namesMissing(db, input, 'zone'));
    return { status: missing ? 404 : 400, error: oneLine(g0) };
  }
  const g1 = denies.find((g) => g.gate === 1);
  // Authentication (signature, identity, nonce, time) fails before any gate runs, leaving only
  // gates 1 and 11 in the decision: 401. A verified signer that gate 1 will not bind to what the
  // command claims (creating an IMVU for someone else) is an authorisation refusal: 403.
  if (g1) return { status: receipt.gates.length <= 2 ? 401 : 403, error: oneLine(g1) };
  const first = denies[0];
  if (!first) return { status: 403, error: 'denied' };
  return { status: (await namesMissing(db, input, 'zone')) ? 404 : 403, error: oneLine(first) };
}

/**
 * The proof a recorded command's response carries (docs/API.md, "Receipts"): its entry index, the
 * signed checkpoint of the batch that committed it (the first checkpoint that includes it), and
 * the RFC 9162 inclusion proof of the entry in that checkpoint's tree. The checkpoint was signed
 * with the batch; the proof is read from the stored tree after the commit, outside the write path.
 */
export interface ReceiptProof {
  index: number;
  checkpoint: string;
  inclusionProof: string[];
}

export function receiptProof(ledger: Ledger, r: Receipt): ReceiptProof | undefined {
  const cp = r.checkpoint;
  if (!cp || r.index >= cp.size) return undefined;
  return { index: r.index, checkpoint: cp.note, inclusionProof: ledger.inclusionProof(r.index, cp.size).map((h) => h.toString('hex')) };
}

/** A receipt as the API shows it, follow-ups included (they carry no proof of their own: see docs/API.md). */
export interface ReceiptView {
  index: number;
  allowed: boolean;
  gates: Receipt['gates'];
  followUps: ReceiptView[];
}

export function receiptView(r: Receipt): ReceiptView {
  return { index: r.index, allowed: r.allowed, gates: r.gates, followUps: r.followUps.map(receiptView) };
}
