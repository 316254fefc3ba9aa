// A small HTTP client for the daemon (docs/API.md). Maps transport failures to exit 3 and the
// daemon's refusals to exit 1 (policy) or 2 (malformed request), always as one line.
import { CliError, EXIT, oneLine } from './errors.ts';
import { canonicalJson } from '../core/ledger/canonical.ts';
import type { GateResult, SignedCommand } from '../core/types.ts';
import type { KeyObject } from 'node:crypto';
import { signRead } from '../api/read-auth.ts';

export const DEFAULT_URL = 'http://127.0.0.1:7600';

export interface Receipt {
  index: number;
  allowed: boolean;
  gates: GateResult[];
  followUps?: Receipt[];
  [k: string]: unknown;
}

export interface ErrorBody {
  error?: string;
  index?: number;
  gates?: GateResult[];
}

/** A refusal by the daemon; `body` is its JSON error document when it sent one. */
export class ApiError extends CliError {
  constructor(
    message: string,
    code: typeof EXIT.denied | typeof EXIT.usage,
    readonly status: number,
    readonly body: ErrorBody,
  ) {
    super(message, code);
    this.name = 'ApiError';
  }
}

/** Who signs a read (RFC 9421): a registered identity's id and private key. */
export interface ReadSigner {
  id: string;
  key: KeyObject;
}

export function normaliseUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new CliError(`'${raw}' is not a URL (expected e.g. ${DEFAULT_URL})`, EXIT.usage);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CliError(`'${raw}' is not an http(s) URL`, EXIT.usage);
  return u.origin + u.pathname.replace(/\/+$/, '');
}

function transportReason(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'no answer in time';
  const code = e?.cause?.code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'host not found';
  if (code === 'ECONNRESET') return 'connection reset';
  return e?.cause?.message ?? e?.message ?? String(err);
}

export class Client {
  readonly url: string;
  constructor(
    url: string,
    private readonly timeoutMs = 30_000,
  ) {
    this.url = normaliseUrl(url);
  }

  private async request(method: string, path: string, body?: unknown, as?: ReadSigner): Promise<Response> {
    const init: RequestInit = { method, signal: AbortSignal.timeout(this.timeoutMs), headers: { accept: 'application/json' } };
    // Reads are signed per request (a fresh nonce each time), so a retry below signs again.
    const sign = () => (as ? { accept: 'application/json', ...signRead(as.key, as.id, method, this.url + path) } : { accept: 'application/json' });
    init.headers = sign();
    if (body !== undefined) {
      // Commands go on the wire in their canonical (JCS) form: the bytes the signature covers and the ledger stores.
      init.body = canonicalJson(body);
      init.headers = { accept: 'application/json', 'content-type': 'application/json' };
    }
    try {
      try {
        return await fetch(this.url + path, init);
      } catch (err) {
        // A pooled keep-alive connection the daemon has since closed (e.g. it restarted): reads are
        // safe to repeat once on a fresh connection. Commands are never resent.
        if (method !== 'GET' || (err as { cause?: { code?: string } }).cause?.code !== 'UND_ERR_SOCKET') throw err;
        return await fetch(this.url + path, { ...init, headers: body === undefined ? sign() : init.headers, signal: AbortSignal.timeout(this.timeoutMs) });
      }
    } catch (err) {
      throw new CliError(
        `cannot reach the daemon at ${this.url} (${transportReason(err)}); start it with \`nexus start\` or point --server / NEXUS_URL at it`,
        EXIT.unreachable,
      );
    }
  }

  private async fail(res: Response, what: string): Promise<never> {
    let text = '';
    try {
      text = await res.text();
    } catch {
      // the status alone will do
    }
    let body: ErrorBody = {};
    try {
      body = JSON.parse(text) as ErrorBody;
    } catch {
      body = { error: text.slice(0, 300) || res.statusText };
    }
    const reason = oneLine(body.error ?? `HTTP ${res.status}`);
    const recorded = typeof body.index === 'number';
    if (recorded || res.status === 403 || res.status === 401) {
      throw new ApiError(`denied: ${reason}${recorded ? ` (recorded as ledger entry ${body.index})` : ''}`, EXIT.denied, res.status, body);
    }
    if (res.status === 400 || res.status === 413 || res.status === 422) {
      throw new ApiError(`${what} was rejected as malformed: ${reason}`, EXIT.usage, res.status, body);
    }
    if (res.status === 404) throw new ApiError(`not found: ${reason}`, EXIT.denied, res.status, body);
    if (res.status === 409) throw new ApiError(`the daemon cannot answer ${what}: ${reason}`, EXIT.denied, res.status, body);
    throw new ApiError(`the daemon failed on ${what} (HTTP ${res.status}): ${reason}`, EXIT.denied, res.status, body);
  }

  /** GET, signed by `as` when given (private data needs a signed read; public reads need none). */
  async get<T>(path: string, query: Record<string, string | number | undefined> = {}, as?: ReadSigner): Promise<T> {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined) q.set(k, String(v));
    const full = q.size ? `${path}?${q}` : path;
    const res = await this.request('GET', full, undefined, as);
    if (!res.ok) return this.fail(res, `GET ${path}`);
    return (await this.json(res, `GET ${path}`)) as T;
  }

  async getText(path: string, as?: ReadSigner): Promise<string> {
    const res = await this.request('GET', path, undefined, as);
    if (!res.ok) return this.fail(res, `GET ${path}`);
    return res.text();
  }

  /** Sends one signed command; resolves with the receipt when the daemon allowed it. */
  async submit<T extends Receipt = Receipt>(method: 'POST' | 'PUT' | 'DELETE', path: string, signed: SignedCommand): Promise<T> {
    const res = await this.request(method, path, signed);
    if (!res.ok) return this.fail(res, `${signed.command.type}`);
    return (await this.json(res, signed.command.type)) as T;
  }

  private async json(res: Response, what: string): Promise<unknown> {
    const text = await res.text();
    try {
      return JSON.parse(text);
    } catch {
      throw new CliError(`the daemon answered ${what} with something that is not JSON`, EXIT.denied);
    }
  }
}
