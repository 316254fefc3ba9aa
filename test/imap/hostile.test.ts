// Hostile input over real sockets: malformed commands, unterminated and huge literals, deep MIME
// nesting, thousands of pipelined commands, silence past the timers. The server answers each with
// a clear error or a disconnect and keeps serving everyone else.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { A, deliver, sampleMessage, startTestServer, type TestServer } from './helpers.ts';
import { Raw } from './raw.ts';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({
    limits: { maxLine: 8192, maxLiteral: 4096, maxAppendLiteral: 1024 * 1024 },
    preAuthMs: 1500, autologoutMs: 3000, commandMs: 1500,
  });
  deliver(t.rootA, sampleMessage(1));
  // 2,000 nested multiparts: parsed only to the depth bound, the rest an opaque leaf.
  const depth = 2000;
  let body = 'innermost\r\n';
  for (let i = depth; i > 0; i--) {
    body = `Content-Type: multipart/mixed; boundary="b${i}"\r\n\r\n--b${i}\r\n${body}\r\n--b${i}--\r\n`;
  }
  deliver(t.rootA, `From: deep@example.org\r\nSubject: deep\r\n${body}`);
  // Message 3: 1 MiB, for a client that asks for it again and again and never reads.
  deliver(t.rootA, `From: big@example.org\r\nSubject: big\r\n\r\n${('y'.repeat(1022) + '\r\n').repeat(1024)}`);
});
afterAll(() => t.close());

async function login(): Promise<Raw> {
  const c = await Raw.open(t.server.port!);
  expect(await c.cmd('l', `LOGIN ${A.user} ${A.pass}`)).toContain('l OK');
  return c;
}

async function stillServes(): Promise<void> {
  const c = await login();
  expect(await c.cmd('x', 'SELECT INBOX')).toContain('x OK');
  c.close();
}

describe('IMAP hostile input', { timeout: 60_000 }, () => {
  it('answers malformed commands with BAD and carries on', async () => {
    const c = await login();
    for (const bad of ['', 'a', 'a FETCH', 'a SELECT', 'a FETCH 1:* (BODY[', 'a SELECT "unterminated', 'a STORE 1 +FLAGS (\\Bogus)',
      'a SEARCH OR', 'a UID FROBNICATE 1', 'a LOGIN x', 'a SELECT {3}x', '\x00\x01\x02', 'a SEARCH ((((((((((((((((((((((((((((((((((((((ALL',
      'a FETCH 0 FLAGS', 'a FETCH 4294967296 FLAGS', 'a STATUS INBOX (BOGUS)']) {
      c.write(`${bad}\r\n`);
    }
    const all = await c.cmd('z', 'NOOP');
    expect(all).toContain('z OK');
    expect(all.match(/ BAD /g)!.length).toBeGreaterThanOrEqual(10);
    c.close();
  });

  it('refuses a synchronising literal over the limit without reading it, and closes on a LITERAL+ one', async () => {
    const c = await login();
    const r = await c.cmd('a', 'SELECT {999999999}');
    expect(r).toMatch(/a BAD \[TOOBIG\]/);
    expect(await c.cmd('b', 'NOOP')).toContain('b OK');
    c.write('c APPEND INBOX {99999999+}\r\nxxxx');
    await c.until(() => false, 1000);
    expect(c.closed).toBe(true);
    c.close();
    await stillServes();
  });

  it('drops a command that does not arrive whole in time, however it trickles', async () => {
    const c = await login();
    c.write('a APPEND INBOX {100+}\r\n');
    // One byte every 200 ms: each byte is progress, but the deadline is from the first byte.
    const trickle = setInterval(() => c.write('x'), 200);
    await c.until(() => c.closed, 6000);
    clearInterval(trickle);
    expect(c.closed).toBe(true);
    expect(c.take()).toContain('BYE');
    await stillServes();
  });

  it('logs out a silent connection, before and after login', async () => {
    const pre = await Raw.open(t.server.port!);
    const post = await login();
    await pre.until(() => pre.closed, 5000);
    await post.until(() => post.closed, 8000);
    expect(pre.closed && post.closed).toBe(true);
  });

  it('serves thousands of pipelined commands in order, with memory bounded by backpressure', async () => {
    const c = await login();
    await c.cmd('s', 'SELECT INBOX');
    const n = 5000;
    let batch = '';
    for (let i = 0; i < n; i++) batch += `p${i} FETCH 1 (FLAGS UID)\r\n`;
    c.write(batch);
    const out = await c.until((s) => s.includes(`p${n - 1} OK`), 25_000);
    expect(out).toContain(`p${n - 1} OK`);
    expect(out.match(/ OK FETCH completed/g)!.length).toBe(n);
    c.close();
  });

  it('serves BODYSTRUCTURE of a deeply nested message within its bounds', async () => {
    const c = await login();
    await c.cmd('s', 'SELECT INBOX');
    const r = await c.cmd('f', 'FETCH 2 (BODYSTRUCTURE BODY[1.1.1.1])');
    expect(r).toContain('f OK');
    expect(r).toContain('BODYSTRUCTURE (');
    const depth = (r.match(/\(\(/g) ?? []).length;
    expect(depth).toBeLessThan(100);
    c.close();
    await stillServes();
  });

  it('drops a synchronising literal that never arrives whole, and serves others meanwhile', async () => {
    const c = await login();
    c.write('a APPEND INBOX {500}\r\n');
    expect(await c.until((s) => s.includes('+ '))).toContain('+ ');
    c.write('only part of it');
    await stillServes();
    await c.until(() => c.closed, 8000);
    expect(c.closed).toBe(true);
    expect(c.take()).toContain('BYE');
  });

  it('closes a command whose LITERAL+ literals add up past the per-command bound, each literal within its own', async () => {
    const c = await login();
    // 300 literals of 4,000 bytes: each under maxLiteral (4,096), 1.2 MB together (the bound is 1 MiB).
    let cmd = 'a SEARCH';
    for (let i = 0; i < 300; i++) cmd += ` TEXT {4000+}\r\n${'z'.repeat(4000)}`;
    c.write(cmd + '\r\n');
    const out = await c.until(() => c.closed, 10_000);
    expect(c.closed).toBe(true);
    expect(out).toMatch(/a BAD \[TOOBIG\] command too large/);
    await stillServes();
  });

  it('keeps memory bounded when a client asks for 400 MiB and never reads, and serves others meanwhile', async () => {
    const c = await login();
    await c.cmd('s', 'SELECT INBOX');
    c.sock.pause();
    const before = process.memoryUsage().rss;
    let batch = '';
    for (let i = 0; i < 400; i++) batch += `f${i} FETCH 3 (BODY.PEEK[])\r\n`;
    c.write(batch);
    let peak = before;
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 100));
      peak = Math.max(peak, process.memoryUsage().rss);
    }
    await stillServes();
    peak = Math.max(peak, process.memoryUsage().rss);
    // Unbounded, the server would hold 400 MiB of responses; it holds what the socket can take.
    expect(peak - before).toBeLessThan(100 * 1024 * 1024);
    c.close();
  });

  it('logs out a client that IDLEs past the autologout timer', async () => {
    const c = await login();
    await c.cmd('s', 'SELECT INBOX');
    c.write('i IDLE\r\n');
    expect(await c.until((s) => s.includes('+ '))).toContain('+ ');
    await c.until(() => c.closed, 10_000);
    expect(c.closed).toBe(true);
    expect(c.take()).toMatch(/BYE autologout/);
  });
});
