// A daemon killed with -9 in the middle of an ACME order leaves the DNS-01 challenge it published
// (an `acme.challenge` publish without its remove) in the IMVU's zone. The next start removes it
// through the chokepoint, as the platform, before any new order.
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { Resolver } from 'node:dns/promises';
import { join } from 'node:path';
import { initDataDir, openDataDir } from '../../src/core/platform.ts';
import { decodeEntry } from '../../src/core/ledger/ledger.ts';
import { BIN, run, tempDir } from '../cli/harness.ts';
import { freePort, havePebble, startPebble, type Pebble } from './pebble.ts';

const haveHaproxy = spawnSync('haproxy', ['-v']).status === 0 && process.getuid?.() === 0;

async function waitFor<T>(fn: () => Promise<T | undefined> | T | undefined, ms: number, what: string): Promise<T> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const v = await fn();
    if (v !== undefined) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** HAProxy processes (master and workers) running the configuration in `data`, by pid: a daemon killed with -9 leaves them. */
function haproxyOf(data: string): number[] {
  const cfg = join(data, 'gateway', 'haproxy.cfg');
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').includes(cfg)) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out;
}

describe.skipIf(!haveHaproxy || !havePebble)('stale ACME challenges after a daemon killed mid-order', () => {
  const dir = tempDir('acme-stale');
  const data = join(dir, 'data');
  let daemon: ChildProcess | undefined;
  let pebble: Pebble | undefined;
  let log = '';

  async function serve(dnsPort: number, port: number, httpPort: number, acme: string[]): Promise<string> {
    log = '';
    daemon = spawn(
      process.execPath,
      [BIN, 'serve', '--data', data, '--port', '0', '--dns-port', String(dnsPort), '--gateway-port', String(port), '--gateway-http-port', String(httpPort), ...acme, '--log-format', 'json', '--compute-range', `10.205.${process.pid % 256}.0/24`],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NEXUS_DATA: undefined, NEXUS_URL: undefined, NEXUS_GATEWAY: 'true' } },
    );
    daemon.stdout!.on('data', (d: Buffer) => (log += d.toString()));
    daemon.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    return waitFor(() => /"url":"(http:\/\/127\.0\.0\.1:\d+)".*"msg":"nexus daemon listening"/.exec(log)?.[1], 90_000, 'the daemon').catch((e: Error) => {
      throw new Error(`${e.message}: ${log}`);
    });
  }

  afterAll(async () => {
    if (daemon && daemon.exitCode === null && daemon.signalCode === null) {
      const exited = new Promise((r) => daemon!.once('exit', r));
      daemon.kill('SIGTERM');
      await exited;
    }
    for (const pid of haproxyOf(data)) process.kill(pid, 'SIGKILL');
    pebble?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('removes at start, as the platform, the challenge records of an order that never finished', async () => {
    await (await initDataDir(data)).close();
    const dnsPort = await freePort();
    // Pebble's VA waits before validating (as it does by default), which holds the order open.
    pebble = await startPebble(dnsPort, { sleep: true, env: { PEBBLE_VA_SLEEPTIME: '20' } });
    const [port, httpPort] = [await freePort(), await freePort()];
    const url = await serve(dnsPort, port, httpPort, ['--acme-directory', pebble.directory, '--acme-ca-cert', pebble.tlsCaFile]);
    const env = { NEXUS_HOME: join(dir, 'home'), NEXUS_URL: url };
    for (const args of [
      ['identity', 'create', 'alice', '--role', 'creator'],
      ['imvu', 'create', '--name', 'Stale', '--owner', 'alice', '--jurisdiction', 'US-CCPA', '--as', 'alice'],
    ]) {
      const r = await run(args, env);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
    // The order's challenge is published and served by the daemon's DNS: kill -9 now, mid-order.
    const resolver = new Resolver({ timeout: 500, tries: 1 });
    resolver.setServers([`127.0.0.1:${dnsPort}`]);
    const seen = await waitFor(async () => {
      const txt = await resolver.resolveTxt('_acme-challenge.imvu001.world').catch(() => [] as string[][]);
      return txt.length ? txt.map((t) => t.join('')) : undefined;
    }, 120_000, 'the DNS-01 challenge served').catch((e: Error) => {
      throw new Error(`${e.message}: ${log}`);
    });
    process.kill(pebble.pid, 'SIGSTOP');
    const dead = new Promise((r) => daemon!.once('exit', r));
    daemon!.kill('SIGKILL');
    await dead;
    for (const pid of haproxyOf(data)) process.kill(pid, 'SIGKILL');
    // Left behind: published in the ledger, never removed.
    let p = await openDataDir(data);
    try {
      const left = await p.store.all<{ name: string; value: string }>("SELECT name, value FROM records WHERE name LIKE '\\_acme-challenge.%' ESCAPE '\\'");
      expect(left.length).toBeGreaterThan(0);
      expect(left.map((r) => r.value)).toEqual(expect.arrayContaining(seen));
    } finally {
      await p.close();
    }

    // The next start (no CA configured now: the records must go anyway).
    await serve(dnsPort, port, httpPort, []);
    await waitFor(() => (/challenge record\(s\) left by an order that did not finish/.test(log) ? true : undefined), 60_000, 'the stale challenges removed').catch((e: Error) => {
      throw new Error(`${e.message}: ${log}`);
    });
    // The DNS server follows committed changes within about a second (its zone view polls the ledger).
    const gone = await waitFor(async () => ((await resolver.resolveTxt('_acme-challenge.imvu001.world').catch((e: NodeJS.ErrnoException) => e.code)) === 'ENOTFOUND' ? true : undefined), 10_000, 'the challenge no longer served').catch(() => false);
    expect(gone).toBe(true);
    const exited = new Promise((r) => daemon!.once('exit', r));
    daemon!.kill('SIGTERM');
    await exited;

    p = await openDataDir(data);
    try {
      expect(await p.store.all("SELECT name FROM records WHERE name LIKE '\\_acme-challenge.%' ESCAPE '\\'")).toEqual([]);
      const rows = await p.store.all<{ idx: number; data: Buffer }>('SELECT idx, data FROM ledger_entries ORDER BY idx');
      const challenges = rows.map((r) => decodeEntry(Buffer.from(r.data))).filter((e) => e.command?.command.type === 'acme.challenge');
      const removes = challenges.filter((e) => (e.command!.command.body as { action: string }).action === 'remove');
      expect(removes.length).toBe(1);
      const remove = removes[0]!;
      expect(remove.decision.allowed).toBe(true);
      expect(remove.command!.command.actor).toBe(challenges[0]!.command!.command.actor);
      const values = (remove.command!.command.body as { records: { value: string }[] }).records.map((r) => r.value);
      expect(values).toEqual(expect.arrayContaining(seen));
    } finally {
      await p.close();
    }
  }, 360_000);
});
