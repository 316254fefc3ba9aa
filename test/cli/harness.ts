// Test harness for the CLI: a real daemon in this process (startServer on 127.0.0.1, a free high
// port), and the built CLI run as a subprocess (`node bin/nexus.js ...`, which loads dist/) with NEXUS_HOME and NEXUS_URL
// pointing at temp directories.
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { initDataDir, isInitialised } from '../../src/core/platform.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import type { CommandType, Json } from '../../src/core/types.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const BIN = join(ROOT, 'bin', 'nexus.js');

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `nexus-${prefix}-`));
}

/** Starts a daemon on `dataDir` (initialised first if needed) at 127.0.0.1:`port` (0: a free port). */
export async function startDaemon(dataDir: string, port = 0): Promise<RunningServer> {
  if (!isInitialised(dataDir)) await (await initDataDir(dataDir)).close();
  return startServer({ dataDir, host: '127.0.0.1', port, logger: false });
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Runs `node bin/nexus.js ...args` (or any executable) asynchronously, so the in-process daemon keeps answering. */
export function run(args: string[], env: Record<string, string | undefined>, opts: { cwd?: string; cmd?: string } = {}): Promise<Run> {
  const started = performance.now();
  const base: Record<string, string | undefined> = { ...process.env, NEXUS_DATA: undefined, NEXUS_AS: undefined, NEXUS_URL: undefined, NEXUS_HOME: undefined };
  const full = Object.fromEntries(Object.entries({ ...base, ...env }).filter((e): e is [string, string] => e[1] !== undefined));
  return new Promise((res, rej) => {
    const child = spawn(opts.cmd ?? process.execPath, opts.cmd ? args : [BIN, ...args], { cwd: opts.cwd ?? ROOT, env: full, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', rej);
    child.on('close', (code) => res({ code: code ?? -1, stdout, stderr, ms: performance.now() - started }));
  });
}

/**
 * Submits a signed command straight to the daemon (what a client other than this CLI would do), on
 * a fresh connection (daemons restart on the same port in these tests; no pooled sockets).
 */
export async function submitDirect(url: string, path: string, key: KeyObject, type: CommandType, body: { [k: string]: Json }, method = 'POST'): Promise<{ status: number; body: Record<string, unknown> }> {
  const { origin } = (await httpJson(url, '/v1/platform', 'GET')).body as { origin: string };
  return httpJson(url, path, method, JSON.stringify(signCommand(key, type, body, { origin })));
}

function httpJson(url: string, path: string, method: string, payload?: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((res, rej) => {
    const headers = payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) };
    const req = request(url + path, { method, agent: false, headers }, (r) => {
      let text = '';
      r.on('data', (d: Buffer) => (text += d.toString()));
      r.on('end', () => res({ status: r.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('error', rej);
    req.end(payload);
  });
}

/** The month (YYYY-MM, UTC) of now: statements of revenue recorded during the test. */
export function thisMonth(): string {
  return new Date().toISOString().slice(0, 7);
}
