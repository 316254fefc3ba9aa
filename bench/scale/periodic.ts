// What the periodic integrity check costs the commands around it (work on a copy: it appends):
//   npx tsx bench/scale/periodic.ts --data DIR [--seconds S]
// One client, one command at a time (a creator's consent records, as a user sends them), for S seconds without any check and then S seconds with checks back to back (the
// worst case of `--integrity-interval`); per phase the latency of each command (p50, p99, max), the
// main thread's longest event-loop stall, and each check's duration and path.
import { loadavg } from 'node:os';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { openDataDir } from '../../src/core/platform.ts';
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
  const p = await openDataDir(dir);
  const key = generateKeyPair().privateKey;
  const raw = publicKeyRaw(key);
  const me = identityIdFromPublicKey(raw);
  const sign = (type: Parameters<typeof signCommand>[1], body: Parameters<typeof signCommand>[2]) => signCommand(key, type, body, { origin: p.config.origin });
  const reg = await p.chokepoint.submit(sign('identity.register', { name: `periodic-bench-${Date.now()}`, role: 'creator', publicKey: raw.toString('base64') }));
  if (!reg.allowed) throw new Error(`register refused: ${JSON.stringify(reg.gates)}`);
  const imvu = (await p.store.get<{ id: string }>('SELECT id FROM imvus ORDER BY seq LIMIT 1'))!.id;
  let n = 0;
  const phase = async (withChecks: boolean) => {
    const consent: number[] = [];
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
      const t = performance.now();
      const r = await p.chokepoint.submit(sign('consent.record', { imvu, subject: me, purpose: `bench-${n++ % 5}`, granted: n % 2 === 0 }));
      if (!r.allowed) throw new Error(`consent refused: ${JSON.stringify(r.gates)}`);
      consent.push(performance.now() - t);
    }
    stop = true;
    await checking;
    lag.disable();
    return {
      withChecks,
      commands: consent.length,
      p50: pct(consent, 50),
      p99: pct(consent, 99),
      max: pct(consent, 100),
      loopStallMaxMs: Math.round(lag.max / 1e4) / 100,
      checks: checks.length,
      checkMs: checks.map((c) => c.ms),
      paths: [...new Set(checks.map((c) => c.path))],
      load1: loadavg()[0],
    };
  };
  const out = [await phase(false), await phase(true), await phase(false)];
  await p.close();
  process.stdout.write(JSON.stringify({ dir, seconds: SECONDS, phases: out }) + '\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
