// The gateway's table at scale: what a route change of one IMVU costs on a platform of N IMVUs, by
// the IMVU's own rows and lines (the path the gateway takes) and by the whole table (the path it
// took before, and still takes after `sync()`), and what a new IMVU costs.
//
//   npx tsx bench/gateway/scale.ts --data DIR [--rounds R] [--haproxy]
//
// DIR is changed (a creator, an IMVU and its route changes are appended; with --haproxy the gateway
// writes DIR/gateway): give it a copy. Without --haproxy, the table reads alone: the whole table
// (every active IMVU's rows, assembled, compared) against one IMVU's rows and its map delta. With
// --haproxy (as root), a gateway is started on the directory (its first start issues a local-CA
// certificate per IMVU) and timed: the start, a route change applied by the IMVU's lines and by
// the whole table (alternating, R rounds each), R new IMVUs on spare backends (no reload) and one
// past the spares (the gateway is given R: that one reloads HAProxy), the periodic check (by
// counts and IMVUs in turn beyond WHOLE_CHECK_LINES), a whole read of the served maps, and a
// creator's view of one IMVU.
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { openDataDir } from '../../src/core/platform.ts';
import { generateKeyPair, identityIdFromPublicKey, publicKeyRaw } from '../../src/core/identity/keys.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import type { CommandType, Json } from '../../src/core/types.ts';
import type { KeyObject } from 'node:crypto';
import { assembleTable, loadParts, mapDelta, MAP_NAMES } from '../../src/network/gateway/table.ts';
import { Gateway } from '../../src/network/gateway/gateway.ts';
import { arg } from '../scale/args.ts';

const dir = arg('data');
const ROUNDS = Number(arg('rounds', '10'));
const HAPROXY = process.argv.includes('--haproxy');
const RANGE = '10.64.0.0/10';

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (x: number) => Math.round(x * 100) / 100;

/** Wall time and this process's CPU time of `fn`, ms. */
async function timed<T>(fn: () => Promise<T>): Promise<{ wall: number; cpu: number; value: T }> {
  const c = process.cpuUsage();
  const t = performance.now();
  const value = await fn();
  const used = process.cpuUsage(c);
  return { wall: performance.now() - t, cpu: (used.user + used.system) / 1000, value };
}

async function main(): Promise<void> {
  const p = await openDataDir(dir, { parallelVerify: true });
  const as = (key: KeyObject, type: CommandType, body: { [k: string]: Json }) => p.chokepoint.submit(signCommand(key, type, body, { origin: p.config.origin }));
  const imvus = Number((await p.store.get<{ n: number }>("SELECT COUNT(*) AS n FROM imvus WHERE status IN ('active', 'exiting')"))!.n);
  const { privateKey: key } = generateKeyPair();
  const raw = publicKeyRaw(key);
  const owner = identityIdFromPublicKey(raw);
  if (!(await as(key, 'identity.register', { name: `gateway-bench-${process.pid}`, role: 'creator', publicKey: raw.toString('base64') })).allowed) throw new Error('register refused');
  const policy = (n: number) => ({ public: [{ path: '/api', backend: `web:${8000 + (n % 1000)}` }, { path: '/static/*', backend: 'web:8080' }, ...(n % 2 ? [{ path: `/v${n}`, backend: 'web:8081' }] : [])], private: [], restricted: [] });
  const out: Record<string, unknown> = { dir, imvus, rounds: ROUNDS, load1: [loadavg()[0]!] };

  if (!HAPROXY) {
    const created = await as(key, 'imvu.create', { name: `gwbench${process.pid}`, owner, jurisdiction: 'US-CCPA' });
    const id = (await p.store.get<{ id: string }>('SELECT id FROM imvus WHERE entry = ?', [created.index]))!.id;
    const whole: number[] = [];
    const wholeCpu: number[] = [];
    const one: number[] = [];
    const oneCpu: number[] = [];
    let before = await loadParts(p.store, RANGE, undefined, undefined, [id]);
    for (let r = 0; r < ROUNDS; r++) {
      if (!(await as(key, 'route.set', { imvu: id, policy: policy(r) })).allowed) throw new Error('route.set refused');
      const w = await timed(async () => {
        const t = assembleTable((await loadParts(p.store, RANGE)).values());
        return JSON.stringify(t.maps).length;
      });
      whole.push(w.wall);
      wholeCpu.push(w.cpu);
      const o = await timed(async () => {
        const after = await loadParts(p.store, RANGE, undefined, undefined, [id]);
        const n = MAP_NAMES.reduce((a, m) => a + Object.values(mapDelta(before.get(id)!.maps[m], after.get(id)!.maps[m])).flat().length, 0);
        before = after;
        return n;
      });
      one.push(o.wall);
      oneCpu.push(o.cpu);
    }
    Object.assign(out, { wholeTableMs: ms(median(whole)), wholeTableCpuMs: ms(median(wholeCpu)), oneImvuMs: ms(median(one)), oneImvuCpuMs: ms(median(oneCpu)) });
  } else {
    const gw = new Gateway({ platform: p, httpsBind: '127.0.0.1:18443', range: RANGE, checkIntervalMs: 3_600_000, pollMs: 3_600_000, spareBackends: ROUNDS, log: (l) => void (/fail|alarm|denied/.test(l) && process.stderr.write(`${l}\n`)) });
    const g = gw as unknown as { apply(whole: boolean): Promise<void>; serialize<T>(fn: () => Promise<T>): Promise<T> };
    const start = await timed(() => gw.start());
    out.startMs = Math.round(start.wall);
    out.rssMbAfterStart = Math.round(process.memoryUsage().rss / 2 ** 20);
    // The daemon's poll (off here, so that each apply below is timed alone) moves past entries that
    // change nothing served, such as the certificate records and notices of a first start (20,000 at
    // 10,000 IMVUs, the notices arriving after the start): without it, the first change would find
    // more than MAX_DELTA_ENTRIES new entries and read the table whole (a reload for a new IMVU).
    const gp = gw as unknown as { poll(): Promise<void> };
    for (let last = -1; last !== p.chokepoint.ledger.size; ) {
      last = p.chokepoint.ledger.size;
      await new Promise((r) => setTimeout(r, 1000));
      await g.serialize(() => gp.poll());
    }
    // Each new IMVU: created, then applied (its certificate issued, recorded and loaded, its lines added).
    const newImvu = (n: number) =>
      timed(async () => {
        const c = await as(key, 'imvu.create', { name: `gwbench${process.pid}x${n}`, owner, jurisdiction: 'US-CCPA' });
        if (!c.allowed) throw new Error('imvu.create refused');
        await g.serialize(() => g.apply(false));
        return c;
      });
    const live: number[] = [];
    let created!: Awaited<ReturnType<typeof newImvu>>;
    for (let r = 0; r < ROUNDS; r++) {
      created = await newImvu(r);
      live.push(created.wall);
    }
    const reloads = gw.reloads;
    if (reloads !== 0) throw new Error(`${reloads} reloads for IMVUs on spare backends`);
    const past = await newImvu(ROUNDS);
    if (gw.reloads !== reloads + 1) throw new Error('the IMVU past the spares did not reload');
    Object.assign(out, { newImvuOnSpareMs: ms(median(live)), newImvuOnSpareRangeMs: [ms(Math.min(...live)), ms(Math.max(...live))], newImvuReloadMs: Math.round(past.wall) });
    const id = (await p.store.get<{ id: string }>('SELECT id FROM imvus WHERE entry = ?', [created.value.index]))!.id;
    const byImvu: number[] = [];
    const byImvuCpu: number[] = [];
    const whole: number[] = [];
    const wholeCpu: number[] = [];
    for (let r = 0; r < 2 * ROUNDS; r++) {
      if (!(await as(key, 'route.set', { imvu: id, policy: policy(r) })).allowed) throw new Error('route.set refused');
      const t = await timed(() => g.serialize(() => g.apply(r % 2 === 1)));
      (r % 2 ? whole : byImvu).push(t.wall);
      (r % 2 ? wholeCpu : byImvuCpu).push(t.cpu);
    }
    const check = await timed(() => gw.verify());
    if (!check.value.equal) throw new Error(`served table differs: ${JSON.stringify(check.value.differences).slice(0, 300)}`);
    // The whole read the check makes below WHOLE_CHECK_LINES (and when something differs), and a creator's view of one IMVU.
    // The check by counts and IMVUs in turn (what a check does beyond WHOLE_CHECK_LINES), on the same table.
    (gw as unknown as { o: { wholeCheckLines?: number } }).o.wholeCheckLines = 0;
    const inTurn = await timed(() => gw.verify());
    if (!inTurn.value.equal) throw new Error('served table differs');
    out.checkInTurnMs = Math.round(inTurn.wall);
    const wholeRead = await timed(() => gw.served());
    const view = await timed(() => gw.servedImvu(id));
    if (!wholeRead.value.equal || !view.value.report.equal) throw new Error('served table differs');
    Object.assign(out, { wholeReadMs: Math.round(wholeRead.wall), wholeReadCpuMs: Math.round(wholeRead.cpu), viewMs: ms(view.wall), viewCpuMs: ms(view.cpu) });
    Object.assign(out, {
      routeChangeByImvuMs: ms(median(byImvu)),
      routeChangeByImvuCpuMs: ms(median(byImvuCpu)),
      routeChangeWholeMs: ms(median(whole)),
      routeChangeWholeCpuMs: ms(median(wholeCpu)),
      checkMs: Math.round(check.wall), // its certificates (1,000 at most) and the maps (whole below WHOLE_CHECK_LINES)
      checkCpuMs: Math.round(check.cpu),
    });
    await gw.stop();
  }
  (out.load1 as number[]).push(loadavg()[0]!);
  await p.close();
  process.stdout.write(JSON.stringify(out) + '\n');
}

await main();
