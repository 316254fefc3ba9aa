import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { randomInt } from 'node:crypto';
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

// Crash safety: kill -9 of the daemon while workloads run; the next start adopts them and leaves
// no orphan process, cgroup, veth or mount. The four are listed before and after.
const dataDir = mkdtempSync(join(tmpdir(), 'nexus-crash-'));
const range = `10.${100 + randomInt(28)}.${randomInt(256)}.0/24`;
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
  return { containers, cgroups, links, mounts, processes };
}

async function daemon(): Promise<{ kill(): void; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'crash-daemon.ts'), dataDir, range], { stdio: ['ignore', 'pipe', 'inherit'] });
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
    await new Promise((r) => setTimeout(r, 3000));
    running = leftovers();
    // No host process per container names it (OOM kills are read from the memory cgroups on one
    // timer, not by a `runc events` per workload), so none is orphaned when the daemon dies.
    expect(running.processes).toBe(0);
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

    // Stopped through the ledger: nothing of them is left (their data stays).
    for (const imvu of ['IMVU-001', 'IMVU-002']) expect((await server.compute!.platform.chokepoint.submit(as('compute.stop', { imvu }))).allowed).toBe(true);
    await server.compute!.schedule();
    await server.close();
    server = undefined;
    const end = leftovers();
    expect({ ...end, cgroups: end.cgroups }).toEqual({ ...before, containers: [], cgroups: [], links: [], processes: 0 });
  }, 240_000);
});
