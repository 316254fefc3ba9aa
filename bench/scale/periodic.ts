// What the periodic integrity check costs the commands around it (work on a copy: it appends):
//   npx tsx bench/scale/periodic.ts --data DIR [--seconds S]
// A new creator creates an IMVU, then sends one command at a time, alternately a consent record and
// a DNS record added to its zone (as a user sends them), for S seconds without any check, S seconds
// with checks back to back (the worst case of `--integrity-interval`) and S seconds without again;
// per phase each command's latency (p50, p99, max), the main thread's longest event-loop stall, and
// each check's duration and path. A DIR that is not a data directory is initialised first (a
// fresh platform: the baseline of the "within 1.5x of a fresh platform").
import { loadavg } from 'node:os';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { initDataDir, openDataDir, type OpenOptions } from '../../src/core/platform.ts';
import { KeyPool, keyPreparer, provisioner } from '../../src/imvu/provision.ts';
import { generateKeyPair, identityIdFromPublicKey, publicKeyRaw } from '../../src/core/identity/keys.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { arg } from './args.ts';

const dir = arg('data');
const SECONDS = Number(arg('seconds', '20'));

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! * 100) / 100 : NaN;
};

async function main(): Promise<void> {
  const pool = new KeyPool(4, 1);
  const opts: OpenOptions = { provision: provisioner(dir), prepare: keyPreparer(pool) };
  const p = existsSync(join(dir, 'platform.json')) ? await openDataDir(dir, opts) : await initDataDir(dir, {}, opts);
  pool.refill();
  const key = generateKeyPair().privateKey;
  const raw = publicKeyRaw(key);
  const me = identityIdFromPublicKey(raw);
  const sign = (type: Parameters<typeof signCommand>[1], body: Parameters<typeof signCommand>[2]) => signCommand(key, type, body, { origin: p.config.origin });
  const reg = await p.chokepoint.submit(sign('identity.register', { name: `periodic-bench-${Date.now()}`, role: 'creator', publicKey: raw.toString('base64') }));
  if (!reg.allowed) throw new Error(`register refused: ${JSON.stringify(reg.gates)}`);
  const created = await p.chokepoint.submit(sign('imvu.create', { name: `periodic-${Date.now()}`, owner: me, jurisdiction: 'US-CCPA' }));
  if (!created.allowed) throw new Error(`imvu.create refused: ${JSON.stringify(created.gates)}`);
  const { id: imvu } = (await p.store.get<{ id: string }>('SELECT id FROM imvus WHERE entry = ?', [created.index]))!;
  const { name: zone } = (await p.store.get<{ name: string }>('SELECT name FROM zones WHERE imvu = ?', [imvu]))!;
  let n = 0;
  const phase = async (withChecks: boolean) => {
    const consent: number[] = [];
    const record: number[] = [];
    const checks: { ms: number; path: string | undefined }[] = [];
    const lag = monitorEventLoopDelay({ resolution: 1 });
    lag.enable();
    let stop = false;
    const checking = (async () => {
      while (withChecks && !stop) {
        const t = performance.now();
        await p.integrity.check();
        checks.push({ ms: Math.round(performance.now() - t), path: p.integrity.lastCheckPath });
      }
    })();
    const end = performance.now() + SECONDS * 1000;
    while (performance.now() < end) {
      const k = n++;
      const t = performance.now();
      const r = await p.chokepoint.submit(
        k % 2 ? sign('dns.record.add', { zone, name: `h${k}`, type: 'A', value: '127.0.0.1' }) : sign('consent.record', { imvu, subject: me, purpose: `bench-${k % 5}`, granted: k % 4 === 0 }),
      );
      if (!r.allowed) throw new Error(`command refused: ${JSON.stringify(r.gates)}`);
      (k % 2 ? record : consent).push(performance.now() - t);
    }
    stop = true;
    await checking;
    lag.disable();
    return {
      withChecks,
      commands: consent.length + record.length,
      consent: { p50: pct(consent, 50), p99: pct(consent, 99), max: pct(consent, 100) },
      record: { p50: pct(record, 50), p99: pct(record, 99), max: pct(record, 100) },
      loopStallMaxMs: Math.round(lag.max / 1e4) / 100,
      checks: checks.length,
      checkMs: checks.map((c) => c.ms),
      paths: [...new Set(checks.map((c) => c.path))],
      load1: loadavg()[0],
    };
  };
  const out = [await phase(false), await phase(true), await phase(false)];
  const size = { imvus: (await p.store.get<{ n: number }>('SELECT COUNT(*) AS n FROM imvus'))!.n, entries: p.chokepoint.ledger.size };
  await p.close();
  process.stdout.write(JSON.stringify({ dir, ...size, seconds: SECONDS, phases: out }) + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
