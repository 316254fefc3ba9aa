// Shared pieces of the gateway tests: free loopback ports, curl through the gateway (with a chosen
// source address inside 127/8), IMVU creation, polling with a deadline, raw TLS exchanges.
import { execFileSync, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { connect } from 'node:tls';
import { readFileSync } from 'node:fs';
import { expect, vi } from 'vitest';
import type { TestPlatform, Actor } from '../../src/core/testing.ts';
import type { Json } from '../../src/core/types.ts';

export const haveHaproxy = spawnSync('haproxy', ['-v']).status === 0 && process.getuid?.() === 0;

export async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface CurlAnswer {
  code: number;
  body: string;
  version: string;
  headers: string;
}

/** One HTTPS request through the gateway at 127.0.0.1:port, by curl. */
export function curl(gw: { caCert: string }, port: number, host: string, path: string, extra: string[] = []): CurlAnswer {
  const out = execFileSync('curl', ['-s', '-S', '--max-time', '20', '--cacert', gw.caCert, '--resolve', `${host}:${port}:127.0.0.1`, '-D', '-', '-w', '\n%{http_code} %{http_version}', ...extra, `https://${host}:${port}${path}`], { encoding: 'utf8' });
  const lines = out.split('\n');
  const [code, version] = lines.pop()!.split(' ');
  const text = lines.join('\n');
  const split = text.indexOf('\r\n\r\n');
  return { code: Number(code), version: version!, headers: text.slice(0, split), body: text.slice(split + 4) };
}

export async function createImvu(p: TestPlatform, owner: Actor, name: string, jurisdiction = 'US-CCPA', envelope?: { [k: string]: Json }): Promise<{ id: string; seq: number; host: string }> {
  const r = await p.as(owner, 'imvu.create', { name, owner: owner.id, jurisdiction, ...(envelope ? { envelope } : {}) });
  expect(r.allowed, JSON.stringify(r.gates.filter((g) => g.status === 'deny'))).toBe(true);
  const row = (await p.store.get<{ id: string; seq: number; domain: string }>('SELECT id, seq, domain FROM imvus WHERE entry = ?', [r.index]))!;
  return { id: row.id, seq: row.seq, host: row.domain };
}

export async function waitFor(fn: () => Promise<boolean> | boolean, ms = 30_000, what = 'condition'): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await fn()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/**
 * Writes `data` over one TLS connection (ALPN http/1.1) and collects what comes back until the
 * gateway closes the connection or `ms` pass.
 */
export function rawTls(port: number, host: string, caCert: string, data: string | Buffer, ms = 15_000): Promise<{ text: string; closed: boolean }> {
  return new Promise((resolve, reject) => {
    let got = '';
    const s = connect({ host: '127.0.0.1', port, servername: host, ca: readFileSync(caCert), ALPNProtocols: ['http/1.1'] }, () => s.write(data));
    const t = setTimeout(() => {
      s.destroy();
      resolve({ text: got, closed: false });
    }, ms);
    s.on('data', (d: Buffer) => (got += d.toString('latin1')));
    s.on('close', () => {
      clearTimeout(t);
      resolve({ text: got, closed: true });
    });
    s.on('error', (e) => {
      clearTimeout(t);
      if (got) resolve({ text: got, closed: true });
      else reject(e);
    });
  });
}

/** The ledger's `gateway.refusals` entries' counts, flattened. */
export async function refusalCounts(p: TestPlatform): Promise<{ imvu: string; route: string; status: number; reason: string; count: number }[]> {
  const rows = await p.store.all<{ data: Buffer }>('SELECT data FROM ledger_entries ORDER BY idx');
  const out: { imvu: string; route: string; status: number; reason: string; count: number }[] = [];
  for (const r of rows) {
    const text = Buffer.from(r.data).toString('utf8');
    if (!text.includes('"gateway.refusals"')) continue;
    const entry = JSON.parse(text) as { command: { command: { type: string; body: { counts: typeof out } } } };
    if (entry.command.command.type === 'gateway.refusals') out.push(...entry.command.command.body.counts);
  }
  return out;
}

/**
 * Records each runtime API command the gateway sends (a payload after a newline, when `withPayload`)
 * into `sent`, still sending it. Undone by `vi.restoreAllMocks()`.
 */
export function recordCommands(gw: object, sent: string[], withPayload = false): void {
  const g = gw as { cmd: (command: string, payload?: string) => Promise<string> };
  const cmd = g.cmd.bind(gw);
  vi.spyOn(g, 'cmd').mockImplementation((command: string, payload?: string) => {
    sent.push(withPayload && payload !== undefined ? `${command}\n${payload}` : command);
    return cmd(command, payload);
  });
}
