// The kernel's own accounting of one container's cgroup, read from its files: CPU time, memory in
// use, block IO bytes and operations. cgroup v1 (this machine's hybrid layout: one hierarchy per
// controller under /sys/fs/cgroup/<controller>/) and v2 (one directory with cgroup.controllers).
// The files are small and kernel-written, but they are parsed like any input: bounded reads,
// unknown lines ignored, a malformed number is an error with the file's name, never a crash.
import { existsSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { join } from 'node:path';

/** Kernel counters are small text files; anything longer is not one of them. */
const MAX_FILE = 256 * 1024;

export interface CgroupSample {
  /** CPU time of every task in the cgroup, nanoseconds (cumulative). */
  cpuNs: bigint;
  /** Memory charged to the cgroup now, bytes (a gauge). */
  memoryBytes: bigint;
  /** Block IO bytes read and written (cumulative). */
  ioBytes: bigint;
  /** Block IO operations (cumulative). */
  ioOps: bigint;
  /** Identity of the cgroup directory (its inode): a container started again gets a new one, with counters from zero. */
  instance: string;
}

export interface CgroupLocation {
  version: 1 | 2;
  /** v2: the cgroup's directory. v1: the directory of each controller. */
  cpu: string;
  memory: string;
  io: string;
}

async function readSmall(path: string): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(MAX_FILE);
    let n = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, n, buf.length - n, null);
      if (bytesRead === 0) break;
      n += bytesRead;
      if (n >= buf.length) throw new Error(`${path} is longer than ${MAX_FILE} bytes: not a cgroup counter`);
    }
    return buf.subarray(0, n).toString('utf8');
  } finally {
    await fh.close();
  }
}

function count(text: string, file: string): bigint {
  const t = text.trim();
  if (!/^\d{1,20}$/.test(t)) throw new Error(`${file}: expected a whole number, found '${t.slice(0, 40)}'`);
  return BigInt(t);
}

/** v1 blkio.throttle.io_service_bytes / io_serviced: "MAJ:MIN Op N" lines and a final "Total N". Sums every device's Total. */
export function parseBlkioV1(text: string, file = 'blkio'): bigint {
  let sum = 0n;
  let grand: bigint | undefined;
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length === 3 && /^\d+:\d+$/.test(f[0]!) && f[1] === 'Total') sum += count(f[2]!, file);
    else if (f.length === 2 && f[0] === 'Total') grand = count(f[1]!, file);
  }
  return grand ?? sum;
}

/** v2 io.stat: "MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N" per device. */
export function parseIoStatV2(text: string, file = 'io.stat'): { bytes: bigint; ops: bigint } {
  let bytes = 0n;
  let ops = 0n;
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (!/^\d+:\d+$/.test(f[0] ?? '')) continue;
    for (const kv of f.slice(1)) {
      const [k, v] = kv.split('=');
      if (v === undefined) continue;
      if (k === 'rbytes' || k === 'wbytes' || k === 'dbytes') bytes += count(v, file);
      else if (k === 'rios' || k === 'wios' || k === 'dios') ops += count(v, file);
    }
  }
  return { bytes, ops };
}

/** v2 cpu.stat: "usage_usec N" (and others). */
export function parseCpuStatV2(text: string, file = 'cpu.stat'): bigint {
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f[0] === 'usage_usec' && f.length === 2) return count(f[1]!, file) * 1000n;
  }
  throw new Error(`${file}: no usage_usec line`);
}

const V1_ROOT = '/sys/fs/cgroup';

/**
 * Where a cgroup's counters are. `path` is a v2 cgroup directory, or a v1 one under any
 * controller's hierarchy (/sys/fs/cgroup/cpuacct/nexus/IMVU-001): the same relative path is
 * looked up under cpuacct, memory and blkio.
 */
export function locate(path: string, v1Root = V1_ROOT): CgroupLocation {
  if (existsSync(join(path, 'cgroup.controllers'))) return { version: 2, cpu: path, memory: path, io: path };
  const prefix = v1Root.endsWith('/') ? v1Root : `${v1Root}/`;
  if (!path.startsWith(prefix)) throw new Error(`${path} is neither a cgroup v2 directory nor under ${v1Root}`);
  const rel = path.slice(prefix.length).split('/').slice(1).join('/');
  return { version: 1, cpu: join(v1Root, 'cpuacct', rel), memory: join(v1Root, 'memory', rel), io: join(v1Root, 'blkio', rel) };
}

/** Reads one sample; undefined if the cgroup does not exist (the container is not running). */
export async function readCgroup(loc: CgroupLocation): Promise<CgroupSample | undefined> {
  const st = await stat(loc.cpu).catch(() => undefined);
  if (!st?.isDirectory()) return undefined;
  try {
    if (loc.version === 2) {
      const cpuNs = parseCpuStatV2(await readSmall(join(loc.cpu, 'cpu.stat')));
      const memoryBytes = existsSync(join(loc.memory, 'memory.current')) ? count(await readSmall(join(loc.memory, 'memory.current')), 'memory.current') : 0n;
      const io = existsSync(join(loc.io, 'io.stat')) ? parseIoStatV2(await readSmall(join(loc.io, 'io.stat'))) : { bytes: 0n, ops: 0n };
      return { cpuNs, memoryBytes, ioBytes: io.bytes, ioOps: io.ops, instance: `${st.dev}:${st.ino}` };
    }
    const cpuNs = count(await readSmall(join(loc.cpu, 'cpuacct.usage')), 'cpuacct.usage');
    const memoryBytes = existsSync(join(loc.memory, 'memory.usage_in_bytes')) ? count(await readSmall(join(loc.memory, 'memory.usage_in_bytes')), 'memory.usage_in_bytes') : 0n;
    const ioBytes = existsSync(join(loc.io, 'blkio.throttle.io_service_bytes')) ? parseBlkioV1(await readSmall(join(loc.io, 'blkio.throttle.io_service_bytes')), 'blkio.throttle.io_service_bytes') : 0n;
    const ioOps = existsSync(join(loc.io, 'blkio.throttle.io_serviced')) ? parseBlkioV1(await readSmall(join(loc.io, 'blkio.throttle.io_serviced')), 'blkio.throttle.io_serviced') : 0n;
    return { cpuNs, memoryBytes, ioBytes, ioOps, instance: `${st.dev}:${st.ino}` };
  } catch (err) {
    // Removed between the stat and the read: the container just stopped.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENODEV') return undefined;
    throw err;
  }
}
