// One network namespace per IMVU, joined to the host by a veth pair in the IMVU's own /30
// (addresses.ts), made with iproute2. Packet filter rules (iptables) on the host ends: nothing
// from a workload is forwarded anywhere (so no IMVU reaches another, and none reaches beyond the
// host), and nothing from a workload reaches the host's own sockets except the ports offered.
// Connections the host opens to a workload (the gateway) are answered.
import { workloadNet, type WorkloadNet } from './addresses.ts';
import { runTool } from './commands.ts';

export interface NetworkNames {
  /** ip netns name. */
  netns: string;
  /** Host end of the veth pair (at most 15 characters); the workload end is eth0 inside the namespace. */
  hostIf: string;
}

/** Names for IMVU `seq` of the platform instance `tag` (4 lower-case hex digits). */
export function networkNames(tag: string, seq: number): NetworkNames {
  return { netns: `nx${tag}-${seq}`, hostIf: `nx${tag}h${seq}` };
}

async function ip(args: string[]): Promise<string> {
  const { stdout } = await runTool('ip', args, { timeout: 10_000 });
  return stdout;
}

/** Several `ip` commands in one process (`ip -batch -`): one spawn instead of one per command. */
async function ipBatch(lines: string[], opts: { netns?: string; force?: boolean } = {}): Promise<void> {
  const args = [...(opts.netns ? ['-n', opts.netns] : []), ...(opts.force ? ['-force'] : []), '-batch', '-'];
  await runTool('ip', args, { timeout: 10_000, input: lines.join('\n') + '\n' });
}

const JUMPS = [
  ['INPUT', '-i'],
  ['FORWARD', '-i'],
  ['FORWARD', '-o'],
] as const;

/** The filter table as `iptables-save` prints it (one spawn), to see which of our rules exist. */
async function savedFilter(): Promise<string[]> {
  return (await runTool('iptables-save', ['-t', 'filter'], { timeout: 15_000 })).stdout.split('\n');
}

/** Applies rules in one transaction (`iptables-restore --noflush`: other chains are left alone). */
async function restore(lines: string[]): Promise<void> {
  await runTool('iptables-restore', ['-w', '5', '--noflush'], { timeout: 15_000, input: ['*filter', ...lines, 'COMMIT', ''].join('\n') });
}

/**
 * The host-wide rules of one platform instance: its own chain, jumped to from INPUT and FORWARD
 * for packets on its host-end interfaces. `offered` are host TCP ports a workload may reach at its
 * host address. Idempotent: declaring the chain in `--noflush` mode empties it, and a jump is
 * inserted only when `iptables-save` does not show it already. Two processes in all.
 */
export async function ensureFilter(tag: string, offered: number[] = []): Promise<void> {
  const chain = `NEXUS-${tag}`;
  const ifs = `nx${tag}h+`;
  const saved = await savedFilter();
  const lines = [`:${chain} - [0:0]`, `-A ${chain} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT`];
  for (const p of offered) lines.push(`-A ${chain} -p tcp -m tcp --dport ${p} -j ACCEPT`);
  lines.push(`-A ${chain} -j DROP`);
  for (const [table, dir] of JUMPS) if (!saved.includes(`-A ${table} ${dir} ${ifs} -j ${chain}`)) lines.push(`-I ${table} ${dir} ${ifs} -j ${chain}`);
  await restore(lines);
}

/** Removes the instance's rules and chain (when the daemon stops for good, or a test ends). */
export async function removeFilter(tag: string): Promise<void> {
  const chain = `NEXUS-${tag}`;
  const ifs = `nx${tag}h+`;
  const saved = await savedFilter();
  const lines: string[] = [];
  for (const [table, dir] of JUMPS) for (const l of saved) if (l === `-A ${table} ${dir} ${ifs} -j ${chain}`) lines.push(`-D ${table} ${dir} ${ifs} -j ${chain}`);
  if (saved.some((l) => l.startsWith(`:${chain} `))) lines.push(`-F ${chain}`, `-X ${chain}`);
  if (lines.length) await restore(lines);
}

export async function netnsExists(name: string): Promise<boolean> {
  return (await ip(['netns', 'list'])).split('\n').some((l) => l.split(' ')[0] === name);
}

/**
 * Names the network namespace runc made for the container whose init is `pid` (ip netns attach,
 * so the namespace stays owned by the IMVU's user namespace and `runc exec` can join it), then
 * joins it to the host with a veth pair in the IMVU's /30. Called between `runc create` and
 * `runc start`, so the workload starts with its network up. Three `ip` processes: leftovers
 * removed, the host side (the workload end is made directly inside the namespace, as eth0),
 * and the namespace side.
 */
export async function attachNetwork(tag: string, seq: number, range: string, pid: number): Promise<WorkloadNet & NetworkNames> {
  const net = workloadNet(seq, range);
  const names = networkNames(tag, seq);
  await removeNetwork(tag, seq);
  try {
    await ipBatch([
      `netns attach ${names.netns} ${pid}`,
      `link add ${names.hostIf} type veth peer name eth0 netns ${names.netns}`,
      `addr add ${net.hostAddress}/30 dev ${names.hostIf}`,
      `link set ${names.hostIf} up`,
    ]);
    await ipBatch([`addr add ${net.workloadAddress}/30 dev eth0`, 'link set eth0 up', 'link set lo up', `route add default via ${net.hostAddress}`], { netns: names.netns });
  } catch (err) {
    await removeNetwork(tag, seq);
    throw err;
  }
  return { ...net, ...names };
}

/**
 * Removes the IMVU's namespace name (a bind mount) and its veth pair (deleting one end deletes
 * both), in one `ip -force -batch`: it goes on past one that is not there (and then exits non-zero).
 */
export async function removeNetwork(tag: string, seq: number): Promise<void> {
  const names = networkNames(tag, seq);
  await ipBatch([`netns delete ${names.netns}`, `link delete ${names.hostIf}`], { force: true }).catch(() => undefined);
}

/** Network namespaces and host-end links of this instance that exist now (leftover checks). */
export async function listNetwork(tag: string): Promise<{ netns: string[]; links: string[] }> {
  const netns = (await ip(['netns', 'list'])).split('\n').map((l) => l.split(' ')[0]!).filter((n) => n.startsWith(`nx${tag}-`));
  const links = (await ip(['-o', 'link', 'show'])).split('\n').map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1] ?? '').filter((n) => n.startsWith(`nx${tag}h`));
  return { netns, links };
}
