// The compute service: makes the fabric match the ledger. After every commit it reconciles each
// IMVU's workload with its projection (blueprint, desired state, envelope, burst), applies
// envelope changes live (`runc update`), reads the kernel's values back and raises an integrity
// alarm when they differ from the ledger. It runs the burst policy's timer and reports OOM kills
// to the creator. It never writes projections: it submits signed commands like anyone else.
import { statSync } from 'node:fs';
import type { OpenPlatform } from '../core/platform.ts';
import { ensureServiceIdentity, type ServiceIdentity } from '../core/service-identity.ts';
import { signCommand } from '../core/identity/envelope.ts';
import { decodeEntry } from '../core/ledger/ledger.ts';
import type { Receipt } from '../core/policy/chokepoint.ts';
import { blueprintSchema, type Blueprint } from './blueprint/schema.ts';
import { compareLimits, deviceOf, envelopeResources, expectedKernelValues, type Envelope, type KernelLimits } from './envelopes/resources.ts';
import type { ComputeDriver, ExecResult, WorkloadStatus } from './fabric/driver.ts';
import { CGROUP_ROOT } from './fabric/runc.ts';

/** Why a stopped workload is not restarted (the end of `health.lastError`). */
const NEVER = '; its restart policy is never, so it stays stopped';

interface Row extends Envelope {
  imvu: string;
  seq: number;
  owner: string;
  status: string;
  blueprint: string;
  desired: string;
  burst_until: string;
  w_multiplier: number;
  w_entry: number;
  [k: string]: string | number;
}

/** What the service saw of a workload's health check and its restart policy. */
export interface HealthView {
  /** `passing` after a successful check; `failing` after `retries` failures in a row; `unknown` before the first result. */
  state: 'unknown' | 'passing' | 'failing';
  /** Failures in a row. */
  failures: number;
  lastCheck?: string;
  lastError?: string;
  /** Restarts the service made by the blueprint's policy (failed health check or exited workload). */
  restarts: number;
}

export interface KernelView {
  imvu: string;
  /** What the ledger's envelope (and burst) implies, as cgroup values. */
  ledger: KernelLimits;
  kernel: KernelLimits;
  differences: { field: keyof KernelLimits; ledger: number | undefined; kernel: number | undefined }[];
}

export interface ComputeServiceOptions {
  /** How often CPU throttling is sampled for the burst policy (ms); 0: never burst by itself. */
  burstCheckMs?: number;
  /**
   * How long a burst lasts before the timer lowers it (ms). Default: the envelope's burst_minutes,
   * the `burst_until` the ledger records. A shorter value ends bursts earlier (gate 7 lets the
   * service lower a burst at any time; lowering never gives more than the envelope).
   */
  burstMs?: number;
  /** How often every running workload's kernel limits are read back against the ledger (ms); 0: only after changes. */
  verifyEveryMs?: number;
  /** How often the health checks and the restart policy are looked at (ms); 0: never. */
  healthTickMs?: number;
  log?: { info(o: object, m: string): void; error(o: object, m: string): void };
  /** Called once the service has closed (the daemon lets go of its compute range's claim then). */
  onClose?: () => void;
}

export class ComputeService {
  private identity: ServiceIdentity | undefined;
  private readonly applied = new Map<string, { blueprint: string; running: boolean; resources: string; entry: number; storage: number }>();
  private running: Promise<void> = Promise.resolve();
  private dirty = false;
  private offCheckpoint: (() => void) | undefined;
  private burstTimer: NodeJS.Timeout | undefined;
  private readonly lowerTimers = new Map<string, NodeJS.Timeout>();
  private readonly throttled = new Map<string, { periods: number; throttled: number }>();
  private readonly health = new Map<string, HealthView & { due: number; exitsSeen?: number }>();
  private verifyTimer: NodeJS.Timeout | undefined;
  private healthTimer: NodeJS.Timeout | undefined;
  private healthBusy = false;
  private closed = false;
  /** Found stopped at start with `restart: never`: reconcile leaves them so until the ledger says otherwise. */
  private readonly keptStopped = new Set<string>();

  constructor(
    readonly platform: OpenPlatform,
    readonly driver: ComputeDriver & {
    dataPath(imvu: string): string;
    cgroupPath?(imvu: string): string;
    /** The data volume's own filesystem: resized to storage_gb (src/compute/fabric/volume.ts). */
    setStorage?(imvu: string, storageGb: number): Promise<unknown>;
    volumeUsage?(imvu: string): Promise<{ sizeBytes: number; usedBytes: number } | undefined>;
    readonly storageUnitBytes?: number;
  },
    private readonly opts: ComputeServiceOptions = {},
  ) {}

  async start(): Promise<void> {
    this.identity = await ensureServiceIdentity(this.platform, 'compute');
    const rows = await this.rows();
    const want = new Set(rows.filter((r) => r.desired === 'running' && (r.status === 'active' || r.status === 'exiting')).map((r) => r.imvu));
    // The blueprint's restart policy decides whether a workload that exited while the daemon was
    // down starts again (`always`, the default) or stays stopped (`never`).
    const never = new Set(rows.filter((r) => blueprintSchema.safeParse(JSON.parse(r.blueprint)).data?.restart === 'never').map((r) => r.imvu));
    const report = await this.driver.adopt((imvu) => want.has(imvu), (imvu) => !never.has(imvu));
    this.opts.log?.info(report, 'compute: workloads adopted after start');
    for (const imvu of report.kept ?? []) {
      this.keptStopped.add(imvu);
      this.health.set(imvu, { state: 'failing', failures: 0, restarts: 0, due: 0, lastCheck: new Date().toISOString(), lastError: `it exited while the daemon was down${NEVER}` });
    }
    this.driver.onOom((imvu) => void this.oom(imvu));
    this.offCheckpoint = this.platform.chokepoint.ledger.onCheckpoint(() => this.schedule());
    await this.reconcile();
    const every = this.opts.burstCheckMs ?? 10_000;
    if (every > 0) {
      this.burstTimer = setInterval(() => void this.checkBursts(), every);
      this.burstTimer.unref();
    }
    const verifyEvery = this.opts.verifyEveryMs ?? 60_000;
    if (verifyEvery > 0) {
      this.verifyTimer = setInterval(() => void this.serial(() => this.verifyAll().then(() => undefined)), verifyEvery);
      this.verifyTimer.unref();
    }
    const healthEvery = this.opts.healthTickMs ?? 1000;
    if (healthEvery > 0) {
      this.healthTimer = setInterval(() => void this.checkHealth(), healthEvery);
      this.healthTimer.unref();
    }
  }

  /** Runs `fn` after the reconciles in flight, and before the next (one thing at a time on the fabric). */
  private serial(fn: () => Promise<void>): Promise<void> {
    this.running = this.running.then(async () => {
      if (this.closed) return;
      await fn().catch((err: unknown) => this.opts.log?.error({ err: String(err) }, 'compute: task failed'));
    });
    return this.running;
  }

  /** Reconciles after the commits in flight; resolves when the fabric matches the ledger. */
  schedule(): Promise<void> {
    this.dirty = true;
    this.running = this.running.then(async () => {
      if (!this.dirty || this.closed) return;
      this.dirty = false;
      await this.reconcile().catch((err: unknown) => this.opts.log?.error({ err: String(err) }, 'compute: reconcile failed'));
    });
    return this.running;
  }

  private async rows(): Promise<Row[]> {
    return this.platform.store.all<Row>(
      `SELECT w.imvu AS imvu, i.seq AS seq, i.owner AS owner, i.status AS status, w.blueprint AS blueprint, w.desired AS desired,
              w.burst_until AS burst_until, w.burst_multiplier AS w_multiplier, w.entry AS w_entry,
              e.cpu_cores AS cpu_cores, e.memory_gb AS memory_gb, e.storage_gb AS storage_gb, e.iops AS iops,
              e.burst_multiplier AS burst_multiplier, e.burst_minutes AS burst_minutes
         FROM workloads w JOIN imvus i ON i.id = w.imvu JOIN envelopes e ON e.imvu = w.imvu ORDER BY w.imvu`,
    );
  }

  private resourcesOf(r: Row) {
    const dev = deviceOf(statSync(this.platform.dataDir).dev);
    return envelopeResources(r, dev, { burst: r.burst_until !== '' && r.w_multiplier > 1 });
  }

  private async entryType(index: number): Promise<string | undefined> {
    const [raw] = await this.platform.store.readEntries(index, index + 1);
    return raw ? decodeEntry(raw).command?.command?.type : undefined;
  }

  /** When an entry was recorded (ms since the epoch). */
  private async entryTime(index: number): Promise<number> {
    const [raw] = await this.platform.store.readEntries(index, index + 1);
    return raw ? Date.parse(decodeEntry(raw).at) : Date.now();
  }

  async reconcile(): Promise<void> {
    for (const r of await this.rows()) {
      // An exiting IMVU runs on as before (threat 4.3); a suspended or exited one does not.
      const run = r.desired === 'running' && (r.status === 'active' || r.status === 'exiting');
      const resources = this.resourcesOf(r);
      const res = JSON.stringify(resources);
      const was = this.applied.get(r.imvu);
      if (was && was.blueprint === r.blueprint && was.running === run && was.resources === res && was.entry === r.w_entry && was.storage === r.storage_gb) continue;
      const blueprint: Blueprint = blueprintSchema.parse(JSON.parse(r.blueprint));
      const changed = was?.resources !== res;
      // Each driver call below may spawn runc or ip: the state is asked once, and again only
      // after a (re)deploy changed it; a workload started here already has these resources in
      // its bundle, so it needs no `runc update` after (the read-back below still checks).
      const st = await this.driver.status(r.imvu);
      // First look since this daemon started: a workload adopted running from the blueprint the
      // ledger holds is kept as it is (its limits are applied live below), not redeployed.
      const adoptedAsIs = !was && st.state === 'running' && JSON.stringify(await this.driver.deployedBlueprint?.(r.imvu)) === JSON.stringify(blueprint);
      const deploy = (!was && !adoptedAsIs) || (was !== undefined && was.blueprint !== r.blueprint) || st.state === 'absent';
      if (deploy) {
        if (st.state === 'running') await this.driver.stop(r.imvu);
        await this.driver.deploy({ imvu: r.imvu, seq: r.seq, blueprint, resources, ...(this.driver.setStorage ? { storageGb: r.storage_gb } : {}) });
      } else if (was !== undefined && was.storage !== r.storage_gb && this.driver.setStorage) {
        // Grown live; a decrease below what the volume holds is refused (the volume keeps its size).
        await this.driver
          .setStorage(r.imvu, r.storage_gb)
          .then((how) => this.opts.log?.info({ imvu: r.imvu, storage_gb: r.storage_gb, how }, 'compute: data volume resized'))
          .catch((err: unknown) => this.opts.log?.error({ imvu: r.imvu, err: String(err) }, 'compute: storage not resized'));
      }
      const now = deploy ? await this.driver.status(r.imvu) : st;
      // Left stopped by its restart policy at start; a new entry (compute.start, ...) starts it.
      const kept = !was && this.keptStopped.delete(r.imvu);
      let started = false;
      if (run && now.state !== 'running' && !kept) {
        if (changed && !deploy) await this.driver.update(r.imvu, resources);
        await this.driver.start(r.imvu);
        started = true;
      } else if (run && was && was.entry !== r.w_entry && (await this.entryType(r.w_entry)) === 'compute.restart') await this.driver.restart(r.imvu);
      else if (!run && now.state !== 'stopped' && now.state !== 'absent') await this.driver.stop(r.imvu);
      if (run && changed && !started) await this.driver.update(r.imvu, resources);
      else if (!run) await this.driver.update(r.imvu, resources);
      this.applied.set(r.imvu, { blueprint: r.blueprint, running: run, resources: res, entry: r.w_entry, storage: r.storage_gb });
      if (run && (changed || was?.storage !== r.storage_gb)) await this.verifyKernel(r.imvu);
      if (r.burst_until !== '') this.scheduleLower(r.imvu, r.burst_until, await this.entryTime(r.w_entry));
    }
  }

  /** The kernel's cgroup values of an IMVU's workload beside what the ledger implies. */
  async kernelView(imvu: string): Promise<KernelView | undefined> {
    const r = (await this.rows()).find((x) => x.imvu === imvu);
    if (!r) return undefined;
    const ledger = expectedKernelValues(this.resourcesOf(r));
    const kernel = await this.driver.readKernelLimits(imvu);
    // The data volume's filesystem against storage_gb (a decrease waits for the workload to stop:
    // ext4 does not shrink while mounted; verifyKernel does not alarm on that).
    if (this.driver.storageUnitBytes && kernel.storage_bytes !== undefined) {
      ledger.storage_bytes = r.storage_gb * this.driver.storageUnitBytes;
    }
    return { imvu, ledger, kernel, differences: compareLimits(ledger, kernel) };
  }

  /**
   * Reads the kernel's values back; a difference with the ledger is recorded as an integrity alarm
   * and the ledger's values are applied again (`runc update`). Answers what was found, before the
   * re-application.
   */
  async verifyKernel(imvu: string): Promise<KernelView | undefined> {
    const view = await this.kernelView(imvu);
    // A filesystem bigger than storage_gb on a running workload is a decrease waiting for it to stop.
    const alarming = view?.differences.filter((d) => !(d.field === 'storage_bytes' && (d.kernel ?? 0) > (d.ledger ?? 0))) ?? [];
    if (!view || alarming.length === 0 || (await this.driver.status(imvu)).state !== 'running') return view;
    // A ledger change not applied yet (its reconcile is queued) is not a kernel out of step.
    const r0 = (await this.rows()).find((x) => x.imvu === imvu);
    if (!r0 || this.applied.get(imvu)?.resources !== JSON.stringify(this.resourcesOf(r0))) return view;
    const detail = `the kernel's cgroup limits of ${imvu} differ from its envelope in the ledger: ${view.differences.map((d) => `${d.field} kernel ${d.kernel ?? 'absent'} ledger ${d.ledger ?? 'absent'}`).join(', ')}`;
    const p = this.platform;
    await p.chokepoint.submit(
      p.chokepoint.platformCommand('integrity.alarm', { trigger: 'periodic', detectedAt: new Date().toISOString(), ledgerSize: p.chokepoint.ledger.size, tables: ['envelopes'], imvus: [imvu], detail: detail.slice(0, 1000) }),
    );
    this.opts.log?.error({ imvu, differences: view.differences }, 'integrity alarm: kernel limits differ from the ledger');
    const r = (await this.rows()).find((x) => x.imvu === imvu);
    if (r) await this.driver.update(imvu, this.resourcesOf(r));
    if (r && view.differences.some((d) => d.field === 'storage_bytes')) await this.driver.setStorage?.(imvu, r.storage_gb);
    return view;
  }

  /** Checks every running workload's kernel limits against the ledger (the periodic timer; after an alarm). */
  async verifyAll(): Promise<KernelView[]> {
    const out: KernelView[] = [];
    for (const r of await this.rows()) if (r.desired === 'running' && !this.closed) {
      const v = await this.verifyKernel(r.imvu);
      if (v) out.push(v);
    }
    return out;
  }

  private async oom(imvu: string): Promise<void> {
    const r = (await this.rows()).find((x) => x.imvu === imvu);
    if (!r) return;
    const p = this.platform;
    await p.chokepoint
      .submit(p.chokepoint.platformCommand('notify.creator', { imvu, recipient: r.owner, about: r.w_entry, gate: 7, message: `the workload of ${imvu} went past its memory limit (${r.memory_gb} GB) and the kernel killed a process (OOM)` }))
      .catch((err: unknown) => this.opts.log?.error({ err: String(err), imvu }, 'compute: OOM notice not recorded'));
  }

  private sign(type: 'compute.burst', body: { imvu: string; phase: 'raise' | 'lower'; multiplier: number }): Promise<Receipt> {
    const id = this.identity!;
    return this.platform.chokepoint.submit(signCommand(id.key, type, body, { origin: this.platform.config.origin }));
  }

  /** Raises the CPU quota by the envelope's multiplier for its minutes (the burst policy); the ledger decides. */
  async burst(imvu: string): Promise<Receipt | undefined> {
    const r = (await this.rows()).find((x) => x.imvu === imvu);
    if (!r) return undefined;
    const receipt = await this.sign('compute.burst', { imvu, phase: 'raise', multiplier: r.burst_multiplier });
    await this.schedule();
    return receipt;
  }

  private scheduleLower(imvu: string, until: string, raisedAt: number): void {
    if (this.lowerTimers.has(imvu)) return;
    const due = this.opts.burstMs !== undefined ? Math.min(Date.parse(until), raisedAt + this.opts.burstMs) : Date.parse(until);
    const t = setTimeout(() => {
      this.lowerTimers.delete(imvu);
      void this.sign('compute.burst', { imvu, phase: 'lower', multiplier: 1 }).then(() => this.schedule(), (err: unknown) => this.opts.log?.error({ err: String(err), imvu }, 'compute: burst not lowered'));
    }, Math.max(0, due - Date.now()));
    t.unref();
    this.lowerTimers.set(imvu, t);
  }

  /**
   * The burst policy's trigger: a running workload throttled in more than half of the CFS periods
   * in which it ran since the last look (cpu.stat nr_periods, nr_throttled).
   */
  async checkBursts(): Promise<void> {
    if (!this.driver.cgroupPath || this.closed) return;
    const { readFile } = await import('node:fs/promises');
    for (const r of await this.rows()) {
      if (r.desired !== 'running' || r.burst_until !== '' || r.status !== 'active') {
        this.throttled.delete(r.imvu);
        continue;
      }
      const stat = await readFile(`${CGROUP_ROOT}/cpu${this.driver.cgroupPath(r.imvu)}/cpu.stat`, 'utf8').catch(() => '');
      const now = { periods: Number(/nr_periods (\d+)/.exec(stat)?.[1] ?? 0), throttled: Number(/nr_throttled (\d+)/.exec(stat)?.[1] ?? 0) };
      const before = this.throttled.get(r.imvu);
      this.throttled.set(r.imvu, now);
      if (!before || now.periods < before.periods) continue;
      const periods = now.periods - before.periods;
      if (periods >= 5 && (now.throttled - before.throttled) * 2 > periods) {
        this.throttled.delete(r.imvu);
        await this.burst(r.imvu).catch(() => undefined);
      }
    }
  }

  /**
   * The blueprint's health check (TCP connect, or HTTP GET answering 2xx) for each running
   * workload, every `interval_ms`; after `retries` failures in a row, or when the workload
   * exited by itself, the restart policy (`always`, the default, or `never`) is applied, and the
   * creator is told.
   */
  async checkHealth(): Promise<void> {
    if (this.healthBusy || this.closed) return;
    this.healthBusy = true;
    try {
      for (const r of await this.rows()) {
        if (this.closed) return;
        const run = r.desired === 'running' && (r.status === 'active' || r.status === 'exiting');
        const applied = this.applied.get(r.imvu);
        if (!run || !applied?.running) {
          this.health.delete(r.imvu);
          continue;
        }
        const bp = blueprintSchema.parse(JSON.parse(r.blueprint));
        const h = this.health.get(r.imvu) ?? { state: 'unknown' as const, failures: 0, restarts: 0, due: 0 };
        this.health.set(r.imvu, h);
        if (Date.now() < h.due) continue;
        const st = await this.driver.status(r.imvu);
        if (st.state !== 'running') {
          // Seen twice in a row (a `runc state` that fails once under load is not an exit).
          h.exitsSeen = (h.exitsSeen ?? 0) + 1;
          if (h.exitsSeen < 2) continue;
          h.state = 'failing';
          h.lastError = bp.restart !== 'never' ? `the workload is ${st.state}` : h.lastError?.endsWith(NEVER) ? h.lastError : `the workload is ${st.state}${NEVER}`;
          h.due = Date.now() + (bp.health?.interval_ms ?? 10_000);
          if (bp.restart !== 'never') await this.restartByPolicy(r, h, `it exited (${st.state})`, true);
          continue;
        }
        h.exitsSeen = 0;
        if (!bp.health || bp.port === undefined || !st.address) continue;
        const interval = bp.health.interval_ms ?? 10_000;
        h.due = Date.now() + interval;
        h.lastCheck = new Date().toISOString();
        const error = await probe(st.address, bp.port, bp.health.http_path, bp.health.timeout_ms ?? 2000);
        if (error === undefined) {
          h.state = 'passing';
          h.failures = 0;
          delete h.lastError;
          continue;
        }
        h.failures++;
        h.lastError = error;
        if (h.failures >= (bp.health.retries ?? 3)) {
          h.state = 'failing';
          if (bp.restart !== 'never') await this.restartByPolicy(r, h, `its health check failed ${h.failures} times in a row (${error})`);
        }
      }
    } catch (err) {
      this.opts.log?.error({ err: String(err) }, 'compute: health check failed to run');
    } finally {
      this.healthBusy = false;
    }
  }

  private async restartByPolicy(r: Row, h: HealthView & { exitsSeen?: number }, why: string, exited = false): Promise<void> {
    let restarted = false;
    await this.serial(async () => {
      // Decided again once nothing else drives the fabric: the ledger may have changed, and a
      // workload seen stopped while a reconcile (re)started it is not an exit.
      const row = (await this.rows()).find((x) => x.imvu === r.imvu);
      if (!row || row.desired !== 'running' || row.blueprint !== r.blueprint || row.w_entry !== r.w_entry) return;
      if (exited && (await this.driver.status(r.imvu)).state === 'running') return;
      await this.driver.restart(r.imvu);
      restarted = true;
      h.restarts++;
      h.failures = 0;
      h.exitsSeen = 0;
      h.state = 'unknown';
    });
    if (!restarted) return;
    const p = this.platform;
    await p.chokepoint
      .submit(p.chokepoint.platformCommand('notify.creator', { imvu: r.imvu, recipient: r.owner, about: r.w_entry, gate: 7, message: `the workload of ${r.imvu} was restarted by its restart policy: ${why}`.slice(0, 1000) }))
      .catch((err: unknown) => this.opts.log?.error({ err: String(err), imvu: r.imvu }, 'compute: restart notice not recorded'));
  }

  /** The health of a workload as last checked (undefined when it has no check or does not run). */
  healthOf(imvu: string): HealthView | undefined {
    const h = this.health.get(imvu);
    if (!h) return undefined;
    const { due: _due, ...view } = h;
    return { ...view };
  }

  async status(imvu: string): Promise<WorkloadStatus & { health?: HealthView }> {
    const st = await this.driver.status(imvu);
    const health = this.healthOf(imvu);
    return health ? { ...st, health } : st;
  }

  /** Why `storageGb` cannot be applied to the IMVU's data volume (below what it holds), or undefined. */
  async storageRefusal(imvu: string, storageGb: number): Promise<string | undefined> {
    const unit = this.driver.storageUnitBytes;
    const u = unit ? await this.driver.volumeUsage?.(imvu).catch(() => undefined) : undefined;
    if (!u || !unit || storageGb * unit >= u.usedBytes) return undefined;
    return `storage_gb ${storageGb} (${storageGb * unit} bytes) is below the ${u.usedBytes} bytes used on the data volume of ${imvu}`;
  }

  logs(imvu: string, maxBytes?: number): Promise<string> {
    return this.driver.logs(imvu, maxBytes);
  }

  exec(imvu: string, command: string[]): Promise<ExecResult> {
    return this.driver.exec(imvu, command);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.offCheckpoint?.();
    if (this.burstTimer) clearInterval(this.burstTimer);
    if (this.verifyTimer) clearInterval(this.verifyTimer);
    if (this.healthTimer) clearInterval(this.healthTimer);
    for (const t of this.lowerTimers.values()) clearTimeout(t);
    await this.running;
    try {
      await this.driver.close();
    } finally {
      this.opts.onClose?.();
    }
  }
}

/** One health probe: undefined when it passes, else why not. */
async function probe(host: string, port: number, path: string | undefined, timeoutMs: number): Promise<string | undefined> {
  if (path === undefined) {
    const { connect } = await import('node:net');
    return new Promise((ok) => {
      const sock = connect({ host, port });
      const t = setTimeout(() => (sock.destroy(), ok(`no TCP connection to ${host}:${port} within ${timeoutMs} ms`)), timeoutMs);
      sock.once('connect', () => (clearTimeout(t), sock.destroy(), ok(undefined)));
      sock.once('error', (e) => (clearTimeout(t), ok(`TCP ${host}:${port}: ${e.message}`)));
    });
  }
  const { request } = await import('node:http');
  return new Promise((ok) => {
    const req = request({ host, port, path, method: 'GET', timeout: timeoutMs, headers: { 'user-agent': 'nexus-health' } }, (res) => {
      res.resume();
      const code = res.statusCode ?? 0;
      ok(code >= 200 && code < 300 ? undefined : `HTTP ${code} for ${path}`);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (e) => ok(`HTTP ${host}:${port}${path}: ${e.message}`));
    req.end();
  });
}
