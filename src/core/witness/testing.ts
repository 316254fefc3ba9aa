// Test helpers: the witness as its operator runs it, `nexus witness ...` in a child process.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const CLI = join(ROOT, 'bin', 'nexus.js');
// The witness commands never read or write the CLI's home; point it away from the user's anyway.
const ENV = { ...process.env, NEXUS_HOME: join(tmpdir(), 'nexus-witness-tests-no-home'), NEXUS_CONFIG: '' };

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** `nexus <args>` to completion (asynchronously: the test's own sockets keep being served meanwhile). */
export function nexus(...args: string[]): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** `nexus witness init` in a fresh temp directory; returns the directory and the printed vkey. */
export async function initWitnessDir(name: string): Promise<{ dir: string; vkey: string }> {
  const dir = join(mkdtempSync(join(tmpdir(), 'nexus-witness-')), 'w');
  const r = await nexus('witness', 'init', '--data', dir, '--name', name, '--json');
  if (r.code !== 0) throw new Error(`witness init failed: ${r.stderr}`);
  return { dir, vkey: (JSON.parse(r.stdout) as { vkey: string }).vkey };
}

export interface WitnessProcess {
  url: string;
  vkey: string;
  child: ChildProcess;
  stderr: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM (graceful) or SIGKILL; resolves when the process is gone. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `nexus witness serve --data DIR --port 0` until it prints its URL. */
export function spawnWitness(dataDir: string, timeoutMs = 120_000): Promise<WitnessProcess> {
  const child = spawn(process.execPath, [CLI, 'witness', 'serve', '--data', dataDir, '--port', '0'], { cwd: ROOT, env: ENV, stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const onExit = () => child.kill('SIGKILL');
  process.once('exit', onExit);
  void exited.then(() => process.off('exit', onExit));
  const stop = (signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  child.stderr!.on('data', (c: Buffer) => stderr.push(c.toString('utf8')));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`witness did not start within ${timeoutMs} ms: ${stderr.join('')}`));
    }, timeoutMs);
    let out = '';
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      const m = / listening on (http:\/\/\S+) \(verifier key (\S+)\)\n/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ url: m[1]!, vkey: m[2]!, child, stderr, exited, stop });
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`witness exited (code ${code}, signal ${signal}) before listening: ${stderr.join('')}`));
    });
  });
}
