// Supervision of one HAProxy master-worker process: started in the foreground as our child
// (`-W`, master socket `-S`), restarted with a back-off if it dies, reloaded with SIGUSR2 (the
// master re-reads the configuration; listeners pass to the new worker), stopped with the daemon.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { runtimeCommand } from './runtime.ts';

export const HAPROXY_CANDIDATES = ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy', '/usr/bin/haproxy'];

export function findHaproxy(explicit?: string): string | undefined {
  if (explicit) return existsSync(explicit) ? explicit : undefined;
  return HAPROXY_CANDIDATES.find((p) => existsSync(p));
}

export interface SupervisorOptions {
  bin: string;
  config: string;
  masterSocket: string;
  adminSocket: string;
  onExit?: (code: number | null, signal: NodeJS.Signals | null) => void;
  onRestart?: () => void;
  log?: (line: string) => void;
}

export class HaproxySupervisor {
  private child: ChildProcess | undefined;
  private stopping = false;
  private backoffMs = 200;
  private restartTimer: NodeJS.Timeout | undefined;
  /** How many times it was restarted after dying. */
  restarts = 0;
  /**
   * How long a start, restart or reload may take to answer: HAProxy loads every certificate of the
   * crt-list first (about 0.8 ms each here: 9 s for 10,000 IMVUs, bench/RESULTS.md), so the
   * gateway sets it from the number of IMVUs.
   */
  readyTimeoutMs = 15_000;

  constructor(private readonly o: SupervisorOptions) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    this.stopping = false;
    this.spawn();
    await this.waitReady(this.readyTimeoutMs);
  }

  private spawn(): void {
    const child = spawn(this.o.bin, ['-W', '-S', `${this.o.masterSocket},mode,600`, '-f', this.o.config], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.child = child;
    let err = '';
    child.stderr?.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-4000);
    });
    child.on('exit', (code, signal) => {
      if (this.child === child) this.child = undefined;
      this.o.onExit?.(code, signal);
      if (this.stopping) return;
      this.o.log?.(`haproxy exited (${signal ?? code}); restarting in ${this.backoffMs} ms${err ? `: ${err.trim().split('\n').slice(-2).join(' / ')}` : ''}`);
      this.restartTimer = setTimeout(() => {
        this.restarts++;
        this.spawn();
        this.waitReady().then(
          () => {
            this.backoffMs = 200;
            this.o.onRestart?.();
          },
          (e: unknown) => this.o.log?.(`haproxy restart: ${(e as Error).message}`),
        );
      }, this.backoffMs);
      this.backoffMs = Math.min(this.backoffMs * 2, 10_000);
    });
  }

  /** Until the worker answers on the admin socket (a fresh worker after a start or reload). */
  async waitReady(timeoutMs = this.readyTimeoutMs, notPid?: string): Promise<void> {
    const until = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < until) {
      try {
        const info = await runtimeCommand(this.o.adminSocket, 'show info', { timeoutMs: 1000 });
        const pid = /^Pid: (\d+)/m.exec(info)?.[1];
        if (pid && pid !== notPid) return;
        last = 'old worker still answering';
      } catch (e) {
        last = (e as Error).message;
      }
      if (!this.child) throw new Error('haproxy is not running');
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`haproxy did not become ready within ${timeoutMs} ms (${last})`);
  }

  /** Re-reads the configuration without dropping connections; resolves when the new worker answers. */
  async reload(): Promise<void> {
    if (!this.child) throw new Error('haproxy is not running');
    const info = await runtimeCommand(this.o.adminSocket, 'show info', { timeoutMs: 2000 }).catch(() => '');
    const oldPid = /^Pid: (\d+)/m.exec(info)?.[1];
    this.child.kill('SIGUSR2');
    await this.waitReady(this.readyTimeoutMs, oldPid);
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearTimeout(this.restartTimer);
    const c = this.child;
    if (!c) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => c.kill('SIGKILL'), 5000);
      c.once('exit', () => {
        clearTimeout(t);
        resolve();
      });
      c.kill('SIGTERM');
    });
  }
}
