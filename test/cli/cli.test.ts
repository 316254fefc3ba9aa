// The `nexus` CLI as a user runs it: a subprocess with its own NEXUS_HOME, talking to a real
// daemon started in this process on 127.0.0.1. Tests run in order and share one daemon.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { loadPrivateKey } from '../../src/core/identity/keys.ts';
import type { RunningServer } from '../../src/api/server.ts';
import { ROOT, run, startDaemon, submitDirect, tempDir, thisMonth, type Run } from './harness.ts';

let server: RunningServer;
let data: string;
let home: string;
let scratch: string;
let env: Record<string, string>;
const nexus = (...args: string[]) => run(args, env);

/** One line on stderr, `nexus: ...`, no stack trace. */
function oneLineError(r: Run): string {
  expect(r.stderr).toMatch(/^nexus: [^\n]+\n$/);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  return r.stderr.trim();
}

beforeAll(async () => {
  data = tempDir('cli-data');
  home = tempDir('cli-home');
  scratch = tempDir('cli-scratch');
  server = await startDaemon(data);
  env = { NEXUS_HOME: home, NEXUS_URL: server.url };
});

afterAll(async () => {
  await server?.close();
  for (const d of [data, home, scratch]) if (d) rmSync(d, { recursive: true, force: true });
});

describe('nexus CLI (subprocess against a real daemon)', () => {
  it('prints help (exit 0) and treats bad flags and commands as usage errors (exit 2, one line)', async () => {
    const help = await nexus('--help');
    expect(help.code).toBe(0);
    for (const c of ['init', 'start', 'identity', 'imvu', 'dns', 'audit', 'gates']) expect(help.stdout).toContain(c);
    expect(help.stdout).toMatch(/Exit codes: 0 ok, 1 denied by policy, 2 usage error, 3 daemon unreachable, 4 verification failed/);

    const badValue = await nexus('imvu', 'scale', 'IMVU-001', '--cpu', 'lots');
    expect(badValue.code).toBe(2);
    expect(oneLineError(badValue)).toMatch(/--cpu .* 'lots' is invalid/);

    const unknown = await nexus('imvu', 'frobnicate');
    expect(unknown.code).toBe(2);
    expect(oneLineError(unknown)).toMatch(/unknown command 'frobnicate'/);
  });

  it('identity create: the private key stays here, mode 0600 in a 0700 directory', async () => {
    const r = await nexus('identity', 'create', 'creator-8891', '--role', 'creator');
    expect(r.code, r.stderr).toBe(0);
    const ids = JSON.parse(readFileSync(join(home, 'identities.json'), 'utf8')) as Record<string, string>;
    expect(ids['creator-8891']).toMatch(/^nx1[a-z2-7]{32}$/);
    expect(r.stdout).toContain(`✅ Identity creator-8891 (creator): ${ids['creator-8891']}`);
    expect(statSync(join(home, 'keys', 'creator-8891.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(home, 'keys')).mode & 0o777).toBe(0o700);
    // The daemon knows the public key only.
    const rec = (await (await fetch(`${server.url}/v1/identities/creator-8891`)).json()) as { id: string; role: string };
    expect(rec).toMatchObject({ id: ids['creator-8891'], role: 'creator' });
  });

  it('imvu create prints the summary of everything that was provisioned', async () => {
    const r = await nexus('imvu', 'create', '--name', 'MyProject', '--owner', 'creator-8891', '--jurisdiction', 'US-CCPA');
    expect(r.code, r.stderr).toBe(0);
    console.log(`nexus imvu create: ${r.ms.toFixed(0)} ms wall clock (subprocess, node start-up included)`);
    const lines = r.stdout.trim().split('\n');
    expect(lines.every((l) => l.startsWith('✅ ') || l.startsWith('⏳ '))).toBe(true);
    expect(r.stdout).toContain('✅ IMVU-001 created: MyProject, owned by creator-8891, jurisdiction US-CCPA');
    // This daemon runs without its DNS server (startServer without `dns`), and no mail server,
    // compute fabric or gateway exists yet: what is recorded but not served says so (GET /health).
    expect(r.stdout).toContain('⏳ Domain: imvu001.world (recorded in the ledger; not served: this daemon runs no DNS server)');
    expect(r.stdout).toContain('⏳ Stage domain: stage.imvu001.world (recorded');
    expect(r.stdout).toMatch(/⏳ Mail: .*creator@imvu001\.world.*\(recorded in the ledger; not served: this daemon runs no mail server\)/);
    expect(r.stdout).toMatch(/⏳ Compute: 2 cores, 4 GB RAM.*not served: this daemon runs no compute fabric/);
    expect(r.stdout).toMatch(/⏳ Network routes: public .*, private .*, restricted .*not served: this daemon runs no HTTP gateway/);
    expect(r.stdout).toMatch(/⏳ DNS records: zone imvu001\.world \(serial \d+\): SOA, NS, .*not served/);
    expect(r.stdout).toMatch(/✅ Recorded as ledger entry \d+, signed by creator-8891; inclusion in the platform's signed checkpoint \(tree size \d+\) verified/);
  });

  it('dns record add and list (--json parses)', async () => {
    const add = await nexus('dns', 'record', 'add', 'imvu001.world', 'www', 'A', '192.0.2.7', '--ttl', '300');
    expect(add.code, add.stderr).toBe(0);
    expect(add.stdout).toContain('✅ imvu001.world: added www A 192.0.2.7 (ttl 300)');
    const list = await nexus('dns', 'record', 'list', 'imvu001.world', '--json');
    expect(list.code, list.stderr).toBe(0);
    const zone = JSON.parse(list.stdout) as { zone: string; imvu: string; records: { name: string; type: string; value: string; ttl: number }[] };
    expect(zone).toMatchObject({ zone: 'imvu001.world', imvu: 'IMVU-001' });
    expect(zone.records).toContainEqual({ name: 'www.imvu001.world', type: 'A', value: '192.0.2.7', ttl: 300 });
  });

  it('dns ds: the DS for the parent, the DNSKEY and a delv trust anchor, checked against the ledger', async () => {
    const r = await nexus('dns', 'ds', 'imvu001.world');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^imvu001\.world\. 3600 IN DS \d+ 13 2 [0-9A-F]{64}$/m);
    expect(r.stdout).toMatch(/^imvu001\.world\. 3600 IN DNSKEY 257 3 13 [A-Za-z0-9+/]{86}==$/m);
    expect(r.stdout).toMatch(/^trust-anchors \{ "imvu001\.world\." static-key 257 3 13 "[A-Za-z0-9+/]{86}=="; \};$/m);
    expect(r.stdout).toMatch(/published by the platform in ledger entry \d+, included in its signed checkpoint \(tree size \d+\): verified/);
    // The DS is served by the platform's own zone, whose anchor validates every IMVU zone under it.
    expect(r.stdout).toContain("; the DS record, served by the platform's zone world (nothing to hand to a registry):");
    expect(r.stdout).toMatch(/^world\. 3600 IN DS \d+ 13 2 [0-9A-F]{64}$/m);
    expect(r.stdout).toMatch(/^world\. 3600 IN DNSKEY 257 3 13 [A-Za-z0-9+/]{86}==$/m);
    expect(r.stdout).toMatch(/^trust-anchors \{ "world\." static-key 257 3 13 "[A-Za-z0-9+/]{86}=="; \};$/m);
    expect(r.stdout.match(/: verified$/gm)).toHaveLength(2);
    const json = await nexus('--json', 'dns', 'ds', 'imvu001.world');
    expect(JSON.parse(json.stdout)).toMatchObject({
      zone: 'imvu001.world', imvu: 'IMVU-001', algorithm: 13, digestType: 2, flags: 257, parent: 'world',
      platformZone: { zone: 'world', imvu: null, algorithm: 13, flags: 257 },
    });
    const own = await nexus('dns', 'ds', 'world');
    expect(own.code, own.stderr).toBe(0);
    expect(own.stdout).toContain("; zone world (the platform's own zone)");
    const missing = await nexus('dns', 'ds', 'nowhere.example');
    expect(missing.code).not.toBe(0);
    expect(oneLineError(missing)).toMatch(/zone nowhere\.example is not hosted here/);
  });

  it('an admin lowering the CPU of an IMVU is denied (exit 1) with a one-line reason', async () => {
    const noKey = await run(['identity', 'create', 'ops-x', '--role', 'admin'], env, { cwd: scratch });
    expect(noKey.code).toBe(2);
    expect(oneLineError(noKey)).toMatch(/an admin identity is registered by the platform.*pass --data DIR or set NEXUS_DATA/);

    const admin = await nexus('identity', 'create', 'ops', '--role', 'admin', '--data', data);
    expect(admin.code, admin.stderr).toBe(0);
    expect(admin.stdout).toMatch(/Registered by the platform/);

    const r = await nexus('--as', 'ops', 'imvu', 'scale', 'IMVU-001', '--cpu', '1');
    expect(r.code).toBe(1);
    expect(oneLineError(r)).toMatch(
      /^nexus: denied: gate 15: decrease of IMVU-001 \(cpu_cores 2 -> 1\) needs its creator's signature; ops \(admin\) alone cannot throttle it \(recorded as ledger entry \d+\)$/,
    );
  });

  it('quota approve: a creator cannot scale above the plan until an admin approves it; only admins approve', async () => {
    const over = await nexus('--as', 'creator-8891', 'imvu', 'scale', 'IMVU-001', '--cpu', '64');
    expect(over.code).toBe(1);
    expect(oneLineError(over)).toMatch(/gate 15: increase of IMVU-001 above the platform's plan without an approval \(quota.approve\): 64 cores \(plan 8\)/);
    const self = await nexus('--as', 'creator-8891', 'quota', 'approve', '--imvu', 'IMVU-001', '--cpu', '64', '--reason', 'mine');
    expect(self.code).toBe(1);
    expect(oneLineError(self)).toMatch(/gate 15: only an admin or the platform approves quotas above the plan/);
    const ok = await nexus('--as', 'ops', 'quota', 'approve', '--imvu', '1', '--cpu', '64', '--reason', 'render farm contract #12');
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toContain('✅ approved above the plan for IMVU-001: cpu_cores 64');
    const scaled = await nexus('--as', 'creator-8891', 'imvu', 'scale', 'IMVU-001', '--cpu', '64');
    expect(scaled.code, scaled.stderr).toBe(0);
    const back = await nexus('--as', 'creator-8891', 'imvu', 'scale', 'IMVU-001', '--cpu', '2');
    expect(back.code, back.stderr).toBe(0);
  }, 150_000);

  it('--json output parses (imvu list, imvu show)', async () => {
    const list = await nexus('imvu', 'list', '--json');
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout)).toContainEqual(expect.objectContaining({ id: 'IMVU-001', name: 'MyProject', status: 'active' }));
    const show = await nexus('--json', 'imvu', 'show', 'IMVU-001');
    expect(show.code, show.stderr).toBe(0);
    const imvu = JSON.parse(show.stdout) as { envelope: { cpu_cores: number }; domain: string };
    expect(imvu.domain).toBe('imvu001.world');
    expect(imvu.envelope.cpu_cores).toBe(2); // the admin's decrease did not happen
  });

  it('mail, routes and consent', async () => {
    const mail = await nexus('mail', 'mailbox', 'add', 'IMVU-001', 'info');
    expect(mail.code, mail.stderr).toBe(0);
    expect(mail.stdout).toContain('✅ Mailbox info@imvu001.world added to IMVU-001');
    const route = await nexus('route', 'set', 'IMVU-001', '--public', '/*=web', '--private', '/internal/*=api');
    expect(route.code, route.stderr).toBe(0);
    expect(route.stdout).toMatch(/public\s+\/\*\s+web/);
    const consent = await nexus('--as', 'creator-8891', 'consent', 'record', '--imvu', 'IMVU-001', '--purpose', 'newsletter', '--granted');
    expect(consent.code, consent.stderr).toBe(0);
    const list = await nexus('consent', 'list', '--subject', 'creator-8891', '--json');
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout)).toContainEqual(expect.objectContaining({ imvu: 'IMVU-001', purpose: 'newsletter', granted: true }));
  });

  it('a daemon that cannot be reached is exit 3', async () => {
    const port = await new Promise<number>((res) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => res(p));
      });
    });
    const r = await nexus('--server', `http://127.0.0.1:${port}`, 'imvu', 'list');
    expect(r.code).toBe(3);
    expect(oneLineError(r)).toMatch(/cannot reach the daemon at http:\/\/127\.0\.0\.1:\d+ \(connection refused\)/);
  });

  it('gates lists the 17 gates with where each is enforced', async () => {
    const r = await nexus('gates', '--json');
    expect(r.code, r.stderr).toBe(0);
    const gates = JSON.parse(r.stdout) as { number: number; enforcedIn: string; status: string }[];
    expect(gates.map((g) => g.number)).toEqual(Array.from({ length: 18 }, (_, i) => i));
    for (const g of gates) expect(g.enforcedIn).not.toBe('');
  });

  it('audit verify: online against the daemon, offline on the data directory, and 4 on a tampered copy', async () => {
    const online = await nexus('audit', 'verify');
    expect(online.code, online.stderr).toBe(0);
    expect(online.stdout).toMatch(/Merkle root recomputed here from their bytes equals the root the platform signed/);
    expect(online.stdout).toMatch(/Inclusion proofs verified for \d+ sampled entries/);

    const offline = await nexus('audit', 'verify', '--data', data);
    expect(offline.code, offline.stderr).toBe(0);
    expect(offline.stdout).toMatch(/Extends your saved checkpoint/);

    // A copy of the database in which someone rewrote an entry in place (triggers dropped first).
    const copy = join(scratch, 'tampered');
    mkdirSync(copy);
    const live = new Database(join(data, 'nexus.db'), { readonly: true });
    live.exec(`VACUUM INTO '${join(copy, 'nexus.db')}'`);
    live.close();
    const db = new Database(join(copy, 'nexus.db'));
    db.exec('DROP TRIGGER IF EXISTS ledger_entries_no_update');
    const changed = db
      .prepare("UPDATE ledger_entries SET data = CAST(replace(CAST(data AS TEXT), '192.0.2.7', '192.0.2.66') AS BLOB) WHERE CAST(data AS TEXT) LIKE '%192.0.2.7%'")
      .run().changes;
    db.close();
    expect(changed).toBeGreaterThan(0);
    const tampered = await nexus('audit', 'verify', '--data', copy);
    expect(tampered.code).toBe(4);
    expect(tampered.stdout).toMatch(/✗ .*problem/);
    expect(oneLineError(tampered)).toMatch(/does not verify/);
  });

  it('audit report: the 55-45 statement, formatted as money, and raw with --json', async () => {
    const svc = await nexus('identity', 'create', 'billing', '--role', 'service', '--data', data);
    expect(svc.code, svc.stderr).toBe(0);
    const key = loadPrivateKey(join(home, 'keys', 'billing.key'));
    // Revenue comes from the one source the platform registers for it (gate 6).
    const { identityIdFromPublicKey, publicKeyRaw } = await import('../../src/core/identity/keys.ts');
    const platformKey = loadPrivateKey(join(data, 'keys', 'platform.key'));
    const source = await submitDirect(server.url, '/v1/commands', platformKey, 'meter.register', { identity: identityIdFromPublicKey(publicKeyRaw(key)), metrics: ['revenue.records'] });
    expect(source.status, JSON.stringify(source.body)).toBe(200);
    const rev = await submitDirect(server.url, '/v1/revenue', key, 'revenue.record', { imvu: 'IMVU-001', amount: '15001', currency: 'USD', memo: 'art sales' });
    expect(rev.status).toBe(200);

    const r = await nexus('audit', 'report', '--imvu', 'IMVU-001', '--month', thisMonth());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/total:\s+\$150\.01/);
    expect(r.stdout).toMatch(/creator_share:\s+\$82\.51 \(55%\)/);
    expect(r.stdout).toMatch(/platform_share:\s+\$67\.50 \(45%\)/);

    const raw = await nexus('audit', 'report', '--imvu', 'IMVU-001', '--month', thisMonth(), '--json');
    expect(raw.code, raw.stderr).toBe(0);
    expect(JSON.parse(raw.stdout)).toMatchObject({ imvu: 'IMVU-001', currency: 'USD', total: '15001', creator: '8251', platform: '6750' });
  });

  it('tools/*.sh wrap the CLI with the spec flags', async () => {
    const tool = (name: string, ...args: string[]) => run([join(ROOT, 'tools', name), ...args], env, { cmd: 'bash' });

    const create = await run([join(ROOT, 'tools', 'imvu-create.sh'), '--name', 'ArtGallery', '--owner', 'creator-8891', '--jurisdiction', 'EU-GDPR'], env, { cmd: 'bash' });
    expect(create.code, create.stderr).toBe(0);
    expect(create.stdout).toContain('✅ IMVU-002 created: ArtGallery');

    const report = await tool('audit-report.sh', '--imvu-id', 'IMVU-001', '--month', thisMonth(), '--json');
    expect(report.code, report.stderr).toBe(0);
    expect(JSON.parse(report.stdout)).toMatchObject({ total: '15001' });

    const gates = await tool('verify-17-gates.sh');
    expect(gates.code, gates.stderr).toBe(0);
    expect(gates.stdout).toMatch(/^Gate 0 \(schema and preconditions\), then 17 gates, \d+ enforced/m);

    const total = await tool('verify-revenue-split.sh', '--total', '15001');
    expect(total.code, total.stderr).toBe(0);
    expect(total.stdout).toMatch(/creator_share:\s+\$82\.51/);

    const split = await tool('verify-revenue-split.sh', '--imvu-id', 'IMVU-001', '--month', thisMonth());
    expect(split.code, split.stderr).toBe(0);
    expect(split.stdout).toMatch(/Recomputed here from the verified ledger: identical/);
  });
});
