// Ledger and chokepoint throughput on this machine. Not a test: run `npm run bench`.
// Writes its figures to bench/RESULTS.md (section "ledger").
import { mkdtempSync, rmSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir, cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { initDataDir } from '../../src/core/platform.ts';
import { generateKeyPair, publicKeyRaw, identityIdFromPublicKey } from '../../src/core/identity/keys.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { Ledger } from '../../src/core/ledger/ledger.ts';
import { verifyInclusion, verifyConsistency, leafHash } from '../../src/core/ledger/merkle.ts';
import { openStore } from '../../src/core/store/index.ts';
import type { SignedCommand } from '../../src/core/types.ts';
import { verifierKey } from '../../src/core/ledger/checkpoint.ts';
import { CosignatureCollector } from '../../src/core/witness/collector.ts';
import { initWitness, WitnessStore } from '../../src/core/witness/state.ts';
import { spawnWitness, type WitnessProcess } from '../../src/core/witness/testing.ts';

const COMMANDS = Number(process.env.BENCH_COMMANDS ?? 20_000);
const APPENDS = Number(process.env.BENCH_APPENDS ?? 1_000_000);
const PROOFS = 2_000;
const SEQUENTIAL = Number(process.env.BENCH_SEQUENTIAL ?? 500);

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

/** A fresh data directory with one creator (alice) and her IMVU-001; `done()` removes it. */
async function benchPlatform() {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-bench-'));
  const p = await initDataDir(dir, {}, { parallelVerify: true });
  const { privateKey } = generateKeyPair();
  const raw = publicKeyRaw(privateKey).toString('base64');
  await p.chokepoint.submit(signCommand(privateKey, 'identity.register', { name: 'alice', role: 'creator', publicKey: raw }, { origin: p.config.origin }));
  const alice = identityIdFromPublicKey(publicKeyRaw(privateKey));
  await p.chokepoint.submit(signCommand(privateKey, 'imvu.create', { name: 'Bench', owner: alice, jurisdiction: 'US-CCPA' }, { origin: p.config.origin }));
  return {
    p,
    alice,
    /** A consent record signed by alice: a realistic small command that passes every gate and writes one projection row. */
    consent: (purpose: string, granted: boolean) => signCommand(privateKey, 'consent.record', { imvu: 'IMVU-001', subject: alice, purpose, granted }, { origin: p.config.origin }),
    async done() {
      await p.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The chokepoint benchmark; with `witnesses` > 0, that many witnesses run as their own processes
 * on loopback (`nexus witness serve`) and the daemon's collector sends them the checkpoints as it
 * does in `nexus serve` (coalesced, one request in flight per witness).
 */
async function chokepointThroughput(witnesses = 0): Promise<{ perSec: number; ms: number; allowed: number; cosigned: number[] }> {
  const b = await benchPlatform();
  const dirs: string[] = [];
  const procs: WitnessProcess[] = [];
  let collector: CosignatureCollector | undefined;
  if (witnesses > 0) {
    const endpoints = [];
    for (let i = 1; i <= witnesses; i++) {
      const dir = mkdtempSync(join(tmpdir(), 'nexus-bench-witness-'));
      dirs.push(dir);
      const { vkey } = initWitness(join(dir, 'w'), `bench.witness/w${i}`);
      const s = WitnessStore.open(join(dir, 'w'));
      s.addLog(b.p.config.origin, verifierKey(b.p.config.origin, publicKeyRaw(b.p.platformKey)));
      s.close();
      const w = await spawnWitness(join(dir, 'w'));
      procs.push(w);
      endpoints.push({ url: w.url, vkey });
    }
    const ledger = b.p.chokepoint.ledger;
    const minIntervalMs = process.env.BENCH_WITNESS_INTERVAL_MS ? Number(process.env.BENCH_WITNESS_INTERVAL_MS) : undefined;
    if (process.env.BENCH_WITNESS_MODE !== 'procs') {
    collector = new CosignatureCollector({ dataDir: b.p.dataDir, witnesses: endpoints, consistencyProof: (o, n) => ledger.consistencyProof(o, n), ...(minIntervalMs !== undefined ? { minIntervalMs } : {}) });
    const c = collector;
    ledger.onCheckpoint((cp) => c.notify(cp));
    c.notifyNote(await ledger.checkpoint());
    }
  }
  // Witnesses are long-running processes: let their start-up (module loading, JIT, first GC) finish
  // before the clock starts, and give the run without them the same pause.
  await new Promise((r) => setTimeout(r, 3000));
  const cmds: SignedCommand[] = [];
  for (let i = 0; i < COMMANDS; i++) cmds.push(b.consent(`purpose-${i}`, i % 2 === 0));
  const t0 = performance.now();
  const receipts = await Promise.all(cmds.map((c) => b.p.chokepoint.submit(c)));
  const ms = performance.now() - t0;
  let cosigned: number[] = [];
  if (collector) {
    // The last checkpoint is cosigned a moment later (not timed); then everything stops.
    const size = b.p.chokepoint.ledger.size;
    for (let i = 0; i < 200 && collector.status().some((w) => w.cosignedSize < size); i++) await new Promise((r) => setTimeout(r, 50));
    cosigned = collector.status().map((w) => w.cosignedSize);
    await collector.close();
    await Promise.all(procs.map((w) => w.stop()));
  }
  await b.done();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  return { perSec: (COMMANDS / ms) * 1000, ms, allowed: receipts.filter((r) => r.allowed).length, cosigned };
}

if (process.env.BENCH_ONLY === 'witnesses') {
  // The chokepoint alone and with two witnesses, alternated to share the machine's state fairly.
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  const none: number[] = [];
  const two: number[] = [];
  for (let i = 0; i < rounds; i++) {
    none.push((await chokepointThroughput(0)).perSec);
    const w = await chokepointThroughput(process.env.BENCH_WITNESS_MODE === "none" ? 0 : 2);
    two.push(w.perSec);
    console.log(`round ${i + 1}: no witness ${none[i]!.toFixed(0)}/s, two witnesses ${w.perSec.toFixed(0)}/s (cosigned up to ${w.cosigned.join(', ')})`);
  }
  console.log(`median: no witness ${pct(none, 50).toFixed(0)}/s, two witnesses ${pct(two, 50).toFixed(0)}/s; load average ${loadavg()[0]!.toFixed(1)}`);
  process.exit(0);
}

/**
 * One command at a time, each its own commit: the latency a lone client sees, dominated by the
 * fsyncs (the WAL commit, and the checkpoint file written before the receipt).
 */
async function sequentialLatency(): Promise<{ p50: number; p99: number; n: number }> {
  const b = await benchPlatform();
  const times: number[] = [];
  for (let i = 0; i < SEQUENTIAL; i++) {
    const cmd = b.consent(`one-${i}`, true);
    const t = performance.now();
    await b.p.chokepoint.submit(cmd);
    times.push(performance.now() - t);
  }
  await b.done();
  return { p50: pct(times, 50), p99: pct(times, 99), n: SEQUENTIAL };
}

async function rawAppendsAndProofs() {
  const dir = mkdtempSync(join(tmpdir(), 'nexus-bench-'));
  const store = openStore(dir);
  const { privateKey } = generateKeyPair();
  const ledger = await Ledger.open(store, { origin: 'bench.local/ledger', keyName: 'bench.local/ledger', platformKey: privateKey });
  const entry = randomBytes(300); // the size of a typical signed entry
  const BATCH = 10_000;
  const t0 = performance.now();
  for (let done = 0; done < APPENDS; done += BATCH) {
    await ledger.batch(async (log) => {
      for (let i = 0; i < Math.min(BATCH, APPENDS - done); i++) {
        entry.writeUInt32BE(done + i, 0);
        await log.append(entry);
      }
    });
  }
  const appendMs = performance.now() - t0;
  const size = ledger.size;
  const root = ledger.root();
  const incl: number[] = [];
  const cons: number[] = [];
  let verified = 0;
  for (let i = 0; i < PROOFS; i++) {
    const index = Math.floor(Math.random() * size);
    let t = performance.now();
    const proof = ledger.inclusionProof(index, size);
    incl.push(performance.now() - t);
    entry.writeUInt32BE(index, 0);
    if (verifyInclusion(leafHash(entry), index, size, proof, root)) verified++;
    const old = 1 + Math.floor(Math.random() * (size - 1));
    t = performance.now();
    const cproof = ledger.consistencyProof(old, size);
    cons.push(performance.now() - t);
    void cproof;
  }
  // One consistency proof verified end to end against a root recomputed from stored nodes.
  const { rootHash } = await import('../../src/core/ledger/merkle.ts');
  const old = Math.floor(size / 3);
  const okCons = verifyConsistency(old, size, rootHash(store.nodeSource(), old), root, ledger.consistencyProof(old, size));
  await store.close();
  rmSync(dir, { recursive: true, force: true });
  return { appendsPerSec: (APPENDS / appendMs) * 1000, appendMs, size, incl, cons, verified, okCons };
}

const c = await chokepointThroughput();
console.log(`chokepoint: ${COMMANDS} commands in ${c.ms.toFixed(0)} ms = ${c.perSec.toFixed(0)}/s (${c.allowed} allowed)`);
const cw = await chokepointThroughput(2);
console.log(`chokepoint with two witnesses: ${COMMANDS} commands in ${cw.ms.toFixed(0)} ms = ${cw.perSec.toFixed(0)}/s (cosigned up to ${cw.cosigned.join(', ')})`);
const l = await sequentialLatency();
console.log(`one command per commit: p50 ${l.p50.toFixed(2)} ms, p99 ${l.p99.toFixed(2)} ms (${l.n} sequential)`);
const a = await rawAppendsAndProofs();
console.log(`raw appends: ${APPENDS} in ${a.appendMs.toFixed(0)} ms = ${a.appendsPerSec.toFixed(0)}/s`);
console.log(`inclusion proof at ${a.size}: p50 ${pct(a.incl, 50).toFixed(3)} ms, p99 ${pct(a.incl, 99).toFixed(3)} ms (${a.verified}/${PROOFS} verified)`);
console.log(`consistency proof at ${a.size}: p50 ${pct(a.cons, 50).toFixed(3)} ms, p99 ${pct(a.cons, 99).toFixed(3)} ms (verified: ${a.okCons})`);

const section = `## ledger (bench/ledger, ${new Date().toISOString().slice(0, 10)})

Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, Node ${process.version}, SQLite WAL with synchronous=FULL (fsync per commit); load average ${loadavg()[0]!.toFixed(1)} when the run ended.

| measure | result | target |
| --- | --- | --- |
| chokepoint: signed commands verified, gated, appended, signed, projected (${COMMANDS} consent.record, group commit) | ${c.perSec.toFixed(0)} commands/s | ≥ 5,000/s |
| the same with two witnesses on loopback (separate processes) cosigning the checkpoints | ${cw.perSec.toFixed(0)} commands/s | within 10% of the line above |
| one command per commit, sequential (${l.n} consent.record): receipt latency incl. WAL fsync and checkpoint file | p50 ${l.p50.toFixed(2)} ms, p99 ${l.p99.toFixed(2)} ms | — |
| raw ledger appends (300-byte entries, batches of 10,000, tree nodes stored) | ${a.appendsPerSec.toFixed(0)} appends/s | ≥ 50,000/s |
| inclusion proof at ${a.size.toLocaleString('en-US')} entries (${PROOFS} random) | p50 ${pct(a.incl, 50).toFixed(3)} ms, p99 ${pct(a.incl, 99).toFixed(3)} ms | < 1 ms |
| consistency proof at ${a.size.toLocaleString('en-US')} entries (${PROOFS} random) | p50 ${pct(a.cons, 50).toFixed(3)} ms, p99 ${pct(a.cons, 99).toFixed(3)} ms | < 1 ms |

For scale: Tessera publishes about 2,900 writes/s for its POSIX driver on 12 cores.
`;
const file = join(import.meta.dirname, '..', 'RESULTS.md');
const head = '# Benchmark results\n\nEach section is rewritten by its benchmark; numbers are from the last run on the project machine (2 cores).\n\n';
let text = existsSync(file) ? readFileSync(file, 'utf8') : head;
const re = /## ledger \(bench\/ledger[\s\S]*?(?=\n## |$)/;
text = re.test(text) ? text.replace(re, section) : text.trimEnd() + '\n\n' + section;
writeFileSync(file, text);
console.log(`written to ${file}`);
