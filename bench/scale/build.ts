// Builds a data directory of a given size for the scale benchmark (bench/scale/README.md):
//   npx tsx bench/scale/build.ts --data DIR --entries N --imvus M
// Every entry goes through the chokepoint of the data directory (the path `nexus serve` uses,
// without HTTP): signed by real keys, gated, appended, projected, so the log is what a platform of
// that size would hold and `nexus audit verify --data` replays it. No fast path.
//
// The mix, after M/10 creators have each created 10 IMVUs (10 is the default plan's limit):
// usage reports from every metering service (dns, mail, compute, network) over contiguous
// intervals, revenue from a registered revenue source, DNS records added by creators, and consents.
import { existsSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { initDataDir, openDataDir, type OpenPlatform } from '../../src/core/platform.ts';
import { generateKeyPair, identityIdFromPublicKey, publicKeyRaw } from '../../src/core/identity/keys.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { ensureMeter, ensureServiceIdentity, type ServiceIdentity } from '../../src/core/service-identity.ts';
import { REVENUE_STREAM } from '../../src/core/handshake/metering.ts';
import { KeyPool, keyPreparer, provisioner } from '../../src/imvu/provision.ts';
import type { SignedCommand } from '../../src/core/types.ts';

function arg(name: string, dflt?: string): string {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? process.argv[i + 1] : dflt;
  if (v === undefined) throw new Error(`--${name} is required`);
  return v;
}

const dataDir = arg('data');
const ENTRIES = Number(arg('entries'));
const IMVUS = Number(arg('imvus'));
const CONCURRENCY = Number(arg('concurrency', '512'));
const PER_CREATOR = 10;

const SERVICES: { name: string; metrics: Record<string, string> }[] = [
  { name: 'dns', metrics: { 'dns.queries': '7' } },
  { name: 'mail', metrics: { 'mail.messages': '1' } },
  { name: 'compute', metrics: { 'compute.io_operations': '40' } },
  { name: 'network', metrics: { 'network.bandwidth_gb': '0' } },
];

interface Creator {
  key: KeyObject;
  id: string;
  imvus: string[];
}

function log(msg: string): void {
  process.stdout.write(`${new Date().toISOString()} ${msg} (load ${loadavg()[0]!.toFixed(1)})\n`);
}

async function main(): Promise<void> {
  const pool = new KeyPool(256, 4);
  const opts = { provision: provisioner(dataDir), prepare: keyPreparer(pool), parallelVerify: true };
  const fresh = !existsSync(join(dataDir, 'platform.json'));
  const p: OpenPlatform = fresh ? await initDataDir(dataDir, {}, opts) : await openDataDir(dataDir, opts);
  pool.refill();
  const origin = p.config.origin;
  const sign = (key: KeyObject, type: Parameters<typeof signCommand>[1], body: Parameters<typeof signCommand>[2]) => signCommand(key, type, body, { origin });
  const started = Date.now();
  let submitted = 0;
  let denied = 0;
  const submit = async (c: SignedCommand) => {
    const r = await p.chokepoint.submit(c);
    submitted++;
    if (!r.allowed) {
      denied++;
      if (denied <= 5) log(`denied: ${JSON.stringify(r.gates.filter((g) => g.status === 'deny'))}`);
    }
    return r;
  };

  // Services and their meters, the revenue source.
  const services = new Map<string, ServiceIdentity>();
  for (const s of SERVICES) {
    const id = await ensureServiceIdentity(p, s.name);
    await ensureMeter(p, id, Object.keys(s.metrics));
    services.set(s.name, id);
  }
  const payments = await ensureServiceIdentity(p, 'payments');
  await ensureMeter(p, payments, [REVENUE_STREAM]);

  // Creators and their IMVUs, created concurrently (as many clients would).
  const creators: Creator[] = [];
  const nCreators = Math.ceil(IMVUS / PER_CREATOR);
  for (let i = 0; i < nCreators; i += 256) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(256, nCreators - i) }, async (_, j) => {
        const { privateKey } = generateKeyPair();
        const raw = publicKeyRaw(privateKey);
        const c: Creator = { key: privateKey, id: identityIdFromPublicKey(raw), imvus: [] };
        await submit(sign(privateKey, 'identity.register', { name: `creator-${i + j}`, role: 'creator', publicKey: raw.toString('base64') }));
        return c;
      }),
    );
    creators.push(...batch);
  }
  log(`${creators.length} creators`);
  let made = 0;
  const createStart = Date.now();
  for (let round = 0; round < PER_CREATOR && made < IMVUS; round++) {
    const wave = creators.slice(0, Math.min(creators.length, IMVUS - made));
    for (let i = 0; i < wave.length; i += 64) {
      await Promise.all(
        wave.slice(i, i + 64).map(async (c, j) => {
          const r = await submit(sign(c.key, 'imvu.create', { name: `site-${round}-${i + j}`, owner: c.id, jurisdiction: 'US-CCPA' }));
          if (r.allowed) {
            const row = await p.store.get<{ id: string }>('SELECT id FROM imvus WHERE entry = ?', [r.index]);
            if (row) c.imvus.push(row.id);
          }
        }),
      );
      made += Math.min(64, wave.length - i);
    }
    log(`${made} IMVUs (${((made / (Date.now() - createStart)) * 1000).toFixed(1)}/s)`);
  }
  const imvus = creators.flatMap((c) => c.imvus.map((id) => ({ id, creator: c })));
  const domainOf = new Map((await p.store.all<{ id: string; domain: string }>('SELECT id, domain FROM imvus')).map((r) => [r.id, r.domain]));

  // The mix, until the log holds ENTRIES entries.
  const lastEnd = new Map<string, number>();
  const floor = Date.now();
  let n = 0;
  let recordNo = 0;
  const next = (): SignedCommand | undefined => {
    const k = n++;
    const target = imvus[k % imvus.length]!;
    const kind = k % 20;
    if (kind < 12) {
      const s = SERVICES[kind % SERVICES.length]!;
      const key = `${target.id}/${s.name}`;
      const start = lastEnd.get(key) ?? floor;
      const end = Date.now() - 50;
      if (end - start < 1000) return sign(target.creator.key, 'consent.record', { imvu: target.id, subject: target.creator.id, purpose: 'analytics', granted: k % 2 === 0 });
      lastEnd.set(key, end);
      return sign(services.get(s.name)!.key, 'usage.report', {
        imvu: target.id,
        service: s.name,
        period: { start: new Date(start).toISOString(), end: new Date(end).toISOString() },
        metrics: s.metrics,
      });
    }
    if (kind < 14) return sign(payments.key, 'revenue.record', { imvu: target.id, amount: String(100 + (k % 900)), currency: 'USD' });
    if (kind < 17) {
      const zone = domainOf.get(target.id)!;
      return sign(target.creator.key, 'dns.record.add', { zone, name: `h${recordNo++}`, type: 'A', value: `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}` });
    }
    return sign(target.creator.key, 'consent.record', { imvu: target.id, subject: target.creator.id, purpose: `newsletter-${k % 7}`, granted: k % 3 !== 0 });
  };
  let size = p.chokepoint.ledger.size;
  let lastLog = Date.now();
  let lastSize = size;
  while (size < ENTRIES) {
    const want = Math.min(CONCURRENCY, ENTRIES - size);
    await Promise.all(Array.from({ length: want }, () => next()).map((c) => (c ? submit(c) : undefined)));
    size = p.chokepoint.ledger.size;
    if (Date.now() - lastLog > 30_000) {
      log(`${size} entries, ${(((size - lastSize) / (Date.now() - lastLog)) * 1000).toFixed(0)}/s`);
      lastLog = Date.now();
      lastSize = size;
    }
  }
  pool.close();
  await p.close();
  const seconds = (Date.now() - started) / 1000;
  const summary = { dataDir, entries: size, imvus: imvus.length, creators: creators.length, submitted, denied, seconds, perSecond: Math.round(submitted / seconds), load: loadavg() };
  writeFileSync(join(dataDir, 'bench-build.json'), JSON.stringify(summary, null, 2) + '\n');
  log(JSON.stringify(summary));
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
