// Builds a data directory of a given size for the scale benchmark (bench/scale/README.md):
//   npx tsx bench/scale/build.ts --data DIR --entries N --imvus M [--fast] [--key-sets K]
// Every entry goes through the chokepoint of the data directory (the path `nexus serve` uses,
// without HTTP): signed by real keys, gated, appended, projected, so the log is what a platform of
// that size would hold and `nexus audit verify --data` replays it.
//
// --fast is the same chokepoint with what only a load can afford: the store fsynced once at the
// end instead of at every commit (OpenOptions.bulk), batches of up to 1,024 commands, signatures
// checked on a worker ahead of the main thread, which commits what is checked while the worker
// checks the rest (ChokepointOptions.pipelineVerify: smaller batches, affordable without fsyncs), and
// the DKIM/DNSSEC keys of `imvu.create` taken from K pre-generated sets instead of one RSA-2048
// generation per IMVU (the creation rate is that of key generation, measured elsewhere; the keys
// are per-IMVU files and ledger entries of the same size either way). The entries, signatures
// and projections are those the chokepoint makes for the same commands: test/scale/fast-build.test.ts
// builds a directory both ways and compares them byte for byte.
//
// The mix, after M/10 creators have each created 10 IMVUs (10 is the default plan's limit):
// usage reports from every metering service (dns, mail, compute, network) over contiguous
// intervals, revenue from a registered revenue source, DNS records added by creators, and consents.
import { existsSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { initDataDir, openDataDir, type OpenOptions, type OpenPlatform } from '../../src/core/platform.ts';
import { generateKeyPair, identityIdFromPublicKey, publicKeyRaw, savePrivateKey } from '../../src/core/identity/keys.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { ensureMeter, ensureServiceIdentity, serviceKeyPath, type ServiceIdentity } from '../../src/core/service-identity.ts';
import { REVENUE_STREAM } from '../../src/core/handshake/metering.ts';
import { KeyPool, generateDkimKey, keyPreparer, provisioner, type PreparedKeys } from '../../src/imvu/provision.ts';
import { generateZoneKey } from '../../src/domains/dnssec/keys.ts';
import type { Command, SignedCommand } from '../../src/core/types.ts';
import { arg } from './args.ts';

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

export interface BuildOptions {
  dataDir: string;
  entries: number;
  imvus: number;
  /** Commands in flight (default 512; --fast: 1024). */
  concurrency?: number;
  fast?: boolean;
  /** --fast: the key sets `imvu.create` takes from (default: 32 generated at start). */
  keySets?: PreparedKeys[];
  /**
   * A reproducible build (the comparison test): identities' keys and every nonce derived from
   * `seed`; the platform clock stands still at `at` while creators and IMVUs are made, then half
   * an hour later for the mix, whose usage intervals are one minute long from a minute after `at`
   * (so at most 28 per IMVU and service: a small build). The data directory must already hold
   * the services (prepareServices).
   */
  repro?: { seed: string; at: string };
  log?: (msg: string) => void;
  /** Asked between waves: true ends the build there, closed as if it were done (a smaller directory). */
  stop?: () => boolean;
}

export interface BuildSummary {
  dataDir: string;
  fast: boolean;
  entries: number;
  imvus: number;
  creators: number;
  submitted: number;
  denied: number;
  seconds: number;
  perSecond: number;
  /**
   * CPU time of this process (user + system) over the build, and per entry: on a shared machine
   * the rate follows the machine's load, the CPU per entry follows the code.
   */
  cpuSeconds: number;
  cpuMsPerEntry: number;
  /** Ended early by `stop` (SIGINT or SIGTERM): `entries` and `imvus` are what was built. */
  stopped?: boolean;
  load: number[];
}

function defaultLog(msg: string): void {
  process.stdout.write(`${new Date().toISOString()} ${msg} (load ${loadavg()[0]!.toFixed(1)})\n`);
}

/** An Ed25519 private key from 32 seed bytes (PKCS#8 with the RFC 8410 prefix). */
function seededKey(seed: string, label: string): KeyObject {
  const raw = createHash('sha256').update(`${seed}\n${label}`).digest();
  return createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), raw]), format: 'der', type: 'pkcs8' });
}

function nonceSource(seed: string, label: string): () => string {
  let n = 0;
  return () => createHash('sha256').update(`${seed}\n${label}\n${n++}`).digest('base64url').slice(0, 22);
}

/** The services and their meters, the revenue source (idempotent). */
export async function prepareServices(p: OpenPlatform, seed?: string): Promise<{ services: Map<string, ServiceIdentity>; payments: ServiceIdentity }> {
  const services = new Map<string, ServiceIdentity>();
  const ensure = async (name: string) => {
    if (seed && !existsSync(serviceKeyPath(p.dataDir, name))) savePrivateKey(serviceKeyPath(p.dataDir, name), seededKey(seed, `service ${name}`));
    return ensureServiceIdentity(p, name);
  };
  for (const s of SERVICES) {
    const id = await ensure(s.name);
    await ensureMeter(p, id, Object.keys(s.metrics));
    services.set(s.name, id);
  }
  const payments = await ensure('payments');
  await ensureMeter(p, payments, [REVENUE_STREAM]);
  return { services, payments };
}

/** `n` DKIM + DNSSEC key sets, generated in parallel. */
export async function makeKeySets(n: number): Promise<PreparedKeys[]> {
  return Promise.all(
    Array.from({ length: n }, async () => {
      const [dkim, zone] = await Promise.all([generateDkimKey(), generateZoneKey()]);
      return { dkim, zone };
    }),
  );
}

export async function build(o: BuildOptions): Promise<BuildSummary> {
  const log = o.log ?? defaultLog;
  const fast = o.fast === true;
  const concurrency = o.concurrency ?? (fast ? 1024 : 512);
  const repro = o.repro;
  // Reproducible: the clock of the phase (creation, then the mix a day later), never the wall's.
  let phaseAt = repro ? Date.parse(repro.at) : undefined;
  let pool: KeyPool | undefined;
  let prepare: OpenOptions['prepare'];
  const keySets = o.keySets ?? (fast ? await makeKeySets(32) : undefined);
  if (keySets) {
    // The same command always gets the same set (by its name), whatever the batching.
    const sets = keySets;
    prepare = (c: Command) => {
      if (c.type !== 'imvu.create') return undefined;
      const h = createHash('sha256').update(String(c.body.name)).digest().readUInt32BE(0);
      return Promise.resolve(sets[h % sets.length]!);
    };
  } else {
    pool = new KeyPool(256, 4);
    prepare = keyPreparer(pool);
  }
  const opts: OpenOptions = {
    provision: provisioner(o.dataDir),
    prepare,
    parallelVerify: true,
    ...(fast ? { bulk: true, maxBatch: 1024, pipelineVerify: true } : {}),
    ...(repro ? { clock: () => new Date(phaseAt!), nonce: nonceSource(repro.seed, 'platform') } : {}),
  };
  const fresh = !existsSync(join(o.dataDir, 'platform.json'));
  const p: OpenPlatform = fresh ? await initDataDir(o.dataDir, {}, opts) : await openDataDir(o.dataDir, opts);
  pool?.refill();
  const origin = p.config.origin;
  const commandNonce = repro ? nonceSource(repro.seed, 'commands') : undefined;
  // The actor id passed in: deriving it from the key at every signature costs a key export.
  const sign = (c: { key: KeyObject; id: string }, type: Parameters<typeof signCommand>[1], body: Parameters<typeof signCommand>[2]) =>
    signCommand(c.key, type, body, { origin, actor: c.id, ...(phaseAt !== undefined ? { ts: new Date(phaseAt).toISOString() } : {}), ...(commandNonce ? { nonce: commandNonce() } : {}) });
  const started = Date.now();
  const cpuAtStart = process.cpuUsage();
  const sizeAtStart = p.chokepoint.ledger.size;
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
  try {
    const { services, payments } = await prepareServices(p, repro?.seed);

    // Creators and their IMVUs, created concurrently (as many clients would).
    const creators: Creator[] = [];
    const nCreators = Math.ceil(o.imvus / PER_CREATOR);
    for (let i = 0; i < nCreators; i += 256) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(256, nCreators - i) }, async (_, j) => {
          const key = repro ? seededKey(repro.seed, `creator ${i + j}`) : generateKeyPair().privateKey;
          const raw = publicKeyRaw(key);
          const c: Creator = { key, id: identityIdFromPublicKey(raw), imvus: [] };
          await submit(sign(c, 'identity.register', { name: `creator-${i + j}`, role: 'creator', publicKey: raw.toString('base64') }));
          return c;
        }),
      );
      creators.push(...batch);
    }
    log(`${creators.length} creators`);
    let made = 0;
    const createStart = Date.now();
    const wave = Math.min(concurrency, fast ? 1024 : 64);
    const stop = o.stop ?? (() => false);
    for (let round = 0; round < PER_CREATOR && made < o.imvus && !stop(); round++) {
      const these = creators.slice(0, Math.min(creators.length, o.imvus - made));
      for (let i = 0; i < these.length && !stop(); i += wave) {
        await Promise.all(
          these.slice(i, i + wave).map(async (c, j) => {
            const r = await submit(sign(c, 'imvu.create', { name: `site-${round}-${i + j}`, owner: c.id, jurisdiction: 'US-CCPA' }));
            if (r.allowed) {
              const row = await p.store.get<{ id: string }>('SELECT id FROM imvus WHERE entry = ?', [r.index]);
              if (row) c.imvus.push(row.id);
            }
          }),
        );
        made += Math.min(wave, these.length - i);
      }
      log(`${made} IMVUs (${((made / (Date.now() - createStart)) * 1000).toFixed(1)}/s)`);
    }
    const imvus = creators.flatMap((c) => c.imvus.map((id) => ({ id, creator: c })));
    const domainOf = new Map((await p.store.all<{ id: string; domain: string }>('SELECT id, domain FROM imvus')).map((r) => [r.id, r.domain]));

    // The mix, until the log holds `entries` entries.
    const lastEnd = new Map<string, number>();
    if (phaseAt !== undefined) phaseAt += 1_800_000;
    const floor = repro ? Date.parse(repro.at) + 60_000 : Date.now();
    let n = 0;
    let recordNo = 0;
    const next = (): SignedCommand => {
      const k = n++;
      const target = imvus[k % imvus.length]!;
      const kind = k % 20;
      if (kind < 12) {
        const s = SERVICES[kind % SERVICES.length]!;
        const key = `${target.id}/${s.name}`;
        const start = lastEnd.get(key) ?? floor;
        // Reproducible: one-minute intervals; otherwise up to now.
        const end = repro ? start + 60_000 : Date.now() - 50;
        if (end - start < 1000) return sign(target.creator, 'consent.record', { imvu: target.id, subject: target.creator.id, purpose: 'analytics', granted: k % 2 === 0 });
        lastEnd.set(key, end);
        return sign(services.get(s.name)!, 'usage.report', {
          imvu: target.id,
          service: s.name,
          period: { start: new Date(start).toISOString(), end: new Date(end).toISOString() },
          metrics: s.metrics,
        });
      }
      if (kind < 14) return sign(payments, 'revenue.record', { imvu: target.id, amount: String(100 + (k % 900)), currency: 'USD' });
      if (kind < 17) {
        const zone = domainOf.get(target.id)!;
        return sign(target.creator, 'dns.record.add', { zone, name: `h${recordNo++}`, type: 'A', value: `10.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}` });
      }
      return sign(target.creator, 'consent.record', { imvu: target.id, subject: target.creator.id, purpose: `newsletter-${k % 7}`, granted: k % 3 !== 0 });
    };
    let size = p.chokepoint.ledger.size;
    let lastLog = Date.now();
    let lastSize = size;
    while (size < o.entries && imvus.length > 0 && !stop()) {
      // Each command's follow-ups count too: stop short rather than overshoot by a wave.
      const want = Math.min(concurrency, o.entries - size);
      if (concurrency === 1) await submit(next());
      else await Promise.all(Array.from({ length: want }, () => next()).map((c) => submit(c)));
      size = p.chokepoint.ledger.size;
      if (Date.now() - lastLog > 30_000) {
        log(`${size} entries, ${(((size - lastSize) / (Date.now() - lastLog)) * 1000).toFixed(0)}/s`);
        lastLog = Date.now();
        lastSize = size;
      }
    }
    const seconds = (Date.now() - started) / 1000;
    const cpu = process.cpuUsage(cpuAtStart);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    const cpuMsPerEntry = Math.round((cpuSeconds * 1e6) / Math.max(1, size - sizeAtStart)) / 1000;
    return { dataDir: o.dataDir, fast, entries: size, imvus: imvus.length, creators: creators.length, submitted, denied, seconds, perSecond: Math.round(submitted / seconds), cpuSeconds, cpuMsPerEntry, load: loadavg(), ...(stop() ? { stopped: true } : {}) };
  } finally {
    pool?.close();
    await p.close();
  }
}

async function main(): Promise<void> {
  const fast = process.argv.includes('--fast');
  const dataDir = arg('data');
  const keySets = fast ? await makeKeySets(Number(arg('key-sets', '32'))) : undefined;
  // SIGINT/SIGTERM: finish the wave in flight and close the directory properly (a bulk load is
  // synced only at its close; pausing instead would let the signed commands' timestamps expire).
  let stopping = false;
  for (const sig of ['SIGINT', 'SIGTERM'] as const)
    process.once(sig, () => {
      stopping = true;
      defaultLog(`${sig}: stopping after the commands in flight`);
    });
  const summary = await build({
    stop: () => stopping,
    dataDir,
    entries: Number(arg('entries')),
    imvus: Number(arg('imvus')),
    ...(process.argv.includes('--concurrency') ? { concurrency: Number(arg('concurrency')) } : {}),
    fast,
    ...(keySets ? { keySets } : {}),
  });
  writeFileSync(join(dataDir, 'bench-build.json'), JSON.stringify(summary, null, 2) + '\n');
  defaultLog(JSON.stringify(summary));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href)
  main().catch((err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  });
