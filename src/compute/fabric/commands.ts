// Every process the fabric spawns (runc, ip, iptables) goes through here and is counted by tool:
// on a busy host each spawn costs tens of milliseconds, so the start path's count is a figure the
// benchmark reports and a test holds down (test/compute/start-path.test.ts).
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { promisify } from 'node:util';

const execFileP = promisify(execFile);

/** Processes spawned so far in this process, by program name. */
export const spawnCounts = new Map<string, number>();

function note(tool: string): void {
  spawnCounts.set(tool, (spawnCounts.get(tool) ?? 0) + 1);
}

/** Runs a program to completion; rejects on a non-zero exit. `input` is written to its stdin. */
export function runTool(tool: string, args: string[], opts: { timeout?: number; maxBuffer?: number; input?: string } = {}): Promise<{ stdout: string; stderr: string }> {
  note(tool);
  const p = execFileP(tool, args, { timeout: opts.timeout ?? 30_000, maxBuffer: opts.maxBuffer ?? 16 << 20 });
  if (opts.input !== undefined) p.child.stdin?.end(opts.input);
  return p;
}

export function spawnTool(tool: string, args: string[], opts: SpawnOptions): ChildProcess {
  note(tool);
  return spawn(tool, args, opts);
}

/** The total of spawns so far (all programs). */
export function spawnTotal(): number {
  let n = 0;
  for (const v of spawnCounts.values()) n += v;
  return n;
}
