// The route table of the HTTP API (docs/API.md): one entry per route, with the zod schemas that
// validate its path and query and describe it in the OpenAPI document. Mutations share one
// handler that hands the signed command to the chokepoint; reads only query committed state.
import { issueToken, DEFAULT_TOKEN_TTL_S, MAX_TOKEN_TTL_S } from '../network/gateway/tokens.ts';
import type { Gateway } from '../network/gateway/gateway.ts';
import { imvuRouteLines, isImvuLine, type MapName } from '../network/gateway/table.ts';
import { z } from 'zod';
import type { ComputeService } from '../compute/service.ts';
import type { OpenPlatform } from '../core/platform.ts';
import { gateStatus } from '../core/policy/gate-status.ts';
import { decodeEntry } from '../core/ledger/ledger.ts';
import { leafHash } from '../core/ledger/merkle.ts';
import { verifierKey } from '../core/ledger/checkpoint.ts';
import { statementToJson } from '../core/handshake/index.ts';
import { sealedDifference, sealedTotals } from '../core/handshake/close.ts';
import { sealedStatement, statementFromTotals } from '../core/handshake/totals.ts';
import type { CommandType, LedgerEntry, SignedCommand } from '../core/types.ts';
import { exportZone } from '../domains/zonefile/export.ts';
import { imvuSummary, listImvus, mailboxesOf, routesOf, zoneView } from '../imvu/summary.ts';
import { proveDomain, type ChallengeLookup } from '../imvu/domain-proof.ts';
import { challengeName, mtaStsPolicy } from '../core/policy/naming.ts';
import { dsView, platformZoneDsView } from '../domains/dnssec/ds.ts';
import { readZoneRows } from '../domains/registry/zone.ts';
import type { XfrSummary } from '../domains/dns-service.ts';
import type { Metrics } from './metrics.ts';
import { commandType, outcome, receiptProof, receiptView } from './receipts.ts';
import { NotRecorded } from '../core/policy/chokepoint.ts';
import { verifyCommandSignature } from '../core/identity/envelope.ts';
import { cachedPublicKey } from '../core/identity/keys.ts';
import { entriesAbout, readEntriesAt } from '../core/policy/imvu-index.ts';
import { sourcePrefix, type NoiseCounter } from './limits.ts';
import { MAX_ENTRIES_PER_CALL, MAX_PAGE_BYTES, Params, Queries } from './schemas.ts';
import { ReadScope, type WithheldEntry } from './read-access.ts';
import type { Reader } from './read-auth.ts';
import { HttpError } from './http-error.ts';
import { bundleReply, checkpointReply, hashTileReply, TLOG_CHECKPOINT_CACHE } from './tlog.ts';
import type { CosignatureCollector } from '../core/witness/collector.ts';
import { cosignedCheckpoint, servedCheckpoint } from './checkpoint.ts';
import { daemonStatus, type DaemonInfo } from './status.ts';
import type { WorkloadControl } from '../compute/snapshots/index.ts';

export { HttpError };

export interface ApiContext {
  platform: OpenPlatform;
  metrics: Metrics;
  /** The OpenAPI document (built once from this table). */
  openapi: () => unknown;
  /** Refused attempts that left no entry, counted per source prefix and reason for the next summary. */
  noise: NoiseCounter;
  /** Looks up domain proofs (TXT at `_nexus-challenge.<domain>`) from the root hints; absent: `domain verify` answers 503. */
  challenge?: ChallengeLookup;
  /** Where the authoritative DNS server listens, when it runs, and who may transfer its zones. */
  /** `loading`: the DNS server is still reading its zone list (queries wait for it). */
  dns?: { address: string; port: number; xfr: XfrSummary; loading?: () => boolean };
  /** The witnesses' cosignatures of the checkpoints, when witnesses are configured. */
  witnesses?: CosignatureCollector;
  /** Whether the MX runs in this daemon (mail to hosted mailboxes is accepted). */
  mailServing?: boolean;
  /** The compute service, when the fabric runs on this host. */
  compute?: ComputeService;
  /** Version, pid, data directory and listeners, for GET /v1/status (set once the daemon listens). */
  daemon?: DaemonInfo;
  /** Stops and starts an IMVU's workload around a snapshot rollback (the compute driver); none: nothing runs to stop. */
  workloads?: WorkloadControl;
  /** The HTTPS gateway, when it runs: tokens, served routes against the ledger. */
  gateway?: Gateway;
  /** Resolves once the DNS server answers from the ledger up to `size` entries (absent: no DNS server here). */
  dnsServes?: (size: number) => Promise<void>;
}

/**
 * Who may call a read: `public` (anyone), `signed` (an RFC 9421 signed read by a registered
 * identity; the handler decides what that identity may see), `metrics` (loopback peers, or a signed
 * read by an admin or the platform).
 */
export type Access = 'public' | 'signed' | 'metrics';

export interface ReadRequest {
  params: Record<string, unknown>;
  query: Record<string, unknown>;
  body: unknown;
  /** The peer's address (admission and the count of refused attempts go by it). */
  source: string;
  /** The Host the request named, without its port (virtual hosts: `mta-sts.<domain>`). */
  host?: string;
  /** The verified signer of a `signed` read (and of a `metrics` read from a non-loopback peer). */
  reader?: Reader;
}

export interface Reply {
  status?: number;
  body: unknown;
  contentType?: string;
  /** Response headers (e.g. Cache-Control). */
  headers?: Record<string, string>;
  /** A record for the daemon's log (a denied command: its type, actor, gate and reason). */
  log?: { level: 'info' | 'warn'; msg: string; fields: Record<string, unknown> };
}

type Shape = z.core.$ZodShape;
type ObjectSchema = z.ZodObject<Shape, z.core.$ZodObjectConfig>;

export interface RouteDef {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** Fastify syntax (`/v1/imvus/:id`). */
  path: string;
  summary: string;
  params: ObjectSchema;
  query: ObjectSchema;
  /** Mutations: the command type the body must carry ('any' for the generic entry point). */
  command?: CommandType | 'any';
  /** Mutations: the path parameter that must equal a field of the command's body. */
  bind?: { param: string; field: string };
  /** Content type of a successful answer (default application/json). */
  produces?: string;
  /** Content type of a request body that is not a signed command (raw bytes). */
  consumes?: string;
  /** Reads: who may call it (mutations authenticate by the signed command in their body). */
  access?: Access;
  handle(ctx: ApiContext, req: ReadRequest): Promise<Reply>;
}

const NoParams: ObjectSchema = z.object({}).strict();
const AnyQuery: ObjectSchema = z.object({});

type SignedReq<P extends ObjectSchema, Q extends ObjectSchema> = { params: z.output<P>; query: z.output<Q>; reader: Reader; scope: () => Promise<ReadScope> };

function route<P extends ObjectSchema, Q extends ObjectSchema>(
  access: Access,
  path: string,
  summary: string,
  schemas: { params?: P; query?: Q; produces?: string },
  fn: (ctx: ApiContext, req: SignedReq<P, Q>) => Promise<Reply>,
): RouteDef {
  return {
    method: 'GET',
    path,
    summary,
    params: schemas.params ?? NoParams,
    query: schemas.query ?? AnyQuery,
    access,
    ...(schemas.produces ? { produces: schemas.produces } : {}),
    handle: (ctx, req) => {
      if (access === 'signed' && !req.reader) throw new HttpError(401, 'this read must be signed by a registered identity');
      let scope: Promise<ReadScope> | undefined;
      const reader = req.reader as Reader;
      return fn(ctx, { ...(req as unknown as { params: z.output<P>; query: z.output<Q> }), reader, scope: () => (scope ??= ReadScope.of(ctx.platform.store, reader)) });
    },
  };
}

/** A read anyone may make. */
function pub<P extends ObjectSchema, Q extends ObjectSchema>(
  path: string,
  summary: string,
  schemas: { params?: P; query?: Q; produces?: string },
  fn: (ctx: ApiContext, req: { params: z.output<P>; query: z.output<Q> }) => Promise<Reply>,
): RouteDef {
  return route('public', path, summary, schemas, fn);
}

/** A read signed by a registered identity; the handler checks what it may see. */
function read<P extends ObjectSchema, Q extends ObjectSchema>(
  path: string,
  summary: string,
  schemas: { params?: P; query?: Q; produces?: string },
  fn: (ctx: ApiContext, req: SignedReq<P, Q>) => Promise<Reply>,
): RouteDef {
  return route('signed', path, summary, schemas, fn);
}

function mutation(method: RouteDef['method'], path: string, command: CommandType | 'any', summary: string, bind?: RouteDef['bind']): RouteDef {
  const params = bind ? (bind.param === 'zone' ? Params.zone : Params.imvu) : NoParams;
  return {
    method,
    path,
    summary,
    params,
    query: AnyQuery,
    command,
    ...(bind ? { bind } : {}),
    handle: (ctx, req) => submit(ctx, { command, ...(bind ? { bind } : {}) }, req.params, req.body, req.source),
  };
}

/**
 * Checks made before the chokepoint, by command type, on every route that takes the command
 * (`POST /v1/commands` included), for commands this host could not carry out:
 * - `compute.start` and `compute.restart` on a daemon without the fabric: 503, nothing recorded,
 *   rather than recorded and never run (deploy and stop change nothing that would have to run here);
 * - `imvu.scale` to a storage_gb below what the IMVU's data volume already holds: 409, nothing
 *   recorded (a filesystem does not shrink below its data; the fabric refuses it too). Only a
 *   command signed by a creator or member of that IMVU gets this answer: anyone else must not learn
 *   how full a volume is, and goes to the gates, which deny it.
 */
async function preflight(ctx: ApiContext, signed: Record<string, unknown>): Promise<void> {
  const command = signed.command;
  if (!isObject(command)) return;
  if ((command.type === 'compute.start' || command.type === 'compute.restart') && !ctx.compute)
    throw new HttpError(503, 'the compute fabric does not run on this host (see the daemon\'s "compute fabric off" line); nothing was recorded');
  const body = command.body;
  if (command.type !== 'imvu.scale' || !ctx.compute || !isObject(body) || typeof body.imvu !== 'string' || typeof body.storage_gb !== 'number') return;
  if (!(await signedByMemberOf(ctx, signed, body.imvu))) return;
  const why = await ctx.compute.storageRefusal(body.imvu, body.storage_gb);
  if (why) throw new HttpError(409, `${why}; nothing was recorded`);
}

/** Is this a command whose signature verifies under the registered key of a creator or member of `imvu`? */
async function signedByMemberOf(ctx: ApiContext, signed: Record<string, unknown>, imvu: string): Promise<boolean> {
  const command = signed.command as Record<string, unknown>;
  if (typeof command.actor !== 'string' || typeof signed.sig !== 'string') return false;
  const { store } = ctx.platform;
  const who = await store.get<{ public_key: string; name: string; role: Reader['role'] }>('SELECT public_key, name, role FROM identities WHERE id = ?', [command.actor]);
  if (!who || !verifyCommandSignature(signed as unknown as SignedCommand, cachedPublicKey(who.public_key))) return false;
  const scope = await ReadScope.of(store, { id: command.actor, name: who.name, role: who.role });
  return !scope.all && scope.canReadImvu(imvu);
}

/** A peer on this machine (127.0.0.0/8 or ::1, also IPv4-mapped). */
const isLoopbackPeer = (a: string) => a.replace(/^::ffff:/, '').startsWith('127.') || a === '::1';

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * The one mutation handler. The HTTP layer refuses (400, nothing recorded) only what is not a
 * JSON object, or a command addressed to the wrong route; everything else goes to the chokepoint,
 * which verifies, decides and records it, allowed or denied.
 */
async function submit(ctx: ApiContext, route: Pick<RouteDef, 'command' | 'bind'>, params: Record<string, unknown>, body: unknown, source: string): Promise<Reply> {
  if (!isObject(body)) throw new HttpError(400, 'body must be a JSON object: a signed command { "command": { ... }, "sig": "..." }');
  const command = body.command;
  if (isObject(command)) {
    if (route.command !== 'any' && typeof command.type === 'string' && command.type !== route.command)
      throw new HttpError(400, `this route takes ${route.command} commands, not ${command.type} (POST /v1/commands takes any type)`);
    if (route.bind && isObject(command.body)) {
      const want = String(params[route.bind.param]);
      const got = command.body[route.bind.field];
      const same = typeof got === 'string' && (route.bind.field === 'zone' ? got.toLowerCase() === want.toLowerCase() : got === want);
      if (!same) throw new HttpError(400, `the path names ${route.bind.field} ${want} but the command's body.${route.bind.field} is ${JSON.stringify(got) ?? 'missing'}`);
    }
  }
  await preflight(ctx, body);
  const { store, chokepoint } = ctx.platform;
  const receipt = await chokepoint.submit(body).catch((err: unknown) => {
    if (err instanceof NotRecorded) {
      ctx.metrics.command(commandType(body), 'unauthenticated');
      if (err.why === 'rate-limited') {
        const seconds = String(Math.ceil((err.retryAfterMs ?? 1000) / 1000));
        throw new HttpError(429, `${err.message}; nothing was recorded`, { 'retry-after': seconds });
      }
      const prefix = sourcePrefix(source);
      ctx.noise.add(prefix, err.why);
      ctx.metrics.unauthenticated(prefix, err.why);
      throw new HttpError(401, `gate 1: ${err.message}; not recorded (only authenticated attempts enter the ledger)`);
    }
    ctx.metrics.command(commandType(body), 'error');
    throw err;
  });
  ctx.metrics.command(commandType(body), receipt.allowed ? 'allowed' : 'denied');
  // What the reply says is served must be, by the time it arrives: a zone change (or an IMVU that
  // stopped being served) is answered by the DNS server before the command is.
  if (receipt.allowed) await ctx.dnsServes?.(receipt.index + 1);
  const out = await outcome(store, body, receipt);
  const proof = receiptProof(ctx.platform.chokepoint.ledger, receipt);
  const result: Record<string, unknown> = { ...receiptView(receipt), at: receipt.at, ...(proof ? { receipt: proof } : {}) };
  if (out.error) return { status: out.status, body: { error: out.error, ...result }, ...(receipt.allowed ? {} : { log: await deniedLog(store, body, receipt) }) };
  const type = commandType(body);
  if (type === 'imvu.create') {
    const row = await store.get<{ id: string }>('SELECT id FROM imvus WHERE entry = ?', [receipt.index]);
    if (row) result.imvu = await imvuSummary(store, row.id);
  } else if (type === 'identity.register') {
    const row = await store.get<IdentityRow>('SELECT id, name, role, public_key FROM identities WHERE entry = ?', [receipt.index]);
    if (row) result.identity = identityView(row);
  } else if (type === 'domain.claim') {
    // What the claimant must publish before the domain is served.
    const row = await store.get<ClaimRow>('SELECT name, token, expires_at, entry FROM domain_claims WHERE entry = ?', [receipt.index]);
    if (row) result.challenge = challengeView(row);
  }
  return { status: out.status, body: result };
}

/** What the daemon logs of a denied command: type, actor (id, and name and role when registered), the first gate that said no and why. */
async function deniedLog(store: ApiContext['platform']['store'], body: Record<string, unknown>, receipt: { index: number; gates: { gate: number; status: string; reason?: string }[] }): Promise<NonNullable<Reply['log']>> {
  const command = isObject(body.command) ? body.command : {};
  const actor = typeof command.actor === 'string' ? command.actor.slice(0, 200) : null;
  const who = actor ? await store.get<{ name: string; role: string }>('SELECT name, role FROM identities WHERE id = ?', [actor]) : undefined;
  const deny = receipt.gates.find((g) => g.status === 'deny');
  return {
    level: 'warn',
    msg: 'command denied',
    fields: {
      type: typeof commandType(body) === 'string' ? String(commandType(body)).slice(0, 100) : null,
      actor: { id: actor, name: who?.name ?? null, role: who?.role ?? null },
      gate: deny?.gate ?? null,
      reason: deny?.reason?.slice(0, 1000) ?? null,
      index: receipt.index,
    },
  };
}

type IdentityRow = { id: string; name: string; role: string; public_key: string; entry?: number; rotated_at?: number | null; revoked_at?: number | null };
/** An identity with its key's history: from which entry its current key signs, and whether it was revoked. */
const IDENTITY_SELECT = `SELECT i.id AS id, i.name AS name, i.role AS role, i.public_key AS public_key, i.entry AS entry,
  (SELECT max(r.entry) FROM retired_keys r WHERE r.identity = i.id AND r.why = 'rotated') AS rotated_at,
  (SELECT r.entry FROM retired_keys r WHERE r.public_key = i.public_key AND r.why = 'revoked') AS revoked_at
  FROM identities i`;
type ClaimRow = { name: string; token: string; expires_at: string; entry: number };
const challengeView = (r: ClaimRow) => ({ name: challengeName(r.name), type: 'TXT', value: r.token, expires: r.expires_at });

/**
 * `domain.verify`: the creator's signed request is recorded first; then the platform's resolver looks
 * the challenge up and, if the token is there, the platform records `domain.verified` (and the zone
 * and its DNSSEC key follow). Not proven: 422, the request recorded, the domain still pending.
 */
function verifyRoute(): RouteDef {
  const bind = { param: 'id', field: 'imvu' };
  return {
    method: 'POST',
    path: '/v1/imvus/:id/domains/verify',
    summary: 'Prove control of a claimed domain: the platform looks up the TXT at _nexus-challenge.<domain> and, when it holds the token, records domain.verified',
    params: Params.imvu,
    query: AnyQuery,
    command: 'domain.verify',
    bind,
    async handle(ctx, req) {
      if (!ctx.challenge) throw new HttpError(503, 'this daemon has no resolver for domain proofs (root hints); nothing was recorded');
      const first = await submit(ctx, { command: 'domain.verify', bind }, req.params, req.body, req.source);
      const asked = first.body as Record<string, unknown>;
      if (asked.allowed !== true) return first;
      const b = (req.body as { command: { body: { imvu: string; domain: string } } }).command.body;
      let proof: Awaited<ReturnType<typeof proveDomain>>;
      try {
        proof = await proveDomain(ctx.platform, b.imvu, b.domain, ctx.challenge);
      } catch (err) {
        return { status: 409, body: { error: `not proven: ${(err as Error).message}`, ...asked, domain: b.domain, status: 'pending' } };
      }
      if (proof.receipt) ctx.metrics.command('domain.verified', proof.receipt.allowed ? 'allowed' : 'denied');
      const out = {
        ...asked,
        imvu: b.imvu,
        domain: b.domain,
        status: proof.proven ? 'verified' : 'pending',
        challenge: proof.challenge,
        found: proof.found,
        ...(proof.receipt ? { verified: receiptView(proof.receipt) } : {}),
      };
      if (proof.proven) return { status: 200, body: out };
      return { status: proof.receipt ? 409 : 422, body: { error: `not proven: ${proof.reason ?? 'the token was not found'}`, ...out } };
    },
  };
}
/**
 * `compute.exec`: the creator's signed request is recorded first (it is privileged); then the
 * command runs in the workload and its output is answered, never recorded.
 */
function execRoute(): RouteDef {
  const bind = { param: 'id', field: 'imvu' };
  return {
    method: 'POST',
    path: '/v1/imvus/:id/compute/exec',
    summary: "Run a command in the IMVU's workload (its creator only; the request is recorded, the output is not)",
    params: Params.imvu,
    query: AnyQuery,
    command: 'compute.exec',
    bind,
    async handle(ctx, req) {
      if (!ctx.compute) throw new HttpError(503, 'the compute fabric does not run on this host; nothing was recorded');
      const first = await submit(ctx, { command: 'compute.exec', bind }, req.params, req.body, req.source);
      const asked = first.body as Record<string, unknown>;
      if (asked.allowed !== true) return first;
      const b = (req.body as { command: { body: { imvu: string; command: string[] } } }).command.body;
      const out = await ctx.compute.exec(b.imvu, b.command);
      return { status: 200, body: { ...asked, exec: out } };
    },
  };
}

const identityView = (r: IdentityRow) => ({
  id: r.id,
  name: r.name,
  role: r.role,
  publicKey: r.public_key,
  ...(r.entry === undefined ? {} : { keySince: Number(r.rotated_at ?? r.entry), status: r.revoked_at == null ? 'active' : 'revoked', revokedAt: r.revoked_at == null ? null : Number(r.revoked_at) }),
});

/**
 * What this daemon serves right now, per system an IMVU is provisioned with: true only when a server
 * for it runs in this process (the DNS server, the MX, the compute fabric, the HTTP gateway); what
 * is not served is only recorded in the ledger.
 */
function serving(ctx: ApiContext): { dns: boolean; mail: boolean; compute: boolean; routes: boolean } {
  return { dns: !!ctx.dns, mail: !!ctx.mailServing, compute: !!ctx.compute, routes: !!ctx.gateway };
}

async function ledgerSize(ctx: ApiContext): Promise<number> {
  // The committed size (the in-memory frontier may run ahead of the commit by a moment).
  return ctx.platform.store.ledgerSize();
}

async function mustExist(ctx: ApiContext, imvu: string): Promise<void> {
  if (!(await ctx.platform.store.get('SELECT 1 AS x FROM imvus WHERE id = ?', [imvu]))) throw new HttpError(404, `unknown IMVU ${imvu}`);
}

/**
 * The reader may read this IMVU's private state: its creator, a member, an admin or the platform.
 * Anyone else gets 403 whether or not the IMVU exists (no existence oracle); an admin gets 404.
 */
async function mayReadImvu(ctx: ApiContext, scope: ReadScope, imvu: string): Promise<void> {
  if (!scope.canReadImvu(imvu)) throw new HttpError(403, `${scope.reader.name} is neither the creator nor a member of ${imvu} (or it does not exist)`);
  await mustExist(ctx, imvu);
}

/** Whether a zone is hosted is public anyway (DNS answers for it, `/ds` says so): 404 comes first. */
async function mayReadZone(ctx: ApiContext, scope: ReadScope, zone: string): Promise<void> {
  if (scope.canReadZone(zone)) return;
  if (!(await ctx.platform.store.get('SELECT 1 AS x FROM zones WHERE name = ?', [zone.toLowerCase().replace(/\.$/, '')]))) throw new HttpError(404, `zone ${zone} is not hosted here`);
  throw new HttpError(403, `${scope.reader.name} is neither the creator nor a member of the IMVU of zone ${zone}`);
}


/** What a withheld entry costs in a page (its JSON form is about this long). */
const WITHHELD_BYTES = 120;

/** Snapshots are taken and rolled back by the IMVU's creator or a member only (gate 12); an admin does not read them either. */
async function snapshotReader(ctx: ApiContext, reader: Reader, imvu: string): Promise<void> {
  const db = ctx.platform.store;
  const row = await db.get<{ owner: string }>('SELECT owner FROM imvus WHERE id = ?', [imvu]);
  const member = row && (row.owner === reader.id || (await db.get('SELECT 1 AS x FROM members WHERE imvu = ? AND identity = ?', [imvu, reader.id])));
  if (!member) throw new HttpError(403, `${reader.name} is neither the creator nor a member of ${imvu} (or it does not exist)`);
}

const SnapshotParams = z.object({ id: z.string().regex(/^IMVU-\d{3,9}$/), digest: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be sha256:<64 hex digits>') }).strict();

/**
 * Snapshots (src/compute/snapshots): `draft` builds the content-addressed image from the data
 * volume (slow, outside any transaction) and answers the snapshot.create body to sign; the signed
 * record is posted back and accepted only if its blobs are here and verify. A rollback verifies and
 * stages the snapshot, records the signed snapshot.rollback, then swaps the volume with the
 * workload stopped.
 */
/**
 * A re-import (src/imvu/import/): the creator uploads another platform's exit archive (a signed
 * PUT of its bytes, named by their SHA-256; verified offline here and kept), then signs
 * `imvu.import`, which must match it; once recorded, the mail and the data volume are restored.
 */
function importRoutes(): RouteDef[] {
  const service = () => import('../imvu/import/service.ts');
  const refused = async (err: unknown): Promise<never> => {
    const { ImportRefused } = await service();
    if (err instanceof ImportRefused) throw new HttpError(err.status, err.message);
    throw err;
  };
  return [
    {
      method: 'PUT',
      path: '/v1/imports/:archive',
      consumes: 'application/octet-stream',
      summary: "Upload another platform's exit archive (application/octet-stream, a request signed by a creator; the path names its SHA-256): verified offline, then kept for `imvu.import`",
      params: z.object({ archive: z.string().regex(/^[0-9a-f]{64}$/, 'must be the SHA-256 of the archive in lower-case hex') }).strict(),
      query: AnyQuery,
      access: 'signed',
      async handle(ctx, req) {
        if (req.reader?.role !== 'creator') throw new HttpError(403, `only a creator uploads an archive to import; ${req.reader?.name ?? 'anonymous'} is a ${req.reader?.role ?? 'stranger'}`);
        const body = req.body as { pipe?: unknown } | undefined;
        if (!body || typeof body.pipe !== 'function') throw new HttpError(415, 'send the archive as application/octet-stream');
        const s = await service();
        const staged = await s.stageArchive(ctx.platform.dataDir, String(req.params.archive), req.body as import('node:stream').Readable).catch(refused);
        const m = staged.manifest.manifest;
        return { status: 201, body: { sha256: staged.sha256, size: staged.size, manifest: staged.manifestSha256, imvu: m.imvu, owner: m.owner, origin: m.origin, treeSize: m.treeSize, report: staged.report, plan: s.restorePlan(staged) } };
      },
    },
    {
      method: 'POST',
      path: '/v1/imvus/import',
      summary: "Import an IMVU from an uploaded exit archive (imvu.import, the creator's signature; same id, identity key, zone and DNSSEC keys, mailboxes, routes); the mail and data volume are restored once it is recorded",
      params: NoParams,
      query: AnyQuery,
      command: 'imvu.import',
      async handle(ctx, req) {
        const b = (req.body as { command?: { body?: Record<string, unknown> } })?.command?.body;
        const sha = (b?.source as { archive?: unknown } | undefined)?.archive;
        const s = await service();
        const staged = typeof sha === 'string' && /^[0-9a-f]{64}$/.test(sha) ? s.stagedArchive(ctx.platform.dataDir, sha) : undefined;
        if (typeof sha === 'string' && /^[0-9a-f]{64}$/.test(sha)) {
          if (!staged) throw new HttpError(409, `no verified archive ${sha} is kept here: upload it first (PUT /v1/imports/${sha}); nothing was recorded`);
          const bad = s.checkImportAgainst(staged, b!);
          if (bad) throw new HttpError(409, `${bad}; nothing was recorded`);
          // Every message is checked before anything is recorded.
          try {
            s.readArchiveMail(staged.root);
          } catch (err) {
            await refused(err);
          }
        }
        // The restore is owed from the moment the entry may be recorded (a crash right after it is
        // finished at the next start); a marker this request did not write is not this request's to drop.
        const id = typeof b?.id === 'string' && /^IMVU-\d+$/.test(b.id) ? b.id : undefined;
        const marked = staged && id ? s.markRestorePending(ctx.platform.dataDir, staged.sha256, id) : false;
        const reply = await submit(ctx, { command: 'imvu.import' }, req.params, req.body, req.source).catch((err: unknown) => {
          if (marked) s.clearRestorePending(ctx.platform.dataDir, staged!.sha256, id!);
          throw err;
        });
        const r = reply.body as { allowed?: boolean };
        if (!r.allowed && marked) s.clearRestorePending(ctx.platform.dataDir, staged!.sha256, id!);
        // With declared parts, the mail and volume wait for the last part (the import is not whole before).
        if (!r.allowed || !staged || !id || b?.parts) return reply;
        return { ...reply, body: { ...(reply.body as object), restored: await s.restoreImported(ctx.platform, id, staged) } };
      },
    },
    {
      method: 'POST',
      path: '/v1/imvus/:id/import/parts',
      summary: "Record one declared part of an import's zone or of a transferred domain's (imvu.import.part, the creator's signature); once an import's last is recorded the IMVU is served and the mail and data volume are restored, once a transfer's last is the domain is served",
      params: Params.imvu,
      query: AnyQuery,
      command: 'imvu.import.part',
      bind: { param: 'id', field: 'imvu' },
      async handle(ctx, req) {
        const reply = await submit(ctx, { command: 'imvu.import.part', bind: { param: 'id', field: 'imvu' } }, req.params, req.body, req.source);
        const r = reply.body as { allowed?: boolean };
        if (!r.allowed) return reply;
        const id = String(req.params.id);
        const row = await ctx.platform.store.get<{ status: string; archive_sha256: string }>('SELECT i.status AS status, m.archive_sha256 AS archive_sha256 FROM imvus i JOIN imports m ON m.imvu = i.id WHERE i.id = ?', [id]);
        if (row?.status !== 'active') return reply;
        // A transferred domain's part restores nothing: only the part that makes the import whole does.
        const header = (req.body as { command?: { body?: { import?: unknown } } } | undefined)?.command?.body?.import;
        const own = await ctx.platform.store.get('SELECT 1 AS x FROM import_parts p JOIN imvus i ON i.id = p.imvu AND i.domain = p.zone WHERE p.header = ? AND p.imvu = ? LIMIT 1', [String(header), id]);
        if (!own) return reply;
        const s = await service();
        const staged = s.stagedArchive(ctx.platform.dataDir, row.archive_sha256);
        if (!staged) return reply;
        return { ...reply, body: { ...(reply.body as object), restored: await s.restoreImported(ctx.platform, id, staged) } };
      },
    },
    read('/v1/imvus/:id/import', "An imported IMVU's reference to the platform it came from, and the served state its archive held (creator or member)", { params: Params.imvu }, async (ctx, { params, reader }) => {
      await snapshotReader(ctx, reader, params.id);
      const row = await ctx.platform.store.get<{ archive_sha256: string }>('SELECT * FROM imports WHERE imvu = ?', [params.id]);
      if (!row) throw new HttpError(404, `${params.id} was not imported from another platform`);
      const s = await service();
      const staged = s.stagedArchive(ctx.platform.dataDir, row.archive_sha256);
      const status = await ctx.platform.store.get<{ status: string }>('SELECT status FROM imvus WHERE id = ?', [params.id]);
      // The declared parts and which are recorded: what a resumed `nexus imvu import` still sends.
      // `zone` tells an import's parts (the IMVU's own zone) from a transferred domain's (`nexus domain transfer-in` resumes by them).
      const parts = await ctx.platform.store.all<{ zone: string; part: number; header: string; sha256: string; records: number; entry: number }>(
        'SELECT zone, part, header, sha256, records, entry FROM import_parts WHERE imvu = ? ORDER BY zone, header, part',
        [params.id],
      );
      return {
        body: {
          imvu: params.id,
          status: status?.status ?? null,
          import: row,
          parts: parts.map((p) => ({ zone: p.zone, part: Number(p.part), header: p.header, sha256: p.sha256, records: Number(p.records), entry: Number(p.entry) || null })),
          plan: staged ? s.restorePlan(staged) : null,
        },
      };
    }),
  ];
}

function snapshotRoutes(): RouteDef[] {
  const bind = { param: 'id', field: 'imvu' };
  const snapshots = () => import('../compute/snapshots/index.ts');
  return [
    read('/v1/imvus/:id/snapshots', "The IMVU's recorded snapshots (creator or member)", { params: Params.imvu }, async (ctx, { params, reader }) => {
      await snapshotReader(ctx, reader, params.id);
      const s = await snapshots();
      const onDisk = new Set(await s.listLayout(s.snapshotLayout(ctx.platform.dataDir, params.id)));
      const rows = await s.recordedSnapshots(ctx.platform.store, params.id);
      return { body: { imvu: params.id, snapshots: rows.map((r) => ({ ...r, envelope: JSON.parse(r.envelope) as unknown, tag: s.tagOf(r.digest), stored: onDisk.has(r.digest) })) } };
    }),
    read('/v1/imvus/:id/snapshots/draft', 'Build a snapshot of the data volume, blueprint and envelope; answers the snapshot.create body to sign (creator or member)', { params: Params.imvu }, async (ctx, { params, reader }) => {
      await snapshotReader(ctx, reader, params.id);
      const s = await snapshots();
      const snap = await s.takeSnapshot(ctx.platform.dataDir, ctx.platform.store, params.id);
      return { body: { body: s.createBody(snap), skipped: snap.skipped, tag: s.tagOf(snap.digest) } };
    }),
    {
      method: 'POST',
      path: '/v1/imvus/:id/snapshots',
      summary: 'Record a snapshot built by the draft read (snapshot.create, gate 12)',
      params: Params.imvu,
      query: AnyQuery,
      command: 'snapshot.create',
      bind,
      async handle(ctx, req) {
        const b = (req.body as { command?: { body?: { digest?: unknown; covers?: { layer?: unknown } } } })?.command?.body;
        if (typeof b?.digest === 'string') {
          const s = await snapshots();
          try {
            const v = await s.verifySnapshot(s.snapshotLayout(ctx.platform.dataDir, String(req.params.id)), b.digest);
            if (v.layer.digest !== b.covers?.layer) throw new Error(`its layer is ${v.layer.digest}, not ${String(b.covers?.layer)}`);
          } catch (err) {
            throw new HttpError(409, `snapshot ${b.digest} is not stored here intact (${(err as Error).message}); nothing was recorded`);
          }
        }
        return submit(ctx, { command: 'snapshot.create', bind }, req.params, req.body, req.source);
      },
    },
    {
      method: 'POST',
      path: '/v1/imvus/:id/snapshots/rollback',
      summary: "Roll the IMVU's data volume back to one of its recorded snapshots (snapshot.rollback, gate 12); the workload is stopped around the swap",
      params: Params.imvu,
      query: AnyQuery,
      command: 'snapshot.rollback',
      bind,
      async handle(ctx, req) {
        const digest = (req.body as { command?: { body?: { digest?: unknown } } })?.command?.body?.digest;
        if (typeof digest !== 'string') return submit(ctx, { command: 'snapshot.rollback', bind }, req.params, req.body, req.source);
        const s = await snapshots();
        const control = ctx.workloads ?? { stop: async () => undefined, start: async () => undefined };
        let reply: Reply | undefined;
        try {
          const r = await s.rollback(ctx.platform.dataDir, String(req.params.id), digest, control, async () => {
            reply = await submit(ctx, { command: 'snapshot.rollback', bind }, req.params, req.body, req.source);
            const body = reply.body as { allowed?: boolean; index?: number; gates?: unknown };
            return { index: Number(body.index), allowed: body.allowed === true, gates: [], followUps: [] };
          });
          return { ...reply!, body: { ...(reply!.body as object), restored: r.restored, ...(r.restored ? { entries: r.entries, bytes: r.bytes } : {}) } };
        } catch (err) {
          if (reply) throw err;
          if (err instanceof HttpError) throw err;
          throw new HttpError(409, `cannot roll back to ${digest}: ${(err as Error).message}; nothing was recorded`);
        }
      },
    },
    read(
      '/v1/imvus/:id/snapshots/:digest/export',
      'One snapshot as an OCI archive (skopeo inspect oci-archive:FILE, umoci unpack); creator or member',
      { params: SnapshotParams, produces: 'application/x-tar' },
      async (ctx, { params, reader }) => {
        await snapshotReader(ctx, reader, params.id);
        const s = await snapshots();
        if (!(await s.recordedSnapshots(ctx.platform.store, params.id)).some((r) => r.digest === params.digest)) throw new HttpError(404, `no snapshot ${params.digest} is recorded for ${params.id}`);
        const layout = s.snapshotLayout(ctx.platform.dataDir, params.id);
        try {
          await s.verifySnapshot(layout, params.digest);
        } catch (err) {
          throw new HttpError(409, (err as Error).message);
        }
        const { PassThrough } = await import('node:stream');
        const out = new PassThrough();
        s.exportSnapshot(layout, params.digest, out).catch((err: unknown) => out.destroy(err as Error));
        return { body: out, contentType: 'application/x-tar', headers: { 'Content-Disposition': `attachment; filename="${params.id}-${s.tagOf(params.digest)}.oci.tar"` } };
      },
    ),
  ];
}

export const ROUTES: RouteDef[] = [
  ...snapshotRoutes(),
  ...importRoutes(),
  mutation('POST', '/v1/imvus/:id/domains/transfer', 'domain.transfer', "Transfer in a domain the IMVU held on the platform it was imported from, with the code that platform signed at the exit (domain-transfer-codes.txt); its zone and DNSSEC keys come from the archive", { param: 'id', field: 'imvu' }),
  // ---- mutations: a signed command in the body
  mutation('POST', '/v1/commands', 'any', 'Submit any signed command'),
  mutation('POST', '/v1/identities', 'identity.register', 'Register an identity (creators and members sign for themselves; admins and services are registered by the platform)'),
  mutation('POST', '/v1/imvus', 'imvu.create', 'Create an IMVU in one command: envelope, domain, zone, DKIM, mailboxes, routes'),
  mutation('POST', '/v1/imvus/:id/scale', 'imvu.scale', 'Change the compute envelope', { param: 'id', field: 'imvu' }),
  mutation('POST', '/v1/imvus/:id/compute/deploy', 'compute.deploy', "Deploy a blueprint as the IMVU's workload (creator or member)", { param: 'id', field: 'imvu' }),
  mutation('POST', '/v1/imvus/:id/compute/start', 'compute.start', "Start the IMVU's workload (creator or member)", { param: 'id', field: 'imvu' }),
  mutation('POST', '/v1/imvus/:id/compute/stop', 'compute.stop', "Stop the IMVU's workload (creator or member)", { param: 'id', field: 'imvu' }),
  mutation('POST', '/v1/imvus/:id/compute/restart', 'compute.restart', "Restart the IMVU's workload (creator or member)", { param: 'id', field: 'imvu' }),
  execRoute(),
  mutation('POST', '/v1/imvus/:id/suspend', 'imvu.suspend', 'Suspend an IMVU (admin; the creator is notified)', { param: 'id', field: 'imvu' }),
  mutation('POST', '/v1/imvus/:id/resume', 'imvu.resume', 'Resume a suspended IMVU', { param: 'id', field: 'imvu' }),
  mutation('POST', '/v1/imvus/:id/exit', 'imvu.exit', "Exit (the creator's signature alone; suspension cannot block it)", { param: 'id', field: 'imvu' }),
  mutation('POST', '/v1/imvus/:id/exit/confirm', 'imvu.exit.confirm', "Confirm the download of the exit archive (its SHA-256): the IMVU becomes exited", { param: 'id', field: 'imvu' }),
  mutation('POST', '/v1/imvus/:id/purge', 'imvu.purge', 'Release (after the 30-day grace) or delete (after the 90-day retention) an exited IMVU', { param: 'id', field: 'imvu' }),
  mutation('POST', '/v1/imvus/:id/members', 'member.add', 'Add a member', { param: 'id', field: 'imvu' }),
  mutation('POST', '/v1/imvus/:id/domains', 'domain.claim', 'Claim a domain outside the platform suffix: pending (not served) until proven; the answer names the TXT record to publish', { param: 'id', field: 'imvu' }),
  verifyRoute(),
  mutation('DELETE', '/v1/imvus/:id/domains', 'domain.release', "Release a domain (or a pending claim) of the IMVU: its zone, records and DNSSEC key go; never the primary domain", { param: 'id', field: 'imvu' }),
  mutation('POST', '/v1/zones/:zone/records', 'dns.record.add', 'Add a DNS record', { param: 'zone', field: 'zone' }),
  mutation('DELETE', '/v1/zones/:zone/records', 'dns.record.remove', 'Remove DNS records', { param: 'zone', field: 'zone' }),
  mutation('POST', '/v1/imvus/:id/mailboxes', 'mailbox.add', 'Add a mailbox', { param: 'id', field: 'imvu' }),
  mutation('DELETE', '/v1/imvus/:id/mailboxes', 'mailbox.remove', 'Remove a mailbox (creator only)', { param: 'id', field: 'imvu' }),
  mutation('PUT', '/v1/imvus/:id/routes', 'route.set', 'Replace the traffic policy (creator only)', { param: 'id', field: 'imvu' }),
  mutation('POST', '/v1/consents', 'consent.record', 'Record a consent signed by its subject'),
  mutation('POST', '/v1/usage', 'usage.report', 'Report metered usage (service identities)'),
  mutation('POST', '/v1/revenue', 'revenue.record', 'Record revenue (service identities)'),

  // ---- reads
  pub('/health', 'Liveness, ledger size, where DNS listens and who may transfer zones (dns is null when off), and each witness: size it last cosigned, last error, lagging', {}, async (ctx) => ({
    body: {
      status: 'ok',
      size: await ledgerSize(ctx),
      // zones: 'loading' while the DNS server reads its zone list after a start (queries wait for it), then 'ready'.
      dns: ctx.dns ? { address: ctx.dns.address, port: ctx.dns.port, xfr: ctx.dns.xfr, zones: ctx.dns.loading?.() ? 'loading' : 'ready' } : null,
      serving: serving(ctx),
      witnesses: ctx.witnesses?.status() ?? [],
    },
  })),
  {
    method: 'GET',
    path: '/v1/status',
    summary: 'The daemon at a glance (what `nexus status` shows): version, platform id, listeners, ledger size, newest checkpoint and which witnesses cosigned it, IMVU count, integrity check, witnesses; pid and data directory to peers on this machine only',
    params: NoParams,
    query: AnyQuery,
    access: 'public',
    handle: async (ctx, req) => ({ body: await daemonStatus(ctx, isLoopbackPeer(req.source)) }),
  },
  route('metrics', '/metrics', 'Prometheus metrics (loopback peers; anyone else needs a read signed by an admin)', { produces: 'text/plain' }, async (ctx) => ({
    body: await ctx.metrics.registry.metrics(),
    contentType: ctx.metrics.registry.contentType,
  })),
  pub('/openapi.json', 'This document', {}, async (ctx) => ({ body: ctx.openapi() })),
  {
    method: 'GET',
    path: '/.well-known/mta-sts.txt',
    summary: "The MTA-STS policy (RFC 8461) of the IMVU domain named by the Host header, `mta-sts.<domain>`; 404 for any other host",
    params: NoParams,
    query: AnyQuery,
    access: 'public',
    produces: 'text/plain',
    handle: async (ctx, req) => {
      const host = (req.host ?? '').toLowerCase().replace(/\.$/, '');
      const domain = host.startsWith('mta-sts.') ? host.slice('mta-sts.'.length) : '';
      const row = domain ? await ctx.platform.store.get<{ domain: string }>('SELECT domain FROM imvus WHERE domain = ?', [domain]) : undefined;
      if (!row) throw new HttpError(404, 'no MTA-STS policy for this host');
      return { body: mtaStsPolicy(row.domain), contentType: 'text/plain; charset=utf-8', headers: { 'cache-control': 'max-age=3600' } };
    },
  },
  pub('/v1/platform', "The platform's identity and checkpoint verifier key", {}, async (ctx) => {
    const db = ctx.platform.store;
    const p = await db.get<{ id: string; origin: string; suffix: string; edge_address: string }>('SELECT id, origin, suffix, edge_address FROM platform LIMIT 1');
    if (!p) throw new HttpError(503, 'the platform has no genesis entry');
    const key = await db.get<{ public_key: string }>('SELECT public_key FROM identities WHERE id = ?', [p.id]);
    const raw = Buffer.from(key?.public_key ?? '', 'base64');
    return {
      body: { id: p.id, origin: p.origin, suffix: p.suffix, edgeAddress: p.edge_address, publicKey: raw.toString('base64'), verifierKey: verifierKey(p.origin, raw) },
    };
  }),
  read('/v1/identities', 'Identities: all for an admin; otherwise the platform, admins, services, and the creators and members of your IMVUs', {}, async (ctx, { scope }) => {
    const s = await scope();
    // Anyone else: the roles everyone may see and the people of the reader's IMVUs, looked up by
    // role and by id (the platform's other identities are not read).
    const rows = s.all
      ? await ctx.platform.store.all<IdentityRow>(`${IDENTITY_SELECT} ORDER BY i.entry`)
      : await ctx.platform.store.all<IdentityRow>(`${IDENTITY_SELECT} WHERE i.role IN ('platform', 'admin', 'service') OR i.id IN (SELECT value FROM json_each(?)) ORDER BY i.entry`, [JSON.stringify([...s.people])]);
    return { body: { identities: rows.map(identityView) } };
  }),
  pub('/v1/identities/:nameOrId', 'One identity, by name or id (a key directory: public)', { params: Params.identity }, async (ctx, { params }) => {
    const row = await ctx.platform.store.get<IdentityRow>(`${IDENTITY_SELECT} WHERE i.id = ? OR i.name = ?`, [params.nameOrId, params.nameOrId]);
    if (!row) throw new HttpError(404, `unknown identity ${params.nameOrId}`);
    return { body: identityView(row) };
  }),
  read('/v1/imvus', 'IMVUs (brief): all for an admin, otherwise those you created or are a member of', {}, async (ctx, { scope }) => {
    const s = await scope();
    return { body: { imvus: await listImvus(ctx.platform.store, s.all ? undefined : s.imvus) } };
  }),
  read('/v1/imvus/:id', 'One IMVU: envelope, domains, zone, mailboxes, routes, DKIM', { params: Params.imvu }, async (ctx, { params, scope }) => {
    await mayReadImvu(ctx, await scope(), params.id);
    const s = await imvuSummary(ctx.platform.store, params.id);
    if (!s) throw new HttpError(404, `unknown IMVU ${params.id}`);
    return { body: s };
  }),
  read('/v1/imvus/:id/compute', "The IMVU's workload: its state and address, and the kernel's cgroup limits beside what the ledger's envelope implies", { params: Params.imvu }, async (ctx, { params, scope }) => {
    await mayReadImvu(ctx, await scope(), params.id);
    if (!ctx.compute) throw new HttpError(503, 'the compute fabric does not run on this host');
    const [status, kernel] = await Promise.all([ctx.compute.status(params.id), ctx.compute.kernelView(params.id)]);
    return { body: { ...status, ...(kernel ? { limits: { ledger: kernel.ledger, kernel: kernel.kernel, differences: kernel.differences } } : {}) } };
  }),
  read('/v1/imvus/:id/compute/logs', "The newest output of the IMVU's workload (at most 64 KiB)", { params: Params.imvu, produces: 'text/plain' }, async (ctx, { params, scope }) => {
    await mayReadImvu(ctx, await scope(), params.id);
    if (!ctx.compute) throw new HttpError(503, 'the compute fabric does not run on this host');
    return { body: await ctx.compute.logs(params.id), contentType: 'text/plain; charset=utf-8' };
  }),
  read('/v1/zones/:zone/records', 'A zone: SOA serial and records', { params: Params.zone }, async (ctx, { params, scope }) => {
    await mayReadZone(ctx, await scope(), params.zone);
    const z = await zoneView(ctx.platform.store, params.zone);
    if (!z) throw new HttpError(404, `zone ${params.zone} is not hosted here`);
    return { body: z };
  }),
  pub('/v1/zones/:zone/ds', "A zone's DNSSEC key: the DS for the parent zone, the DNSKEY, a trust anchor for delv/BIND, and the platform zone's (the suffix's) trust anchor", { params: Params.zone }, async (ctx, { params }) => {
    const ds = await dsView(ctx.platform.store, params.zone);
    if (ds) {
      // The platform's own zone publishes the DS of the zones below it: its key alone anchors them.
      const platformZone = (await platformZoneDsView(ctx.platform.store)) ?? null;
      const parent = platformZone && ds.zone.endsWith(`.${platformZone.zone}`) ? platformZone.zone : null;
      return { body: { ...ds, parent, platformZone } };
    }
    const hosted = await ctx.platform.store.get('SELECT 1 AS x FROM zones WHERE name = ?', [params.zone.toLowerCase().replace(/\.$/, '')]);
    throw new HttpError(404, hosted ? `zone ${params.zone} has no DNSSEC key` : `zone ${params.zone} is not hosted here`);
  }),
  read('/v1/zones/:zone/export', 'A zone as a BIND master file (RFC 1035), accepted by named-checkzone', { params: Params.zone, produces: 'text/plain' }, async (ctx, { params, scope }) => {
    await mayReadZone(ctx, await scope(), params.zone);
    const name = params.zone.toLowerCase().replace(/\.$/, '');
    // The IMVU zones and the platform's own (the suffix, once declared).
    if (!(await readZoneRows(ctx.platform.store, name))) throw new HttpError(404, `zone ${params.zone} is not hosted here`);
    return { body: await exportZone(ctx.platform.store, name), contentType: 'text/plain; charset=utf-8' };
  }),
  read('/v1/imvus/:id/domains', "An IMVU's domains: the proven ones (served) and its claims pending proof, with the TXT record each needs", { params: Params.imvu }, async (ctx, { params, scope }) => {
    await mayReadImvu(ctx, await scope(), params.id);
    const db = ctx.platform.store;
    const now = new Date().toISOString();
    const domains = await db.all<{ name: string; kind: string; entry: number }>('SELECT name, kind, entry FROM domains WHERE imvu = ? ORDER BY entry, name', [params.id]);
    const claims = await db.all<ClaimRow>('SELECT name, token, expires_at, entry FROM domain_claims WHERE imvu = ? ORDER BY entry, name', [params.id]);
    return {
      body: {
        imvu: params.id,
        domains: domains.map((d) => ({ name: d.name, kind: d.kind, status: 'verified', entry: d.entry })),
        pending: claims.map((c) => ({ name: c.name, status: c.expires_at <= now ? 'lapsed' : 'pending', entry: c.entry, expires: c.expires_at, challenge: challengeView(c) })),
      },
    };
  }),
  read('/v1/imvus/:id/mailboxes', "An IMVU's mailboxes", { params: Params.imvu }, async (ctx, { params, scope }) => {
    await mayReadImvu(ctx, await scope(), params.id);
    return { body: { imvu: params.id, mailboxes: await mailboxesOf(ctx.platform.store, params.id) } };
  }),
  read('/v1/imvus/:id/routes', "An IMVU's traffic policy", { params: Params.imvu }, async (ctx, { params, scope }) => {
    await mayReadImvu(ctx, await scope(), params.id);
    return { body: { imvu: params.id, routes: (await routesOf(ctx.platform.store, params.id)) ?? null } };
  }),
  read(
    '/v1/imvus/:id/token',
    "A short-lived ES256 token for the gateway's private and restricted routes of the IMVU (its creator and members)",
    { params: Params.imvu, query: z.object({ ttl: z.string().regex(/^[1-9]\d{0,3}$/, 'ttl must be 1-3600 seconds').optional() }).strict() },
    async (ctx, { params, query, reader }) => {
      if (!ctx.gateway) throw new HttpError(503, 'the gateway is not running on this daemon: no tokens are issued');
      const imvu = await ctx.platform.store.get<{ owner: string; status: string }>('SELECT owner, status FROM imvus WHERE id = ?', [params.id]);
      if (!imvu) throw new HttpError(404, `no IMVU ${params.id}`);
      const member = await ctx.platform.store.get('SELECT 1 AS x FROM members WHERE imvu = ? AND identity = ?', [params.id, reader.id]);
      // Roles: the creator is the IMVU's admin; members are members. Nobody else gets a token.
      const roles = imvu.owner === reader.id ? ['admin', 'member'] : member ? ['member'] : undefined;
      if (!roles) throw new HttpError(403, `${reader.name} is neither the creator nor a member of ${params.id}`);
      const ttl = query.ttl ? Number(query.ttl) : DEFAULT_TOKEN_TTL_S;
      if (ttl > MAX_TOKEN_TTL_S) throw new HttpError(400, `ttl must be 1-${MAX_TOKEN_TTL_S} seconds`);
      const now = Date.now();
      const token = issueToken(ctx.gateway.tokenKey, { imvu: params.id, identity: reader.id, roles, ttlS: ttl, now });
      return { body: { imvu: params.id, token, roles, expires: new Date(Math.floor(now / 1000) * 1000 + ttl * 1000).toISOString() } };
    },
  ),
  read('/v1/imvus/:id/gateway', 'What the gateway serves for the IMVU against the ledger', { params: Params.imvu }, async (ctx, { params, scope }) => {
    await mayReadImvu(ctx, await scope(), params.id);
    if (!ctx.gateway) return { body: { imvu: params.id, gateway: 'off' } };
    // This IMVU's lines only, looked up key by key: the view costs its own lines, not the platform's maps.
    const { maps: served, report } = await ctx.gateway.servedImvu(params.id);
    const own = (m: MapName) => (l: string) => {
      const at = l.indexOf(' ');
      return isImvuLine(m, params.id, l.slice(0, at), l.slice(at + 1));
    };
    const mine = report.differences
      .map((d) => ({ map: d.map, extra: d.extra.filter(own(d.map)), missing: d.missing.filter(own(d.map)) }))
      .filter((d) => d.extra.length || d.missing.length);
    // The certificate HAProxy serves for the IMVU's names (read back over its runtime API) next to the ledger's: this IMVU's only.
    const certificate = (await ctx.gateway.servedCertificates([params.id]))[0] ?? null;
    // The IMVU's route lines as HAProxy serves them: `nexus audit watch` compares them with the table
    // it derives from the verified entries itself, not with this daemon's own comparison.
    const routes = imvuRouteLines(served, params.id);
    return { body: { imvu: params.id, at: report.at, equal: mine.length === 0, differences: mine, routes, certificate, alarms: ctx.gateway.alarms.filter((a) => a.imvus.includes(params.id)) } };
  }),
  read('/v1/imvus/:id/notifications', 'Notifications about an IMVU', { params: Params.imvu }, async (ctx, { params, scope }) => {
    await mayReadImvu(ctx, await scope(), params.id);
    return { body: { notifications: await notifications(ctx, 'imvu', params.id) } };
  }),
  read('/v1/imvus/:id/exit', "An IMVU's exit: the ledger's record (started, archive ready, ended) and the build's progress per part", { params: Params.imvu }, async (ctx, { params, scope }) => {
    await mayReadImvu(ctx, await scope(), params.id);
    const row = await ctx.platform.store.get('SELECT * FROM exits WHERE imvu = ?', [params.id]);
    const imvu = await ctx.platform.store.get<{ status: string }>('SELECT status FROM imvus WHERE id = ?', [params.id]);
    if (!imvu) throw new HttpError(404, `unknown IMVU ${params.id}`);
    const { readExitStatus } = await import('../imvu/exit/service.ts');
    return { body: { imvu: params.id, status: imvu.status, exit: row ?? null, build: readExitStatus(ctx.platform.dataDir, params.id) ?? null } };
  }),
  read(
    '/v1/imvus/:id/exit/archive',
    "The IMVU's exit archive (.tar.gz), once the ledger records it ready (its creator and members)",
    { params: Params.imvu, produces: 'application/gzip' },
    async (ctx, { params, scope }) => {
      await mayReadImvu(ctx, await scope(), params.id);
      const row = await ctx.platform.store.get<{ archive_sha256: string | null; archive_size: number | null }>('SELECT archive_sha256, archive_size FROM exits WHERE imvu = ?', [params.id]);
      if (!row?.archive_sha256) throw new HttpError(404, `${params.id} has no exit archive ready`);
      const { archiveName, exportDir } = await import('../imvu/exit/build.ts');
      const { createReadStream, existsSync } = await import('node:fs');
      const { join } = await import('node:path');
      const file = join(exportDir(ctx.platform.dataDir, params.id), archiveName(params.id));
      if (!existsSync(file)) throw new HttpError(404, `${params.id}'s exit archive is no longer kept here`);
      return {
        // 1 MiB reads: a gigabyte in 64 KiB chunks costs the daemon (and the client) per chunk.
        body: createReadStream(file, { highWaterMark: 1 << 20 }),
        contentType: 'application/gzip',
        headers: { 'content-length': String(row.archive_size), 'x-archive-sha256': row.archive_sha256, 'content-disposition': `attachment; filename="${archiveName(params.id)}"` },
      };
    },
  ),
  read('/v1/consents', "Consent history by subject and/or IMVU (the IMVU's creator, members and admins; a subject its own)", { query: Queries.consents }, async (ctx, { query, reader, scope }) => {
    if (!query.subject && !query.imvu) throw new HttpError(400, 'give subject and/or imvu');
    const s = await scope();
    const own = query.subject !== undefined && query.subject === reader.id;
    if (query.imvu !== undefined ? !own && !s.canReadImvu(query.imvu) : !own && !s.all)
      throw new HttpError(403, query.imvu !== undefined
        ? `${reader.name} may read the consents of ${query.imvu} only as its creator, a member or an admin, or its own consents as their subject`
        : `${reader.name} may read only its own consent history (as subject ${reader.id})`);
    // Only the conditions given, so that SQLite looks them up by index (`? IS NULL OR` read every consent).
    const where = [...(query.subject !== undefined ? ['subject = ?'] : []), ...(query.imvu !== undefined ? ['imvu = ?'] : [])];
    const rows = await ctx.platform.store.all<{ entry: number; subject: string; imvu: string; purpose: string; granted: number; at: string }>(
      `SELECT entry, subject, imvu, purpose, granted, at FROM consents WHERE ${where.join(' AND ')} ORDER BY entry`,
      [...(query.subject !== undefined ? [query.subject] : []), ...(query.imvu !== undefined ? [query.imvu] : [])],
    );
    return { body: { consents: rows.map((r) => ({ ...r, granted: r.granted === 1 })) } };
  }),
  read('/v1/notifications', 'Notifications for a creator (the recipient itself, or an admin)', { query: Queries.notifications }, async (ctx, { query, reader, scope }) => {
    if (query.recipient !== reader.id && !(await scope()).all) throw new HttpError(403, `${reader.name} may read only its own notifications`);
    return { body: { notifications: await notifications(ctx, 'recipient', query.recipient) } };
  }),
  pub('/v1/gates', 'Gate 0 (schema and preconditions) and the 17 gates, and whether each is enforced yet', {}, async () => ({ body: { gates: gateStatus() } })),
  pub(
    '/v1/ledger/checkpoint',
    'The latest signed checkpoint (C2SP signed note) with every witness cosignature the daemon holds for it; with cosigners=ID,ID (witness key IDs) the newest checkpoint at least min (default all) of them cosigned, else the latest',
    { query: Queries.checkpoint, produces: 'text/plain' },
    async (ctx, { query }) => {
      const ids = query.cosigners?.split(',');
      const served = ids ? await cosignedCheckpoint(ctx, ids, Math.max(1, Math.min(query.min ?? ids.length, ids.length))) : await servedCheckpoint(ctx);
      if (!served) throw new HttpError(503, 'the ledger has no checkpoint yet');
      return { body: served.note, contentType: 'text/plain; charset=utf-8' };
    },
  ),
  pub('/v1/ledger/snapshot', "The newest signed ledger.snapshot: its index (the tree size whose state it names) and state digest; 404 if the log has none", {}, async (ctx) => {
    const found = await newestSnapshot(ctx.platform.store);
    if (!found) throw new HttpError(404, 'the log has no ledger.snapshot entry yet');
    return { body: found };
  }),
  pub('/v1/ledger/checkpoints/:size', 'The signed checkpoint the platform saved at exactly this tree size (C2SP signed note) with every witness cosignature the daemon holds for it; 404 if none was saved at that size', { params: Params.size, produces: 'text/plain' }, async (ctx, { params }) =>
    checkpointAt(ctx, params.size),
  ),
  read(
    '/v1/ledger/entries',
    `Ledger entries [from, to), at most ${MAX_ENTRIES_PER_CALL} and about ${MAX_PAGE_BYTES} bytes per call, optionally only those about one IMVU; entries you may not read come as { index, leafHash, withheld }`,
    { query: Queries.entries },
    async (ctx, { query, scope }) => {
      if (query.to !== undefined && query.to < (query.from ?? 0)) throw new HttpError(400, `to (${query.to}) is before from (${query.from ?? 0})`);
      const s = await scope();
      if (query.imvu && !s.canReadImvu(query.imvu)) throw new HttpError(403, `${s.reader.name} is neither the creator nor a member of ${query.imvu} (or it does not exist)`);
      const size = await ledgerSize(ctx);
      const item = (data: Buffer): { item: LedgerEntry | WithheldEntry; cost: number } => {
        const e = decodeEntry(data);
        const it: LedgerEntry | WithheldEntry = s.sees(e) ? e : { index: e.index, leafHash: leafHash(data).toString('hex'), withheld: true };
        return { item: it, cost: 'withheld' in it ? WITHHELD_BYTES : data.length + 1 };
      };
      if (query.imvu) {
        // Through the per-IMVU index: what this costs follows the IMVU's history, not the log's.
        await mustExist(ctx, query.imvu);
        const lo = Math.min(query.from ?? 0, size);
        const hi = Math.max(lo, Math.min(query.to ?? size, size));
        const db = ctx.platform.store;
        if (query.newest !== undefined) {
          // The newest `newest` entries about the IMVU below `to`, oldest first; `from` is where they start
          // (the lower bound asked for when there are no more, so a client knows it reached the end).
          const idx = await entriesAbout(db, query.imvu, lo, hi, query.newest, 'newest');
          const out: (LedgerEntry | WithheldEntry)[] = [];
          let bytes = 0;
          for (const { data } of (await readEntriesAt(db, idx)).reverse()) {
            const { item: it, cost } = item(data);
            if (out.length && bytes + cost > MAX_PAGE_BYTES) break;
            bytes += cost;
            out.push(it);
          }
          const full = out.length < idx.length || idx.length === query.newest;
          const from = full && out.length ? out[out.length - 1]!.index : lo;
          return { body: { entries: out.reverse(), size, from, to: hi, ...(hi < size ? { next: hi } : {}) } };
        }
        const idx = await entriesAbout(db, query.imvu, lo, hi, MAX_ENTRIES_PER_CALL, 'oldest');
        const entries: (LedgerEntry | WithheldEntry)[] = [];
        let bytes = 0;
        let to = idx.length === MAX_ENTRIES_PER_CALL ? idx[idx.length - 1]! + 1 : hi;
        for (const { idx: i, data } of await readEntriesAt(db, idx)) {
          const { item: it, cost } = item(data);
          if (entries.length && bytes + cost > MAX_PAGE_BYTES) {
            to = i;
            break;
          }
          bytes += cost;
          entries.push(it);
        }
        return { body: { entries, size, from: lo, to, ...(to < size ? { next: to } : {}) } };
      }
      const from = Math.min(query.from ?? 0, size);
      let to = Math.min(query.to ?? size, size, from + MAX_ENTRIES_PER_CALL);
      const raw = await ctx.platform.store.readEntries(from, to);
      const entries: (LedgerEntry | WithheldEntry)[] = [];
      let bytes = 0;
      for (let i = 0; i < raw.length; i++) {
        const { item: it, cost } = item(raw[i]!);
        // The page ends before the entry that would take it past the budget (never before the first).
        if (entries.length && bytes + cost > MAX_PAGE_BYTES) {
          to = from + i;
          break;
        }
        bytes += cost;
        entries.push(it);
      }
      return { body: { entries, size, from, to, ...(to < size ? { next: to } : {}) } };
    },
  ),
  // ---- the ledger as C2SP tlog-tiles (src/api/tlog.ts): tiles and the checkpoint public, entry bundles by the read rules
  pub('/tlog/checkpoint', 'C2SP tlog-tiles: the latest signed checkpoint, the same note as /v1/ledger/checkpoint', { produces: 'text/plain' }, async (ctx) => ({
    ...(await checkpointReply(ctx)),
    headers: { 'cache-control': TLOG_CHECKPOINT_CACHE },
  })),
  pub(
    '/tlog/tile/*',
    'C2SP tlog-tiles: hash tile tile/<L>/<N>[.p/<W>] (height 8: 256 hashes of 32 bytes; N in x-prefixed 3-digit groups); full tiles are immutable',
    { params: Params.tile, produces: 'application/octet-stream' },
    async (ctx, { params }) => hashTileReply(ctx, params['*']),
  ),
  read(
    '/tlog/tile/entries/*',
    'C2SP tlog-tiles: entry bundle tile/entries/<N>[.p/<W>] (each entry as a big-endian uint16 length and its canonical bytes); an admin reads any, another identity only a bundle of entries it may all see (else 403: /v1/ledger/entries gives the others as leaf hashes)',
    { params: Params.tile, produces: 'application/octet-stream' },
    async (ctx, { params, scope }) => bundleReply(ctx, params['*'], await scope()),
  ),
  pub('/v1/ledger/proof/inclusion', 'RFC 9162 inclusion proof of entry `index` in the tree of `size` entries', { query: Queries.inclusion }, async (ctx, { query }) => {
    const current = await ledgerSize(ctx);
    const size = query.size ?? current;
    if (size > current) throw new HttpError(400, `size ${size} is beyond the ledger (${current} entries)`);
    if (query.index >= size) throw new HttpError(400, `index ${query.index} is not below size ${size}`);
    const [data] = await ctx.platform.store.readEntries(query.index, query.index + 1);
    const proof = ctx.platform.chokepoint.ledger.inclusionProof(query.index, size);
    return { body: { index: query.index, size, leafHash: leafHash(data!).toString('hex'), proof: proof.map((h) => h.toString('hex')) } };
  }),
  pub('/v1/ledger/proof/consistency', 'RFC 9162 consistency proof between tree sizes `from` and `to`', { query: Queries.consistency }, async (ctx, { query }) => {
    const current = await ledgerSize(ctx);
    const to = query.to ?? current;
    if (to > current) throw new HttpError(400, `to ${to} is beyond the ledger (${current} entries)`);
    if (query.from > to) throw new HttpError(400, `from ${query.from} is after to ${to}`);
    const proof = ctx.platform.chokepoint.ledger.consistencyProof(query.from, to);
    return { body: { from: query.from, to, proof: proof.map((h) => h.toString('hex')) } };
  }),
  read(
    '/v1/statements/:imvu/:period',
    "The 55-45 statement of an IMVU for a month (amounts in minor units, as decimal strings), from the running totals; `closedBy` is the period.close entry that sealed a closed period's totals, else null",
    { params: Params.statement },
    async (ctx, { params, scope }) => {
      await mayReadImvu(ctx, await scope(), params.imvu);
      const db = ctx.platform.store;
      let s;
      try {
        s = await statementFromTotals(db, params.imvu, params.period);
      } catch (err) {
        throw new HttpError(409, (err as Error).message);
      }
      const sealed = await sealedStatement(db, params.imvu, params.period);
      if (!sealed) return { body: { ...statementToJson(s), closedBy: null } };
      // A closed period's totals are the sealed ones; gate 6 admitted the seal only if they were these.
      const diff = sealed.totals && sealedDifference(sealed.totals, sealedTotals(s));
      if (diff) throw new HttpError(409, `the sealed statement of ${params.imvu} ${params.period} (ledger entry ${sealed.closedBy}) differs from the running totals: ${diff}; run \`nexus audit verify\``);
      return { body: { ...statementToJson(s), ...(sealed.totals ? { ...sealed.totals } : {}), closedBy: sealed.closedBy } };
    },
  ),
];

/**
 * A stored checkpoint by its tree size: every batch saved one, so a receipt's checkpoint can be
 * fetched again by size (witness cosignatures will be added here).
 */
async function checkpointAt(ctx: ApiContext, size: number): Promise<Reply> {
  const served = await servedCheckpoint(ctx, size);
  if (served === undefined) throw new HttpError(404, `no checkpoint was saved at tree size ${size}`);
  return { body: served.note, contentType: 'text/plain; charset=utf-8' };
}

async function notifications(ctx: ApiContext, by: 'imvu' | 'recipient', value: string) {
  return ctx.platform.store.all(`SELECT entry, recipient, imvu, about, gate, message, at, source FROM notifications WHERE ${by} = ? ORDER BY entry`, [value]);
}

/** Per store: the newest allowed ledger.snapshot and the log size it was looked for up to (later requests read only newer entries). */
const snapshotSeen = new WeakMap<object, { upTo: number; found: { index: number; digest: string } | undefined }>();

async function newestSnapshot(store: import('../core/store/index.ts').Store): Promise<{ index: number; digest: string } | undefined> {
  const size = await store.ledgerSize();
  let seen = snapshotSeen.get(store);
  if (!seen) {
    const { newestSnapshotEntry } = await import('../core/policy/verify.ts');
    const index = await newestSnapshotEntry(store, size);
    seen = { upTo: size, found: undefined };
    if (index !== undefined) {
      const [data] = await store.readEntries(index, index + 1);
      seen.found = { index, digest: String((decodeEntry(data!).command.command.body as { digest?: unknown }).digest) };
    }
    snapshotSeen.set(store, seen);
  }
  for (let from = seen.upTo; from < size; from += 1000) {
    const to = Math.min(size, from + 1000);
    for (const [i, data] of (await store.readEntries(from, to)).entries()) {
      const e = decodeEntry(data);
      if (e.command?.command?.type === 'ledger.snapshot' && e.decision?.allowed) seen.found = { index: from + i, digest: String((e.command.command.body as { digest?: unknown }).digest) };
    }
  }
  seen.upTo = Math.max(seen.upTo, size);
  return seen.found;
}
