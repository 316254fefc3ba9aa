// A creator's online `audit verify` checks only what is new since its last verification: it keeps
// the tree's right edge under NEXUS_HOME and fetches the entries after it. The entries it does
// fetch are still checked to the byte (a changed one fails), and `--full` fetches everything again.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { RunningServer } from '../../src/api/server.ts';
import { EXIT } from '../../src/cli/errors.ts';
import { run, startDaemon, tempDir } from './harness.ts';

let server: RunningServer;
let proxy: Server;
const dirs: string[] = [];
let bobHome: string;
let alice: (...args: string[]) => ReturnType<typeof run>;
let bob: (...args: string[]) => ReturnType<typeof run>;

/** Every `from` asked of /v1/ledger/entries through the proxy, and an optional change to what it serves. */
const asked: number[] = [];
let alter: ((entries: { index: number; withheld?: boolean }[]) => void) | undefined;
/** A change to what GET /v1/ledger/snapshot serves. */
let alterSnapshot: ((s: { index: number; digest: string }) => void) | undefined;

interface Report {
  ok: boolean;
  size: number;
  incrementalFrom: number | null;
  snapshot: { index: number; digest: string } | null;
  readable: number;
  withheld: number;
  replayed: boolean;
  inclusionSampled: number[];
}

beforeAll(async () => {
  const data = tempDir('incr-data');
  const aliceHome = tempDir('incr-alice');
  bobHome = tempDir('incr-bob');
  dirs.push(data, aliceHome, bobHome);
  server = await startDaemon(data);
  // A hostile operator's front: passes everything through, and can change the entries it serves.
  // (Request headers are passed unchanged, Host included: reads are signed over the authority the CLI used.)
  const target = new URL(server.url);
  proxy = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const entriesPage = url.pathname === '/v1/ledger/entries';
    const snapshotPage = url.pathname === '/v1/ledger/snapshot';
    if (entriesPage) asked.push(Number(url.searchParams.get('from')));
    const up = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      const chunks: Buffer[] = [];
      ur.on('data', (c: Buffer) => chunks.push(c));
      ur.on('end', () => {
        let out = Buffer.concat(chunks);
        if (entriesPage && alter && ur.statusCode === 200) {
          const page = JSON.parse(out.toString()) as { entries: { index: number; withheld?: boolean }[] };
          alter(page.entries);
          out = Buffer.from(JSON.stringify(page));
        }
        if (snapshotPage && alterSnapshot && ur.statusCode === 200) {
          const served = JSON.parse(out.toString()) as { index: number; digest: string };
          alterSnapshot(served);
          out = Buffer.from(JSON.stringify(served));
        }
        const headers = { ...ur.headers, 'content-length': String(out.length) };
        delete headers['transfer-encoding'];
        res.writeHead(ur.statusCode ?? 502, headers);
        res.end(out);
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((ok) => proxy.listen(0, '127.0.0.1', ok));
  const via = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  alice = (...args) => run(args, { NEXUS_HOME: aliceHome, NEXUS_URL: server.url });
  bob = (...args) => run(args, { NEXUS_HOME: bobHome, NEXUS_URL: via });
  for (const [cli, name, imvu] of [
    [alice, 'alice', 'AliceArt'],
    [bob, 'bob', 'BobBooks'],
  ] as const) {
    expect((await cli('identity', 'create', name, '--role', 'creator')).code).toBe(0);
    const c = await cli('imvu', 'create', '--name', imvu, '--owner', name, '--jurisdiction', 'EU-GDPR');
    expect(c.code, c.stderr).toBe(0);
  }
}, 180_000);

afterAll(async () => {
  await new Promise((ok) => proxy?.close(ok));
  await server?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function verify(...flags: string[]): Promise<{ code: number; report: Report; stdout: string; stderr: string }> {
  const r = await bob('audit', 'verify', '--json', ...flags);
  return { code: r.code, report: (r.code === 0 ? JSON.parse(r.stdout) : {}) as Report, stdout: r.stdout, stderr: r.stderr };
}

async function addRecords(cli: typeof alice, zone: string, names: string[]): Promise<void> {
  for (const n of names) {
    const r = await cli('dns', 'record', 'add', zone, n, 'TXT', `v=${n}`);
    expect(r.code, r.stderr).toBe(0);
  }
}

describe("a creator's online verify checks only what is new", { timeout: 240_000 }, () => {
  let first: Report;

  it('the first verify fetches the whole log and keeps the tree edge', async () => {
    asked.length = 0;
    const r = await verify();
    expect(r.code, r.stderr).toBe(0);
    first = r.report;
    expect(first).toMatchObject({ ok: true, incrementalFrom: null, replayed: false });
    expect(first.withheld).toBeGreaterThan(0);
    expect(Math.min(...asked)).toBe(0);
    const files = readdirSync(join(bobHome, 'verified'));
    expect(files).toHaveLength(1);
    const edge = JSON.parse(readFileSync(join(bobHome, 'verified', files[0]!), 'utf8')) as { size: number; replayed: boolean };
    expect(edge).toMatchObject({ size: first.size, replayed: false });
  });

  it('the next verify fetches only the entries appended since, its own and others (withheld)', async () => {
    await addRecords(alice, 'imvu001.world', ['a1', 'a2']);
    await addRecords(bob, 'imvu002.world', ['b1', 'b2', 'b3']);
    asked.length = 0;
    const r = await verify();
    expect(r.code, r.stderr).toBe(0);
    expect(r.report.incrementalFrom).toBe(first.size);
    expect(r.report.size).toBeGreaterThanOrEqual(first.size + 5);
    expect(r.report.readable + r.report.withheld).toBe(r.report.size - first.size);
    expect(r.report.withheld).toBeGreaterThanOrEqual(2);
    expect(r.report.inclusionSampled.every((i) => i >= first.size && i < r.report.size)).toBe(true);
    // Not one entry before the edge was asked for.
    expect(asked.length).toBeGreaterThan(0);
    expect(Math.min(...asked)).toBe(first.size);
    const human = await bob('audit', 'verify');
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/✅ Only what is new: \d+ entries after the tree size \d+ you verified before/);
    expect(human.stdout).toMatch(/✅ Inclusion proofs verified for \d+ sampled entries|- No new entry to check an inclusion proof for/);
  });

  it('a new entry served with changed bytes fails the check (exit 4), and the edge stays where it was', async () => {
    const edgeFile = join(bobHome, 'verified', readdirSync(join(bobHome, 'verified'))[0]!);
    const before = readFileSync(edgeFile, 'utf8');
    await addRecords(bob, 'imvu002.world', ['b4']);
    alter = (entries) => {
      const mine = entries.find((e) => !e.withheld && JSON.stringify(e).includes('v=b4'));
      if (mine) Object.assign(mine, JSON.parse(JSON.stringify(mine).replace('v=b4', 'v=evil')));
    };
    try {
      const r = await bob('audit', 'verify');
      expect(r.code, r.stdout + r.stderr).toBe(EXIT.verification);
      expect(r.stderr).toMatch(/recomputed from the tree you verified at size \d+ and the \d+ entries the daemon serves since is not the root of its signed checkpoint/);
    } finally {
      alter = undefined;
    }
    expect(readFileSync(edgeFile, 'utf8')).toBe(before);
    const clean = await verify();
    expect(clean.code, clean.stderr).toBe(0);
  });

  it('an old entry served with changed bytes is outside what is new; --full fetches it again and fails', async () => {
    alter = (entries) => {
      const old = entries.find((e) => !e.withheld && e.index > 0 && e.index < first.size && JSON.stringify(e).includes('BobBooks'));
      if (old) Object.assign(old, JSON.parse(JSON.stringify(old).replace('BobBooks', 'BobBookz')));
    };
    try {
      const incremental = await verify();
      expect(incremental.code, incremental.stderr).toBe(0);
      const full = await bob('audit', 'verify', '--full');
      expect(full.code, full.stdout + full.stderr).toBe(EXIT.verification);
      expect(full.stderr).toMatch(/is not the root of its signed checkpoint: the entries were changed/);
    } finally {
      alter = undefined;
    }
  });

  it('an edge file that does not hash to its own root is ignored: the whole log is fetched again', async () => {
    const edgeFile = join(bobHome, 'verified', readdirSync(join(bobHome, 'verified'))[0]!);
    expect(existsSync(edgeFile)).toBe(true);
    const e = JSON.parse(readFileSync(edgeFile, 'utf8')) as { edge: { hash: string }[] };
    e.edge[0]!.hash = 'f'.repeat(64);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(edgeFile, JSON.stringify(e));
    asked.length = 0;
    const r = await verify();
    expect(r.code, r.stderr).toBe(0);
    expect(r.report.incrementalFrom).toBeNull();
    expect(Math.min(...asked)).toBe(0);
  });

  it("checks the platform's signed state snapshot against the log it verified: the entry, its index and digest as the API serves them", async () => {
    const none = await verify();
    expect(none.code, none.stderr).toBe(0);
    expect(none.report.snapshot).toBeNull();
    const signed = await server.recordSnapshot();
    expect(signed?.allowed).toBe(true);
    const r = await verify();
    expect(r.code, r.stderr).toBe(0);
    const body = (await server.store.get<{ data: Buffer }>('SELECT data FROM ledger_entries WHERE idx = ?', [signed!.index]))!.data.toString();
    expect(r.report.snapshot).toEqual({ index: signed!.index, digest: (JSON.parse(body) as { command: { command: { body: { digest: string } } } }).command.command.body.digest });
    const human = await bob('audit', 'verify');
    expect(human.stdout).toMatch(new RegExp(`✅ The signed state snapshot the platform serves \\(entry ${signed!.index}, `));
    // A front that serves another digest, or points at another entry: refused (exit 4), the edge not moved.
    for (const [change, why] of [
      [(s: { index: number; digest: string }) => (s.digest = '0'.repeat(64)), /does not match the ledger.snapshot at entry \d+/],
      [(s: { index: number; digest: string }) => (s.index = 1), /is not what the log holds there: entry 1 is/],
      [(s: { index: number; digest: string }) => (s.index = 1_000_000), /is not in the log: the signed checkpoint covers \d+ entries/],
    ] as const) {
      alterSnapshot = change;
      try {
        const bad = await bob('audit', 'verify');
        expect(bad.code, bad.stdout + bad.stderr).toBe(EXIT.verification);
        expect(bad.stderr).toMatch(why);
      } finally {
        alterSnapshot = undefined;
      }
    }
  });
});
