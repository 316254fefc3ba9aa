import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { claimComputeRange, foreignUse, linksOf, type RangeClaim } from './range-claim.ts';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function claimsDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'nexus-claims-'));
  dirs.push(d);
  return d;
}

// Ranges in 10.150.0.0/16: outside the default range and the test suites' /24s, so nothing else on
// this host uses them.
describe('claims of the compute range on one host', () => {
  it('a live claim that overlaps refuses the second instance, naming both ranges and the first; a disjoint one passes', async () => {
    const dir = claimsDir();
    const a = await claimComputeRange({ dir, tag: 'aaaa', range: '10.150.0.0/16', dataDir: '/srv/a' });
    expect(a.ok).toBe(true);
    const b = await claimComputeRange({ dir, tag: 'bbbb', range: '10.150.4.0/24', dataDir: '/srv/b' });
    expect(b).toEqual({
      ok: false,
      why: `compute range 10.150.4.0/24 overlaps 10.150.0.0/16, claimed by platform instance aaaa (pid ${process.pid}, data directory /srv/a) on this host; give each platform its own --compute-range`,
    });
    expect(existsSync(join(dir, 'bbbb.json'))).toBe(false);
    expect((await claimComputeRange({ dir, tag: 'bbbb', range: '10.151.4.0/24', dataDir: '/srv/b' })).ok).toBe(true);
    // The first one's range, from the other side.
    expect(await claimComputeRange({ dir, tag: 'cccc', range: '10.151.0.0/16', dataDir: '/srv/c' })).toMatchObject({ ok: false, why: expect.stringMatching(/^compute range 10\.151\.0\.0\/16 overlaps 10\.151\.4\.0\/24, claimed by platform instance bbbb /) });
  });

  it('the same instance (same tag, same data directory) takes its claim back; released, it no longer counts', async () => {
    const dir = claimsDir();
    const first = await claimComputeRange({ dir, tag: 'aaaa', range: '10.150.0.0/24', dataDir: '/srv/a' });
    expect(first.ok).toBe(true);
    const again = await claimComputeRange({ dir, tag: 'aaaa', range: '10.150.0.0/24', dataDir: '/srv/a' });
    expect(again.ok).toBe(true);
    // Another data directory whose tag is the same would clash by name: refused while it lives.
    expect(await claimComputeRange({ dir, tag: 'aaaa', range: '10.152.0.0/24', dataDir: '/srv/other' })).toMatchObject({ ok: false, why: expect.stringMatching(/same tag/) });
    if (again.ok) again.release();
    expect(existsSync(join(dir, 'aaaa.json'))).toBe(false);
    expect((await claimComputeRange({ dir, tag: 'dddd', range: '10.150.0.0/23', dataDir: '/srv/d' })).ok).toBe(true);
  });

  it('a claim whose process is gone (or whose pid is now another process) and that left no link is stale: taken over and removed', async () => {
    const dir = claimsDir();
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const stale: RangeClaim = { tag: 'eeee', range: '10.150.0.0/16', dataDir: '/srv/e', pid: Number(dead.stdout), pidStart: '1', since: new Date().toISOString() };
    writeFileSync(join(dir, 'eeee.json'), JSON.stringify(stale));
    // This test's own pid, with a start time that is not this process's: a reused pid.
    writeFileSync(join(dir, 'ffff.json'), JSON.stringify({ ...stale, tag: 'ffff', pid: process.pid, pidStart: '1' }));
    const taken = await claimComputeRange({ dir, tag: 'abab', range: '10.150.9.0/24', dataDir: '/srv/ab' });
    expect(taken.ok).toBe(true);
    expect(existsSync(join(dir, 'eeee.json'))).toBe(false);
    expect(existsSync(join(dir, 'ffff.json'))).toBe(false);
    const mine = JSON.parse(readFileSync(join(dir, 'abab.json'), 'utf8')) as RangeClaim;
    expect(mine).toMatchObject({ tag: 'abab', range: '10.150.9.0/24', dataDir: '/srv/ab', pid: process.pid });
  });

  it('two platforms in one process claiming overlapping ranges at once: exactly one gets it', async () => {
    const dir = claimsDir();
    const results = await Promise.all(['1111', '2222', '3333'].map((tag) => claimComputeRange({ dir, tag, range: '10.150.0.0/24', dataDir: `/srv/${tag}` })));
    expect(results.filter((r) => r.ok)).toHaveLength(1);
  });

  it('four processes claiming overlapping ranges at once: exactly one gets it (the kernel lock)', async () => {
    const dir = claimsDir();
    const module = join(import.meta.dirname, 'range-claim.ts');
    // Each says "ready", claims once told "go" (all at the same moment), then holds on (its claim
    // stays live) until its stdin closes.
    const script = `const { claimComputeRange } = await import(${JSON.stringify(module)});
      process.stdout.write('ready\\n');
      await new Promise((ok) => process.stdin.once('data', ok));
      const r = await claimComputeRange({ dir: process.argv[1], tag: process.argv[2], range: '10.150.0.0/' + process.argv[3], dataDir: '/srv/' + process.argv[2] });
      process.stdout.write(JSON.stringify(r) + '\\n');`;
    const kids = ['4441', '4442', '4443', '4444'].map((tag, i) => spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dir, tag, String(22 + i)], { stdio: ['pipe', 'pipe', 'inherit'] }));
    const outs = kids.map(() => '');
    const lineOf = (i: number, n: number) =>
      new Promise<string>((ok) => {
        const k = kids[i]!;
        const check = () => {
          const l = outs[i]!.split('\n');
          if (l.length > n) ok(l[n - 1]!);
        };
        k.stdout!.on('data', check);
        k.once('exit', () => ok(outs[i]!.split('\n')[n - 1] ?? ''));
        check();
      });
    kids.forEach((k, i) => k.stdout!.on('data', (d: Buffer) => (outs[i] += d.toString())));
    try {
      await Promise.all(kids.map((_, i) => lineOf(i, 1)));
      for (const k of kids) k.stdin!.write('go\n');
      const lines = await Promise.all(kids.map((_, i) => lineOf(i, 2)));
      const results = lines.map((l) => JSON.parse(l) as { ok: boolean; why?: string });
      expect(results.filter((r) => r.ok), lines.join('\n')).toHaveLength(1);
      for (const r of results.filter((x) => !x.ok)) expect(r.why).toMatch(/^compute range 10\.150\.0\.0\/2\d overlaps 10\.150\.0\.0\/2\d, claimed by platform instance 444\d /);
    } finally {
      for (const k of kids) k.stdin!.end();
    }
  }, 60_000);
});

describe("the host's own addresses and routes", () => {
  const addr = [
    '1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever',
    '4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever preferred_lft forever',
    '7: nx1a2bh1    inet 10.150.0.5/30 scope global nx1a2bh1\\       valid_lft forever preferred_lft forever',
    '9: wg0    inet 10.150.200.1/24 scope global wg0\\       valid_lft forever preferred_lft forever',
  ].join('\n');
  const route = [
    'default via 192.0.2.1 dev eth0',
    '10.0.0.0/8 via 192.0.2.1 dev eth0',
    '10.150.0.4/30 dev nx1a2bh1 proto kernel scope link src 10.150.0.5',
    '10.150.200.0/24 dev wg0 proto kernel scope link src 10.150.200.1',
    'blackhole 10.150.64.0/18 proto static',
    '192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2',
  ].join('\n');

  it("finds addresses and routes inside the range on interfaces that are not the instance's own", () => {
    expect(foreignUse('1a2b', '10.150.0.0/16', { addr, route })).toEqual([
      'address 10.150.200.1/24 on wg0',
      'route 10.150.200.0/24 dev wg0 proto kernel scope link src 10.150.200.1',
      'route blackhole 10.150.64.0/18 proto static',
    ]);
    // Another instance's workload link is not this one's.
    expect(foreignUse('ffff', '10.150.0.0/24', { addr, route })).toEqual(['address 10.150.0.5/30 on nx1a2bh1', 'route 10.150.0.4/30 dev nx1a2bh1 proto kernel scope link src 10.150.0.5']);
    // Wider routes (default, 10.0.0.0/8) and other ranges: nothing.
    expect(foreignUse('ffff', '10.151.0.0/16', { addr, route })).toEqual([]);
  });

  it("lists an instance's host-end links from `ip -o link show`", () => {
    const link = ['1: lo: <LOOPBACK,UP> mtu 65536', '7: nx1a2bh1@if2: <BROADCAST,UP> mtu 1500', '8: nx1a2bh12@if2: <BROADCAST> mtu 1500', '9: nx1a2b-x: <BROADCAST> mtu 1500'].join('\n');
    expect(linksOf('1a2b', link)).toEqual(['nx1a2bh1', 'nx1a2bh12']);
    expect(linksOf('ffff', link)).toEqual([]);
  });
});
