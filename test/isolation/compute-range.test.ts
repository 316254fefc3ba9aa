// Two platforms on one host must not share workload addresses: the IMVU #1 of each would get the same
// /30 on two host interfaces, and one platform's gateway would reach the other's workload. The built
// daemon in real processes, real runc: a second platform whose compute range overlaps the first's
// keeps its fabric off and says so in one line, naming both ranges and the first platform; its
// `compute start` is refused and recorded nowhere. With disjoint ranges both run a workload, each
// at its own /30. The first platform restarting after kill -9 takes its own claim back. Another
// platform's claim left by kill -9 counts while its workload's link is still there, and is taken
// over once that is gone.
import { execFileSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { instanceTag, RuncDriver } from '../../src/compute/fabric/runc.ts';
import { removeFilter } from '../../src/compute/fabric/network.ts';
import { CLAIMS_DIR } from '../../src/compute/fabric/range-claim.ts';
import { requireRunc } from '../compute/fabric-helpers.ts';
import { run, tempDir } from '../cli/harness.ts';
import { testComputeRange } from '../support/compute-range.ts';
import { spawnDaemon, type DaemonProcess } from '../support/daemon.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const root = tempDir('compute-range');
// Each data directory is a temporary directory of its own: the workloads' mapped roots must traverse
// it (the fabric makes it 0711), and a parent of mode 0700 would stop them.
const dataDirs = new Map<string, string>();
const data = (name: string) => dataDirs.get(name) ?? (dataDirs.set(name, tempDir(`compute-range-${name}`)), dataDirs.get(name)!);
const daemons: DaemonProcess[] = [];
// A /24 of A's, B's /23 holding it (a different range that overlaps it), C's elsewhere.
const rangeA = testComputeRange();
const [o1, o2, o3] = rangeA.split('.').map(Number) as [number, number, number];
const rangeB = `${o1}.${o2}.${o3 - (o3 % 2)}.0/23`;
const rangeC = testComputeRange();
const prefix24 = (range: string) => range.split('.').slice(0, 3).join('\\.');

async function serve(name: string, range: string): Promise<DaemonProcess> {
  const d = await spawnDaemon(data(name), ['--compute-range', range], { via: 'cli' });
  daemons.push(d);
  return d;
}
const fabricOff = (d: DaemonProcess) => d.output.filter((l) => l.includes('compute fabric off')).map((l) => (JSON.parse(l) as { msg: string }).msg);
const nexus = (d: DaemonProcess, name: string, ...args: string[]) => run(args, { NEXUS_HOME: join(root, name, 'home'), NEXUS_URL: d.url });

/** Creates alice and her IMVU-001 on the daemon, deploys a sleeping busybox, starts it and waits until it runs. */
async function runWorkload(d: DaemonProcess, name: string): Promise<string> {
  for (const args of [
    ['identity', 'create', 'alice', '--role', 'creator'],
    ['imvu', 'create', '--name', name, '--owner', 'alice', '--jurisdiction', 'EU-GDPR', '--cpu', '1', '--memory', '1', '--as', 'alice'],
  ]) {
    const r = await nexus(d, name, ...args);
    expect(r.code, r.stderr).toBe(0);
  }
  const blueprint = join(root, `${name}.yaml`);
  writeFileSync(blueprint, 'image: busybox\ncommand: [sleep, "100000"]\n');
  for (const args of [['compute', 'deploy', 'IMVU-001', '--blueprint', blueprint, '--as', 'alice'], ['compute', 'start', 'IMVU-001', '--as', 'alice']]) {
    const r = await nexus(d, name, ...args);
    expect(r.code, r.stderr).toBe(0);
  }
  return running(d, name);
}

async function running(d: DaemonProcess, name: string): Promise<string> {
  let status = '';
  for (let i = 0; i < 120 && !/: running at /.test(status); i++) {
    status = (await nexus(d, name, 'compute', 'status', 'IMVU-001', '--as', 'alice')).stdout;
    if (!/: running at /.test(status)) await sleep(500);
  }
  return status;
}

const hostAddresses = () => execFileSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' });

beforeAll(() => {
  requireRunc();
});

afterAll(async () => {
  for (const d of daemons) await d.stop(5_000);
  for (const [name, range] of [['a', rangeA], ['c', rangeC]] as const) {
    if (!existsSync(data(name))) continue;
    const driver = new RuncDriver({ dataDir: data(name), range });
    for (const imvu of await driver.deployed()) await driver.cleanup(imvu).catch(() => undefined);
    await driver.close();
    await removeFilter(driver.tag).catch(() => undefined);
  }
  for (const d of [root, ...dataDirs.values()]) rmSync(d, { recursive: true, force: true });
}, 120_000);

describe('compute ranges of two platforms on one host', () => {
  it('an overlapping range keeps the second fabric off (one line naming both ranges and the first platform); disjoint ranges both run', async () => {
    const a = await serve('a', rangeA);
    expect(fabricOff(a)).toEqual([]);

    const b = await serve('b', rangeB);
    expect(fabricOff(b)).toEqual([
      `compute fabric off: compute range ${rangeB} overlaps ${rangeA}, claimed by platform instance ${instanceTag(data('a'))} (pid ${a.child.pid}, data directory ${data('a')}) on this host; give each platform its own --compute-range; everything else runs`,
    ]);
    // Everything else runs; no workload does, and the refusal records nothing.
    for (const args of [
      ['identity', 'create', 'alice', '--role', 'creator'],
      ['imvu', 'create', '--name', 'b', '--owner', 'alice', '--jurisdiction', 'EU-GDPR', '--as', 'alice'],
    ]) {
      const r = await nexus(b, 'b', ...args);
      expect(r.code, r.stderr).toBe(0);
    }
    const size = async () => Number((await (await fetch(`${b.url}/v1/ledger/checkpoint`)).text()).split('\n')[1]);
    const before = await size();
    const start = await nexus(b, 'b', 'compute', 'start', 'IMVU-001', '--as', 'alice');
    expect(start.code).not.toBe(0);
    expect(start.stderr).toMatch(/the compute fabric does not run on this host .*nothing was recorded/);
    expect(await size()).toBe(before);
    expect(existsSync(`/run/nexus-runc-${instanceTag(data('b'))}`)).toBe(false);

    const c = await serve('c', rangeC);
    expect(fabricOff(c)).toEqual([]);
    const statusA = await runWorkload(a, 'a');
    const statusC = await runWorkload(c, 'c');
    // The same IMVU-001 on each, at a /30 of its own platform's range, on its own host link.
    expect(statusA).toMatch(new RegExp(`IMVU-001: running at ${prefix24(rangeA)}\\.6\\b`));
    expect(statusC).toMatch(new RegExp(`IMVU-001: running at ${prefix24(rangeC)}\\.6\\b`));
    const addrs = hostAddresses();
    expect(addrs).toMatch(new RegExp(`nx${instanceTag(data('a'))}h1\\s+inet ${prefix24(rangeA)}\\.5/30`));
    expect(addrs).toMatch(new RegExp(`nx${instanceTag(data('c'))}h1\\s+inet ${prefix24(rangeC)}\\.5/30`));
  }, 300_000);

  it('the first platform restarting after kill -9 takes its own claim back; its workload is adopted', async () => {
    // Its claim is still there, and live: its workload's link is.
    const a = daemons[0]!;
    a.child.kill('SIGKILL');
    await a.exited;
    expect(existsSync(join(CLAIMS_DIR, `${instanceTag(data('a'))}.json`))).toBe(true);
    const again = await serve('a', rangeA);
    expect(fabricOff(again)).toEqual([]);
    expect(await running(again, 'a')).toMatch(new RegExp(`IMVU-001: running at ${prefix24(rangeA)}\\.6\\b`));
  }, 120_000);

  it('a daemon killed with -9 keeps its range while its workload link is left; once that is gone the claim is stale and taken over', async () => {
    const c = daemons[2]!;
    const tagC = instanceTag(data('c'));
    c.child.kill('SIGKILL');
    await c.exited;
    const d = await serve('d', rangeC);
    expect(fabricOff(d)).toEqual([
      `compute fabric off: compute range ${rangeC} overlaps ${rangeC}, claimed by platform instance ${tagC} (pid ${c.child.pid}, data directory ${data('c')}) on this host; give each platform its own --compute-range; everything else runs`,
    ]);
    await d.stop(10_000);

    const driver = new RuncDriver({ dataDir: data('c'), range: rangeC });
    await driver.cleanup('IMVU-001');
    await driver.close();
    expect(hostAddresses()).not.toContain(`nx${tagC}h1`);
    const taken = await serve('d', rangeC);
    expect(fabricOff(taken)).toEqual([]);
    expect(existsSync(join(CLAIMS_DIR, `${tagC}.json`))).toBe(false);
    expect(existsSync(join(CLAIMS_DIR, `${instanceTag(data('d'))}.json`))).toBe(true);
  }, 180_000);

  it("an address inside the range on a host interface that is not a platform's own keeps the fabric off", async () => {
    // Some other software's interface (a veth pair here) holding an address in the range.
    const range = testComputeRange();
    const address = `${range.split('.').slice(0, 3).join('.')}.9`;
    const link = `nxr${process.pid % 100_000}`;
    execFileSync('ip', ['link', 'add', link, 'type', 'veth', 'peer', 'name', `${link}p`]);
    try {
      execFileSync('ip', ['addr', 'add', `${address}/28`, 'dev', link]);
      execFileSync('ip', ['link', 'set', link, 'up']);
      execFileSync('ip', ['link', 'set', `${link}p`, 'up']);
      const e = await serve('e', range);
      expect(fabricOff(e)).toHaveLength(1);
      expect(fabricOff(e)[0]).toMatch(new RegExp(`^compute fabric off: compute range ${range.replace(/\./g, '\\.')} is already in use on this host \\(address ${address.replace(/\./g, '\\.')}/28 on ${link}(; route [^)]*)?\\), not by this platform; give it another --compute-range; everything else runs$`));
      await e.stop(10_000);
    } finally {
      execFileSync('ip', ['link', 'delete', link]);
    }
    const e = await serve('e', range);
    expect(fabricOff(e)).toEqual([]);
  }, 120_000);
});
