// A host-wide claim of the compute range by each platform instance. Names (netns, links, chain)
// carry the instance's tag, but addresses do not: two instances with overlapping ranges would give
// their IMVU #1 the same /30 on two host interfaces, the kernel would keep both prefix routes and
// use one, and one platform's gateway would reach the other's workload. So before its fabric
// starts, an instance claims its range under /run (tmpfs: a reboot, which ends every workload, clears
// the claims) and refuses to start the fabric when another live instance's claim overlaps it, or
// when an address or route inside the range sits on an interface that is not its own.
import Database from 'better-sqlite3';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../core/durable.ts';
import { parsePrefix, parseRange, prefixesOverlap, type Prefix } from './addresses.ts';
import { runTool } from './commands.ts';

export const CLAIMS_DIR = '/run/nexus-compute-ranges';

export interface RangeClaim {
  tag: string;
  range: string;
  dataDir: string;
  pid: number;
  /** The owner's start time (clock ticks since boot, /proc/PID/stat): tells a reused pid from the owner. */
  pidStart: string;
  since: string;
}

/** What the host's `ip -4 -o addr` and `ip -4 route` print. */
export interface HostNet {
  addr: string;
  route: string;
  /** `ip -o link show`: the owner of a claim is still there while any of its host-end links is. */
  link: string;
}

export type ClaimResult = { ok: true; release(): void } | { ok: false; why: string };

export interface ClaimOptions {
  tag: string;
  range: string;
  dataDir: string;
  /** Default CLAIMS_DIR. */
  dir?: string;
  /** How long to wait for another instance's check to finish (default 10 s). */
  lockTimeoutMs?: number;
}

async function pidStart(pid: number): Promise<string | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  return text?.slice(text.lastIndexOf(')') + 2).split(' ')[19];
}

const ownLink = (tag: string) => new RegExp(`^nx${tag}h\\d+$`);

/** Host-end links of instance `tag` in `ip -o link show` output. */
export function linksOf(tag: string, link: string): string[] {
  return link
    .split('\n')
    .map((l) => /^\d+: ([^:@\s]+)/.exec(l)?.[1] ?? '')
    .filter((n) => ownLink(tag).test(n));
}

/**
 * Addresses and routes inside `range` on interfaces that are not instance `tag`'s own, one
 * description each. A route wider than the range (a default route, a 10.0.0.0/8) is not in it: the
 * workloads' /30 routes are more specific and do not take its traffic from it in the kernel's choice.
 */
export function foreignUse(tag: string, range: string, net: Pick<HostNet, 'addr' | 'route'>): string[] {
  const r = parseRange(range);
  const inside = (p: Prefix) => p.size <= r.size && prefixesOverlap(p, r);
  const mine = ownLink(tag);
  const found: string[] = [];
  for (const line of net.addr.split('\n')) {
    const m = /^\d+:\s+(\S+)\s+inet\s+(\S+)/.exec(line);
    if (!m) continue;
    const [, dev, cidr] = m;
    const ip = cidr!.split('/')[0]!;
    const p = parsePrefix(ip);
    if (p && inside(p) && !mine.test(dev!)) found.push(`address ${cidr} on ${dev}`);
  }
  const TYPES = new Set(['unicast', 'local', 'broadcast', 'multicast', 'throw', 'unreachable', 'prohibit', 'blackhole', 'nat', 'anycast']);
  for (const line of net.route.split('\n')) {
    const words = line.trim().split(/\s+/);
    if (TYPES.has(words[0]!)) words.shift();
    const dst = words[0];
    if (!dst || dst === 'default') continue;
    const p = parsePrefix(dst);
    if (!p || !inside(p)) continue;
    const d = words.indexOf('dev');
    const dev = d >= 0 ? words[d + 1] : undefined;
    if (dev && mine.test(dev)) continue;
    found.push(`route ${line.trim()}`);
  }
  return found;
}

async function hostNet(): Promise<HostNet> {
  const ip = async (args: string[]) => (await runTool('ip', args, { timeout: 10_000 })).stdout;
  const [addr, route, link] = await Promise.all([ip(['-4', '-o', 'addr', 'show']), ip(['-4', 'route', 'show']), ip(['-o', 'link', 'show'])]);
  return { addr, route, link };
}

function readClaims(dir: string): { file: string; claim: RangeClaim }[] {
  const out: { file: string; claim: RangeClaim }[] = [];
  for (const name of readdirSync(dir)) {
    if (!/^[0-9a-f]{4}\.json$/.test(name)) continue;
    const file = join(dir, name);
    try {
      out.push({ file, claim: JSON.parse(readFileSync(file, 'utf8')) as RangeClaim });
    } catch {
      // Unreadable (written by hand?): it claims nothing; our own write replaces ours.
    }
  }
  return out;
}

/**
 * Claims `range` for instance `tag` on this host, or says why not in one sentence. A claim of
 * another instance counts while its process lives (same pid and start time) or any of its host-end
 * links is left (its workloads outlive a crashed daemon); otherwise it is stale and removed. The
 * check and the write are done under a kernel lock (SQLite's exclusive lock, like the data
 * directory's), so two instances starting at once cannot both pass. The claim of the same instance
 * (a restart) is simply written again.
 */
export function claimComputeRange(opts: ClaimOptions): Promise<ClaimResult> {
  // One at a time within this process too: the kernel lock is per connection, and a second
  // connection of the same process would wait for it synchronously, with the event loop stopped.
  const next = queue.then(() => claimNow(opts));
  queue = next.catch(() => undefined);
  return next;
}

let queue: Promise<unknown> = Promise.resolve();

async function claimNow(opts: ClaimOptions): Promise<ClaimResult> {
  const dir = opts.dir ?? CLAIMS_DIR;
  parseRange(opts.range);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const lock = new Database(join(dir, 'claims.lock'), { timeout: opts.lockTimeoutMs ?? 10_000 });
  try {
    lock.exec('BEGIN EXCLUSIVE');
    const net = await hostNet();
    for (const { file, claim } of readClaims(dir)) {
      if (claim.tag === opts.tag && claim.dataDir === opts.dataDir) continue;
      const live = (typeof claim.pid === 'number' && (await pidStart(claim.pid)) === claim.pidStart) || linksOf(claim.tag, net.link).length > 0;
      if (!live) {
        rmSync(file, { force: true });
        continue;
      }
      let theirs: Prefix | undefined;
      try {
        theirs = parseRange(claim.range);
      } catch {
        theirs = undefined;
      }
      const who = `platform instance ${claim.tag} (pid ${claim.pid}, data directory ${claim.dataDir})`;
      if (claim.tag === opts.tag) return { ok: false, why: `${who} has the same tag as this one (their names would clash), and is live on this host; serve this platform from another data directory` };
      if (!theirs || prefixesOverlap(theirs, parseRange(opts.range))) {
        return { ok: false, why: `compute range ${opts.range} overlaps ${claim.range}, claimed by ${who} on this host; give each platform its own --compute-range` };
      }
    }
    const used = foreignUse(opts.tag, opts.range, net);
    if (used.length) return { ok: false, why: `compute range ${opts.range} is already in use on this host (${used.slice(0, 3).join('; ')}${used.length > 3 ? `; ${used.length - 3} more` : ''}), not by this platform; give it another --compute-range` };
    const mine: RangeClaim = { tag: opts.tag, range: opts.range, dataDir: opts.dataDir, pid: process.pid, pidStart: (await pidStart(process.pid)) ?? '', since: new Date().toISOString() };
    const file = join(dir, `${opts.tag}.json`);
    writeFileAtomic(file, JSON.stringify(mine) + '\n', 0o644);
    let held = true;
    return {
      ok: true,
      // The claim goes with a clean stop; workloads left running keep their addresses, which the
      // next instance's check of the host's addresses and routes still sees.
      release() {
        if (!held) return;
        held = false;
        try {
          const now = JSON.parse(readFileSync(file, 'utf8')) as RangeClaim;
          if (now.pid === mine.pid && now.since === mine.since) rmSync(file, { force: true });
        } catch {
          // already gone
        }
      },
    };
  } finally {
    if (lock.inTransaction) lock.exec('ROLLBACK');
    lock.close();
  }
}
