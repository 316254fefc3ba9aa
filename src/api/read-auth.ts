// Signed reads: RFC 9421 HTTP Message Signatures with a registered identity's Ed25519 key.
//
// The signature base (RFC 9421 section 2.5) is built by the `http-message-signatures` library; the
// structured fields are parsed with `structured-headers`. What is accepted is decided here, and it
// is deliberately narrow: exactly one signature, `alg="ed25519"`, `keyid` = an identity id, a
// `created` time within READ_WINDOW_SECONDS of the daemon's clock, a `nonce` that is spent on first
// use, and covered components that include `@method` and either `@target-uri` or `@path` + `@query`.
import { createHash, randomBytes, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto';
import { httpbis } from 'http-message-signatures';
import { isInnerList, parseDictionary, serializeInnerList, type InnerList, type Item } from 'structured-headers';
import { cachedPublicKey, isIdentityId } from '../core/identity/keys.ts';
import type { Role } from '../core/types.ts';

/** How far `created` may be from the daemon's clock, either way (seconds). */
export const READ_WINDOW_SECONDS = 60;
/** Nonces remembered at once; past that (after dropping the expired ones) signed reads get 429. */
export const MAX_REMEMBERED_NONCES = 100_000;
/** The components the CLI covers, and the Accept-Signature the daemon sends with a 401. */
export const READ_COMPONENTS = ['@method', '@authority', '@path', '@query'] as const;
export const ACCEPT_SIGNATURE = 'sig1=("@method" "@authority" "@path" "@query");created;keyid;nonce;alg="ed25519"';

const DERIVED = new Set(['@method', '@target-uri', '@authority', '@scheme', '@request-target', '@path', '@query']);
const PARAMS = new Set(['created', 'expires', 'nonce', 'alg', 'keyid', 'tag']);
const MAX_COMPONENTS = 16;
const NONCE_RE = /^[A-Za-z0-9_~.+/=-]{16,128}$/;
const HEADER_NAME_RE = /^[a-z0-9][a-z0-9-]{0,63}$/;

export interface Reader {
  id: string;
  name: string;
  role: Role;
}

/** A read that must be signed was not, or not acceptably: always answered 401 (429 for `busy`). */
export class ReadAuthError extends Error {
  constructor(
    message: string,
    readonly statusCode: 401 | 429 = 401,
  ) {
    super(message);
    this.name = 'ReadAuthError';
  }
}

export interface IncomingRead {
  method: string;
  /** The request target as received: path and query. */
  url: string;
  /** `http` or `https`, as the daemon was reached. */
  scheme: string;
  headers: Record<string, string | string[] | undefined>;
}

type IdentityLookup = (id: string) => Promise<{ name: string; role: string; publicKey: string } | undefined>;

const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v.join(', ') : v);

function fail(message: string): never {
  throw new ReadAuthError(message);
}

function parse(name: string, value: string) {
  try {
    return parseDictionary(value);
  } catch (err) {
    return fail(`the ${name} header is not a structured field dictionary (RFC 8941): ${(err as Error).message.slice(0, 120)}`);
  }
}

/** The covered components, checked: plain lowercase names without parameters, no duplicates. */
function components(items: Item[]): string[] {
  if (items.length > MAX_COMPONENTS) fail(`at most ${MAX_COMPONENTS} covered components`);
  const names: string[] = [];
  for (const [value, params] of items) {
    if (typeof value !== 'string') fail('a covered component must be a string such as "@method"');
    if (params.size) fail(`covered component "${value.slice(0, 40)}" has parameters; none are accepted`);
    if (value.startsWith('@') ? !DERIVED.has(value) : !HEADER_NAME_RE.test(value) || value === 'signature' || value === 'signature-input')
      fail(`covered component "${value.slice(0, 40)}" is not accepted`);
    if (names.includes(value)) fail(`covered component "${value}" is listed twice`);
    names.push(value);
  }
  if (!names.includes('@method')) fail('the signature must cover "@method"');
  if (!names.includes('@target-uri') && !(names.includes('@path') && names.includes('@query')))
    fail('the signature must cover "@target-uri", or "@path" and "@query"');
  return names;
}

/**
 * Verifies the signed reads of registered identities. One instance per daemon: it remembers the
 * nonces spent within the window, so a captured signed request cannot be replayed to this daemon.
 */
export class ReadVerifier {
  private readonly nonces = new Map<string, number>();

  constructor(
    private readonly lookup: IdentityLookup,
    private readonly opts: { now?: () => number; windowSeconds?: number; maxNonces?: number } = {},
  ) {}

  private now(): number {
    return Math.floor((this.opts.now?.() ?? Date.now()) / 1000);
  }

  /** Whether the request carries a signature at all (a read without one is anonymous). */
  static isSigned(req: Pick<IncomingRead, 'headers'>): boolean {
    return req.headers['signature-input'] !== undefined || req.headers['signature'] !== undefined;
  }

  /** The identity that signed this read; throws ReadAuthError when it is not acceptably signed. */
  async verify(req: IncomingRead): Promise<Reader> {
    const inputHeader = one(req.headers['signature-input']);
    const sigHeader = one(req.headers['signature']);
    if (inputHeader === undefined && sigHeader === undefined)
      fail('this read must be signed by a registered identity (RFC 9421 HTTP Message Signature, alg ed25519, keyid = the identity id; see docs/API.md)');
    if (inputHeader === undefined || sigHeader === undefined) fail('Signature-Input and Signature must be sent together');
    const inputs = parse('Signature-Input', inputHeader);
    const sigs = parse('Signature', sigHeader);
    if (inputs.size !== 1 || sigs.size !== 1) fail('exactly one signature is accepted per read');
    const [label, input] = [...inputs.entries()][0]!;
    const sigItem = sigs.get(label);
    if (!sigItem) fail(`the Signature header has no signature labelled "${label}"`);
    if (!isInnerList(input)) fail('the Signature-Input member must be an inner list of covered components');
    if (isInnerList(sigItem) || !(sigItem[0] instanceof ArrayBuffer)) fail('the signature must be a byte sequence (:base64:)');
    const signature = Buffer.from(sigItem[0]);
    if (signature.length !== 64) fail('an Ed25519 signature is 64 bytes');

    const covered = components(input[0]);
    const params = input[1];
    for (const k of params.keys()) if (!PARAMS.has(k)) fail(`signature parameter "${k.slice(0, 40)}" is not accepted`);
    const alg = params.get('alg');
    const keyid = params.get('keyid');
    const created = params.get('created');
    const expires = params.get('expires');
    const nonce = params.get('nonce');
    if (alg !== 'ed25519') fail('the signature must declare alg="ed25519"');
    if (typeof keyid !== 'string' || !isIdentityId(keyid)) fail('keyid must be the id of a registered identity (nx1...)');
    if (typeof created !== 'number' || !Number.isInteger(created)) fail('the signature must carry created (an integer UNIX time)');
    if (typeof nonce !== 'string' || !NONCE_RE.test(nonce)) fail('the signature must carry a nonce of 16-128 characters');
    if (expires !== undefined && (typeof expires !== 'number' || !Number.isInteger(expires))) fail('expires must be an integer UNIX time');
    const window = this.opts.windowSeconds ?? READ_WINDOW_SECONDS;
    const now = this.now();
    if (Math.abs(now - created) > window) fail(`the signature was created ${now - created} s from the daemon's clock; at most ${window} s either way are accepted`);
    if (typeof expires === 'number' && now > expires) fail('the signature has expired');

    const who = await this.lookup(keyid);
    if (!who) fail(`keyid ${keyid} is not a registered identity`);

    const host = one(req.headers.host);
    let target: string;
    try {
      // Origin-form only ("/path?query"): a target that URL resolution could move to another host is refused.
      if (!req.url.startsWith('/') || req.url.startsWith('//') || !host) throw new Error('not origin-form');
      target = new URL(`${req.scheme}://${host}${req.url}`).href;
    } catch {
      return fail('the request target and Host do not form a URL');
    }
    let base: string;
    try {
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers[k] = v;
      const lines = httpbis.createSignatureBase({ fields: covered.map((c) => JSON.stringify(c)) }, { method: req.method, url: target, headers });
      lines.push(['"@signature-params"', [serializeInnerList(input as InnerList)]]);
      base = httpbis.formatSignatureBase(lines);
    } catch (err) {
      return fail(`cannot build the signature base: ${(err as Error).message.slice(0, 120)}`);
    }
    let ok = false;
    try {
      ok = edVerify(null, Buffer.from(base), cachedPublicKey(who.publicKey), signature);
    } catch {
      ok = false;
    }
    if (!ok) fail(`the signature does not verify with the key of ${keyid} over this request`);
    this.spend(keyid, nonce, Math.max(created, now) + window);
    return { id: keyid, name: who.name, role: who.role as Role };
  }

  /** Spends a nonce: a second use within the window is a replay. Only verified signatures get here. */
  private spend(keyid: string, nonce: string, until: number): void {
    const key = createHash('sha256').update(`${keyid}\n${nonce}`).digest('base64');
    const now = this.now();
    const seen = this.nonces.get(key);
    if (seen !== undefined && seen >= now) fail('this signed read was already used (its nonce is spent); sign every request anew');
    const max = this.opts.maxNonces ?? MAX_REMEMBERED_NONCES;
    if (this.nonces.size >= max) {
      for (const [k, exp] of this.nonces) if (exp < now) this.nonces.delete(k);
      if (this.nonces.size >= max) throw new ReadAuthError('too many signed reads in the last minute; try again shortly', 429);
    }
    this.nonces.set(key, until);
  }
}

export interface SignedReadHeaders {
  'signature-input': string;
  signature: string;
}

/**
 * Signs a read as the identity `keyid` (RFC 9421): covers `@method`, `@authority`, `@path` and
 * `@query` of `url` (absolute), with `created`, a fresh `nonce`, `keyid` and `alg="ed25519"`.
 */
export function signRead(key: KeyObject, keyid: string, method: string, url: string, opts: { created?: number; nonce?: string; label?: string } = {}): SignedReadHeaders {
  const created = opts.created ?? Math.floor(Date.now() / 1000);
  const nonce = opts.nonce ?? randomBytes(18).toString('base64url');
  const label = opts.label ?? 'sig1';
  const input: InnerList = [READ_COMPONENTS.map((c) => [c, new Map()] as Item), new Map<string, string | number>([['created', created], ['keyid', keyid], ['nonce', nonce], ['alg', 'ed25519']])];
  const params = serializeInnerList(input);
  const lines = httpbis.createSignatureBase({ fields: READ_COMPONENTS.map((c) => JSON.stringify(c)) }, { method, url, headers: {} });
  lines.push(['"@signature-params"', [params]]);
  const sig = edSign(null, Buffer.from(httpbis.formatSignatureBase(lines)), key);
  return { 'signature-input': `${label}=${params}`, signature: `${label}=:${sig.toString('base64')}:` };
}
