// The API's socket, bound before the daemon has opened its data directory. What start-up does can
// grow with the data directory (the integrity check reads every projection row to compare it with
// the digests the ledger recorded: a row edited while the daemon was down is found only by
// reading it), and a supervisor or an operator must still see at once that the daemon is up and
// what it is doing. Until start-up is done:
//
// - `GET /health` answers 503 `{"status":"verifying"}` (never 200: nothing is served yet);
// - every other request waits, unread, and is handed to the API once the data directory has been
//   checked against the ledger and repaired (src/core/policy/integrity.ts): no command is decided
//   and no read is answered from state that has not been verified;
// - past MAX_HELD waiting requests, more are refused with 503 and Retry-After.
//
// If start-up fails (lost history, a bad configuration), the waiting requests are answered 503
// with the reason and the socket is closed.
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** Requests held while starting; beyond this, 503 (a start-up must not buffer without bound). */
export const MAX_HELD = 4096;

export class EarlyListener {
  private handler: Handler | undefined;
  private held: [IncomingMessage, ServerResponse][] = [];
  private failed: string | undefined;
  private readonly startedAt = Date.now();
  /** What /health says the daemon is doing. */
  phase = 'verifying the data directory against its ledger';

  private constructor(readonly server: Server) {}

  static async listen(o: { host: string; port: number; tls?: { cert: string | Buffer; key: string | Buffer } }): Promise<EarlyListener> {
    const box: { me?: EarlyListener } = {};
    const onRequest: Handler = (req, res) => box.me!.dispatch(req, res);
    const server = o.tls ? createHttpsServer({ cert: o.tls.cert, key: o.tls.key }, onRequest) : createHttpServer(onRequest);
    const me = (box.me = new EarlyListener(server));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    return me;
  }

  /** Fastify's `serverFactory`: its handler is kept until open(). */
  adopt(handler: Handler): Server {
    this.handler = handler;
    return this.server;
  }

  /** Start-up is done: the API answers, the waiting requests first, in arrival order. */
  open(): void {
    const held = this.held;
    this.held = [];
    this.phase = '';
    for (const [req, res] of held) if (!res.writableEnded && !req.socket.destroyed) this.handler!(req, res);
  }

  /** Start-up failed: the waiting requests hear why; the socket closes. */
  async fail(reason: string): Promise<void> {
    this.failed = reason;
    for (const [, res] of this.held.splice(0)) this.refuse(res, reason);
    await this.close();
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Stops keep-alive connections that carry no request (close() waits for them otherwise). */
  closeIdle(): void {
    this.server.closeIdleConnections();
  }

  /** Requests waiting for the start-up to end. */
  get waiting(): number {
    return this.held.length;
  }

  get opened(): boolean {
    return this.handler !== undefined && this.phase === '';
  }

  private dispatch(req: IncomingMessage, res: ServerResponse): void {
    if (this.opened) return this.handler!(req, res);
    if (this.failed !== undefined) return this.refuse(res, this.failed);
    if (req.method === 'GET' && (req.url === '/health' || req.url?.startsWith('/health?'))) {
      res.writeHead(503, { 'content-type': 'application/json; charset=utf-8', 'retry-after': '1' });
      res.end(JSON.stringify({ status: 'verifying', detail: this.phase, sinceMs: Date.now() - this.startedAt }));
      return;
    }
    if (this.held.length >= MAX_HELD) return this.refuse(res, `${MAX_HELD} requests already wait for the start-up to end`);
    this.held.push([req, res]);
  }

  private refuse(res: ServerResponse, reason: string): void {
    if (res.headersSent) return;
    res.writeHead(503, { 'content-type': 'application/json; charset=utf-8', 'retry-after': '1', connection: 'close' });
    res.end(JSON.stringify({ error: `the daemon is not serving yet: ${reason}; nothing was recorded` }));
  }
}
