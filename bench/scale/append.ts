// Append rate alone, on a data directory (work on a copy: it appends):
//   npx tsx bench/scale/append.ts --data DIR [--appends N] [--rounds R]
// revenue.record from the registered revenue source, 512 in flight, as bench/scale/measure.ts
// sends them; one rate per round (each round appends N), so a profile or a PRAGMA can be compared
// on one directory at one load.
import { readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { openDataDir } from '../../src/core/platform.ts';
import { loadPrivateKey } from '../../src/core/identity/keys.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { serviceKeyPath } from '../../src/core/service-identity.ts';
import { arg } from './args.ts';

const dir = arg('data');
const APPENDS = Number(arg('appends', '3000'));
const ROUNDS = Number(arg('rounds', '3'));
/** --cache-kb KB: after the rounds, the writer's page cache set to KB and the rounds again (an A/B at one load). */
const CACHE_KB = process.argv.includes('--cache-kb') ? Number(arg('cache-kb')) : undefined;

/** This process's disk reads and writes so far, KB (/proc/self/io: read_bytes, write_bytes). */
function io(): [number, number] {
  const t = readFileSync('/proc/self/io', 'utf8');
  const f = (k: string) => Math.round(Number(new RegExp(`^${k}: (\\d+)`, 'm').exec(t)?.[1] ?? 0) / 1024);
  return [f('read_bytes'), f('write_bytes')];
}

async function main(): Promise<void> {
  const p = await openDataDir(dir, { parallelVerify: true });
  const imvus = (await p.store.all<{ id: string }>('SELECT id FROM imvus ORDER BY seq')).map((r) => r.id);
  const key = loadPrivateKey(serviceKeyPath(dir, 'payments'));
  const rates: number[] = [];
  /** CPU (user + system) of this process per append, µs: less noisy than the rate on a shared machine. */
  const cpuUs: number[] = [];
  const ioKb: [number, number][] = [];
  const load = [loadavg()[0]];
  const cacheBefore = await p.store.transaction((tx) => tx.get('PRAGMA cache_size'));
  for (let r = 0; r < (CACHE_KB === undefined ? ROUNDS : 2 * ROUNDS); r++) {
    if (r === ROUNDS && CACHE_KB !== undefined) await p.store.transaction((tx) => tx.run(`PRAGMA cache_size = -${CACHE_KB}`));
    const t = performance.now();
    const c = process.cpuUsage();
    const io0 = io();
    let done = 0;
    while (done < APPENDS) {
      const n = Math.min(512, APPENDS - done);
      await Promise.all(
        Array.from({ length: n }, (_, i) => p.chokepoint.submit(signCommand(key, 'revenue.record', { imvu: imvus[(r * APPENDS + done + i) % imvus.length]!, amount: '100', currency: 'USD' }, { origin: p.config.origin }))),
      );
      done += n;
    }
    const used = process.cpuUsage(c);
    cpuUs.push(Math.round((used.user + used.system) / APPENDS));
    const io1 = io();
    ioKb.push([io1[0] - io0[0], io1[1] - io0[1]]);
    rates.push(Math.round(APPENDS / ((performance.now() - t) / 1000)));
    load.push(loadavg()[0]);
  }
  await p.close();
  process.stdout.write(JSON.stringify({ dir, imvus: imvus.length, appends: APPENDS, cacheBefore, cacheKbAfter: CACHE_KB, rates, cpuUs, ioKb, load1: load }) + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
