// The OCI runtime config (config.json) of one IMVU's container: a pure function of what the
// ledger says (blueprint, envelope, sequence number) and where the platform keeps its files.
import type { Blueprint } from '../blueprint/schema.ts';
import type { OciResources } from '../envelopes/resources.ts';
import { defaultSeccomp } from './seccomp.ts';

/** Host ids start here; each IMVU gets its own 65536 (seq 1 -> 165536..231071). */
export const DEFAULT_UID_BASE = 100_000;
export const IDS_PER_IMVU = 65_536;

/** The host uid/gid that is root inside IMVU `seq`'s user namespace. */
export function hostRootId(seq: number, uidBase = DEFAULT_UID_BASE): number {
  if (!Number.isInteger(seq) || seq < 1) throw new RangeError(`IMVU sequence ${seq} must be a positive integer`);
  const id = uidBase + seq * IDS_PER_IMVU;
  if (id + IDS_PER_IMVU > 2 ** 32 - 2) throw new RangeError(`IMVU sequence ${seq} leaves the 32-bit id space`);
  return id;
}

/**
 * Capabilities kept (inside the user namespace, so over the IMVU's own namespaces only): enough
 * to bind ports below 1024, change to an unprivileged user and manage its own files. Everything
 * else (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_PTRACE, CAP_MKNOD, ...) is dropped.
 */
export const KEPT_CAPABILITIES = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_SETUID', 'CAP_SETGID', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'] as const;

export interface ConfigInput {
  imvu: string;
  seq: number;
  blueprint: Blueprint;
  resources: OciResources;
  /** The rootfs, relative to the bundle or absolute. */
  rootfs: string;
  /** Host directory mounted read-write at /data. */
  dataDir: string;
  /** Absolute cgroup path, e.g. /nexus-ab12/IMVU-001. */
  cgroupsPath: string;
  uidBase?: number;
}

export function ociConfig(c: ConfigInput): Record<string, unknown> {
  const root = hostRootId(c.seq, c.uidBase);
  const caps = [...KEPT_CAPABILITIES];
  const env = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', `NEXUS_IMVU=${c.imvu}`, 'HOME=/data'];
  if (c.blueprint.port !== undefined) env.push(`PORT=${c.blueprint.port}`);
  for (const [k, v] of Object.entries(c.blueprint.env ?? {})) env.push(`${k}=${v}`);
  const noDev = ['nosuid', 'noexec', 'nodev'];
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: c.blueprint.command,
      env,
      cwd: '/data',
      capabilities: { bounding: caps, effective: caps, permitted: caps, ambient: [] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 4096, soft: 4096 }],
      noNewPrivileges: true,
    },
    root: { path: c.rootfs, readonly: true },
    hostname: c.imvu.toLowerCase(),
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: noDev },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: [...noDev, 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: noDev },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/data', type: 'bind', source: c.dataDir, options: ['rbind', 'rw', 'nosuid', 'nodev'] },
    ],
    linux: {
      uidMappings: [{ containerID: 0, hostID: root, size: IDS_PER_IMVU }],
      gidMappings: [{ containerID: 0, hostID: root, size: IDS_PER_IMVU }],
      namespaces: [
        { type: 'pid' },
        { type: 'network' },
        { type: 'ipc' },
        { type: 'uts' },
        { type: 'mount' },
        { type: 'user' },
        { type: 'cgroup' },
      ],
      cgroupsPath: c.cgroupsPath,
      resources: { devices: [{ allow: false, access: 'rwm' }], ...c.resources },
      seccomp: defaultSeccomp(),
      maskedPaths: ['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware'],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}
