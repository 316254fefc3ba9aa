// One network namespace per IMVU, joined to the host by a veth pair in the IMVU's own /30
// (addresses.ts), made with iproute2. Packet filter rules (iptables) on the host ends: nothing
// from a workload is forwarded anywhere (so no IMVU reaches another, and none reaches beyond the
// host), and nothing from a workload reaches the host's own sockets except the ports offered.
// Connections the host opens to a workload (the gateway) are answered.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { workloadNet, type WorkloadNet } from './addresses.ts';

const run = promisify(execFile);

export interface NetworkNames {
  /** ip netns name. */
  netns: string;
  /** Host end of the veth pair (at most 15 characters). */
  hostIf: string;
  /** Workload end, before it is moved and renamed eth0. */
  peerIf: string;
}

/** Names for IMVU `seq` of the platform instance `tag` (4 lower-case hex digits). */
export function networkNames(tag: string, seq: number): NetworkNames {
  return { netns: `nx${tag}-${seq}`, hostIf: `nx${tag}h${seq}`, peerIf: `nx${tag}w${seq}` };
}

async function ip(args: string[]): Promise<string> {
  const { stdout } = await run('ip', args, { timeout: 10_000 });
  return stdout;
}

async function ipt(args: string[]): Promise<void> {
  await run('iptables', ['-w', '5', ...args], { timeout: 15_000 });
}

async function iptHas(args: string[]): Promise<boolean> {
  return run('iptables', ['-w', '5', '-C', ...args], { timeout: 15_000 }).then(
    () => true,
    () => false,
  );
}

/**
 * The host-wide rules of one platform instance: its own chain, jumped to from INPUT and FORWARD
 * for packets on its host-end interfaces. `offered` are host TCP ports a workload may reach at its
 * host address. Idempotent.
 */
export async function ensureFilter(tag: string, offered: number[] = []): Promise<void> {
  const chain = `NEXUS-${tag}`;
  const ifs = `nx${tag}h+`;
  await ipt(['-N', chain]).catch(() => undefined);
  await ipt(['-F', chain]);
  await ipt(['-A', chain, '-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED', '-j', 'ACCEPT']);
  for (const p of offered) await ipt(['-A', chain, '-p', 'tcp', '--dport', String(p), '-j', 'ACCEPT']);
  await ipt(['-A', chain, '-j', 'DROP']);
  for (const [table, dir] of [['INPUT', '-i'], ['FORWARD', '-i'], ['FORWARD', '-o']] as const) {
    const rule = [table, dir, ifs, '-j', chain];
    if (!(await iptHas(rule))) await ipt(['-I', ...rule]);
  }
}

/** Removes the instance's rules and chain (when the daemon stops for good, or a test ends). */
export async function removeFilter(tag: string): Promise<void> {
  const chain = `NEXUS-${tag}`;
  const ifs = `nx${tag}h+`;
  for (const [table, dir] of [['INPUT', '-i'], ['FORWARD', '-i'], ['FORWARD', '-o']] as const) {
    const rule = [table, dir, ifs, '-j', chain];
    while (await iptHas(rule)) await ipt(['-D', ...rule]);
  }
  await ipt(['-F', chain]).catch(() => undefined);
  await ipt(['-X', chain]).catch(() => undefined);
}

export async function netnsExists(name: string): Promise<boolean> {
  return (await ip(['netns', 'list'])).split('\n').some((l) => l.split(' ')[0] === name);
}

/**
 * Names the network namespace runc made for the container whose init is `pid` (ip netns attach,
 * so the namespace stays owned by the IMVU's user namespace and `runc exec` can join it), then
 * joins it to the host with a veth pair in the IMVU's /30. Called between `runc create` and
 * `runc start`, so the workload starts with its network up.
 */
export async function attachNetwork(tag: string, seq: number, range: string, pid: number): Promise<WorkloadNet & NetworkNames> {
  const net = workloadNet(seq, range);
  const names = networkNames(tag, seq);
  await removeNetwork(tag, seq);
  await ip(['netns', 'attach', names.netns, String(pid)]);
  try {
    await ip(['link', 'add', names.hostIf, 'type', 'veth', 'peer', 'name', names.peerIf]);
    await ip(['link', 'set', names.peerIf, 'netns', names.netns]);
    await ip(['-n', names.netns, 'link', 'set', names.peerIf, 'name', 'eth0']);
    await ip(['-n', names.netns, 'addr', 'add', `${net.workloadAddress}/30`, 'dev', 'eth0']);
    await ip(['-n', names.netns, 'link', 'set', 'eth0', 'up']);
    await ip(['-n', names.netns, 'link', 'set', 'lo', 'up']);
    await ip(['-n', names.netns, 'route', 'add', 'default', 'via', net.hostAddress]);
    await ip(['addr', 'add', `${net.hostAddress}/30`, 'dev', names.hostIf]);
    await ip(['link', 'set', names.hostIf, 'up']);
  } catch (err) {
    await removeNetwork(tag, seq);
    throw err;
  }
  return { ...net, ...names };
}

/** Removes the IMVU's namespace name (a bind mount) and its veth pair (deleting one end deletes both). */
export async function removeNetwork(tag: string, seq: number): Promise<void> {
  const names = networkNames(tag, seq);
  await ip(['netns', 'delete', names.netns]).catch(() => undefined);
  await ip(['link', 'delete', names.hostIf]).catch(() => undefined);
}

/** Network namespaces and host-end links of this instance that exist now (leftover checks). */
export async function listNetwork(tag: string): Promise<{ netns: string[]; links: string[] }> {
  const netns = (await ip(['netns', 'list'])).split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith(`nx${tag}-`));
  const links = (await ip(['-o', 'link', 'show'])).split('\n').map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '').filter((n) => n.startsWith(`nx${tag}h`));
  return { netns, links };
}
