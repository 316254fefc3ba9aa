// The runc driver: one OCI container per IMVU, made and driven with runc's own commands
// (create/start/kill/delete/update/state/list). The platform never unshares or writes cgroup
// files itself; it reads cgroup files only to compare the kernel's limits with the ledger and to
// see OOM kills (the memory cgroup's oom_kill counter).
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, open, readFile, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { blueprintSchema } from '../blueprint/schema.ts';
import type { KernelLimits, OciResources } from '../envelopes/resources.ts';
import { DEFAULT_COMPUTE_RANGE } from './addresses.ts';
import type { AdoptReport, ComputeDriver, DeploySpec, ExecResult, WorkloadState, WorkloadStatus } from './driver.ts';
import { runTool, spawnTool } from './commands.ts';
import { attachNetwork, ensureFilter, listNetwork, removeFilter, removeNetwork } from './network.ts';
import { DEFAULT_UID_BASE, hostRootId, ociConfig } from './oci-config.ts';
import { buildRootfs } from './rootfs.ts';
import { ensureVolume, GiB, OnlineResizeRefused, unmountVolume, volumePaths, volumeUsage, type VolumeUsage } from './volume.ts';

const run = (tool: string, args: string[], opts: { timeout?: number } = {}) => runTool(tool, args, opts);

/** The runc binary: `NEXUS_RUNC` names another one (or a missing one, to run without the fabric). */
export const RUNC = process.env.NEXUS_RUNC || 'runc';

export const CGROUP_ROOT = '/sys/fs/cgroup';
/** Per IMVU: the log file is rotated past this size; this many rotated files are kept. */
export const DEFAULT_LOG_CAP = 1024 * 1024;
export const DEFAULT_LOG_KEEP = 3;

export interface RuncDriverOptions {
  dataDir: string;
  /** The compute range the /30s are cut from (`--compute-range`). */
  range?: string;
  uidBase?: number;
  /** Host TCP ports a workload may reach at its host address (e.g. the gateway's). */
  offeredPorts?: number[];
  logCapBytes?: number;
  logKeep?: number;
  /** How often logs are checked for rotation (ms). */
  rotateEveryMs?: number;
  /** Seconds between SIGTERM and SIGKILL on stop. */
  stopGraceMs?: number;
  /** Bytes per envelope storage_gb (default 1 GiB; tests use 1 MiB to fill a volume quickly). */
  storageUnitBytes?: number;
  /** How often the running workloads' OOM kill counters are read (ms). */
  oomPollMs?: number;
}

/** Whether this host can run the fabric: runc on PATH, root, and cgroup v1 controllers (or v2). */
export async function fabricAvailable(): Promise<{ ok: true } | { ok: false; why: string }> {
  if (process.getuid?.() !== 0) return { ok: false, why: 'the daemon is not running as root (runc needs it to make namespaces and cgroups)' };
  // The three tools asked at once (a daemon start waits for them).
  const runs = (cmd: string, args: string[]) => run(cmd, args, { timeout: 10_000 }).then(() => true, () => false);
  const [runc, ...tools] = await Promise.all([
    runs(RUNC, ['--version']),
    ...['ip', 'iptables'].map(async (tool) => (await runs(tool, ['-V'])) || runs(tool, ['--version'])),
  ]);
  if (!runc) return { ok: false, why: process.env.NEXUS_RUNC ? `runc does not run from ${RUNC} (NEXUS_RUNC)` : 'runc is not installed (apt-get install runc)' };
  const v1 = ['cpu', 'memory', 'pids', 'blkio'].every((c) => existsSync(join(CGROUP_ROOT, c, 'tasks')));
  const v2 = existsSync(join(CGROUP_ROOT, 'cgroup.controllers'));
  if (!v1 && !v2) return { ok: false, why: `no usable cgroups under ${CGROUP_ROOT} (cpu, memory, pids, blkio)` };
  const missing = ['ip', 'iptables'].find((_, i) => !tools[i]);
  if (missing) return { ok: false, why: `${missing} is not installed (iproute2, iptables)` };
  return { ok: true };
}

/** A short tag for one data directory: names of its netns, links, chain and cgroups carry it. */
export function instanceTag(dataDir: string): string {
  return createHash('sha256').update(resolve(dataDir)).digest('hex').slice(0, 4);
}

interface Saved {
  imvu: string;
  seq: number;
  blueprint: DeploySpec['blueprint'];
  resources: OciResources;
  /** The envelope's storage_gb: the size of the data volume's own filesystem (absent: a plain directory). */
  storageGb?: number;
}

/**
 * A process's state letter and start time (clock ticks since boot) from /proc/PID/stat, or
 * undefined when it is gone. The start time tells a reused pid from the process it was.
 */
async function procStat(pid: number): Promise<{ state: string; start: string } | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (!text) return undefined;
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return f[0] && f[19] ? { state: f[0], start: f[19] } : undefined;
}

async function readInt(file: string): Promise<number | undefined> {
  try {
    const n = Number((await readFile(file, 'utf8')).trim());
    return Number.isFinite(n) ? n : undefined;
  } catch {
    return undefined;
  }
}

export class RuncDriver implements ComputeDriver {
  readonly name = 'runc';
  readonly tag: string;
  readonly runcRoot: string;
  private readonly range: string;
  private readonly uidBase: number;
  /** Running workloads watched for OOM kills: the oom_kill count last seen. */
  private readonly watched = new Map<string, number>();
  private readonly oomListeners: ((imvu: string) => void)[] = [];
  private rotateTimer: NodeJS.Timeout | undefined;
  private oomTimer: NodeJS.Timeout | undefined;
  private oomBusy = false;
  /**
   * The init process of each workload seen running, with its start time: while that process
   * lives (and is not a zombie), the workload is running, and `runc state` (a process spawned
   * for each health tick of each workload) is not asked. runc's own state is asked once it is gone.
   */
  private readonly inits = new Map<string, { pid: number; start: string }>();
  private ready: Promise<void> | undefined;

  constructor(private readonly opts: RuncDriverOptions) {
    this.tag = instanceTag(opts.dataDir);
    this.runcRoot = `/run/nexus-runc-${this.tag}`;
    this.range = opts.range ?? DEFAULT_COMPUTE_RANGE;
    this.uidBase = opts.uidBase ?? DEFAULT_UID_BASE;
  }

  /** The container id of an IMVU (unique on the host: the tag names the data directory). */
  containerId(imvu: string): string {
    return `nexus-${this.tag}-${imvu}`;
  }

  /** Absolute cgroup path (under each v1 controller). */
  cgroupPath(imvu: string): string {
    return `/nexus-${this.tag}/${imvu}`;
  }

  computeDir(imvu: string): string {
    return join(this.opts.dataDir, 'imvus', imvu, 'compute');
  }

  /** The workload's /data: inside the volume's own filesystem (src/compute/fabric/volume.ts). */
  dataPath(imvu: string): string {
    return volumePaths(this.computeDir(imvu)).data;
  }

  get storageUnitBytes(): number {
    return this.opts.storageUnitBytes ?? GiB;
  }

  /**
   * Mounts (or reuses) the IMVU's volume at its size; `offline` (the workload does not run) lets a
   * decrease be applied. Without a storage size (an older bundle): a plain directory, as before.
   */
  private async volume(s: Saved, offline: boolean): Promise<VolumeUsage | undefined> {
    const root = hostRootId(s.seq, this.uidBase);
    const paths = volumePaths(this.computeDir(s.imvu));
    if (s.storageGb === undefined) {
      await mkdir(paths.data, { recursive: true, mode: 0o700 });
      await chown(paths.data, root, root);
      await chmod(paths.data, 0o700);
      return undefined;
    }
    return ensureVolume(paths, s.storageGb * this.storageUnitBytes, root, { offline });
  }

  /** The IO throttle goes on the device that holds /data: the volume's loop device once mounted. */
  private async onVolumeDevice(imvu: string, r: OciResources): Promise<OciResources> {
    const u = await volumeUsage(volumePaths(this.computeDir(imvu))).catch(() => undefined);
    if (!u || !r.blockIO) return r;
    const dev = (l: { rate: number }[]) => l.map((x) => ({ major: u.device.major, minor: u.device.minor, rate: x.rate }));
    const b = r.blockIO;
    return { ...r, blockIO: { throttleReadIOPSDevice: dev(b.throttleReadIOPSDevice), throttleWriteIOPSDevice: dev(b.throttleWriteIOPSDevice), throttleReadBpsDevice: dev(b.throttleReadBpsDevice), throttleWriteBpsDevice: dev(b.throttleWriteBpsDevice) } };
  }

  /**
   * A new storage size: grown live (or, where the kernel refuses to grow a mounted filesystem,
   * by restarting the workload around an unmounted resize: answers 'restarted'); a decrease below
   * what is used refused (VolumeSizeError); a decrease otherwise applied now when the workload does
   * not run, else at its next start.
   */
  async setStorage(imvu: string, storageGb: number): Promise<'applied' | 'restarted'> {
    const s = await this.saved(imvu);
    const running = (await this.state(imvu))?.status === 'running';
    const next = { ...s, storageGb };
    const save = async () => {
      await writeFile(join(this.computeDir(imvu), 'deploy.json.tmp'), JSON.stringify(next), { mode: 0o600 });
      await rename(join(this.computeDir(imvu), 'deploy.json.tmp'), join(this.computeDir(imvu), 'deploy.json'));
    };
    try {
      await this.volume(next, !running);
    } catch (err) {
      if (!(err instanceof OnlineResizeRefused) || !running) throw err;
      await save();
      await this.stop(imvu);
      await this.start(imvu);
      return 'restarted';
    }
    await save();
    return 'applied';
  }

  /** The data volume's filesystem size and use (undefined when not mounted). */
  volumeUsage(imvu: string): Promise<VolumeUsage | undefined> {
    return volumeUsage(volumePaths(this.computeDir(imvu)));
  }

  logPath(imvu: string): string {
    return join(this.computeDir(imvu), 'logs', 'current.log');
  }

  private init(): Promise<void> {
    return (this.ready ??= (async () => {
      // runc's init runs as the IMVU's mapped root, which must traverse (never list) the
      // directories down to its bundle: DATA and DATA/imvus become 0711; the files directly in
      // DATA (the database, the platform's config) lose any group/other bits.
      const data = this.opts.dataDir;
      await mkdir(join(data, 'imvus'), { recursive: true, mode: 0o711 });
      for (const name of await readdir(data)) {
        const p = join(data, name);
        const s = await stat(p).catch(() => undefined);
        if (s?.isFile() && (s.mode & 0o077) !== 0) await chmod(p, s.mode & 0o700);
      }
      await chmod(data, 0o711);
      await chmod(join(data, 'imvus'), 0o711);
      await mkdir(this.runcRoot, { recursive: true, mode: 0o700 });
      await ensureFilter(this.tag, this.opts.offeredPorts ?? []);
      this.rotateTimer = setInterval(() => void this.rotateAll(), this.opts.rotateEveryMs ?? 5000);
      this.rotateTimer.unref();
      this.oomTimer = setInterval(() => void this.pollOom(), this.opts.oomPollMs ?? 1000);
      this.oomTimer.unref();
    })());
  }

  private async runc(args: string[], timeoutMs = 30_000): Promise<string> {
    const { stdout } = await runTool(RUNC, ['--root', this.runcRoot, ...args], { timeout: timeoutMs, maxBuffer: 16 << 20 });
    return stdout;
  }

  private async saved(imvu: string): Promise<Saved> {
    const raw = JSON.parse(await readFile(join(this.computeDir(imvu), 'deploy.json'), 'utf8')) as Saved;
    return { ...raw, blueprint: blueprintSchema.parse(raw.blueprint) };
  }

  async deployedBlueprint(imvu: string): Promise<DeploySpec['blueprint'] | undefined> {
    return (await this.saved(imvu).catch(() => undefined))?.blueprint;
  }

  async deploy(spec: DeploySpec): Promise<void> {
    await this.init();
    const dir = this.computeDir(spec.imvu);
    await mkdir(join(dir, 'logs'), { recursive: true, mode: 0o700 });
    await chmod(join(this.opts.dataDir, 'imvus', spec.imvu), 0o711).catch(() => undefined);
    await chmod(dir, 0o711);
    await mkdir(join(dir, 'bundle'), { recursive: true, mode: 0o711 });
    await chmod(join(dir, 'bundle'), 0o711);
    const saved: Saved = { imvu: spec.imvu, seq: spec.seq, blueprint: spec.blueprint, resources: spec.resources, ...(spec.storageGb !== undefined ? { storageGb: spec.storageGb } : {}) };
    // The data volume: the IMVU's mapped root owns it, nobody else may even list it. Mounted from
    // deploy to cleanup (snapshots and rollbacks of a stopped workload work on it too).
    const running = (await this.state(spec.imvu))?.status === 'running';
    await this.volume(saved, !running);
    await buildRootfs(join(dir, 'bundle', 'rootfs'), spec.blueprint, { dataDir: this.opts.dataDir, ownDir: join(this.opts.dataDir, 'imvus', spec.imvu) });
    await this.writeBundle(saved);
    await writeFile(join(dir, 'deploy.json.tmp'), JSON.stringify(saved), { mode: 0o600 });
    await rename(join(dir, 'deploy.json.tmp'), join(dir, 'deploy.json'));
  }

  private async writeBundle(s: Saved): Promise<void> {
    const dir = this.computeDir(s.imvu);
    const config = ociConfig({
      imvu: s.imvu,
      seq: s.seq,
      blueprint: s.blueprint,
      resources: await this.onVolumeDevice(s.imvu, s.resources),
      rootfs: join(dir, 'bundle', 'rootfs'),
      dataDir: this.dataPath(s.imvu),
      cgroupsPath: this.cgroupPath(s.imvu),
      uidBase: this.uidBase,
    });
    await writeFile(join(dir, 'bundle', 'config.json.tmp'), JSON.stringify(config, null, 1), { mode: 0o644 });
    await rename(join(dir, 'bundle', 'config.json.tmp'), join(dir, 'bundle', 'config.json'));
  }

  private async state(imvu: string): Promise<{ status: WorkloadState; pid: number } | undefined> {
    const known = this.inits.get(imvu);
    if (known) {
      const now = await procStat(known.pid);
      if (now && now.start === known.start && now.state !== 'Z' && now.state !== 'X') return { status: 'running', pid: known.pid };
      this.inits.delete(imvu);
    }
    try {
      const s = JSON.parse(await this.runc(['state', this.containerId(imvu)])) as { status: WorkloadState; pid: number };
      if (s.status === 'running') await this.remember(imvu, s.pid);
      return s;
    } catch {
      return undefined;
    }
  }

  private async remember(imvu: string, pid: number): Promise<void> {
    const st = pid > 0 ? await procStat(pid) : undefined;
    if (st) this.inits.set(imvu, { pid, start: st.start });
  }

  async start(imvu: string): Promise<WorkloadStatus> {
    await this.init();
    const s = await this.saved(imvu);
    const current = await this.state(imvu);
    if (current?.status === 'running') return this.status(imvu);
    if (current) await this.runc(['delete', '--force', this.containerId(imvu)]);
    // Mounted before runc create (a decrease waiting for the workload to stop is applied now).
    await this.volume(s, true);
    await this.writeBundle(s);
    const log = await open(this.logPath(imvu), 'a', 0o600);
    const pidFile = join(this.computeDir(imvu), 'init.pid');
    await rm(pidFile, { force: true });
    try {
      // runc create returns once the container waits for `start`; the workload's stdout and
      // stderr are the log file (so are runc's own errors, which the failure quotes from it).
      // --pid-file names the init process without a `runc state` afterwards.
      await new Promise<void>((ok, fail) => {
        const child = spawnTool(RUNC, ['--root', this.runcRoot, 'create', '--pid-file', pidFile, '--bundle', join(this.computeDir(imvu), 'bundle'), this.containerId(imvu)], {
          stdio: ['ignore', log.fd, log.fd],
        });
        child.on('error', fail);
        child.on('exit', (code) => {
          if (code === 0) return ok();
          void this.logs(imvu, 2000).then((tail) => fail(new Error(`runc create ${imvu}: ${tail.trim().split('\n').pop() ?? `exit ${code}`}`)), fail);
        });
      });
    } finally {
      await log.close();
    }
    let pid: number;
    let net: Awaited<ReturnType<typeof attachNetwork>>;
    try {
      pid = Number((await readFile(pidFile, 'utf8')).trim());
      if (!Number.isInteger(pid) || pid <= 0) throw new Error(`runc create ${imvu}: no init process`);
      net = await attachNetwork(this.tag, s.seq, this.range, pid);
      // Counted from here: the workload's first instruction runs after `runc start`.
      this.watched.set(imvu, await this.oomKills(imvu));
      await this.runc(['start', this.containerId(imvu)]);
      await this.remember(imvu, pid);
    } catch (err) {
      this.watched.delete(imvu);
      await this.runc(['delete', '--force', this.containerId(imvu)]).catch(() => undefined);
      await removeNetwork(this.tag, s.seq);
      throw err;
    }
    return { imvu, state: 'running', pid, address: net.workloadAddress, hostAddress: net.hostAddress };
  }

  /**
   * OOM kills the kernel made in the IMVU's memory cgroup so far: cgroup v1
   * `memory.oom_control` (oom_kill, Linux 4.13+), or v2 `memory.events`. 0 when there is none.
   */
  private async oomKills(imvu: string): Promise<number> {
    const cg = this.cgroupPath(imvu);
    for (const file of [join(CGROUP_ROOT, 'memory', cg, 'memory.oom_control'), join(CGROUP_ROOT, cg, 'memory.events')]) {
      const text = await readFile(file, 'utf8').catch(() => undefined);
      if (text !== undefined) return Number(/^oom_kill (\d+)$/m.exec(text)?.[1] ?? 0);
    }
    return 0;
  }

  /**
   * Watches a running workload for OOM kills. One timer reads every watched workload's counter
   * (no process per container: a `runc events` per workload cost 10-15 MiB each); a kill found
   * is one notice, however many the counter grew by since the last look.
   */
  private async watch(imvu: string): Promise<void> {
    if (!this.watched.has(imvu)) this.watched.set(imvu, await this.oomKills(imvu));
  }

  /** Compares one workload's counter with the last look; tells the listeners about a new kill. */
  private async checkOom(imvu: string): Promise<void> {
    const before = this.watched.get(imvu);
    if (before === undefined) return;
    const now = await this.oomKills(imvu);
    if (!this.watched.has(imvu)) return;
    this.watched.set(imvu, now);
    if (now > before) for (const l of this.oomListeners) l(imvu);
  }

  private async pollOom(): Promise<void> {
    if (this.oomBusy) return;
    this.oomBusy = true;
    try {
      for (const imvu of [...this.watched.keys()]) await this.checkOom(imvu);
    } finally {
      this.oomBusy = false;
    }
  }

  /** Last look at the counter before the cgroup goes away with the container, then no more. */
  private async unwatch(imvu: string): Promise<void> {
    await this.checkOom(imvu);
    this.watched.delete(imvu);
  }

  onOom(listener: (imvu: string) => void): void {
    this.oomListeners.push(listener);
  }

  async stop(imvu: string): Promise<void> {
    const id = this.containerId(imvu);
    const current = await this.state(imvu);
    if (current?.status === 'running' || current?.status === 'paused') {
      await this.runc(['kill', id, 'TERM']).catch(() => undefined);
      const deadline = Date.now() + (this.opts.stopGraceMs ?? 5000);
      while (Date.now() < deadline && (await this.state(imvu))?.status === 'running') await new Promise((r) => setTimeout(r, 100));
      if ((await this.state(imvu))?.status === 'running') await this.runc(['kill', '--all', id, 'KILL']).catch(() => undefined);
    }
    await this.unwatch(imvu);
    this.inits.delete(imvu);
    if (current) await this.runc(['delete', '--force', id]);
    const s = await this.saved(imvu).catch(() => undefined);
    if (s) await removeNetwork(this.tag, s.seq);
    await this.removeEmptyParents();
  }

  async restart(imvu: string): Promise<WorkloadStatus> {
    await this.stop(imvu);
    return this.start(imvu);
  }

  async status(imvu: string): Promise<WorkloadStatus> {
    const s = await this.state(imvu);
    const saved = await this.saved(imvu).catch(() => undefined);
    if (!saved) return { imvu, state: 'absent' };
    const { workloadNet } = await import('./addresses.ts');
    const net = workloadNet(saved.seq, this.range);
    return { imvu, state: s?.status ?? 'stopped', ...(s?.pid ? { pid: s.pid } : {}), address: net.workloadAddress, hostAddress: net.hostAddress };
  }

  /** The newest `maxBytes` of output: the end of the current log, preceded by the newest rotated one's when it is short. */
  async logs(imvu: string, maxBytes = 64 * 1024): Promise<string> {
    const tail = async (file: string, max: number): Promise<Buffer> => {
      const fh = await open(file, 'r').catch(() => undefined);
      if (!fh) return Buffer.alloc(0);
      try {
        const { size } = await fh.stat();
        const buf = Buffer.alloc(Math.min(size, max));
        const { bytesRead } = await fh.read(buf, 0, buf.length, size - buf.length);
        return buf.subarray(0, bytesRead);
      } finally {
        await fh.close();
      }
    };
    const current = await tail(this.logPath(imvu), maxBytes);
    const older = current.length < maxBytes ? await tail(`${this.logPath(imvu)}.1`, maxBytes - current.length) : Buffer.alloc(0);
    return Buffer.concat([older, current]).toString('utf8');
  }

  private rotations: Promise<void> = Promise.resolve();

  /** Copy-and-truncate rotation: the container keeps its append-mode descriptor. One at a time. */
  rotate(imvu: string): Promise<void> {
    const next = this.rotations.then(() => this.rotateNow(imvu));
    this.rotations = next.catch(() => undefined);
    return next;
  }

  private async rotateNow(imvu: string): Promise<void> {
    const file = this.logPath(imvu);
    const cap = this.opts.logCapBytes ?? DEFAULT_LOG_CAP;
    const keep = this.opts.logKeep ?? DEFAULT_LOG_KEEP;
    const s = await stat(file).catch(() => undefined);
    if (!s || s.size <= cap) return;
    for (let i = keep - 1; i >= 1; i--) await rename(`${file}.${i}`, `${file}.${i + 1}`).catch(() => undefined);
    const fh = await open(file, 'r+');
    try {
      const buf = Buffer.alloc(Math.min(s.size, cap));
      const { bytesRead } = await fh.read(buf, 0, buf.length, s.size - buf.length);
      await writeFile(`${file}.1`, buf.subarray(0, bytesRead), { mode: 0o600 });
      await fh.truncate(0);
    } finally {
      await fh.close();
    }
    await rm(`${file}.${keep + 1}`, { force: true });
  }

  private async rotateAll(): Promise<void> {
    for (const imvu of [...this.watched.keys()]) await this.rotate(imvu).catch(() => undefined);
  }

  async exec(imvu: string, command: string[], opts: { timeoutMs?: number } = {}): Promise<ExecResult> {
    return new Promise((ok, fail) => {
      const child = spawnTool(RUNC, ['--root', this.runcRoot, 'exec', this.containerId(imvu), ...command], { stdio: ['ignore', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let size = 0;
      const cap = (arr: Buffer[]) => (d: Buffer) => {
        if ((size += d.length) <= 4 << 20) arr.push(d);
      };
      child.stdout!.on('data', cap(out));
      child.stderr!.on('data', cap(err));
      const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
      child.on('error', (e) => {
        clearTimeout(timer);
        fail(e);
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        ok({ code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
      });
    });
  }

  async update(imvu: string, r: OciResources): Promise<void> {
    const s = await this.saved(imvu);
    const next = { ...s, resources: r };
    await writeFile(join(this.computeDir(imvu), 'deploy.json.tmp'), JSON.stringify(next), { mode: 0o600 });
    await rename(join(this.computeDir(imvu), 'deploy.json.tmp'), join(this.computeDir(imvu), 'deploy.json'));
    await this.writeBundle(next);
    const st = await this.state(imvu);
    if (st?.status !== 'running' && st?.status !== 'paused') return;
    // `runc update` takes the resources as OCI JSON on stdin.
    await new Promise<void>((ok, fail) => {
      const child = spawnTool(RUNC, ['--root', this.runcRoot, 'update', '--resources', '-', this.containerId(imvu)], { stdio: ['pipe', 'ignore', 'pipe'] });
      let err = '';
      child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
      child.on('error', fail);
      child.on('exit', (code) => (code === 0 ? ok() : fail(new Error(`runc update ${imvu}: ${err.trim() || `exit ${code}`}`))));
      void this.onVolumeDevice(imvu, r).then((on) => child.stdin!.end(JSON.stringify(on)), fail);
    });
  }

  async readKernelLimits(imvu: string): Promise<KernelLimits> {
    const cg = this.cgroupPath(imvu);
    const at = (ctrl: string, file: string) => join(CGROUP_ROOT, ctrl, cg, file);
    const out: KernelLimits = {};
    const set = (k: keyof KernelLimits, v: number | undefined) => {
      if (v !== undefined) out[k] = v;
    };
    set('cpu_quota_us', await readInt(at('cpu', 'cpu.cfs_quota_us')));
    set('cpu_period_us', await readInt(at('cpu', 'cpu.cfs_period_us')));
    set('memory_limit_bytes', await readInt(at('memory', 'memory.limit_in_bytes')));
    set('memsw_limit_bytes', await readInt(at('memory', 'memory.memsw.limit_in_bytes')));
    const pids = await readFile(at('pids', 'pids.max'), 'utf8').catch(() => undefined);
    if (pids !== undefined && pids.trim() !== 'max') set('pids_max', Number(pids.trim()));
    const s = await this.saved(imvu).catch(() => undefined);
    const dev = s ? (await this.onVolumeDevice(imvu, s.resources)).blockIO?.throttleReadIOPSDevice[0] : undefined;
    if (dev) {
      const throttle = async (file: string) => {
        const text = await readFile(at('blkio', file), 'utf8').catch(() => '');
        const line = text.split('\n').find((l) => l.startsWith(`${dev.major}:${dev.minor} `));
        return line ? Number(line.split(' ')[1]) : undefined;
      };
      set('read_iops', await throttle('blkio.throttle.read_iops_device'));
      set('write_iops', await throttle('blkio.throttle.write_iops_device'));
      set('read_bps', await throttle('blkio.throttle.read_bps_device'));
      set('write_bps', await throttle('blkio.throttle.write_bps_device'));
    }
    if (s?.storageGb !== undefined) set('storage_bytes', (await this.volumeUsage(imvu).catch(() => undefined))?.sizeBytes);
    return out;
  }

  /** IMVUs with a deployed bundle in this data directory. */
  async deployed(): Promise<string[]> {
    const dir = join(this.opts.dataDir, 'imvus');
    const names = await readdir(dir).catch(() => [] as string[]);
    return names.filter((n) => existsSync(join(dir, n, 'compute', 'deploy.json'))).sort();
  }

  async adopt(shouldRun: (imvu: string) => boolean, mayRestart: (imvu: string) => boolean = () => true): Promise<AdoptReport> {
    await this.init();
    const report: AdoptReport = { adopted: [], restarted: [], removed: [], kept: [] };
    const prefix = `nexus-${this.tag}-`;
    const listed = JSON.parse((await this.runc(['list', '--format', 'json'])) || 'null') as { id: string; status: string }[] | null;
    const known = new Set<string>();
    for (const c of listed ?? []) {
      if (!c.id.startsWith(prefix)) continue;
      const imvu = c.id.slice(prefix.length);
      known.add(imvu);
      if (c.status === 'running' && shouldRun(imvu)) {
        await this.watch(imvu);
        report.adopted.push(imvu);
      } else if (shouldRun(imvu) && c.status === 'stopped' && !mayRestart(imvu)) {
        // It exited while the daemon was down and its policy says never: stopped it stays.
        report.kept.push(imvu);
      } else if (shouldRun(imvu)) {
        await this.start(imvu);
        report.restarted.push(imvu);
      } else {
        await this.cleanup(imvu);
        report.removed.push(imvu);
      }
    }
    // Deployed but without a container (the host rebooted, or it died between create and start).
    for (const imvu of await this.deployed()) {
      if (known.has(imvu)) continue;
      if (shouldRun(imvu)) {
        await this.start(imvu);
        report.restarted.push(imvu);
      } else {
        const s = await this.saved(imvu).catch(() => undefined);
        if (s) await removeNetwork(this.tag, s.seq);
      }
    }
    // Network namespaces and links no deployed IMVU owns.
    const seqs = new Set<number>();
    for (const imvu of await this.deployed()) {
      const s = await this.saved(imvu).catch(() => undefined);
      if (s && (await this.state(imvu))) seqs.add(s.seq);
    }
    const net = await listNetwork(this.tag);
    for (const ns of net.netns) {
      const seq = Number(ns.slice(`nx${this.tag}-`.length));
      if (!seqs.has(seq)) {
        await removeNetwork(this.tag, seq);
        report.removed.push(ns);
      }
    }
    for (const link of net.links) {
      const seq = Number(link.slice(`nx${this.tag}h`.length));
      if (!seqs.has(seq)) await removeNetwork(this.tag, seq);
    }
    return report;
  }

  async cleanup(imvu: string): Promise<void> {
    const id = this.containerId(imvu);
    await this.unwatch(imvu);
    if (await this.state(imvu)) {
      await this.runc(['kill', '--all', id, 'KILL']).catch(() => undefined);
      await this.runc(['delete', '--force', id]).catch(() => undefined);
    }
    this.inits.delete(imvu);
    const s = await this.saved(imvu).catch(() => undefined);
    if (s) await removeNetwork(this.tag, s.seq);
    await unmountVolume(volumePaths(this.computeDir(imvu)));
    // runc removes the IMVU's own cgroups; the instance's parent goes once it is empty.
    await this.removeEmptyParents();
  }

  /** The instance's parent cgroups and runc state directory, once nothing is left in them. */
  private async removeEmptyParents(): Promise<void> {
    for (const ctrl of ['cpu', 'cpuacct', 'memory', 'pids', 'blkio', 'cpuset', 'devices', 'freezer', 'systemd', 'unified'])
      await rmdir(join(CGROUP_ROOT, ctrl, `nexus-${this.tag}`)).catch(() => undefined);
    await rmdir(this.runcRoot).catch(() => undefined);
  }

  async close(): Promise<void> {
    if (this.rotateTimer) clearInterval(this.rotateTimer);
    if (this.oomTimer) clearInterval(this.oomTimer);
    this.watched.clear();
    this.inits.clear();
    // Volumes of workloads that do not run are unmounted; a running one stays (its container
    // uses it, and the next start adopts it mounted).
    let live = false;
    for (const imvu of await this.deployed()) {
      const st = await this.state(imvu);
      if (st?.status === 'running' || st?.status === 'paused' || st?.status === 'created') live = true;
      else await unmountVolume(volumePaths(this.computeDir(imvu))).catch(() => undefined);
    }
    // Nothing of this instance runs on: its packet filter (three jumps in the host's INPUT and
    // FORWARD chains, walked by every packet), its cgroup parents and runc's state directory go
    // too; the next start makes them again. A live workload keeps them (the filter guards it).
    if (!live && this.ready) {
      await removeFilter(this.tag).catch(() => undefined);
      await this.removeEmptyParents();
    }
  }
}
