import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { rmSync, statSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceOf, envelopeResources } from '../../src/compute/envelopes/resources.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { initDataDir } from '../../src/core/platform.ts';
import { requireRunc, scratchFabric, type Fabric } from '../compute/fabric-helpers.ts';
import { deniedBy, testPlatform } from '../../src/core/testing.ts';

// Gates 2 and 16, threat 1.2: what IMVU A's workload can see and reach, tried from inside A, and
// that A cannot take B's files as its image.
const env = { cpu_cores: 1, memory_gb: 1, storage_gb: 1, iops: 100, burst_multiplier: 2, burst_minutes: 5 };
const OFFERED = 18_000 + Math.floor(Math.random() * 2000);

function listen(host: string, port = 0): Promise<Server> {
  return new Promise((ok, fail) => {
    const s = createServer((c) => c.end('hello\n'));
    s.on('error', fail);
    s.listen(port, host, () => ok(s));
  });
}
const portOf = (s: Server) => (s.address() as { port: number }).port;

describe('isolation between IMVUs and from the host', () => {
  let f: Fabric;
  let a: { address?: string; hostAddress?: string; pid?: number };
  let b: { address?: string; hostAddress?: string; pid?: number };
  const servers: Server[] = [];
  let daemon: RunningServer | undefined;
  const inA = (script: string) => f.driver.exec('IMVU-001', ['sh', '-c', script], { timeoutMs: 20_000 });
  const connects = async (host: string, port: number) => (await inA(`nc -w 2 ${host} ${port} </dev/null`)).code === 0;

  beforeAll(async () => {
    requireRunc();
    f = scratchFabric({ offeredPorts: [OFFERED] });
    const dev = deviceOf(statSync(f.dataDir).dev);
    for (const [imvu, seq] of [['IMVU-001', 1], ['IMVU-002', 2]] as const)
      await f.driver.deploy({
        imvu,
        seq,
        blueprint: { image: 'busybox', files: [{ path: '/www/index.html', content: `${imvu}\n` }], command: ['sh', '-c', `echo secret-of-${imvu} > /data/secret; exec httpd -f -p 8080 -h /www`], port: 8080 },
        resources: envelopeResources(env, dev),
      });
    a = await f.driver.start('IMVU-001');
    b = await f.driver.start('IMVU-002');
    // A daemon with its data directory, its API on A's host address, where A's packets arrive.
    const platformDir = `${f.dataDir}/platform`;
    await (await initDataDir(platformDir, { suffix: 'isolation.test' })).close();
    daemon = await startServer({ dataDir: platformDir, host: a.hostAddress!, port: 0, logger: false, integrityIntervalMs: 0 });
    servers.push(await listen('127.0.0.1'), await listen(a.hostAddress!), await listen(a.hostAddress!, OFFERED));
  }, 120_000);
  afterAll(async () => {
    for (const s of servers) s.close();
    await daemon?.close();
    await f?.close();
  }, 120_000);

  it("A cannot read B's data, and cannot even see it", async () => {
    const hostPathOfB = f.driver.dataPath('IMVU-002');
    const r = await inA(`cat /data/secret; ls -a /data; ls ${hostPathOfB} 2>&1; cat ${hostPathOfB}/secret 2>&1; grep -rl secret-of-IMVU-002 / 2>/dev/null | head -1; echo end`);
    expect(r.stdout).toContain('secret-of-IMVU-001');
    expect(r.stdout).not.toContain('secret-of-IMVU-002');
    expect(r.stdout).toMatch(/No such file or directory/);
    // On the host, B's volume belongs to B's mapped root alone, mode 0700: A's uids are another range.
    const st = statSync(hostPathOfB);
    expect(st.mode & 0o077).toBe(0);
    expect(st.uid).not.toBe(statSync(f.driver.dataPath('IMVU-001')).uid);
  });

  it("A cannot see B's processes, nor the host's", async () => {
    const r = await inA('ps -o pid,comm; ls /proc | grep -c "^[0-9]"');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\s*1\s+httpd$/m);
    const pids = r.stdout.split('\n').map((l) => Number(l.trim().split(/\s+/)[0])).filter((n) => Number.isInteger(n) && n > 0);
    expect(pids).not.toContain(b.pid);
    expect(Math.max(...pids)).toBeLessThan(1000);
    expect(r.stdout).not.toMatch(/node|vitest|runc/);
  });

  it("A cannot connect to B's address, though the host can", async () => {
    expect(b.address).toBeDefined();
    const host = await fetch(`http://${b.address}:8080/`).then((r) => r.text());
    expect(host).toBe('IMVU-002\n');
    expect(await connects(b.address!, 8080)).toBe(false);
    expect(await connects(b.hostAddress!, 8080)).toBe(false);
  }, 30_000);

  it("A cannot reach the daemon's API nor its database files", async () => {
    const url = new URL(daemon!.url);
    expect((await fetch(`${daemon!.url}/v1/status`)).status).toBeLessThan(500);
    expect(await connects(url.hostname, Number(url.port))).toBe(false);
    const r = await inA(`ls ${daemon!.dataDir} 2>&1; ls ${f.dataDir} 2>&1; find / -name '*.db' -o -name '*.sqlite*' 2>/dev/null | head`);
    expect(r.stdout).not.toMatch(/\.db|sqlite|ledger/);
  }, 30_000);

  it("A cannot take B's files as its image: refused by name at the chokepoint (gate 16) and by real path in the fabric", async () => {
    const dev = deviceOf(statSync(f.dataDir).dev);
    // An OCI layout in B's directory (where B's snapshots live), and a symlink to it from outside.
    const inB = join(f.dataDir, 'imvus', 'IMVU-002', 'images');
    execFileSync('umoci', ['init', '--layout', inB]);
    execFileSync('umoci', ['new', '--image', `${inB}:t`]);
    const link = join(f.dataDir, '..', `nexus-link-${randomUUID()}`);
    symlinkSync(inB, link);
    try {
      for (const image of [`oci:${inB}:t`, `oci:${link}:t`])
        await expect(f.driver.deploy({ imvu: 'IMVU-001', seq: 1, blueprint: { image, command: ['sh'] }, resources: envelopeResources(env, dev) })).rejects.toThrow(/outside this IMVU's own/);
      // A's rootfs is untouched: it still serves its page.
      expect(await fetch(`http://${a.address}:8080/`).then((r) => r.text())).toBe('IMVU-001\n');
      // The same kind of layout in an IMVU's own directory is its to use.
      const own = join(f.dataDir, 'imvus', 'IMVU-003', 'images');
      execFileSync('umoci', ['init', '--layout', own]);
      execFileSync('umoci', ['new', '--image', `${own}:t`]);
      await f.driver.deploy({ imvu: 'IMVU-003', seq: 3, blueprint: { image: `oci:${own}:t`, command: ['sh'] }, resources: envelopeResources(env, dev) });
    } finally {
      rmSync(link, { force: true });
    }
    // At the chokepoint: the path names another IMVU's directory.
    const p = await testPlatform();
    try {
      const alice = await p.register('alice', 'creator');
      for (const name of ['One', 'Two']) expect((await p.as(alice, 'imvu.create', { name, owner: alice.id, jurisdiction: 'US-CCPA' })).allowed).toBe(true);
      const deploy = (image: string) => p.as(alice, 'compute.deploy', { imvu: 'IMVU-001', blueprint: { image, command: ['sh'] } });
      expect(deniedBy(await deploy(`oci:${p.dataDir}/imvus/IMVU-002/snapshots:t`))).toEqual([16]);
      expect(deniedBy(await deploy('oci:/srv/x/imvus/IMVU-002:t'))).toEqual([16]);
      expect((await deploy(`oci:${p.dataDir}/imvus/IMVU-001/images:t`)).allowed).toBe(true);
      expect((await deploy('oci:/srv/images/web:v1')).allowed).toBe(true);
    } finally {
      await p.cleanup();
    }
  }, 120_000);

  it("A cannot reach the host's loopback services or other host ports, except those offered", async () => {
    expect(await connects('127.0.0.1', portOf(servers[0]!))).toBe(false);
    expect(await connects(a.hostAddress!, portOf(servers[1]!))).toBe(false);
    expect(await connects(a.hostAddress!, OFFERED)).toBe(true);
  }, 30_000);
});
