// A platform that stops with no workload left running takes its host-wide traces with it: its
// packet-filter chain and the jumps to it in INPUT and FORWARD (walked by every packet the host
// sees, one set per platform that ever ran), and runc's state directory. With a workload still
// running, they stay: the filter is what keeps that workload from reaching anything else.
import { execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deviceOf, envelopeResources } from '../envelopes/resources.ts';
import { requireRunc, scratchFabric, type Fabric } from '../../../test/compute/fabric-helpers.ts';

const filterLines = (tag: string) =>
  execFileSync('iptables-save', ['-t', 'filter'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes(`NEXUS-${tag}`));

describe('runc driver close', () => {
  const env = { cpu_cores: 1, memory_gb: 1, storage_gb: 1, iops: 100, burst_multiplier: 2, burst_minutes: 5 };
  let f: Fabric | undefined;
  beforeAll(() => requireRunc());
  afterEach(async () => {
    await f?.close();
    f = undefined;
  }, 60_000);

  const deployed = async (run: boolean) => {
    f = scratchFabric();
    await f.driver.deploy({ imvu: 'IMVU-001', seq: 1, blueprint: { image: 'busybox', command: ['sleep', '1000'] }, resources: envelopeResources(env, deviceOf(statSync(f.dataDir).dev)) });
    if (run) await f.driver.start('IMVU-001');
    return f;
  };

  it('leaves no filter chain, jump or runc state directory when nothing runs on', async () => {
    const { driver } = await deployed(false);
    expect(filterLines(driver.tag).length).toBeGreaterThan(0);
    await driver.close();
    expect(filterLines(driver.tag)).toEqual([]);
    expect(existsSync(`/run/nexus-runc-${driver.tag}`)).toBe(false);
  }, 60_000);

  it('keeps them while a workload still runs (a restart adopts it)', async () => {
    const { driver } = await deployed(true);
    await driver.close();
    // The chain, its rules and the three jumps to it.
    expect(filterLines(driver.tag).filter((l) => l.startsWith('-A INPUT') || l.startsWith('-A FORWARD'))).toHaveLength(3);
    expect(existsSync(`/run/nexus-runc-${driver.tag}`)).toBe(true);
  }, 60_000);
});
