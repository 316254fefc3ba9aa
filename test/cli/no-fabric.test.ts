// A host without runc (here: NEXUS_RUNC names a binary that does not exist): the daemon says so in
// one line and everything else runs (the API, the ledger, the DNS server); `nexus compute start`
// answers a clear error and records nothing. The built daemon and CLI in real processes.
import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { spawnDaemon, type DaemonProcess } from '../support/daemon.ts';
import { run, tempDir } from './harness.ts';

const dir = tempDir('no-fabric');
let daemon: DaemonProcess | undefined;
afterAll(async () => {
  await daemon?.stop(5_000);
  rmSync(dir, { recursive: true, force: true });
});

describe('nexus serve without runc', () => {
  it('says so in one line; imvu create and DNS still work; compute start is a clear error, nothing recorded', async () => {
    daemon = await spawnDaemon(join(dir, 'data'), [], { env: { NEXUS_RUNC: join(dir, 'no-runc') } });
    const lines = daemon.output.filter((l) => /compute/i.test(l));
    expect(lines).toHaveLength(1);
    expect((JSON.parse(lines[0]!) as { msg: string }).msg).toBe(`compute fabric off: runc does not run from ${join(dir, 'no-runc')} (NEXUS_RUNC); everything else runs`);

    const env = { NEXUS_HOME: join(dir, 'home'), NEXUS_URL: daemon.url };
    expect((await run(['identity', 'create', 'alice', '--role', 'creator'], env)).code).toBe(0);
    const created = await run(['imvu', 'create', '--name', 'shop', '--owner', 'alice', '--jurisdiction', 'EU-GDPR', '--as', 'alice'], env);
    expect(created.code, created.stderr).toBe(0);
    const imvu = /IMVU-\d{3,}/.exec(created.stdout)![0];
    // The DNS server answers.
    const dns = daemon.listening.dns as { address: string; port: number };
    const dug = execFileSync('dig', ['+time=5', '+tries=3', '-p', String(dns.port), '@127.0.0.1', 'example.invalid', 'A'], { encoding: 'utf8' });
    expect(dug).toMatch(/status: (NOERROR|NXDOMAIN|REFUSED)/);

    // The checkpoint note's second line is the ledger's size.
    const size = async () => Number((await (await fetch(`${daemon!.url}/v1/ledger/checkpoint`)).text()).split('\n')[1]);
    const before = await size();
    const start = await run(['compute', 'start', imvu, '--as', 'alice'], env);
    expect(start.code).not.toBe(0);
    expect(start.stderr).toMatch(/the compute fabric does not run on this host .*nothing was recorded/);
    expect(await size()).toBe(before);
  }, 180_000);
});
