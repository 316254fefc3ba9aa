// The daemon as a separate process (src/api/daemon.ts through tsx), for crash and shutdown tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface DaemonProcess {
  url: string;
  child: ChildProcess;
  /** Resolves when the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Every log line so far (pino JSON on stdout, anything on stderr). */
  output: string[];
}

export function spawnDaemon(dataDir: string, args: string[] = [], timeoutMs = 20_000): Promise<DaemonProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/api/daemon.ts', '--data', dataDir, '--port', '0', '--dns-port', '0', '--log-level', 'info', ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NEXUS_CONFIG: '' },
  });
  const output: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`daemon did not start within ${timeoutMs} ms:\n${output.join('\n')}`));
    }, timeoutMs);
    let pending = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        output.push(line);
        try {
          const rec = JSON.parse(line) as { msg?: string; url?: string };
          if (rec.msg === 'nexus daemon listening' && rec.url) {
            clearTimeout(timer);
            resolve({ url: rec.url, child, exited, output });
          }
        } catch {
          // not a log line
        }
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => output.push(chunk.toString('utf8')));
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`daemon exited (code ${code}, signal ${signal}) before listening:\n${output.join('\n')}`));
    });
  });
}
