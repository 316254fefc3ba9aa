// How fast IMVUs are created by concurrent clients, and what that costs the other commands:
//   npx tsx bench/scale/create.ts --data DIR [--seconds S] [--clients C] [--pool N]
// A DIR that is not a data directory is initialised first (a fresh platform); otherwise work on a
// copy: it appends. Creators are registered first (each may create 10 IMVUs, the default plan).
// Then, for S seconds each: a probe sends consent records one at a time, alone; the probe again
// while C clients submit `imvu.create` as fast as they are answered. The keys of a creation (RSA
// 2048 for DKIM, ECDSA P-256 for the zone) come from the daemon's key pool (`--pool`, default 4 as
// `nexus serve` has it; made before the write transaction, src/imvu/provision.ts), which is full
// when the clients start. Prints one JSON line: creations per second over the window and in its
// first and last second, the creations' and the probe's latency (p50, p99, max), the process's
// CPU, and how many key sets one core makes per second (the bound of a sustained rate).
import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { initDataDir, openDataDir, type OpenOptions } from '../../src/core/platform.ts';
import { KeyPool, keyPreparer, provisioner } from '../../src/imvu/provision.ts';
import { generateKeyPair, identityIdFromPublicKey, publicKeyRaw } from '../../src/core/identity/keys.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import type { KeyObject } from 'node:crypto';
import { arg } from './args.ts';

const dir = arg('data');
const SECONDS = Number(arg('seconds', '10'));
const CLIENTS = Number(arg('clients', '16'));
const POOL = Number(arg('pool', '4'));
const PER_CREATOR = 10;

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! * 100) / 100 : NaN;
};
const summary = (xs: number[]) => ({ n: xs.length, p50: pct(xs, 50), p99: pct(xs, 99), max: pct(xs, 100) });

async function main(): Promise<void> {
  const pool = new KeyPool(POOL, 1);
  const opts: OpenOptions = { provision: provisioner(dir), prepare: keyPreparer(pool) };
  const p = existsSync(join(dir, 'platform.json')) ? await openDataDir(dir, opts) : await initDataDir(dir, {}, opts);
  const creator = async (name: string) => {
    const key = generateKeyPair().privateKey;
    const raw = publicKeyRaw(key);
    const r = await p.chokepoint.submit(signCommand(key, 'identity.register', { name, role: 'creator', publicKey: raw.toString('base64') }, { origin: p.config.origin }));
    if (!r.allowed) throw new Error(`register refused: ${JSON.stringify(r.gates)}`);
    return { key, id: identityIdFromPublicKey(raw) };
  };
  const tag = Date.now().toString(36);
  const sign = (key: KeyObject, type: Parameters<typeof signCommand>[1], body: Parameters<typeof signCommand>[2]) => signCommand(key, type, body, { origin: p.config.origin });

  // The probe's own IMVU (keys made on the spot: the pool starts filling below).
  const me = await creator(`create-probe-${tag}`);
  const own = await p.chokepoint.submit(sign(me.key, 'imvu.create', { name: `probe-${tag}`, owner: me.id, jurisdiction: 'US-CCPA' }));
  if (!own.allowed) throw new Error(`imvu.create refused: ${JSON.stringify(own.gates)}`);
  const { id: imvu } = (await p.store.get<{ id: string }>('SELECT id FROM imvus WHERE entry = ?', [own.index]))!;

  // Enough creators for a generous rate over the window (keys made once each, before any timing).
  const expected = Math.max(200, SECONDS * 100);
  const creators: { key: KeyObject; id: string }[] = [];
  for (let i = 0; i < Math.ceil(expected / PER_CREATOR); i++) creators.push(await creator(`create-bench-${tag}-${i}`));

  // One core's rate of key sets, for the bound of a sustained creation rate.
  const keyT0 = performance.now();
  const keyCpu0 = process.cpuUsage();
  const spare = new KeyPool(0);
  for (let i = 0; i < 8; i++) await spare.take();
  const keySetMs = (performance.now() - keyT0) / 8;
  const keySetCpuMs = ((c) => (c.user + c.system) / 1000 / 8)(process.cpuUsage(keyCpu0));
  spare.close();

  pool.refill();
  while (pool.size < POOL) await new Promise((r) => setTimeout(r, 50));

  let k = 0;
  const probe = async (until: () => boolean) => {
    const lat: number[] = [];
    while (!until()) {
      const t = performance.now();
      const r = await p.chokepoint.submit(sign(me.key, 'consent.record', { imvu, subject: me.id, purpose: `bench-${k % 5}`, granted: k++ % 4 === 0 }));
      if (!r.allowed) throw new Error(`consent refused: ${JSON.stringify(r.gates)}`);
      lat.push(performance.now() - t);
    }
    return lat;
  };

  const aloneEnd = performance.now() + SECONDS * 1000;
  const alone = await probe(() => performance.now() >= aloneEnd);

  let next = 0;
  const stamps: number[] = [];
  const createLat: number[] = [];
  let refused = 0;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  const end = t0 + SECONDS * 1000;
  const client = async () => {
    while (performance.now() < end) {
      const i = next++;
      const c = creators[Math.floor(i / PER_CREATOR)];
      if (!c) throw new Error('out of creators: raise the estimate');
      const t = performance.now();
      const r = await p.chokepoint.submit(sign(c.key, 'imvu.create', { name: `c-${tag}-${i}`, owner: c.id, jurisdiction: 'US-CCPA' }));
      if (!r.allowed) refused++;
      else stamps.push(performance.now() - t0);
      createLat.push(performance.now() - t);
    }
  };
  const [during] = await Promise.all([probe(() => performance.now() >= end), ...Array.from({ length: CLIENTS }, client)]);
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const inSecond = (from: number) => stamps.filter((s) => s >= from * 1000 && s < (from + 1) * 1000).length;

  const size = { imvus: (await p.store.get<{ n: number }>('SELECT COUNT(*) AS n FROM imvus'))!.n, entries: p.chokepoint.ledger.size };
  pool.close();
  await p.close();
  process.stdout.write(
    JSON.stringify({
      dir,
      ...size,
      seconds: SECONDS,
      clients: CLIENTS,
      pool: POOL,
      cores: cpus().length,
      created: stamps.length,
      refused,
      perSecond: Math.round((stamps.length / wall) * 10) / 10,
      firstSecond: inSecond(0),
      lastSecond: inSecond(SECONDS - 1),
      createMs: summary(createLat),
      consentAloneMs: summary(alone),
      consentDuringMs: summary(during!),
      cpuPerCreationMs: Math.round(((cpu.user + cpu.system) / 1000 / Math.max(1, stamps.length)) * 10) / 10,
      keySet: { wallMs: Math.round(keySetMs * 10) / 10, cpuMs: Math.round(keySetCpuMs * 10) / 10 },
      load1: loadavg()[0],
    }) + '\n',
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
