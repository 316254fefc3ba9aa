// Hostile traffic (issue 13, item 8) against a daemon's gateway: request smuggling (CL.TE, TE.CL,
// duplicate Content-Length, obfuscated Transfer-Encoding), oversized and too many headers, absurd
// Host headers, slowloris, HTTP/2 rapid reset and stream floods. Each is sent with raw sockets or
// node:http2 and must be refused by the data plane (HAProxy) without reaching the IMVU's workload
// (A's workload logs every request it receives), while the daemon's API and the other IMVU's route
// keep answering. What HAProxy 2.6 cannot refuse (Content-Length with Transfer-Encoding) is shown
// neutralised: one request, one framing, connection closed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { connect as h2connect, constants as H2 } from 'node:http2';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { initDataDir, isInitialised } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { run, tempDir } from '../cli/harness.ts';
import { loggedRequests, startWorkload, type Workload } from './workloads.ts';
import { SOURCE_LIMIT } from '../../src/network/gateway/haproxy-config.ts';
import { curl, freePort, haveHaproxy, rawTls, waitFor } from './harness.ts';

const RANGE = `10.206.${process.pid % 256}.0/24`;

describe.skipIf(!haveHaproxy)('hostile traffic against the gateway', () => {
  let dir: string;
  let server: RunningServer;
  let port: number;
  const A = { id: 'IMVU-001', host: 'imvu001.world' };
  const B = { id: 'IMVU-002', host: 'imvu002.world' };
  const workloads: Workload[] = [];
  /** What A's workload received, one line per request (workloads.ts). */
  let aLog: string;
  const seenByA = () => loggedRequests(aLog);
  const gw = () => server.gateway!;
  const backendRequests = async (imvu: string) => (await gw().readCounters()).counters.get(imvu)?.requests ?? 0n;
  /** The daemon's API and B's route both answer (what an attack on A must not disturb). */
  const othersFine = async () => {
    const health = await fetch(`${server.url}/health`);
    expect(health.status).toBe(200);
    expect(curl(gw(), port, B.host, '/still').body).toBe('bee /still 0\n');
  };
  const status = (text: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);

  beforeAll(async () => {
    dir = tempDir('gateway-hostile');
    const data = join(dir, 'data');
    if (!isInitialised(data)) await (await initDataDir(data)).close();
    port = await freePort();
    server = await startServer({ dataDir: data, host: '127.0.0.1', port: 0, logger: false, gateway: { address: '127.0.0.1', port, httpPort: await freePort(), range: RANGE } });
    expect(server.gateway).toBeDefined();
    const env = { NEXUS_HOME: join(dir, 'home'), NEXUS_URL: server.url };
    const policy = join(dir, 'policy.yaml');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(policy, 'public_routes:\n  - path: "/*"\n    backend: "web:8080"\n');
    for (const args of [
      ['identity', 'create', 'alice', '--role', 'creator'],
      ['imvu', 'create', '--name', 'Ay', '--owner', 'alice', '--jurisdiction', 'US-CCPA', '--as', 'alice'],
      ['imvu', 'create', '--name', 'Bee', '--owner', 'alice', '--jurisdiction', 'US-CCPA', '--as', 'alice'],
      ['route', 'set', A.id, '--policy', policy, '--as', 'alice'],
      ['route', 'set', B.id, '--policy', policy, '--as', 'alice'],
    ]) {
      const r = await run(args, env);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
    aLog = join(dir, 'a-requests.log');
    workloads.push(await startWorkload('ha', 1, RANGE, 'ay', [8080], aLog));
    workloads.push(await startWorkload('hb', 2, RANGE, 'bee', [8080]));
    await gw().sync();
    expect(curl(gw(), port, A.host, '/ok').body).toBe('ay /ok 0\n');
  }, 120_000);

  afterAll(async () => {
    for (const w of workloads) w.stop();
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The header values of a logged request, by lower-cased name. */
  const headerValues = (headers: string[], name: string) => {
    const out: string[] = [];
    for (let i = 0; i + 1 < headers.length; i += 2) if (headers[i]!.toLowerCase() === name) out.push(headers[i + 1]!);
    return out;
  };

  /**
   * What HAProxy 2.6 cannot refuse, shown as what it does instead: with Content-Length and
   * Transfer-Encoding together its HTTP/1 parser drops the Content-Length before any rule runs (no
   * fetch sees it; RFC 9112 6.1 allows this), forwards exactly one request, chunked and without a
   * Content-Length, and closes the connection after the answer: the bytes an attacker hoped the
   * workload would read as a second request never reach it.
   */
  const neutralised = async (name: string, request: string, path: string, answer: string) => {
    const before = await backendRequests(A.id);
    const r = await rawTls(port, A.host, gw().caCert, request, 20_000);
    const forwarded = (await backendRequests(A.id)) - before;
    const got = seenByA().filter((q) => q.url === path);
    console.log(`hostile ${name}: ${status(r.text)} ${r.closed ? 'closed' : 'open'}; workload got ${forwarded} request(s): ${JSON.stringify(got)}`);
    expect(status(r.text), name).toBe(200);
    expect(r.text.endsWith(answer), `${name}: ${r.text}`).toBe(true);
    expect(r.text.match(/HTTP\/1\.1 /g)?.length, name).toBe(1);
    expect(r.closed, name).toBe(true);
    expect(forwarded, name).toBe(1n);
    // The workload saw one request, framed one way only.
    expect(got.length, name).toBe(1);
    const te = headerValues(got[0]!.headers, 'transfer-encoding');
    const cl = headerValues(got[0]!.headers, 'content-length');
    expect(te.length + cl.length, `${name}: ${JSON.stringify(got[0])}`).toBe(1);
    if (te.length) expect(te, name).toEqual(['chunked']);
  };

  /** Refused by the data plane: the status, the connection closed, nothing of it at the workload. */
  const refusedRaw = async (name: string, request: string, allowed: number[] = [400]) => {
    const before = await backendRequests(A.id);
    const logged = seenByA().length;
    const r = await rawTls(port, A.host, gw().caCert, request, 20_000);
    const code = status(r.text);
    console.log(`hostile ${name}: ${code} ${r.closed ? 'closed' : 'open'}; workload got ${(await backendRequests(A.id)) - before} request(s)`);
    expect(allowed, `${name}: ${r.text.slice(0, 200)}`).toContain(code);
    expect(r.closed, name).toBe(true);
    // Not one request of it reached A's workload (the smuggled part neither).
    expect(await backendRequests(A.id), name).toBe(before);
    expect(seenByA().slice(logged), name).toEqual([]);
  };

  it('request smuggling: every ambiguous framing HAProxy lets a rule see is refused (400, closed, never at the workload); CL with TE is neutralised', async () => {
    const h = `Host: ${A.host}\r\n`;
    const smuggled = `GPOST /smuggled HTTP/1.1\r\n${h}Content-Length: 15\r\n\r\nx=1`;
    // Refused by HAProxy's own parser.
    await refusedRaw('duplicate Content-Length', `POST /r1 HTTP/1.1\r\n${h}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`);
    await refusedRaw('Content-Length list', `POST /r2 HTTP/1.1\r\n${h}Content-Length: 5, 6\r\n\r\nhello!`);
    await refusedRaw('Content-Length +5', `POST /r3 HTTP/1.1\r\n${h}Content-Length: +5\r\n\r\nhello`);
    await refusedRaw('TE chunked not last', `POST /r4 HTTP/1.1\r\n${h}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`);
    await refusedRaw('TE chunked twice', `POST /r5 HTTP/1.1\r\n${h}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n`);
    await refusedRaw('TE xchunked', `POST /r6 HTTP/1.1\r\n${h}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`);
    await refusedRaw('space before colon', `POST /r7 HTTP/1.1\r\n${h}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n`);
    await refusedRaw('TE with a vertical tab', `POST /r8 HTTP/1.1\r\n${h}Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n`);
    await refusedRaw('TE chunked with a parameter', `POST /r9 HTTP/1.1\r\n${h}Transfer-Encoding: chunked;x=1\r\n\r\n0\r\n\r\n`);
    // Another coding before chunked: HAProxy 2.6's parser answers 422 itself, before any rule.
    await refusedRaw('TE identity, chunked', `POST /r10 HTTP/1.1\r\n${h}Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n`, [400, 422]);
    await refusedRaw('TE identity then TE chunked', `POST /r11 HTTP/1.1\r\n${h}Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, [400, 422]);
    // Refused by the gateway's rules (HAProxy would forward them).
    await refusedRaw('TE Chunked (case)', `POST /r12 HTTP/1.1\r\n${h}Transfer-Encoding: Chunked\r\n\r\n0\r\n\r\n${smuggled}`);
    await refusedRaw('CL.TE with TE Chunked', `POST /r13 HTTP/1.1\r\n${h}Content-Length: 6\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\nG${smuggled}`);
    await refusedRaw('two TE chunked headers', `POST /r14 HTTP/1.1\r\n${h}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`);
    await refusedRaw('TE on HTTP/1.0', `POST /r15 HTTP/1.0\r\n${h}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n${h}\r\n`);
    await refusedRaw('Transfer_Encoding (underscore) with CL', `POST /r16 HTTP/1.1\r\n${h}Transfer_Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n`);
    // Neutralised (no rule can see them): one request, one framing, connection closed.
    await neutralised('CL.TE', `POST /n1 HTTP/1.1\r\n${h}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGPOST /smuggled HTTP/1.1\r\n${h}\r\n`, '/n1', 'ay /n1 0\n');
    await neutralised('TE.CL', `POST /n2 HTTP/1.1\r\n${h}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`, '/n2', `ay /n2 ${smuggled.length}\n`);
    // Two equal Content-Lengths are one (RFC 9110 8.6): merged, the workload sees one.
    await neutralised('Content-Length twice, equal', `POST /n3 HTTP/1.1\r\n${h}Content-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello`, '/n3', 'ay /n3 5\n');
    expect(seenByA().filter((q) => q.url.includes('smuggled') || q.method === 'GPOST'), 'a smuggled request at the workload').toEqual([]);
    await othersFine();
  }, 180_000);

  it('oversized headers and too many headers: refused, nothing forwarded', async () => {
    await refusedRaw('64 KiB header', `GET /a HTTP/1.1\r\nHost: ${A.host}\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`, [400, 431]);
    await refusedRaw('200 headers', `GET /a HTTP/1.1\r\nHost: ${A.host}\r\n${Array.from({ length: 200 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`, [400, 431]);
    await refusedRaw('64 KiB URL', `GET /${'a'.repeat(64 * 1024)} HTTP/1.1\r\nHost: ${A.host}\r\n\r\n`, [400, 414]);
    await othersFine();
  }, 120_000);

  it('absurd Host headers: refused, never routed to an IMVU', async () => {
    const line = (host: string) => `GET /a HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;
    await refusedRaw('10 KiB Host', line('a'.repeat(10 * 1024)), [400, 421]);
    await refusedRaw('two Hosts', `GET /a HTTP/1.1\r\nHost: ${A.host}\r\nHost: ${B.host}\r\n\r\n`, [400]);
    await refusedRaw('no Host', 'GET /a HTTP/1.1\r\nConnection: close\r\n\r\n', [400, 421]);
    await refusedRaw('Host with a space', line(`${A.host} x`), [400, 421]);
    await refusedRaw('Host with userinfo', line(`evil@${A.host}`), [400, 421]);
    await refusedRaw('Host with a NUL', line(`${A.host}\0.evil`), [400, 421]);
    await refusedRaw('absolute URI naming another host', `GET https://${B.host}/a HTTP/1.1\r\nHost: ${A.host}\r\nConnection: close\r\n\r\n`, [400]);
    await refusedRaw('Host of the daemon', line(`127.0.0.1:${new URL(server.url).port}`), [421]);
    await othersFine();
  }, 120_000);

  it('slowloris: headers trickling in are cut at the http-request timeout; others unaffected meanwhile', async () => {
    const sockets: TLSSocket[] = [];
    const closed = new Set<number>();
    for (let i = 0; i < 40; i++) {
      const s = tlsConnect({ host: '127.0.0.1', port, servername: A.host, ca: readFileSync(gw().caCert), ALPNProtocols: ['http/1.1'] });
      s.on('error', () => undefined);
      s.on('close', () => closed.add(i));
      sockets.push(s);
    }
    await waitFor(() => sockets.every((s) => s.encrypted && !s.connecting), 30_000, 'the slow connections');
    const head = `GET /slow HTTP/1.1\r\nHost: ${A.host}\r\nX-A: `;
    let sent = 0;
    // One byte every 500 ms on each connection, endlessly: the headers never end.
    const trickle = setInterval(() => {
      for (const s of sockets) if (!s.destroyed) s.write(sent < head.length ? head[sent]! : 'a');
      sent++;
    }, 500);
    try {
      await othersFine();
      await waitFor(() => closed.size === sockets.length, 60_000, 'the gateway to cut the slow connections');
      console.log(`hostile slowloris: ${sockets.length} connections cut after ${sent} bytes each`);
      // Still sending when cut: without `timeout http-request` they would stay open for good
      // (each byte resets the client inactivity timeout).
    } finally {
      clearInterval(trickle);
      for (const s of sockets) s.destroy();
    }
    await othersFine();
  }, 120_000);

  it(`HTTP/2 rapid reset (HEADERS then RST_STREAM, 5,000 times): the workload receives at most ${SOURCE_LIMIT.requests} per ${SOURCE_LIMIT.windowS} s from that client; others served meanwhile`, async () => {
    const before = await backendRequests(A.id);
    const logged = seenByA().length;
    const pid = gw().haproxyPid;
    const restarts = gw().restarts;
    // The attacker has an address of its own (127.0.0.5); everyone else comes from 127.0.0.1.
    const attacker = '127.0.0.5';
    const session = h2connect(`https://${A.host}:${port}`, { ca: readFileSync(gw().caCert), servername: A.host, host: '127.0.0.1', port, localAddress: attacker } as never);
    session.on('error', () => undefined);
    await new Promise<void>((r, j) => {
      session.once('connect', () => r());
      session.once('error', j);
    });
    let opened = 0;
    let goaway = false;
    session.on('goaway', () => (goaway = true));
    const started = Date.now();
    // B (another IMVU) and A (from another client) asked while the attack runs.
    const run = promisify(execFile);
    const meanwhile = ['--max-time', '60', '--cacert', gw().caCert, '-s', '-o', '/dev/null', '-w', '%{http_code}'];
    const during = Promise.all([
      run('curl', [...meanwhile, '--resolve', `${B.host}:${port}:127.0.0.1`, `https://${B.host}:${port}/during`]),
      run('curl', [...meanwhile, '--http2', '--resolve', `${A.host}:${port}:127.0.0.1`, `https://${A.host}:${port}/during`]),
    ]);
    for (let i = 0; i < 5000 && !session.destroyed && !goaway; i++) {
      try {
        const req = session.request({ ':path': `/rr${i}`, ':authority': A.host });
        req.on('error', () => undefined);
        req.close(H2.NGHTTP2_CANCEL);
        opened++;
      } catch {
        break;
      }
      if (i % 200 === 0) await new Promise((r) => setImmediate(r));
    }
    const attackS = (Date.now() - started) / 1000;
    const [b, a] = await during;
    await new Promise((r) => setTimeout(r, 1000));
    const forwarded = (await backendRequests(A.id)) - before;
    const reached = seenByA().slice(logged).filter((q) => q.url.startsWith('/rr')).length;
    console.log(`hostile rapid reset: ${opened} streams opened and reset in ${attackS.toFixed(1)} s; ${forwarded} forwarded to A's backend, ${reached} reached the workload; goaway ${goaway}; meanwhile B ${b.stdout}, A from another client ${a.stdout}`);
    session.destroy();
    expect(opened).toBe(5000);
    // The bound: the client's budget per window (and one more window's worth per window the
    // attack lasted, on a slow machine).
    const bound = SOURCE_LIMIT.requests * (1 + Math.floor(attackS / SOURCE_LIMIT.windowS));
    expect(reached).toBeLessThanOrEqual(bound);
    // (A's backend also served the one request A's other client made meanwhile.)
    expect(Number(forwarded)).toBeLessThanOrEqual(bound + 1);
    expect([b.stdout, a.stdout]).toEqual(['200', '200']);
    // The data plane survives it: the same HAProxy, never restarted, answering everyone; the
    // attacker's address is refused for the rest of its window.
    expect(gw().haproxyPid).toBe(pid);
    expect(gw().restarts).toBe(restarts);
    await othersFine();
    expect(curl(gw(), port, A.host, '/after-reset', ['--http2']).code).toBe(200);
    const self = curl(gw(), port, A.host, '/after-reset', ['--interface', attacker]);
    expect(self.code).toBe(429);
    expect(self.headers.toLowerCase()).toContain(`retry-after: ${SOURCE_LIMIT.windowS}`);
  }, 180_000);

  it(`HTTP/1.1 keep-alive: every request on a connection counts against its address, and its other connections share the budget (${SOURCE_LIMIT.requests} per ${SOURCE_LIMIT.windowS} s)`, async () => {
    // Its own address (127.0.0.6), two connections one after the other, each many requests.
    const codes = async (first: number, n: number) => {
      const r = await promisify(execFile)('curl', ['-s', '--interface', '127.0.0.6', '--cacert', gw().caCert, '--resolve', `${A.host}:${port}:127.0.0.1`, '-o', '/dev/null', '-w', '%{http_code} %{num_connects}\\n', `https://${A.host}:${port}/ka[${first}-${first + n - 1}]`], { maxBuffer: 1 << 20 });
      const lines = r.stdout.trim().split('\n').map((l) => l.split(' ').map(Number) as [number, number]);
      // One connection for the whole run: only the first request connects.
      expect(lines.slice(1).every(([, c]) => c === 0)).toBe(true);
      return lines.map(([code]) => code);
    };
    const started = Date.now();
    const one = await codes(1, 700);
    const two = await codes(701, 400);
    const tookS = (Date.now() - started) / 1000;
    const served = [...one, ...two].filter((c) => c === 200).length;
    console.log(`hostile keep-alive: ${one.filter((c) => c === 200).length} + ${two.filter((c) => c === 200).length} served of 1100, ${[...one, ...two].filter((c) => c === 429).length} refused 429`);
    expect(one.every((c) => c === 200)).toBe(true);
    // The budget per window, and one more window's worth per window the run lasted (a slow machine).
    expect(served).toBeLessThanOrEqual(SOURCE_LIMIT.requests * (1 + Math.floor(tookS / SOURCE_LIMIT.windowS)));
    // The second connection ran into the budget the first spent.
    if (tookS < SOURCE_LIMIT.windowS) expect(two.filter((c) => c === 429).length).toBeGreaterThan(0);
    await othersFine();
  }, 120_000);

  it('HTTP/2 stream flood above max-concurrent-streams: the excess is refused', async () => {
    const sock = tlsConnect({ host: '127.0.0.1', port, servername: A.host, ca: readFileSync(gw().caCert), ALPNProtocols: ['h2'] });
    sock.on('error', () => undefined);
    await new Promise<void>((r) => sock.once('secureConnect', () => r()));
    expect(sock.alpnProtocol).toBe('h2');
    const frame = (type: number, flags: number, stream: number, payload: Buffer) => {
      const h = Buffer.alloc(9);
      h.writeUIntBE(payload.length, 0, 3);
      h[3] = type;
      h[4] = flags;
      h.writeUInt32BE(stream, 5);
      return Buffer.concat([h, payload]);
    };
    // HPACK: :method POST (static 3), :scheme https (7), :path / (4), :authority as a literal.
    const block = Buffer.concat([Buffer.from([0x83, 0x87, 0x84, 0x01, A.host.length]), Buffer.from(A.host)]);
    const frames: Buffer[] = [Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), frame(4, 0, 0, Buffer.alloc(0))];
    // 500 streams, each a request whose body never comes (END_HEADERS, no END_STREAM).
    for (let i = 0; i < 500; i++) frames.push(frame(1, 0x4, 1 + 2 * i, block));
    let got = Buffer.alloc(0);
    sock.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
    sock.write(Buffer.concat(frames));
    const parse = () => {
      const out = { settingsMax: -1, refused: 0, rst: 0, goaway: false };
      for (let o = 0; o + 9 <= got.length; ) {
        const len = got.readUIntBE(o, 3);
        const type = got[o + 3]!;
        const p = got.subarray(o + 9, o + 9 + len);
        if (type === 4) for (let k = 0; k + 6 <= p.length; k += 6) if (p.readUInt16BE(k) === 3) out.settingsMax = p.readUInt32BE(k + 2);
        if (type === 3) {
          out.rst++;
          if (p.length >= 4 && p.readUInt32BE(0) === 7) out.refused++;
        }
        if (type === 7) out.goaway = true;
        o += 9 + len;
      }
      return out;
    };
    await waitFor(() => parse().goaway || parse().rst >= 400 || sock.destroyed, 30_000, 'the gateway to refuse the excess streams');
    const r = parse();
    console.log(`hostile stream flood: SETTINGS_MAX_CONCURRENT_STREAMS ${r.settingsMax}; ${r.rst} RST_STREAM (${r.refused} REFUSED_STREAM), GOAWAY ${r.goaway}`);
    expect(r.settingsMax).toBe(100);
    expect(r.goaway || r.rst >= 400).toBe(true);
    sock.destroy();
    await othersFine();
  }, 120_000);
});
