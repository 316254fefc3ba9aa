// A small HTTP client for the daemon (docs/API.md). Maps transport failures to exit 3 and the
// daemon's refusals to exit 1 (policy), 2 (malformed request) or 7 (not found), always as one line.
import { CliError, EXIT, oneLine } from './errors.ts';
import { canonicalJson } from '../core/ledger/canonical.ts';
import type { GateResult, SignedCommand } from '../core/types.ts';
import type { KeyObject } from 'node:crypto';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import { signRead } from '../api/read-auth.ts';

/** Bytes of a download handed on at a time (see download()). */
const DOWNLOAD_PIECE = 1 << 20;
/** Bytes of a download between two flushes to the disk begun while it goes on (see download()). */
const FLUSH_EVERY = 64 << 20;

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
    code: typeof EXIT.denied | typeof EXIT.usage | typeof EXIT.notFound,
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

/** The most a daemon's answer may hold (the largest is a page of the audit log). */
const MAX_RESPONSE_BYTES = 128 * 1024 * 1024;

/** What the client reads of an HTTP answer. */
interface Answer {
  ok: boolean;
  status: number;
  statusText: string;
  text(): Promise<string>;
}

/**
 * One HTTP exchange over node:http (node:https for an https URL) on a fresh connection. Not
 * fetch: loading its implementation (undici) costs a short command more than everything else it
 * loads, and a fresh connection needs no retry when a daemon restarted meanwhile.
 */
async function exchange(url: string, method: string, headers: Record<string, string>, body: string | undefined, timeoutMs: number, ca?: string): Promise<Answer> {
  const u = new URL(url);
  const https = u.protocol === 'https:';
  const request = https ? (await import('node:https')).request : httpRequest;
  const opts: RequestOptions & { ca?: string[] } = {
    method,
    agent: false,
    headers: body === undefined ? headers : { ...headers, 'content-length': String(Buffer.byteLength(body)) },
    // The certificates to trust besides the system's (--ca / NEXUS_CA): e.g. a daemon's self-signed one.
    ...(https && ca !== undefined ? { ca: [...(await import('node:tls')).rootCertificates, ca] } : {}),
  };
  return new Promise((resolve, reject) => {
    const req = request(u, opts, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const text = new Promise<string>((done, fail) => {
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_RESPONSE_BYTES) {
            res.destroy();
            fail(new Error(`the answer is larger than ${MAX_RESPONSE_BYTES} bytes`));
          } else chunks.push(c);
        });
        res.on('end', () => done(Buffer.concat(chunks).toString('utf8')));
        res.on('error', fail);
      });
      text.catch(() => undefined);
      const status = res.statusCode ?? 0;
      resolve({ ok: status >= 200 && status < 300, status, statusText: res.statusMessage ?? '', text: () => text });
    });
    req.setTimeout(timeoutMs, () => req.destroy(Object.assign(new Error('no answer in time'), { name: 'TimeoutError' })));
    req.on('error', reject);
    req.end(body);
  });
}

function transportReason(err: unknown): string {
  const e = err as { name?: string; message?: string; code?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return 'no answer in time';
  const code = e?.code ?? e?.cause?.code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'host not found';
  if (code === 'ECONNRESET') return 'connection reset';
  if (typeof code === 'string' && /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(code))
    return `its TLS certificate is not trusted: ${e?.message ?? code}; give its CA with --ca FILE or NEXUS_CA`;
  if (code === 'EPROTO' || code === 'ERR_SSL_WRONG_VERSION_NUMBER') return `TLS failed (is it an http:// daemon?): ${e?.message ?? code}`;
  return e?.cause?.message ?? e?.message ?? String(err);
}

export interface ClientOptions {
  /** A PEM file of certificate authorities to trust for an https URL, besides the system's. */
  caFile?: string;
}

export class Client {
  readonly url: string;
  private ca: string | undefined;
  constructor(
    url: string,
    private readonly timeoutMs = 30_000,
    private readonly options: ClientOptions = {},
  ) {
    this.url = normaliseUrl(url);
  }

  private async trusted(): Promise<string | undefined> {
    const file = this.options.caFile;
    if (file === undefined || this.ca !== undefined) return this.ca;
    const { readFileSync } = await import('node:fs');
    try {
      this.ca = readFileSync(file, 'utf8');
    } catch (err) {
      throw new CliError(`cannot read the CA file ${file} (--ca / NEXUS_CA): ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`, EXIT.usage);
    }
    if (!this.ca.includes('-----BEGIN CERTIFICATE-----')) throw new CliError(`the CA file ${file} (--ca / NEXUS_CA) holds no PEM certificate`, EXIT.usage);
    return this.ca;
  }

  private async request(method: string, path: string, body?: unknown, as?: ReadSigner): Promise<Answer> {
    // Reads are signed per request (a fresh nonce each time).
    let headers: Record<string, string> = as ? { accept: 'application/json', ...signRead(as.key, as.id, method, this.url + path) } : { accept: 'application/json' };
    let payload: string | undefined;
    if (body !== undefined) {
      // Commands go on the wire in their canonical (JCS) form: the bytes the signature covers and the ledger stores.
      payload = canonicalJson(body);
      headers = { accept: 'application/json', 'content-type': 'application/json' };
    }
    const ca = await this.trusted();
    try {
      return await exchange(this.url + path, method, headers, payload, this.timeoutMs, ca);
    } catch (err) {
      throw new CliError(
        `cannot reach the daemon at ${this.url} (${transportReason(err)}); start it with \`nexus start\` or point --server / NEXUS_URL at it`,
        EXIT.unreachable,
      );
    }
  }

  private async fail(res: Answer, what: string): Promise<never> {
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
    // The IMVU, zone, identity or entry named does not exist: its own exit code, recorded or not
    // (a signed command naming an unknown IMVU is recorded as denied by gate 0).
    if (res.status === 404) throw new ApiError(`not found: ${reason}${recorded ? ` (recorded as ledger entry ${body.index})` : ''}`, EXIT.notFound, res.status, body);
    if (recorded || res.status === 403 || res.status === 401) {
      throw new ApiError(`denied: ${reason}${recorded ? ` (recorded as ledger entry ${body.index})` : ''}`, EXIT.denied, res.status, body);
    }
    if (res.status === 400 || res.status === 413 || res.status === 422) {
      throw new ApiError(`${what} was rejected as malformed: ${reason}`, EXIT.usage, res.status, body);
    }
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

  /**
   * GET a file (e.g. an exit archive) straight to `file`: written to a temp name, fsynced and renamed,
   * so an interrupted download never leaves a file under the final name. Signed like get().
   */
  async download(
    path: string,
    file: string,
    as?: ReadSigner,
    onBytes?: (received: number, total: number | undefined) => void,
    tee?: NodeJS.WritableStream,
  ): Promise<{ bytes: number; headers: Record<string, string | string[] | undefined> }> {
    const { createWriteStream, renameSync, rmSync, openSync, fsyncSync, closeSync, fdatasync } = await import('node:fs');
    const u = new URL(this.url + path);
    const request = u.protocol === 'https:' ? (await import('node:https')).request : httpRequest;
    const ca = await this.trusted();
    const headers = as ? { accept: '*/*', ...signRead(as.key, as.id, 'GET', this.url + path) } : { accept: '*/*' };
    const partial = `${file}.partial`;
    const tlsCa = u.protocol === 'https:' && ca !== undefined ? { ca: [...(await import('node:tls')).rootCertificates, ca] } : {};
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(u, { method: 'GET', agent: false, headers, ...tlsCa }, resolve);
      req.setTimeout(this.timeoutMs, () => req.destroy(Object.assign(new Error('no answer in time'), { name: 'TimeoutError' })));
      req.on('error', (err) => reject(new CliError(`cannot reach the daemon at ${this.url} (${transportReason(err)})`, EXIT.unreachable)));
      req.end();
    });
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      const chunks: Buffer[] = [];
      for await (const c of res) if (chunks.length < 64) chunks.push(c as Buffer);
      const text = Buffer.concat(chunks).toString('utf8');
      return this.fail({ ok: false, status, statusText: res.statusMessage ?? '', text: async () => text }, `GET ${path}`);
    }
    const total = Number(res.headers['content-length']) || undefined;
    let bytes = 0;
    const out = createWriteStream(partial, { mode: 0o600, highWaterMark: 4 << 20 });
    try {
      // The socket gives at most 64 KiB at a time: gathered into 1 MiB pieces before they go to
      // the file and to `tee` (a verification reading the bytes as they arrive), whose per-piece
      // costs (a write, a gunzip round trip on the thread pool, a tar parse) then come 16 times
      // less often. The slower of the two sets the pace.
      // As with pipe(): an error of `tee` (a verification that gave up) stops only what goes to it,
      // the file's own error fails the download.
      let sinks: NodeJS.WritableStream[] = tee ? [out, tee] : [out];
      let failed: Error | undefined;
      out.on('error', (err) => (failed ??= err));
      const drop = () => (sinks = sinks.filter((w) => w !== tee));
      tee?.on('error', drop);
      tee?.on('close', drop);
      const drained = (w: NodeJS.WritableStream) =>
        new Promise<void>((r) => {
          const done = () => {
            w.off('drain', done).off('error', done).off('close', done);
            r();
          };
          w.on('drain', done).on('error', done).on('close', done);
        });
      // The file flushed to the disk every FLUSH_EVERY bytes while the rest arrives (as the
      // daemon's build does, src/imvu/exit/pack.ts: the kernel would start only past GiBs of dirty pages): the fsync before the rename then has little left.
      let unflushed = 0;
      let flushing: Promise<void> | undefined;
      const send = async (piece: Buffer) => {
        await Promise.all(sinks.filter((w) => !w.write(piece)).map(drained));
        if (failed) throw failed;
        unflushed += piece.length;
        const fd = (out as unknown as { fd: number | null }).fd;
        if (unflushed >= FLUSH_EVERY && !flushing && typeof fd === 'number') {
          unflushed = 0;
          flushing = new Promise<void>((r) =>
            fdatasync(fd, (err) => {
              if (err) failed ??= err;
              flushing = undefined;
              r();
            }),
          );
        }
      };
      let held: Buffer[] = [];
      let heldBytes = 0;
      for await (const c of res as AsyncIterable<Buffer>) {
        bytes += c.length;
        onBytes?.(bytes, total);
        held.push(c);
        heldBytes += c.length;
        if (heldBytes < DOWNLOAD_PIECE) continue;
        const piece = held.length === 1 ? held[0]! : Buffer.concat(held, heldBytes);
        held = [];
        heldBytes = 0;
        await send(piece);
      }
      if (heldBytes) await send(held.length === 1 ? held[0]! : Buffer.concat(held, heldBytes));
      tee?.end();
      await flushing;
      await new Promise<void>((resolve, reject) => {
        if (failed) return reject(failed);
        out.once('error', reject);
        out.once('finish', resolve);
        out.end();
      });
      if (total !== undefined && bytes !== total) throw new CliError(`the download of ${path} stopped after ${bytes} of ${total} bytes`, EXIT.unreachable);
      const fd = openSync(partial, 'r');
      fsyncSync(fd);
      closeSync(fd);
      renameSync(partial, file);
    } catch (err) {
      rmSync(partial, { force: true });
      throw err;
    }
    return { bytes, headers: res.headers };
  }

  /** PUTs a file's bytes (application/octet-stream), streamed, in a request signed like get(); resolves with the JSON answer. */
  async upload<T>(path: string, file: string, as: ReadSigner, onBytes?: (sent: number, total: number) => void): Promise<T> {
    const { createReadStream, statSync } = await import('node:fs');
    const u = new URL(this.url + path);
    const request = u.protocol === 'https:' ? (await import('node:https')).request : httpRequest;
    const ca = await this.trusted();
    const total = statSync(file).size;
    const headers = { accept: 'application/json', 'content-type': 'application/octet-stream', 'content-length': String(total), ...signRead(as.key, as.id, 'PUT', this.url + path) };
    const tlsCa = u.protocol === 'https:' && ca !== undefined ? { ca: [...(await import('node:tls')).rootCertificates, ca] } : {};
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(u, { method: 'PUT', agent: false, headers, ...tlsCa }, resolve);
      // The daemon verifies the whole archive before it answers: no timeout on the answer.
      req.on('error', (err) => reject(new CliError(`cannot reach the daemon at ${this.url} (${transportReason(err)})`, EXIT.unreachable)));
      let sent = 0;
      createReadStream(file)
        .on('data', (c) => {
          sent += (c as Buffer).length;
          onBytes?.(sent, total);
        })
        .on('error', (err) => req.destroy(err))
        .pipe(req);
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of res) {
      size += (c as Buffer).length;
      if (size > MAX_RESPONSE_BYTES) throw new CliError(`the answer is larger than ${MAX_RESPONSE_BYTES} bytes`, EXIT.unreachable);
      chunks.push(c as Buffer);
    }
    const text = Buffer.concat(chunks).toString('utf8');
    const status = res.statusCode ?? 0;
    const answer: Answer = { ok: status >= 200 && status < 300, status, statusText: res.statusMessage ?? '', text: async () => text };
    if (!answer.ok) return this.fail(answer, `PUT ${path}`);
    return (await this.json(answer, `PUT ${path}`)) as T;
  }

  private async json(res: Answer, what: string): Promise<unknown> {
    const text = await res.text();
    try {
      return JSON.parse(text);
    } catch {
      throw new CliError(`the daemon answered ${what} with something that is not JSON`, EXIT.denied);
    }
  }
}
