// The driver interface every compute backend implements: runc containers here (runc.ts); a
// QEMU/KVM driver would implement the same (docs/compute.md says what it maps each field to).
import type { Blueprint } from '../blueprint/schema.ts';
import type { KernelLimits, OciResources } from '../envelopes/resources.ts';

/** Everything a driver needs to place one IMVU's workload. */
export interface DeploySpec {
  imvu: string;
  /** imvus.seq: picks the uid/gid range and the /30. */
  seq: number;
  blueprint: Blueprint;
  resources: OciResources;
  /** The envelope's storage_gb: the data volume's own filesystem is this large (kernel-enforced). */
  storageGb?: number;
}

export type WorkloadState = 'absent' | 'created' | 'running' | 'paused' | 'stopped';

export interface WorkloadStatus {
  imvu: string;
  state: WorkloadState;
  /** The workload's init process, as the host sees it. */
  pid?: number;
  /** The workload's address inside its network namespace, and the host end of its veth pair. */
  address?: string;
  hostAddress?: string;
}

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** What a driver found and did at start: containers adopted, restarted, and leftovers removed. */
export interface AdoptReport {
  adopted: string[];
  restarted: string[];
  removed: string[];
  /** Found stopped (it exited while the daemon was down) and left so: its restart policy is `never`. */
  kept: string[];
}

export interface ComputeDriver {
  readonly name: string;
  /** Writes (or rewrites) the IMVU's bundle; does not start it. */
  deploy(spec: DeploySpec): Promise<void>;
  start(imvu: string): Promise<WorkloadStatus>;
  stop(imvu: string): Promise<void>;
  restart(imvu: string): Promise<WorkloadStatus>;
  status(imvu: string): Promise<WorkloadStatus>;
  /** The newest `maxBytes` of the workload's output (stdout and stderr, as written). */
  logs(imvu: string, maxBytes?: number): Promise<string>;
  exec(imvu: string, command: string[], opts?: { timeoutMs?: number }): Promise<ExecResult>;
  /** Applies new limits to the running workload (and to its bundle, for the next start). */
  update(imvu: string, resources: OciResources): Promise<void>;
  /** The limits the kernel holds now for the IMVU's cgroups. */
  readKernelLimits(imvu: string): Promise<KernelLimits>;
  /**
   * At start: adopts running workloads, restarts those `shouldRun` says should run, removes the
   * rest's leftovers. A workload that should run but exited while the daemon was down is started
   * again only if `mayRestart` (its restart policy) allows it; otherwise it is left stopped.
   */
  adopt(shouldRun: (imvu: string) => boolean, mayRestart?: (imvu: string) => boolean): Promise<AdoptReport>;
  /**
   * The blueprint the IMVU's bundle was last written from (undefined: none). A daemon that starts
   * again compares it with the ledger's to keep an adopted workload running rather than redeploy it.
   */
  deployedBlueprint?(imvu: string): Promise<DeploySpec['blueprint'] | undefined>;
  /** Removes the workload and everything the driver made for it (container, cgroup, network), keeping its data. */
  cleanup(imvu: string): Promise<void>;
  /** Called with the IMVU whose workload the kernel OOM-killed. */
  onOom(listener: (imvu: string) => void): void;
  close(): Promise<void>;
}
