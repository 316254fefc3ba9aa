// The log's side of C2SP tlog-witness: ask a witness to cosign a checkpoint, and check what it says.
// Every answer becomes a typed result; nothing a witness sends can make this throw or hang (the
// whole exchange has one deadline and the response body is bounded).
import { formatAddCheckpointRequest, parseSize } from './request.ts';
import { parseCosignerVerifierKey, parseSignatureLines, verifyCosignature } from './cosignature.ts';

export { verifyCosignature } from './cosignature.ts';

const MAX_RESPONSE_BYTES = 64 * 1024;

export type CosignatureRefusal =
  /** 409: the witness's latest cosigned size differs from the old size sent (or, at the same size, the root differs). */
  | { ok: false; kind: 'conflict'; knownSize: number; message: string }
  /** 422: the consistency proof did not verify against what the witness cosigned before. */
  | { ok: false; kind: 'unprocessable'; message: string }
  /** 403: no signature on the checkpoint by a key the witness trusts for the log. */
  | { ok: false; kind: 'forbidden'; message: string }
  /** 404: the witness does not follow this log (origin). */
  | { ok: false; kind: 'unknown-log'; message: string }
  /** 400: the witness found the request malformed. */
  | { ok: false; kind: 'bad-request'; message: string }
  /** No answer: refused connection, DNS failure, deadline passed. */
  | { ok: false; kind: 'unreachable'; message: string }
  /** An answer that is not what the protocol allows (unexpected status, malformed body, no valid cosignature). */
  | { ok: false; kind: 'invalid-response'; status: number; message: string };

export type CosignatureResult = { ok: true; cosignatures: string[] } | CosignatureRefusal;

export interface RequestOptions {
  /** Deadline for the whole exchange (default 10 s). */
  timeoutMs?: number;
  /**
   * The witness's verifier key (type 0x04). With it, only lines by that key that verify over the
   * checkpoint are returned, and a 200 without one is 'invalid-response'.
   */
  witnessVkey?: string;
  /** Aborts the exchange early (answered as 'unreachable'), e.g. when the daemon shuts down. */
  signal?: AbortSignal;
}

function addCheckpointUrl(witnessUrl: string): string {
  const u = new URL(witnessUrl);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`a witness URL is http(s), got ${u.protocol}`);
  u.pathname = `${u.pathname.replace(/\/+$/, '')}/add-checkpoint`;
  u.search = '';
  u.hash = '';
  return u.toString();
}

async function readBounded(res: Response, max: number): Promise<string | null> {
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.length;
    if (size > max) {
      await reader.cancel().catch(() => undefined);
      return null;
    }
    chunks.push(value);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    return null;
  }
}

function isStaleConnection(err: unknown): boolean {
  const code = (err as { cause?: { code?: string } })?.cause?.code;
  return code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE';
}

function describeNetworkError(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `no answer within ${timeoutMs} ms`;
  const code = e?.cause?.code;
  if (code === 'ECONNREFUSED') return 'connection refused';
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return 'host not found';
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET') return 'connection reset';
  return e?.cause?.message ?? e?.message ?? String(err);
}

/**
 * POST <witnessUrl>/add-checkpoint with the checkpoint `note` (as the log signed it), the size of the
 * checkpoint the log believes the witness cosigned last (`oldSize`, 0 for none), and the RFC 6962
 * consistency proof from `oldSize` to the checkpoint's size. Throws only on invalid arguments.
 */
export async function requestCosignature(witnessUrl: string, note: string, oldSize: number, consistencyProof: Buffer[], opts: RequestOptions = {}): Promise<CosignatureResult> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const url = addCheckpointUrl(witnessUrl);
  const body = formatAddCheckpointRequest({ oldSize, proof: consistencyProof, note });
  const witness = opts.witnessVkey !== undefined ? parseCosignerVerifierKey(opts.witnessVkey) : undefined;
  const where = `witness at ${witnessUrl}`;

  let status: number;
  let contentType: string;
  let text: string | null;
  const signal = opts.signal ? AbortSignal.any([AbortSignal.timeout(timeoutMs), opts.signal]) : AbortSignal.timeout(timeoutMs);
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await fetch(url, { method: 'POST', body, headers: { 'content-type': 'text/plain; charset=utf-8' }, signal, redirect: 'manual' });
      status = res.status;
      contentType = (res.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
      text = await readBounded(res, MAX_RESPONSE_BYTES);
      break;
    } catch (err) {
      // A kept-alive connection the witness closed meanwhile: one retry on a fresh one. Should the
      // first attempt have been cosigned after all, the retry gets 409 with that size, nothing worse.
      if (attempt === 1 && isStaleConnection(err) && !signal.aborted) continue;
      return { ok: false, kind: 'unreachable', message: `cannot reach the ${where}: ${describeNetworkError(err, timeoutMs)}` };
    }
  }
  const invalid = (why: string): CosignatureRefusal => ({ ok: false, kind: 'invalid-response', status, message: `the ${where} answered ${status} ${why}` });
  if (text === null) return invalid(`with a body that is over ${MAX_RESPONSE_BYTES} bytes or not UTF-8`);
  const said = text.trim().slice(0, 300);

  switch (status) {
    case 200: {
      let lines;
      try {
        lines = parseSignatureLines(text);
      } catch (err) {
        return invalid(`without valid cosignature lines (${(err as Error).message})`);
      }
      if (!witness) return { ok: true, cosignatures: lines.map((l) => l.line) };
      const valid = lines.filter((l) => verifyCosignature(note, l.line, opts.witnessVkey!).valid).map((l) => l.line);
      if (valid.length === 0) return invalid(`but no line is a valid cosignature by ${witness.name} on this checkpoint`);
      return { ok: true, cosignatures: valid };
    }
    case 409: {
      const m = /^([0-9]+)\n$/.exec(text);
      const knownSize = m ? parseSize(m[1]!) : null;
      if (contentType !== 'text/x.tlog.size' || knownSize === null) return invalid('(conflict) without a text/x.tlog.size body');
      return {
        ok: false,
        kind: 'conflict',
        knownSize,
        message: knownSize === oldSize ? `the ${where} cosigned a different checkpoint of size ${knownSize}` : `the ${where} last cosigned size ${knownSize}, not ${oldSize}`,
      };
    }
    case 422:
      return { ok: false, kind: 'unprocessable', message: `the ${where} refused the consistency proof: ${said}` };
    case 403:
      return { ok: false, kind: 'forbidden', message: `the ${where} does not trust the checkpoint's signature: ${said}` };
    case 404:
      return { ok: false, kind: 'unknown-log', message: `the ${where} does not follow this log: ${said}` };
    case 400:
      return { ok: false, kind: 'bad-request', message: `the ${where} found the request malformed: ${said}` };
    default:
      return invalid(said ? `(${said})` : '');
  }
}
