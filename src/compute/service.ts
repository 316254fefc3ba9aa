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
  log?: { info(o: object, m: string): void; error(o: object, m: string): void };
}

export class ComputeService {
  private identity: ServiceIdentity | undefined;
  private readonly applied = new Map<string, { blueprint: string; running: boolean; resources: string; entry: number }>();
  private running: Promise<void> = Promise.resolve();
  private dirty = false;
  private offCheckpoint: (() => void) | undefined;
  private burstTimer: NodeJS.Timeout | undefined;
  private readonly lowerTimers = new Map<string, NodeJS.Timeout>();
  private readonly throttled = new Map<string, number>();
  private closed = false;

  constructor(
    readonly platform: OpenPlatform,
    readonly driver: ComputeDriver & { dataPath(imvu: string): string; cgroupPath?(imvu: string): string },
    private readonly opts: ComputeServiceOptions = {},
  ) {}

  async start(): Promise<void> {
    this.identity = await ensureServiceIdentity(this.platform, 'compute');
    const rows = await this.rows();
    const want = new Set(rows.filter((r) => r.desired === 'running' && (r.status === 'active' || r.status === 'exiting')).map((r) => r.imvu));
    const report = await this.driver.adopt((imvu) => want.has(imvu));
    this.opts.log?.info(report, 'compute: workloads adopted after start');
    this.driver.onOom((imvu) => void this.oom(imvu));
    this.offCheckpoint = this.platform.chokepoint.ledger.onCheckpoint(() => this.schedule());
    await this.reconcile();
    const every = this.opts.burstCheckMs ?? 10_000;
    if (every > 0) {
      this.burstTimer = setInterval(() => void this.checkBursts(), every);
      this.burstTimer.unref();
    }
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

  async reconcile(): Promise<void> {
    for (const r of await this.rows()) {
      // An exiting IMVU runs on as before (threat 4.3); a suspended or exited one does not.
      const run = r.desired === 'running' && (r.status === 'active' || r.status === 'exiting');
      const resources = this.resourcesOf(r);
      const res = JSON.stringify(resources);
      const was = this.applied.get(r.imvu);
      if (was && was.blueprint === r.blueprint && was.running === run && was.resources === res && was.entry === r.w_entry) continue;
      const blueprint: Blueprint = blueprintSchema.parse(JSON.parse(r.blueprint));
      const st = await this.driver.status(r.imvu);
      if (!was || was.blueprint !== r.blueprint || st.state === 'absent') {
        if (st.state === 'running') await this.driver.stop(r.imvu);
        await this.driver.deploy({ imvu: r.imvu, seq: r.seq, blueprint, resources });
      }
      const now = await this.driver.status(r.imvu);
      if (run && now.state !== 'running') await this.driver.start(r.imvu);
      else if (run && was && was.entry !== r.w_entry && (await this.entryType(r.w_entry)) === 'compute.restart') await this.driver.restart(r.imvu);
      else if (!run && now.state !== 'stopped' && now.state !== 'absent') await this.driver.stop(r.imvu);
      if (run && was?.resources !== res) {
        await this.driver.update(r.imvu, resources);
        await this.verifyKernel(r.imvu);
      } else if (!run) await this.driver.update(r.imvu, resources);
      this.applied.set(r.imvu, { blueprint: r.blueprint, running: run, resources: res, entry: r.w_entry });
      if (r.burst_until !== '') this.scheduleLower(r.imvu, r.burst_until);
    }
  }

  /** The kernel's cgroup values of an IMVU's workload beside what the ledger implies. */
  async kernelView(imvu: string): Promise<KernelView | undefined> {
    const r = (await this.rows()).find((x) => x.imvu === imvu);
    if (!r) return undefined;
    const ledger = expectedKernelValues(this.resourcesOf(r));
    const kernel = await this.driver.readKernelLimits(imvu);
    return { imvu, ledger, kernel, differences: compareLimits(ledger, kernel) };
  }

  /** Reads the kernel's values back; a difference with the ledger is recorded as an integrity alarm. */
  async verifyKernel(imvu: string): Promise<KernelView | undefined> {
    const view = await this.kernelView(imvu);
    if (!view || view.differences.length === 0 || (await this.driver.status(imvu)).state !== 'running') return view;
    const detail = `the kernel's cgroup limits of ${imvu} differ from its envelope in the ledger: ${view.differences.map((d) => `${d.field} kernel ${d.kernel ?? 'absent'} ledger ${d.ledger ?? 'absent'}`).join(', ')}`;
    const p = this.platform;
    await p.chokepoint.submit(
      p.chokepoint.platformCommand('integrity.alarm', { trigger: 'periodic', detectedAt: new Date().toISOString(), ledgerSize: p.chokepoint.ledger.size, tables: ['envelopes'], imvus: [imvu], detail: detail.slice(0, 1000) }),
    );
    this.opts.log?.error({ imvu, differences: view.differences }, 'integrity alarm: kernel limits differ from the ledger');
    return view;
  }

  /** Re-applies the ledger's limits to every running workload and checks them (after an alarm, or periodically). */
  async verifyAll(): Promise<KernelView[]> {
    const out: KernelView[] = [];
    for (const r of await this.rows()) if (r.desired === 'running') {
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

  private scheduleLower(imvu: string, until: string): void {
    if (this.lowerTimers.has(imvu)) return;
    const t = setTimeout(() => {
      this.lowerTimers.delete(imvu);
      void this.sign('compute.burst', { imvu, phase: 'lower', multiplier: 1 }).then(() => this.schedule(), (err: unknown) => this.opts.log?.error({ err: String(err), imvu }, 'compute: burst not lowered'));
    }, Math.max(0, Date.parse(until) - Date.now()));
    t.unref();
    this.lowerTimers.set(imvu, t);
  }

  /** The burst policy's trigger: a running workload throttled in most of the last interval's periods. */
  private async checkBursts(): Promise<void> {
    if (!this.driver.cgroupPath) return;
    for (const r of await this.rows()) {
      if (r.desired !== 'running' || r.burst_until !== '' || r.status !== 'active') continue;
      const stat = await import('node:fs/promises').then((fs) => fs.readFile(`${CGROUP_ROOT}/cpu${this.driver.cgroupPath!(r.imvu)}/cpu.stat`, 'utf8')).catch(() => '');
      const throttled = Number(/nr_throttled (\d+)/.exec(stat)?.[1] ?? 0);
      const before = this.throttled.get(r.imvu);
      this.throttled.set(r.imvu, throttled);
      const periods = (this.opts.burstCheckMs ?? 10_000) / 100;
      if (before !== undefined && throttled - before > periods / 2) await this.burst(r.imvu).catch(() => undefined);
    }
  }

  status(imvu: string): Promise<WorkloadStatus> {
    return this.driver.status(imvu);
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
    for (const t of this.lowerTimers.values()) clearTimeout(t);
    await this.running;
    await this.driver.close();
  }
}
