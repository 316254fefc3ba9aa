// The workload's round trip: an IMVU whose busybox httpd serves its data volume through the
// gateway (real runc, real HAProxy, curl) is exported; the archive's OCI image is checked by skopeo
// and umoci; a second daemon on the same host imports it, and the workload runs there and answers
// through that daemon's gateway with the same content. Two platforms on one host may not share
// workload addresses (the second would find the first's claim and keep its fabric off), so each
// runs with a range of its own (`compute.range` / `gateway.range` here; NEXUS_COMPUTE_RANGE or
// --compute-range for `nexus serve`).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { initDataDir } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { RuncDriver } from '../../src/compute/fabric/runc.ts';
import { removeFilter } from '../../src/compute/fabric/network.ts';
import { dataVolume } from '../../src/compute/snapshots/index.ts';
import { requireRunc } from '../compute/fabric-helpers.ts';
import { run, tempDir, type Run } from '../cli/harness.ts';
import { testComputeRange } from '../support/compute-range.ts';

const dirs: string[] = [];
let a: RunningServer;
let b: RunningServer;
let dataA: string;
let dataB: string;
let home: string;
let out: string;
// Two /24s that do not overlap: the same IMVU-001 gets a /30 in each.
const rangeA = testComputeRange();
const rangeB = testComputeRange();
const ports = { a: 0, b: 0 };
const envA = () => ({ NEXUS_HOME: home, NEXUS_URL: a.url });
const envB = () => ({ NEXUS_HOME: home, NEXUS_URL: b.url });
const HOST = 'imvu001.world';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const page = `<h1>gallery ${randomBytes(8).toString('hex')}</h1>\n`;

function ok(r: Run): Run {
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** GET through a daemon's gateway (TLS with the gateway's own CA, the name resolved to 127.0.0.1). */
function viaGateway(server: RunningServer, port: number, path: string): { code: number; body: string } {
  try {
    const outText = execFileSync('curl', ['-s', '--max-time', '5', '--cacert', server.gateway!.caCert, '--resolve', `${HOST}:${port}:127.0.0.1`, '-w', '\n%{http_code}', `https://${HOST}:${port}${path}`], { encoding: 'utf8' });
    const i = outText.lastIndexOf('\n');
    return { code: Number(outText.slice(i + 1)), body: outText.slice(0, i) };
  } catch {
    return { code: 0, body: '' };
  }
}

/**
 * Polls until the gateway answers `path` with 200 (the workload starts and HAProxy reloads in their
 * own time); gives up after two minutes with the last answer, for the assertion to show.
 */
async function answered(server: RunningServer, port: number, path: string): Promise<{ code: number; body: string }> {
  let r = { code: 0, body: '' };
  const until = Date.now() + 120_000;
  while (Date.now() < until) {
    r = viaGateway(server, port, path);
    if (r.code === 200) return r;
    await sleep(500);
  }
  return r;
}

async function daemon(dataDir: string, range: string, port: number): Promise<RunningServer> {
  return startServer({
    dataDir,
    host: '127.0.0.1',
    port: 0,
    logger: false,
    integrityIntervalMs: 0,
    compute: { range, service: { verifyEveryMs: 0, healthTickMs: 300 } },
    gateway: { address: '127.0.0.1', port, httpPort: await freePort(), range },
  });
}

async function cleanup(dataDir: string | undefined, range: string): Promise<void> {
  if (!dataDir) return;
  const driver = new RuncDriver({ dataDir, range });
  for (const imvu of await driver.deployed()) await driver.cleanup(imvu).catch(() => undefined);
  await driver.close();
  await removeFilter(driver.tag).catch(() => undefined);
}

beforeAll(async () => {
  requireRunc();
  execFileSync('haproxy', ['-v'], { stdio: 'ignore' });
  dataA = tempDir('wl-a');
  dataB = tempDir('wl-b');
  home = tempDir('wl-home');
  out = tempDir('wl-out');
  dirs.push(dataA, dataB, home, out);
  await (await initDataDir(dataA)).close();
  await (await initDataDir(dataB)).close();
  ports.a = await freePort();
  a = await daemon(dataA, rangeA, ports.a);
  expect(a.compute).toBeDefined();
  expect(a.gateway).toBeDefined();
  ok(await run(['identity', 'create', 'alice', '--role', 'creator'], envA()));
  ok(await run(['imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'EU-GDPR', '--cpu', '1', '--memory', '1'], envA()));
  // The site lives in the data volume, which the workload sees at /data.
  const vol = dataVolume(dataA, 'IMVU-001');
  mkdirSync(join(vol, 'www'), { recursive: true });
  writeFileSync(join(vol, 'www', 'index.html'), page);
  const blueprint = join(home, 'web.yaml');
  writeFileSync(blueprint, ['image: busybox', 'command: [sh, -c, "exec httpd -f -p $PORT -h /data/www"]', 'port: 8080', ''].join('\n'));
  ok(await run(['compute', 'deploy', 'IMVU-001', '--blueprint', blueprint], envA()));
  ok(await run(['compute', 'start', 'IMVU-001'], envA()));
  ok(await run(['route', 'set', 'IMVU-001', '--public', '/*=web:8080'], envA()));
}, 300_000);

afterAll(async () => {
  await a?.close();
  await b?.close();
  await cleanup(dataA, rangeA);
  await cleanup(dataB, rangeB);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 120_000);

describe('the workload round trip', () => {
  let archive: string;

  it('the source workload answers through its gateway; the export holds it as an OCI archive skopeo and umoci accept', async () => {
    const before = await answered(a, ports.a, '/index.html');
    expect(before).toEqual({ code: 200, body: page });
    ok(await run(['imvu', 'exit', 'IMVU-001', '--out', out, '--timeout', '300'], envA()));
    archive = join(out, 'IMVU-001-exit.tar.gz');
    expect(existsSync(archive)).toBe(true);
    // Still served while exiting (threat 4.3).
    expect(viaGateway(a, ports.a, '/index.html')).toEqual({ code: 200, body: page });

    const x = join(out, 'x');
    mkdirSync(x);
    execFileSync('tar', ['-xzf', archive, '-C', x, 'IMVU-001/compute/workload.oci.tar']);
    const oci = join(x, 'IMVU-001', 'compute', 'workload.oci.tar');
    const info = JSON.parse(execFileSync('skopeo', ['inspect', `oci-archive:${oci}`], { encoding: 'utf8' })) as { Digest: string; Layers: string[] };
    expect(info.Digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(info.Layers.length).toBeGreaterThan(0);
    // umoci works on an OCI layout: the archive is one, as a tar (extracted here, not copied by skopeo).
    const layout = join(x, 'layout');
    mkdirSync(layout);
    execFileSync('tar', ['-xf', oci, '-C', layout]);
    const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: { annotations?: Record<string, string> }[] };
    const tag = index.manifests[0]!.annotations?.['org.opencontainers.image.ref.name'];
    expect(tag).toBe('workload');
    const bundle = join(x, 'bundle');
    execFileSync('umoci', ['unpack', '--image', `${layout}:${tag}`, bundle], { stdio: 'pipe' });
    expect(existsSync(join(bundle, 'config.json'))).toBe(true);
    expect(existsSync(join(bundle, 'rootfs', 'bin', 'busybox')) || existsSync(join(bundle, 'rootfs', 'bin', 'sh'))).toBe(true);
  }, 300_000);

  it('imported on a second daemon (its own compute range), the workload runs and answers through its gateway with the same content', async () => {
    ports.b = await freePort();
    b = await daemon(dataB, rangeB, ports.b);
    expect(b.compute).toBeDefined();
    ok(await run(['identity', 'import', 'alice'], envB()));
    const r = ok(await run(['imvu', 'import', archive], envB()));
    expect(r.stdout).toMatch(/data volume: \d+ entries/);
    expect(r.stdout).toMatch(/workload deployed and started/);
    const after = await answered(b, ports.b, '/index.html');
    expect(after).toEqual({ code: 200, body: page });
    // Served from the second daemon's own workload, at its own range.
    const status = ok(await run(['compute', 'status', 'IMVU-001'], envB())).stdout;
    expect(status).toMatch(new RegExp(`IMVU-001: running at ${rangeB.split('.').slice(0, 3).join('\\.')}\\.`));
  }, 300_000);
});
