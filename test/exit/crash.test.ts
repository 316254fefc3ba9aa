// A kill -9 of the daemon in the middle of an export never leaves an archive that verifies under
// the final name, and the restarted daemon builds it again by itself (gate 13, issue: atomic archive).
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { initDataDir } from '../../src/core/platform.ts';
import { spawnDaemon, type DaemonProcess } from '../support/daemon.ts';
import { run, tempDir, type Run } from '../cli/harness.ts';

const dirs: string[] = [];
let daemon: DaemonProcess | undefined;
afterAll(async () => {
  await daemon?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function ok(r: Run): Run {
  expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

describe('export after kill -9', () => {
  it('leaves no archive under the final name mid-build, and the restarted daemon finishes it', async () => {
    const data = tempDir('exitcrash-data');
    const home = tempDir('exitcrash-home');
    const out = tempDir('exitcrash-out');
    dirs.push(data, home, out);
    await (await initDataDir(data)).close();
    daemon = await spawnDaemon(data);
    let env = { NEXUS_HOME: home, NEXUS_URL: daemon.url };
    ok(await run(['identity', 'create', 'alice', '--role', 'creator'], env));
    ok(await run(['imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'US-CCPA'], env));
    ok(await run(['imvu', 'exit', 'IMVU-001'], env));
    // Killed as soon as the build has started (or already finished: then the archive must be whole).
    daemon.child.kill('SIGKILL');
    await daemon.exited;
    const exports = join(data, 'exports', 'IMVU-001');
    const final = join(exports, 'IMVU-001-exit.tar.gz');
    if (existsSync(final)) ok(await run(['export', 'verify', final], env));
    const leftovers = existsSync(exports) ? readdirSync(exports) : [];
    for (const f of leftovers.filter((n) => n.endsWith('.partial'))) expect((await run(['export', 'verify', join(exports, f)], env)).code).toBe(4);

    daemon = await spawnDaemon(data);
    env = { NEXUS_HOME: home, NEXUS_URL: daemon.url };
    const fetched = ok(await run(['imvu', 'exit', 'IMVU-001', '--out', out, '--timeout', '60'], env));
    expect(fetched.stdout).toMatch(/Export Verification Report for IMVU-001/);
    expect(readdirSync(exports).filter((n) => n.endsWith('.partial'))).toEqual([]);
  }, 120_000);
});
