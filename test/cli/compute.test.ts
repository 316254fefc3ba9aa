// `nexus compute` and `nexus audit watch` as a creator runs them: the built CLI in subprocesses
// against a real daemon on 127.0.0.1 running the compute fabric (runc). A YAML blueprint with a
// health check is deployed and started; status shows the health, logs the output; audit watch
// prints the kernel's cgroup limits beside the envelope the ledger gives, and raises an alarm when
// a cgroup file is changed behind the daemon's back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { initDataDir } from '../../src/core/platform.ts';
import { CGROUP_ROOT, RuncDriver } from '../../src/compute/fabric/runc.ts';
import { removeFilter } from '../../src/compute/fabric/network.ts';
import { requireRunc } from '../compute/fabric-helpers.ts';
import { run, tempDir } from './harness.ts';
import { testComputeRange } from '../support/compute-range.ts';

let server: RunningServer;
let data: string;
let home: string;
let env: Record<string, string>;
const range = testComputeRange();
const nexus = (...args: string[]) => run(args, env);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  requireRunc();
  data = tempDir('compute-data');
  home = tempDir('compute-home');
  await (await initDataDir(data)).close();
  // The periodic read-back is off here so that a value changed behind the daemon stays for audit watch to see.
  server = await startServer({ dataDir: data, host: '127.0.0.1', port: 0, logger: false, integrityIntervalMs: 0, compute: { range, service: { verifyEveryMs: 0, healthTickMs: 300 } } });
  expect(server.compute).toBeDefined();
  env = { NEXUS_HOME: home, NEXUS_URL: server.url };
}, 120_000);

afterAll(async () => {
  await server?.close();
  if (data) {
    const driver = new RuncDriver({ dataDir: data, range });
    for (const imvu of await driver.deployed()) await driver.cleanup(imvu).catch(() => undefined);
    await driver.close();
    await removeFilter(driver.tag).catch(() => undefined);
  }
  for (const d of [data, home]) if (d) rmSync(d, { recursive: true, force: true });
}, 120_000);

describe('nexus compute and audit watch (subprocesses against a real daemon with the fabric)', () => {
  it('deploys a YAML blueprint, starts it, shows health and logs; audit watch compares the kernel with the ledger', async () => {
    expect((await nexus('identity', 'create', 'alice', '--role', 'creator')).code).toBe(0);
    const created = await nexus('imvu', 'create', '--name', 'web', '--owner', 'alice', '--jurisdiction', 'EU-GDPR', '--cpu', '1', '--memory', '1', '--as', 'alice');
    expect(created.code, created.stderr).toBe(0);
    const imvu = /IMVU-\d{3,}/.exec(created.stdout)![0];

    const bad = join(home, 'bad.yaml');
    writeFileSync(bad, 'image: busybox\ncommand: [httpd]\nports: 8080\n');
    const refused = await nexus('compute', 'deploy', imvu, '--blueprint', bad, '--as', 'alice');
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/bad\.yaml:3:1: unknown field ports/);

    const blueprint = join(home, 'web.yaml');
    writeFileSync(
      blueprint,
      [
        'image: busybox',
        'files:',
        '  - path: /www/healthz',
        '    content: "ok\\n"',
        'command: [sh, -c, "echo serving on $PORT; exec httpd -f -p $PORT -h /www"]',
        'port: 8080',
        'health: { http_path: /healthz, interval_ms: 300, retries: 2 }',
        '',
      ].join('\n'),
    );
    const deployed = await nexus('compute', 'deploy', imvu, '--blueprint', blueprint, '--as', 'alice');
    expect(deployed.code, deployed.stderr).toBe(0);
    const started = await nexus('compute', 'start', imvu, '--as', 'alice');
    expect(started.code, started.stderr).toBe(0);

    let status = '';
    for (let i = 0; i < 120 && !/health: passing/.test(status); i++) {
      status = (await nexus('compute', 'status', imvu, '--as', 'alice')).stdout;
      if (!/health: passing/.test(status)) await sleep(500);
    }
    expect(status).toMatch(new RegExp(`${imvu}: running at 10\\.`));
    expect(status).toMatch(/health: passing; restarted 0 times by its restart policy/);
    expect(status).toMatch(/kernel limits match the ledger/);
    const logs = await nexus('compute', 'logs', imvu, '--as', 'alice');
    expect(logs.stdout).toContain('serving on 8080');

    const watch = await nexus('audit', 'watch', '--once', '--imvu', imvu, '--as', 'alice');
    expect(watch.code, watch.stdout + watch.stderr).toBe(0);
    expect(watch.stdout).toMatch(new RegExp(`✅ Workload of ${imvu} \\(running at 10\\.[0-9.]+\\): its kernel cgroup limits equal the ledger's envelope`));
    expect(watch.stdout).toMatch(/cpu_quota_us +kernel +100000 +ledger +100000/);
    expect(watch.stdout).toMatch(/memory_limit_bytes +kernel +1073741824 +ledger +1073741824/);
    expect(watch.stdout).toMatch(/pids_max +kernel +256 +ledger +256/);

    // Behind the daemon's back: the CPU quota tripled in the cgroup file.
    writeFileSync(`${CGROUP_ROOT}/cpu${server.compute!.driver.cgroupPath!(imvu)}/cpu.cfs_quota_us`, '300000');
    const alarm = await nexus('audit', 'watch', '--once', '--imvu', imvu, '--as', 'alice');
    expect(alarm.code, alarm.stdout + alarm.stderr).toBe(4);
    expect(alarm.stdout).toMatch(/✗ cpu_quota_us +kernel +300000 +ledger +100000/);
    expect(alarm.stdout).toMatch(/ALARM [0-9a-f]{8}/);

    const stopped = await nexus('compute', 'stop', imvu, '--as', 'alice');
    expect(stopped.code, stopped.stderr).toBe(0);
  }, 240_000);

  it('nexus compute exec: a signed command through the chokepoint, output and exit code returned; another creator refused', async () => {
    expect((await nexus('identity', 'create', 'erin', '--role', 'creator')).code).toBe(0);
    const created = await nexus('imvu', 'create', '--name', 'shell', '--owner', 'erin', '--jurisdiction', 'EU-GDPR', '--cpu', '1', '--memory', '1', '--as', 'erin');
    expect(created.code, created.stderr).toBe(0);
    const imvu = /IMVU-\d{3,}/.exec(created.stdout)![0];
    const blueprint = join(home, 'sleep.yaml');
    writeFileSync(blueprint, 'image: busybox\ncommand: [sleep, "100000"]\n');
    expect((await nexus('compute', 'deploy', imvu, '--blueprint', blueprint, '--as', 'erin')).code).toBe(0);
    expect((await nexus('compute', 'start', imvu, '--as', 'erin')).code).toBe(0);
    let status = '';
    for (let i = 0; i < 120 && !/: running at /.test(status); i++) {
      status = (await nexus('compute', 'status', imvu, '--as', 'erin')).stdout;
      if (!/: running at /.test(status)) await sleep(500);
    }
    expect(status).toMatch(/: running at /);

    const ledger = server.compute!.platform.chokepoint.ledger;
    const before = ledger.size;
    const ran = await nexus('compute', 'exec', imvu, '--as', 'erin', '--', 'sh', '-c', 'echo "out of $NEXUS_IMVU"; echo "to stderr" >&2; exit 3');
    expect(ran.stdout).toBe(`out of ${imvu}\n`);
    expect(ran.stderr).toContain('to stderr');
    expect(ran.code).toBe(3);
    const ok = await nexus('compute', 'exec', imvu, '--as', 'erin', '--', 'ls', '/data');
    expect(ok.code, ok.stderr).toBe(0);
    // Each request is a signed entry in the ledger, by erin (the output is not recorded; the
    // service's own entries, usage reports, may come in between).
    const entries = await server.compute!.platform.store.readEntries(before, ledger.size);
    const { decodeEntry } = await import('../../src/core/ledger/ledger.ts');
    const execs = entries.map((e) => decodeEntry(e)).filter((e) => e.command.command.type === 'compute.exec');
    expect(execs.map((e) => e.command.command.body)).toEqual([
      { imvu, command: ['sh', '-c', 'echo "out of $NEXUS_IMVU"; echo "to stderr" >&2; exit 3'] },
      { imvu, command: ['ls', '/data'] },
    ]);
    expect(execs.every((e) => e.decision.allowed)).toBe(true);
    expect(JSON.stringify(execs)).not.toContain('out of IMVU');

    // Not the creator: refused by gate 2, nothing run.
    expect((await nexus('identity', 'create', 'mallory', '--role', 'creator')).code).toBe(0);
    const refused = await nexus('compute', 'exec', imvu, '--as', 'mallory', '--', 'sh', '-c', 'echo should not run');
    expect(refused.code).not.toBe(0);
    expect(refused.stdout).not.toContain('should not run');
    expect(refused.stderr).toMatch(/gate 2|denied/i);
    expect((await nexus('compute', 'stop', imvu, '--as', 'erin')).code).toBe(0);
  }, 240_000);
});
