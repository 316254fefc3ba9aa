// Hostile traffic (issue 13, item 8) against a daemon's gateway: request smuggling (CL.TE, TE.CL,
// duplicate Content-Length, obfuscated Transfer-Encoding), oversized and too many headers, absurd
// Host headers, slowloris, HTTP/2 rapid reset and stream floods. Each is sent with raw sockets or
// node:http2 and must be refused by the data plane (HAProxy) without reaching the IMVU's workload,
// while the daemon's API keeps answering and the other IMVU's route keeps answering.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { connect as h2connect, constants as H2 } from 'node:http2';
import { initDataDir, isInitialised } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { run, tempDir } from '../cli/harness.ts';
import { startWorkload, type Workload } from './workloads.ts';
import { curl, freePort, haveHaproxy, rawTls, waitFor } from './harness.ts';

const RANGE = `10.206.${process.pid % 256}.0/24`;

describe.skipIf(!haveHaproxy)('hostile traffic against the gateway', () => {
  let dir: string;
  let server: RunningServer;
  let port: number;
  const A = { id: 'IMVU-001', host: 'imvu001.world' };
  const B = { id: 'IMVU-002', host: 'imvu002.world' };
  const workloads: Workload[] = [];
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
    workloads.push(await startWorkload('ha', 1, RANGE, 'ay', [8080]));
    workloads.push(await startWorkload('hb', 2, RANGE, 'bee', [8080]));
    await gw().sync();
    expect(curl(gw(), port, A.host, '/ok').body).toBe('ay /ok 0\n');
  }, 120_000);

  afterAll(async () => {
    for (const w of workloads) w.stop();
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /**
   * CL and TE together: HAProxy (as RFC 9112 6.1 says) drops the Content-Length, reads the chunked
   * body, forwards exactly one request with that body and closes the connection after it, so the
   * bytes the attacker hoped to smuggle are never a second request.
   */
  const neutralised = async (name: string, request: string, answer: string) => {
    const before = await backendRequests(A.id);
    const r = await rawTls(port, A.host, gw().caCert, request, 20_000);
    const forwarded = (await backendRequests(A.id)) - before;
    console.log(`hostile ${name}: ${status(r.text)} ${r.closed ? 'closed' : 'open'}; workload got ${forwarded} request(s)`);
    expect(status(r.text), name).toBe(200);
    expect(r.text.endsWith(answer), `${name}: ${r.text}`).toBe(true);
    expect(r.text.match(/HTTP\/1\.1 /g)?.length, name).toBe(1);
    expect(r.closed, name).toBe(true);
    expect(forwarded, name).toBe(1n);
  };

  const refusedRaw = async (name: string, request: string, allowed: number[] = [400]) => {
    const before = await backendRequests(A.id);
    const r = await rawTls(port, A.host, gw().caCert, request, 20_000);
    const code = status(r.text);
    console.log(`hostile ${name}: ${code} ${r.closed ? 'closed' : 'open'}; workload got ${(await backendRequests(A.id)) - before} request(s)`);
    expect(allowed, `${name}: ${r.text.slice(0, 200)}`).toContain(code);
    expect(r.closed, name).toBe(true);
    // Not one request of it reached A's workload (the smuggled part neither).
    expect(await backendRequests(A.id), name).toBe(before);
  };

  it('request smuggling: duplicate Content-Length and obfuscated Transfer-Encoding refused (400); CL.TE and TE.CL neutralised (one request, connection closed)', async () => {
    const h = `Host: ${A.host}\r\n`;
    await neutralised('CL.TE', `POST /a HTTP/1.1\r\n${h}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGPOST /smuggled HTTP/1.1\r\n${h}\r\n`, 'ay /a 0\n');
    const smuggled = `GPOST /smuggled HTTP/1.1\r\n${h}Content-Length: 15\r\n\r\nx=1`;
    await neutralised('TE.CL', `POST /a HTTP/1.1\r\n${h}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`, `ay /a ${smuggled.length}\n`);
    await refusedRaw('duplicate Content-Length', `POST /a HTTP/1.1\r\n${h}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`);
    await refusedRaw('Content-Length list', `POST /a HTTP/1.1\r\n${h}Content-Length: 5, 6\r\n\r\nhello!`);
    await refusedRaw('TE not chunked last', `POST /a HTTP/1.1\r\n${h}Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n`);
    await refusedRaw('TE xchunked', `POST /a HTTP/1.1\r\n${h}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`);
    await refusedRaw('space before colon', `POST /a HTTP/1.1\r\n${h}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n`);
    await neutralised('TE on HTTP/1.0', `POST /a HTTP/1.0\r\n${h}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n${h}\r\n`, 'ay /a 0\n');
    await othersFine();
  }, 120_000);

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

  it('HTTP/2 rapid reset (HEADERS then RST_STREAM, in a loop): the gateway survives, others unaffected', async () => {
    const before = await backendRequests(A.id);
    const pid = gw().haproxyPid;
    const restarts = gw().restarts;
    const session = h2connect(`https://${A.host}:${port}`, { ca: readFileSync(gw().caCert), servername: A.host, host: '127.0.0.1', port } as never);
    session.on('error', () => undefined);
    await new Promise<void>((r, j) => {
      session.once('connect', () => r());
      session.once('error', j);
    });
    let opened = 0;
    let goaway = false;
    session.on('goaway', () => (goaway = true));
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
    await new Promise((r) => setTimeout(r, 1000));
    const forwarded = (await backendRequests(A.id)) - before;
    console.log(`hostile rapid reset: ${opened} streams opened and reset; ${forwarded} reached the workload; goaway ${goaway}`);
    session.destroy();
    // The data plane survives it: the same HAProxy, never restarted, answering everyone. (HAProxy
    // 2.6 still forwards the reset streams it had already started; no more than were opened.)
    expect(opened).toBe(5000);
    expect(forwarded).toBeLessThanOrEqual(BigInt(opened));
    expect(gw().haproxyPid).toBe(pid);
    expect(gw().restarts).toBe(restarts);
    await othersFine();
    expect(curl(gw(), port, A.host, '/after-reset', ['--http2']).code).toBe(200);
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
