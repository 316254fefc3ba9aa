// The witness's HTTP service (C2SP tlog-witness): POST <prefix>/add-checkpoint, nothing else.
// Its own process, its own key and state (state.ts); bounded bodies, header and request deadlines,
// a bounded number of connections.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { MAX_REQUEST_BYTES } from './request.ts';
import { WitnessStore } from './state.ts';
import { Witness } from './witness.ts';

export interface WitnessServerOptions {
  dataDir: string;
  port: number;
  host?: string;
  /** Whole-request deadline (headers and body), ms. */
  requestTimeoutMs?: number;
  /** Told about every validly signed checkpoint refused as inconsistent (evidence of a misbehaving log). */
  onInconsistent?: (e: { origin: string; size: number; cosignedSize: number }) => void;
}

export interface RunningWitness {
  url: string;
  name: string;
  vkey: string;
  close(): Promise<void>;
}

const MAX_CONNECTIONS = 256;

function send(res: ServerResponse, status: number, contentType: string, body: string, extra: Record<string, string> = {}): void {
  if (res.headersSent) return;
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra });
  res.end(body);
}

/** Reads the body up to `max` bytes; resolves null (after answering 413) if it is larger. */
function readBody(req: IncomingMessage, res: ServerResponse, max: number): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > max) {
      send(res, 413, 'text/plain; charset=utf-8', `request body is larger than ${max} bytes\n`, { connection: 'close' });
      req.resume();
      resolve(null);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > max) {
        done = true;
        send(res, 413, 'text/plain; charset=utf-8', `request body is larger than ${max} bytes\n`, { connection: 'close' });
        // Stop reading once the answer is out; the request deadline bounds a sender that goes on.
        res.once('finish', () => req.destroy());
        resolve(null);
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (done) return;
      done = true;
      resolve(Buffer.concat(chunks, size));
    });
    req.on('error', (err) => {
      if (done) return;
      done = true;
      reject(err);
    });
  });
}

export async function startWitnessServer(opts: WitnessServerOptions): Promise<RunningWitness> {
  const store = WitnessStore.open(opts.dataDir);
  const witness = new Witness(store);
  const host = opts.host ?? '127.0.0.1';

  const server = createServer(async (req, res) => {
    try {
      const path = (req.url ?? '').split('?')[0];
      if (path !== '/add-checkpoint') {
        req.resume();
        return send(res, 404, 'text/plain; charset=utf-8', 'not found: this witness serves POST /add-checkpoint\n');
      }
      if (req.method !== 'POST') {
        req.resume();
        return send(res, 405, 'text/plain; charset=utf-8', 'add-checkpoint takes POST\n', { allow: 'POST' });
      }
      const body = await readBody(req, res, MAX_REQUEST_BYTES);
      if (body === null) return;
      const r = await witness.addCheckpoint(body);
      if (r.inconsistent) opts.onInconsistent?.(r.inconsistent);
      send(res, r.status, r.contentType, r.body);
    } catch (err) {
      // A failed commit or an aborted upload: nothing was cosigned; the client may retry.
      if (!res.headersSent && !res.destroyed) send(res, 500, 'text/plain; charset=utf-8', `internal error: ${(err as Error).message}\n`);
      else res.destroy();
    }
  });
  server.requestTimeout = opts.requestTimeoutMs ?? 10_000;
  server.headersTimeout = Math.min(5_000, server.requestTimeout);
  server.keepAliveTimeout = 5_000;
  server.maxHeadersCount = 64;
  server.maxConnections = MAX_CONNECTIONS;
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    store.close();
    throw err;
  }
  const addr = server.address() as AddressInfo;
  const shown = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${shown}:${addr.port}`,
    name: store.name,
    vkey: store.vkey,
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2_000).unref();
      }).then(() => store.close());
      return closed;
    },
  };
}
