// Identity lifecycle and honest output, as a user runs them: the built CLI as a subprocess against
// real daemons on 127.0.0.1 (one with its DNS server on, so what is served is what the daemon says).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { initDataDir } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { loadPrivateKey } from '../../src/core/identity/keys.ts';
import { signRead } from '../../src/api/read-auth.ts';
import { run, submitDirect, tempDir, type Run } from './harness.ts';

let server: RunningServer;
let data: string;
let home: string;
let env: Record<string, string>;
const dirs: string[] = [];
const nexus = (...args: string[]) => run(args, env);

function ok(r: Run): Run {
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

/** Every file under `dir` (relative paths), sorted. */
function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

async function daemon(dataDir: string, port = 0): Promise<RunningServer> {
  if (!existsSync(join(dataDir, 'platform.json'))) await (await initDataDir(dataDir)).close();
  return startServer({ dataDir, host: '127.0.0.1', port, logger: false, dns: { port: 0, meterIntervalMs: 60_000 } });
}

beforeAll(async () => {
  data = tempDir('lc-data');
  home = tempDir('lc-home');
  dirs.push(data, home);
  server = await daemon(data);
  env = { NEXUS_HOME: home, NEXUS_URL: server.url };
});

afterAll(async () => {
  await server?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('identity lifecycle', () => {
  it('a failed registration leaves no file behind under a fresh NEXUS_HOME', async () => {
    const fresh = tempDir('lc-fresh');
    dirs.push(fresh);
    rmSync(fresh, { recursive: true });
    // 'dns' is reserved for the platform's DNS service: the registration is refused (and recorded)
    const r = await run(['identity', 'create', 'dns', '--role', 'creator'], { NEXUS_HOME: fresh, NEXUS_URL: server.url });
    expect(r.code).not.toBe(0);
    // What remains is the platform pinned on first contact, its checkpoint, and the receipt of the recorded refusal: no key, no name.
    expect(files(fresh).filter((f) => !/^(platforms\.json|checkpoints\/|receipts\/)/.test(f))).toEqual([]);
    expect(existsSync(join(fresh, 'keys'))).toBe(false);
    expect(existsSync(join(fresh, 'identities.json'))).toBe(false);
  });

  it('rotate: same id, new key; the old key stops at once; audit verify replays clean', async () => {
    ok(await nexus('identity', 'create', 'alice', '--role', 'creator'));
    const created = JSON.parse(ok(await nexus('--json', 'imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'US-CCPA')).stdout) as { id: string };
    const keyFile = join(home, 'keys', 'alice.key');
    const oldKey = loadPrivateKey(keyFile);
    const before = JSON.parse(ok(await nexus('--json', 'identity', 'show', 'alice')).stdout) as { id: string; publicKey: string };

    const rot = ok(await nexus('--json', 'identity', 'rotate', 'alice'));
    const out = JSON.parse(rot.stdout) as { id: string; publicKey: string; index: number; retiredKey: string };
    expect(out.id).toBe(before.id);
    expect(out.publicKey).not.toBe(before.publicKey);
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    expect(existsSync(out.retiredKey)).toBe(true);
    const after = JSON.parse(ok(await nexus('--json', 'identity', 'show', 'alice')).stdout) as { id: string; publicKey: string; keySince: number; status: string };
    expect(after).toMatchObject({ id: before.id, publicKey: out.publicKey, keySince: out.index, status: 'active' });

    // The old key, used by any client: refused (401), nothing recorded.
    const size = Number((await fetch(`${server.url}/health`).then((r) => r.json()) as { size: number }).size);
    const stale = await submitDirect(server.url, `/v1/imvus/${created.id}/scale`, oldKey, 'imvu.scale', { imvu: created.id, cpu_cores: 3 });
    expect(stale.status).toBe(401);
    expect(String(stale.body.error)).toMatch(/rotated at ledger entry/);
    expect(Number((await fetch(`${server.url}/health`).then((r) => r.json()) as { size: number }).size)).toBe(size);

    // The CLI signs with the new key for the same identity.
    ok(await nexus('imvu', 'scale', created.id, '--cpu', '3', '--as', 'alice'));
    ok(await nexus('audit', 'verify', '--data', data));
  });

  it('revoke: recorded; the key signs nothing more; again is no change', async () => {
    ok(await nexus('identity', 'create', 'mallory', '--role', 'creator'));
    const key = loadPrivateKey(join(home, 'keys', 'mallory.key'));
    const r = ok(await nexus('identity', 'revoke', 'mallory', '--reason', 'key leaked'));
    expect(r.stdout).toMatch(/revoked at ledger entry \d+: its key signs nothing more/);
    const after = await submitDirect(server.url, '/v1/imvus', key, 'imvu.create', { name: 'Late', owner: String((await fetch(`${server.url}/v1/identities/mallory`).then((x) => x.json()) as { id: string }).id), jurisdiction: 'US-CCPA' });
    expect(after.status).toBe(401);
    expect(String(after.body.error)).toMatch(/revoked/);
    // Its signed reads are refused too.
    const id = String((await fetch(`${server.url}/v1/identities/mallory`).then((x) => x.json()) as { id: string }).id);
    const read = await fetch(`${server.url}/v1/imvus`, { headers: { ...signRead(key, id, 'GET', `${server.url}/v1/imvus`) } });
    expect(read.status).toBe(401);
    const again = ok(await nexus('identity', 'revoke', 'mallory', '--data', data));
    expect(again.stdout).toMatch(/already revoked .*no change, nothing recorded/);
  });

  it('a creator cannot be revoked by the platform', async () => {
    const r = await nexus('identity', 'revoke', 'alice', '--data', data);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/only its own key revokes it/);
  });

  it('starting over: forget-platform, then import re-registers the held key with the new platform', async () => {
    const port = Number(new URL(server.url).port);
    await server.close();
    rmSync(data, { recursive: true, force: true });
    server = await daemon(data, port); // a new platform at the same URL
    const alarm = await nexus('imvu', 'list');
    expect(alarm.code).toBe(4); // a new key at a pinned URL looks like an attack
    const forget = ok(await nexus('identity', 'forget-platform'));
    expect(forget.stdout).toMatch(/Forgot platform nx1\w+ at http:\/\/127\.0\.0\.1:\d+/);
    expect(forget.stdout).toContain('nexus identity import alice');
    const imp = ok(await nexus('identity', 'import', 'alice'));
    expect(imp.stdout).toMatch(/registered with .* with the key held in/);
    ok(await nexus('imvu', 'list'));
    // Importing again changes nothing.
    expect(ok(await nexus('identity', 'import', 'alice')).stdout).toMatch(/already registered .*nothing recorded/);
  });

  it('import --key: a key from another NEXUS_HOME is registered here', async () => {
    const other = tempDir('lc-other');
    dirs.push(other);
    ok(await run(['identity', 'create', 'bob', '--role', 'creator'], { NEXUS_HOME: other, NEXUS_URL: server.url }));
    const second = tempDir('lc-data2');
    dirs.push(second);
    const s2 = await daemon(second);
    try {
      const r = ok(await run(['identity', 'import', 'bob', '--key', join(other, 'keys', 'bob.key')], { NEXUS_HOME: home, NEXUS_URL: s2.url }));
      expect(r.stdout).toMatch(/bob \(creator\) registered with/);
      expect(statSync(join(home, 'keys', 'bob.key')).mode & 0o777).toBe(0o600);
    } finally {
      await s2.close();
    }
  });
});

describe('honest output', () => {
  it('imvu create marks what the daemon serves (DNS) and what is only recorded (mail, compute, routes)', async () => {
    const r = ok(await nexus('imvu', 'create', '--name', 'Honest', '--owner', 'alice', '--jurisdiction', 'EU-GDPR'));
    expect(r.stdout).toMatch(/^✅ DNS records: zone/m);
    expect(r.stdout).toMatch(/^✅ Domain: /m);
    expect(r.stdout).toMatch(/^⏳ Mail: .*not served: this daemon runs no mail server\)$/m);
    expect(r.stdout).toMatch(/^⏳ Compute: .*not served/m);
    expect(r.stdout).toMatch(/^⏳ Network routes: .*not served/m);
  });

  it('member add twice and resume of an active IMVU change nothing and record nothing', async () => {
    ok(await nexus('identity', 'create', 'carol', '--role', 'member'));
    const list = JSON.parse(ok(await nexus('--json', 'imvu', 'list', '--as', 'alice')).stdout) as { id: string; name: string }[];
    const id = list.find((i) => i.name === 'Honest')!.id;
    ok(await nexus('member', 'add', id, 'carol', '--as', 'alice'));
    const size = async () => Number(((await fetch(`${server.url}/health`).then((x) => x.json())) as { size: number }).size);
    const before = await size();
    const twice = ok(await nexus('member', 'add', id, 'carol', '--as', 'alice'));
    expect(twice.stdout).toMatch(/already a member of .*no change, nothing recorded/);
    const resume = ok(await nexus('imvu', 'resume', id, '--as', 'alice'));
    expect(resume.stdout).toMatch(/already active: nothing to resume; no change, nothing recorded/);
    expect(await size()).toBe(before);
  });

  it('audit report defaults to the current month and says who gets what in plain words', async () => {
    const list = JSON.parse(ok(await nexus('--json', 'imvu', 'list', '--as', 'alice')).stdout) as { id: string; name: string }[];
    const id = list.find((i) => i.name === 'Honest')!.id;
    const r = ok(await nexus('audit', 'report', '--imvu', id, '--as', 'alice'));
    expect(r.stdout).toContain(`Statement ${id}, ${new Date().toISOString().slice(0, 7)}`);
    expect(r.stdout).toMatch(/In plain words: /);
  });
});
