// zod schemas of the HTTP API. Query and path schemas validate requests here; a command's body is
// validated by the chokepoint with the core's own BODY_SCHEMAS (so that even a malformed command
// is recorded), and the same schemas describe it in the OpenAPI document.
import { z } from 'zod';
import { BODY_SCHEMAS } from '../core/policy/commands.ts';
import { COMMAND_TYPES, type CommandType } from '../core/types.ts';

export const MAX_BODY_BYTES = 64 * 1024;
export const MAX_ENTRIES_PER_CALL = 1000;
/** A page of ledger entries stops before the entry that would take it past this many bytes (1 MiB); `next` says where to go on. */
export const MAX_PAGE_BYTES = 1024 * 1024;

const count = (what: string) =>
  z
    .string()
    .regex(/^\d{1,15}$/, `${what} must be a non-negative integer`)
    .transform(Number);

export const ImvuId = z.string().regex(/^IMVU-\d{3,9}$/, 'must be an IMVU id such as IMVU-001');
export const IdentityId = z.string().regex(/^nx1[a-z2-7]{32}$/, 'must be an identity id (nx1...)');
export const ZoneName = z.string().min(1).max(253).regex(/^[A-Za-z0-9.-]+$/, 'must be a domain name');
export const Period = z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/, 'must be a month as YYYY-MM');

export const Params = {
  imvu: z.object({ id: ImvuId }).strict(),
  zone: z.object({ zone: ZoneName }).strict(),
  identity: z.object({ nameOrId: z.string().min(1).max(64) }).strict(),
  statement: z.object({ imvu: ImvuId, period: Period }).strict(),
  /** The rest of a /tlog/tile/ path (checked by src/core/ledger/tiles.ts: 400 unless it names a tile). */
  tile: z.object({ '*': z.string().max(200) }).strict(),
  size: z.object({ size: count('size') }).strict(),
};

export const Queries = {
  entries: z
    .object({
      from: count('from').optional(),
      to: count('to').optional(),
      imvu: ImvuId.optional(),
      newest: z.coerce.number().int().min(1).max(1000).optional(),
    })
    .strict(),
  inclusion: z.object({ index: count('index'), size: count('size').optional() }).strict(),
  consistency: z.object({ from: count('from'), to: count('to').optional() }).strict(),
  consents: z.object({ subject: IdentityId.optional(), imvu: ImvuId.optional() }).strict(),
  notifications: z.object({ recipient: IdentityId }).strict(),
  checkpoint: z
    .object({
      cosigners: z
        .string()
        .regex(/^[0-9a-f]{8}(,[0-9a-f]{8}){0,31}$/, 'cosigners must be up to 32 comma-separated witness key IDs (8 lower-case hex digits each)')
        .optional(),
      min: count('min').optional(),
    })
    .strict(),
};

/** A signed command of one type, as the chokepoint expects it (its envelope, with the type's body schema). */
export function signedCommandSchema(type: CommandType) {
  return z
    .object({
      command: z
        .object({
          v: z.literal(1),
          type: z.literal(type),
          actor: IdentityId,
          nonce: z.string().regex(/^[A-Za-z0-9_-]{16,64}$/, 'must be 16-64 base64url characters'),
          ts: z.string().datetime({ message: 'must be an ISO-8601 UTC time' }),
          body: BODY_SCHEMAS[type],
        })
        .strict(),
      sig: z.string().max(128).describe("base64 Ed25519 signature over 'nexus-command-v1\\n' || JCS(command)"),
    })
    .strict()
    .describe(`a ${type} command signed by its actor`);
}

/** Types a client may submit (everything but the genesis, which exists once, at entry 0). */
export const SUBMITTABLE_TYPES = COMMAND_TYPES.filter((t) => t !== 'platform.genesis');

export const ErrorBody = z.object({ error: z.string().describe('one line') }).describe('an error');

const GateResult = z.object({ gate: z.number().int(), status: z.enum(['pass', 'deny', 'not-enforced']), reason: z.string().optional() });

export const ReceiptBody = z
  .looseObject({
    index: z.number().int().describe('ledger index of the entry that records this command'),
    allowed: z.boolean(),
    gates: z.array(GateResult),
    followUps: z.array(z.looseObject({ index: z.number().int(), allowed: z.boolean() })),
    error: z.string().optional().describe('for a denied command: "gate N: reason"'),
    at: z.string().describe("the entry's recorded time (the entry is { v: 1, index, at, command, decision: { allowed, gates } })"),
    receipt: z
      .object({
        index: z.number().int(),
        checkpoint: z.string().describe('the signed checkpoint (C2SP signed note) of the batch that committed the entry: the first that includes it'),
        inclusionProof: z.array(z.string()).describe("RFC 9162 inclusion proof of the entry in that checkpoint's tree, hex SHA-256 hashes"),
      })
      .describe('proof that the entry is in the log; follow-ups carry none of their own'),
  })
  .describe('what the chokepoint decided; a denied command is recorded too');
