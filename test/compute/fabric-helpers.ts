// Shared by the suites that run real workloads under runc: a driver over a scratch data
// directory, with a compute range (test/support/compute-range.ts) and uid base of its own so
// concurrent suites never collide.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomInt } from 'node:crypto';
import { RuncDriver, type RuncDriverOptions } from '../../src/compute/fabric/runc.ts';
import { removeFilter } from '../../src/compute/fabric/network.ts';
import { testComputeRange } from '../support/compute-range.ts';

/** Fails (never skips) when the host cannot run the fabric: CI runs as root with runc installed. */
export function requireRunc(): void {
  const missing: string[] = [];
  if (process.getuid?.() !== 0) missing.push('root');
  try {
    execFileSync('runc', ['--version'], { stdio: 'ignore' });
  } catch {
    missing.push('runc (apt-get install runc)');
  }
  for (const c of ['cpu', 'cpuacct', 'memory', 'pids', 'blkio']) if (!existsSync(`/sys/fs/cgroup/${c}/tasks`)) missing.push(`cgroup v1 ${c} controller`);
  if (!existsSync('/bin/busybox')) missing.push('busybox-static');
  if (missing.length) throw new Error(`these suites run real workloads under runc and need: ${missing.join(', ')}`);
}

export interface Fabric {
  driver: RuncDriver;
  dataDir: string;
  range: string;
  close(): Promise<void>;
}

export function scratchFabric(opts: Partial<RuncDriverOptions> = {}): Fabric {
  const dataDir = mkdtempSync(join(tmpdir(), 'nexus-compute-'));
  const range = testComputeRange();
  const uidBase = 1_000_000 + randomInt(20_000) * 65_536;
  const driver = new RuncDriver({ dataDir, range, uidBase, stopGraceMs: 1000, ...opts });
  return {
    driver,
    dataDir,
    range,
    async close() {
      for (const imvu of await driver.deployed()) await driver.cleanup(imvu).catch(() => undefined);
      await driver.close();
      await removeFilter(driver.tag).catch(() => undefined);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
