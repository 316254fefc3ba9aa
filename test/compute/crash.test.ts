import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { initDataDir } from '../../src/core/platform.ts';
import { generateKeyPair, identityIdFromPublicKey, publicKeyRaw } from '../../src/core/identity/keys.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { instanceTag } from '../../src/compute/fabric/runc.ts';
import { removeFilter } from '../../src/compute/fabric/network.ts';
import { requireRunc } from './fabric-helpers.ts';
import { testComputeRange } from '../support/compute-range.ts';

// Crash safety: kill -9 of the daemon while workloads run; the next start adopts them and leaves
// no orphan process, cgroup, veth or mount. The four are listed before and after.
const dataDir = mkdtempSync(join(tmpdir(), 'nexus-crash-'));
const range = testComputeRange();
const tag = instanceTag(dataDir);

function leftovers() {
  const runcRoot = `/run/nexus-runc-${tag}`;
  const containers = existsSync(runcRoot) ? readdirSync(runcRoot).sort() : [];
  const cgroups = ['cpu', 'memory', 'pids', 'blkio'].flatMap((c) => {
    const d = `/sys/fs/cgroup/${c}/nexus-${tag}`;
    return existsSync(d) ? readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => `${c}/${e.name}`) : [];
  }).sort();
  const links = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).split('\n').map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '').filter((n) => n.startsWith(`nx${tag}`)).sort();
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.includes(`nx${tag}-`) || l.includes(dataDir)).length;
  const processes = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(`nexus-${tag}-`)).length;
  // The data volumes' loop devices (their images live under the data directory).
  const loops = execFileSync('losetup', ['-l', '-n', '-O', 'NAME,BACK-FILE'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(dataDir)).sort();
  return { containers, cgroups, links, mounts, processes, loops };
}

async function daemon(dir = dataDir, net = range): Promise<{ kill(): void; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'crash-daemon.ts'), dir, net], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((ok, fail) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('\n')) ok(out.split('\n')[0]!);
    });
    child.on('exit', (code) => fail(new Error(`daemon exited ${code}`)));
  });
  expect(line).toMatch(/ compute$/);
  return { kill: () => child.kill('SIGKILL'), url: line.split(' ')[1]! };
}

describe('crash safety of the compute fabric', () => {
  let server: RunningServer | undefined;
  afterAll(async () => {
    await server?.close().catch(() => undefined);
    rmSync(dataDir, { recursive: true, force: true });
    await removeFilter(tag).catch(() => undefined);
  }, 60_000);

  it('after kill -9, a restart adopts the running workloads; stopping them leaves nothing behind', async () => {
    requireRunc();
    const p = await initDataDir(dataDir, {});
    const { privateKey } = generateKeyPair();
    const raw = publicKeyRaw(privateKey);
    const alice = { id: identityIdFromPublicKey(raw), key: privateKey };
    const origin = p.config.origin;
    const as = (type: Parameters<typeof signCommand>[1], body: Parameters<typeof signCommand>[2]) => signCommand(alice.key, type, body, { origin });
    expect((await p.chokepoint.submit(as('identity.register', { name: 'alice', role: 'creator', publicKey: raw.toString('base64') }))).allowed).toBe(true);
    for (const name of ['One', 'Two']) expect((await p.chokepoint.submit(as('imvu.create', { name, owner: alice.id, jurisdiction: 'US-CCPA', envelope: { cpu_cores: 1, memory_gb: 1 } }))).allowed).toBe(true);
    await p.close();
    const before = leftovers();

    const first = await daemon();
    const post = async (cmd: unknown) => (await fetch(`${first.url}/v1/commands`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(cmd) })).json() as Promise<{ allowed: boolean }>;
    for (const imvu of ['IMVU-001', 'IMVU-002']) {
      expect((await post(as('compute.deploy', { imvu, blueprint: { image: 'busybox', command: ['sleep', '100000'] } }))).allowed).toBe(true);
      expect((await post(as('compute.start', { imvu }))).allowed).toBe(true);
    }
    let running = leftovers();
    for (let i = 0; i < 300 && running.containers.length < 2; i++) {
      await new Promise((r) => setTimeout(r, 200));
      running = leftovers();
    }
    expect(running.containers).toEqual([`nexus-${tag}-IMVU-001`, `nexus-${tag}-IMVU-002`]);
    // Each workload's data volume: one loop device, mounted once.
    expect(running.loops).toHaveLength(2);
    await new Promise((r) => setTimeout(r, 3000));
    running = leftovers();
    // No host process per container names it (OOM kills are read from the memory cgroups on one
    // timer, not by a `runc events` per workload), so none is orphaned when the daemon dies.
    expect(running.processes).toBe(0);
    const inits = () => running.containers.map((id) => (JSON.parse(execFileSync('runc', ['--root', `/run/nexus-runc-${tag}`, 'state', id], { encoding: 'utf8' })) as { pid: number }).pid);
    const initsBefore = inits();
    first.kill();
    await new Promise((r) => setTimeout(r, 3000));
    expect(leftovers().processes).toBe(0);
    const pids = execFileSync('runc', ['--root', `/run/nexus-runc-${tag}`, 'list', '-q'], { encoding: 'utf8' });
    expect(pids.trim().split('\n').sort()).toEqual(running.containers);

    // The restart adopts them: the same containers, no duplicates, no new network.
    server = await startServer({ dataDir, host: '127.0.0.1', port: 0, logger: false, integrityIntervalMs: 0, compute: { range } });
    const after = leftovers();
    expect(after).toEqual(running);
    expect((await server.compute!.status('IMVU-001')).state).toBe('running');
    // Adopted as they run, not redeployed: after the new daemon's reconcile the same init processes.
    await server.compute!.schedule();
    expect(inits()).toEqual(initsBefore);

    // Stopped through the ledger: nothing of them is left (their data stays).
    for (const imvu of ['IMVU-001', 'IMVU-002']) expect((await server.compute!.platform.chokepoint.submit(as('compute.stop', { imvu }))).allowed).toBe(true);
    await server.compute!.schedule();
    await server.close();
    server = undefined;
    const end = leftovers();
    expect({ ...end, cgroups: end.cgroups }).toEqual({ ...before, containers: [], cgroups: [], links: [], processes: 0, loops: [] });
  }, 240_000);
});

describe('the restart policy at a restart after kill -9', () => {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-crash-policy-'));
  const net = testComputeRange();
  const dirTag = instanceTag(dir);
  let server: RunningServer | undefined;
  afterAll(async () => {
    await server?.close().catch(() => undefined);
    for (const imvu of ['IMVU-001', 'IMVU-002']) {
      try {
        execFileSync('runc', ['--root', `/run/nexus-runc-${dirTag}`, 'delete', '--force', `nexus-${dirTag}-${imvu}`], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
    await removeFilter(dirTag).catch(() => undefined);
  }, 60_000);

  it('a workload that died while the daemon was down restarts with restart: always and stays stopped with restart: never', async () => {
    requireRunc();
    const p = await initDataDir(dir, {});
    const { privateKey } = generateKeyPair();
    const raw = publicKeyRaw(privateKey);
    const alice = { id: identityIdFromPublicKey(raw), key: privateKey };
    const as = (type: Parameters<typeof signCommand>[1], body: Parameters<typeof signCommand>[2]) => signCommand(alice.key, type, body, { origin: p.config.origin });
    expect((await p.chokepoint.submit(as('identity.register', { name: 'alice', role: 'creator', publicKey: raw.toString('base64') }))).allowed).toBe(true);
    for (const name of ['Never', 'Always']) expect((await p.chokepoint.submit(as('imvu.create', { name, owner: alice.id, jurisdiction: 'US-CCPA', envelope: { cpu_cores: 1, memory_gb: 1 } }))).allowed).toBe(true);
    await p.close();

    const first = await daemon(dir, net);
    const post = async (cmd: unknown) => (await fetch(`${first.url}/v1/commands`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(cmd) })).json() as Promise<{ allowed: boolean }>;
    const policy = { 'IMVU-001': 'never', 'IMVU-002': 'always' } as const;
    for (const [imvu, restart] of Object.entries(policy)) {
      expect((await post(as('compute.deploy', { imvu, blueprint: { image: 'busybox', command: ['sleep', '100000'], restart } }))).allowed).toBe(true);
      expect((await post(as('compute.start', { imvu }))).allowed).toBe(true);
    }
    const runc = (...args: string[]) => execFileSync('runc', ['--root', `/run/nexus-runc-${dirTag}`, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const stateOf = (imvu: string) => {
      try {
        return (JSON.parse(runc('state', `nexus-${dirTag}-${imvu}`)) as { status: string }).status;
      } catch {
        return 'absent';
      }
    };
    for (let i = 0; i < 300 && Object.keys(policy).some((imvu) => stateOf(imvu) !== 'running'); i++) await new Promise((r) => setTimeout(r, 200));
    for (const imvu of Object.keys(policy)) expect(stateOf(imvu)).toBe('running');
    first.kill();

    // Both workloads die while no daemon runs.
    for (const imvu of Object.keys(policy)) runc('kill', '--all', `nexus-${dirTag}-${imvu}`, 'KILL');
    for (let i = 0; i < 300 && Object.keys(policy).some((imvu) => stateOf(imvu) !== 'stopped'); i++) await new Promise((r) => setTimeout(r, 200));
    for (const imvu of Object.keys(policy)) expect(stateOf(imvu)).toBe('stopped');

    server = await startServer({ dataDir: dir, host: '127.0.0.1', port: 0, logger: false, integrityIntervalMs: 0, compute: { range: net, service: { healthTickMs: 200 } } });
    const compute = server.compute!;
    expect((await compute.status('IMVU-002')).state).toBe('running');
    const never = await compute.status('IMVU-001');
    expect(never.state).toBe('stopped');
    expect(never.health?.state).toBe('failing');
    expect(never.health?.lastError).toMatch(/exited while the daemon was down; its restart policy is never, so it stays stopped/);
    // The health checks that follow leave it stopped too, and say why.
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 300));
      await compute.checkHealth();
    }
    const later = await compute.status('IMVU-001');
    expect(later.state).toBe('stopped');
    expect(later.health?.lastError).toMatch(/its restart policy is never, so it stays stopped/);
    expect(later.health?.restarts).toBe(0);

    // A signed compute.start runs it again.
    expect((await compute.platform.chokepoint.submit(as('compute.start', { imvu: 'IMVU-001' }))).allowed).toBe(true);
    await compute.schedule();
    expect((await compute.status('IMVU-001')).state).toBe('running');
    for (const imvu of Object.keys(policy)) expect((await compute.platform.chokepoint.submit(as('compute.stop', { imvu }))).allowed).toBe(true);
    await compute.schedule();
    await server.close();
    server = undefined;
  }, 240_000);
});
