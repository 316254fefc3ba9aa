// The gateway from the built CLI: an in-process daemon running HAProxy, `nexus route set --policy`
// with the spec's YAML, `nexus token issue` signed with the identity's key, and the token used
// through HAProxy by curl against a workload in its own network namespace.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { initDataDir, isInitialised } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { run, tempDir } from '../cli/harness.ts';
import { startWorkload, type Workload } from './workloads.ts';

const haveHaproxy = spawnSync('haproxy', ['-v']).status === 0 && process.getuid?.() === 0;

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

describe.skipIf(!haveHaproxy)('gateway from the CLI', () => {
  let dir: string;
  let server: RunningServer;
  let env: Record<string, string>;
  let port: number;
  let workload: Workload | undefined;
  const nexus = (...args: string[]) => run(args, env);

  beforeAll(async () => {
    dir = tempDir('gateway-cli');
    const data = join(dir, 'data');
    if (!isInitialised(data)) await (await initDataDir(data)).close();
    port = await freePort();
    server = await startServer({ dataDir: data, host: '127.0.0.1', port: 0, logger: false, gateway: { address: '127.0.0.1', port, httpPort: await freePort(), checkIntervalMs: 3_600_000 } });
    // (The daemon's own periodic check is pushed out of this file's run: the watch test below edits a
    // served map by hand and must find it before the daemon reverts it.)
    expect(server.gateway).toBeDefined();
    env = { NEXUS_HOME: join(dir, 'home'), NEXUS_URL: server.url };
    for (const args of [
      ['identity', 'create', 'alice', '--role', 'creator'],
      ['identity', 'create', 'mallory', '--role', 'creator'],
      ['imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'US-CCPA', '--as', 'alice'],
    ]) {
      const r = await nexus(...args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
    // The daemon's gateway uses the default compute range; the workload sits at IMVU-001's /30.
    workload = await startWorkload('c', 1, '10.96.0.0/11', 'gallery', [3000, 3001]);
  }, 60_000);

  afterAll(async () => {
    workload?.stop();
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('route set --policy YAML, token issue, and the token opens the private route through HAProxy', async () => {
    const file = join(dir, 'routing-policy.yaml');
    writeFileSync(file, 'public_routes:\n  - path: "/*"\n    backend: "web:3000"\n    rate_limit: 1000/min\nprivate_routes:\n  - path: "/internal/*"\n    backend: "api:3001"\n    require_identity: true\n');
    const set = await nexus('route', 'set', 'IMVU-001', '--policy', file, '--as', 'alice');
    expect(set.code, set.stderr).toBe(0);
    await server.gateway!.sync();
    const host = 'imvu001.world';
    const curl = (path: string, extra: string[] = []) =>
      execFileSync('curl', ['-s', '--max-time', '10', '--cacert', server.gateway!.caCert, '--resolve', `${host}:${port}:127.0.0.1`, '-w', ' %{http_code}', ...extra, `https://${host}:${port}${path}`], { encoding: 'utf8' });
    expect(curl('/')).toBe('gallery / 0\n 200');
    expect(curl('/internal/x')).toMatch(/ 401$/);
    const tok = await nexus('token', 'issue', '--imvu', 'IMVU-001', '--ttl', '120', '--as', 'alice', '--json');
    expect(tok.code, tok.stderr).toBe(0);
    const { token, roles } = JSON.parse(tok.stdout) as { token: string; roles: string[] };
    expect(roles).toContain('admin');
    expect(curl('/internal/x', ['-H', `Authorization: Bearer ${token}`])).toBe('gallery /internal/x 0\n 200');
    // A stranger gets no token for alice's IMVU.
    const denied = await nexus('token', 'issue', '--imvu', 'IMVU-001', '--as', 'mallory');
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/neither the creator nor a member/);
  }, 60_000);

  it("`nexus audit watch` compares each IMVU's routes as HAProxy serves them with the ledger; a hand edit is an alarm", async () => {
    await server.gateway!.sync();
    const honest = await nexus('audit', 'watch', '--once', '--as', 'alice');
    expect(honest.code, honest.stdout + honest.stderr).toBe(0);
    const lines = Number(/✅ Routes of IMVU-001: served as the ledger says \((\d+) map lines/.exec(honest.stdout)?.[1]);
    // Its host and stage host, and its two routes.
    expect(lines, honest.stdout).toBeGreaterThanOrEqual(3);
    // A route the ledger never allowed, added by hand over the runtime socket.
    const gw = server.gateway!;
    execFileSync('socat', ['-', `UNIX-CONNECT:${gw.layout.adminSocket}`], { input: `add map ${gw.layout.maps.exact} IMVU-001/backdoor public|3001|1000000|9|0\n` });
    try {
      const r = await nexus('audit', 'watch', '--once', '--as', 'alice');
      expect(r.code, r.stdout + r.stderr).toBe(4);
      expect(r.stdout).toMatch(/✗ Routes of IMVU-001: the gateway serves its exact map otherwise than the ledger says/);
      expect(r.stdout).toContain('IMVU-001/backdoor public|3001|1000000|9|0');
      expect(r.stdout).toMatch(/ALARM/);
    } finally {
      await gw.verify();
    }
    expect((await gw.served()).equal).toBe(true);
  }, 120_000);

  it("the gateway's refusals of an IMVU are in its creator's `nexus audit log --imvu`, and only there", async () => {
    const gw = server.gateway!;
    const host = 'imvu001.world';
    // Three requests without a token on the private route: 401 no-token, counted from HAProxy's log.
    const seen = gw.refusalsSeen;
    for (let i = 0; i < 3; i++) execFileSync('curl', ['-s', '-o', '/dev/null', '--max-time', '10', '--cacert', gw.caCert, '--resolve', `${host}:${port}:127.0.0.1`, `https://${host}:${port}/internal/refused`]);
    const { waitFor } = await import('./harness.ts');
    await waitFor(() => gw.refusalsSeen >= seen + 3, 30_000, 'the refusals in the log stream');
    const indexes = await gw.summariseRefusals();
    expect(indexes.length).toBe(1);
    const log = await nexus('audit', 'log', '--imvu', 'IMVU-001', '--as', 'alice', '--json');
    expect(log.code, log.stderr).toBe(0);
    const out = JSON.parse(log.stdout) as { summary: { index: number; type: string; imvu: string | null }[]; entries: { index: number; command?: { command: { body: { imvu: string; counts: { route: string; status: number; reason: string; count: number }[] } } } }[] };
    const s = out.summary.find((x) => x.index === indexes[0]);
    expect(s, JSON.stringify(out.summary.slice(0, 5))).toMatchObject({ type: 'gateway.refusals', imvu: 'IMVU-001' });
    const e = out.entries.find((x) => x.index === indexes[0])!;
    expect(e.command!.command.body.counts).toContainEqual(expect.objectContaining({ status: 401, reason: 'no-token' }));
    // The readable listing names it too.
    const text = await nexus('audit', 'log', '--imvu', 'IMVU-001', '--as', 'alice');
    expect(text.stdout).toMatch(new RegExp(`${indexes[0]}\\s.*gateway\\.refusals.*IMVU-001`));
    // Another creator does not read alice's IMVU's history.
    const other = await nexus('audit', 'log', '--imvu', 'IMVU-001', '--as', 'mallory', '--json');
    expect(other.code).not.toBe(0);
  }, 60_000);

  it('a policy whose backend is an address is refused by the CLI before signing', async () => {
    const file = join(dir, 'evil.yaml');
    writeFileSync(file, 'public_routes:\n  - path: "/*"\n    backend: "127.0.0.1:7600"\n');
    const r = await nexus('route', 'set', 'IMVU-001', '--policy', file, '--as', 'alice');
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/is an address/);
  });
});
