// `nexus snapshot` as a user runs it: the built CLI in a subprocess against a real daemon on
// 127.0.0.1; the data volume changed on disk, rolled back, the archive checked by skopeo and umoci.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RunningServer } from '../../src/api/server.ts';
import { run, startDaemon, tempDir } from './harness.ts';

let server: RunningServer;
let data: string;
let home: string;
let env: Record<string, string>;
const nexus = (...args: string[]) => run(args, env);

beforeAll(async () => {
  data = tempDir('snap-data');
  home = tempDir('snap-home');
  server = await startDaemon(data);
  env = { NEXUS_HOME: home, NEXUS_URL: server.url };
});

afterAll(async () => {
  await server?.close();
  for (const d of [data, home]) if (d) rmSync(d, { recursive: true, force: true });
});

describe('nexus snapshot (subprocess against a real daemon)', () => {
  it('create, list, rollback and export; another creator is refused', async () => {
    expect((await nexus('snapshot', '--help')).stdout).toMatch(/create.*\n.*list.*\n.*rollback.*\n.*export/s);
    for (const name of ['alice', 'mallory']) expect((await nexus('identity', 'create', name, '--role', 'creator')).code).toBe(0);
    const created = await nexus('imvu', 'create', '--name', 'shop', '--owner', 'alice', '--jurisdiction', 'EU-GDPR', '--as', 'alice');
    expect(created.code, created.stderr).toBe(0);
    const imvu = /IMVU-\d{3,}/.exec(created.stdout)![0];
    const volume = join(data, 'imvus', imvu, 'compute', 'volume', 'data');
    mkdirSync(join(volume, 'db'), { recursive: true });
    writeFileSync(join(volume, 'db', 'rows'), 'one\ntwo\n');

    const snap = await nexus('snapshot', 'create', imvu, '--as', 'alice', '--json');
    expect(snap.code, snap.stderr).toBe(0);
    const { digest, allowed } = JSON.parse(snap.stdout) as { digest: string; allowed: boolean };
    expect(allowed).toBe(true);
    const again = await nexus('snapshot', 'create', imvu, '--as', 'alice');
    expect(again.stdout).toContain('unchanged since snapshot');

    const list = await nexus('snapshot', 'list', imvu, '--as', 'alice');
    expect(list.stdout).toContain(digest);
    const theirs = await nexus('snapshot', 'list', imvu, '--as', 'mallory');
    expect(theirs.code).not.toBe(0);

    writeFileSync(join(volume, 'db', 'rows'), 'corrupted\n');
    const refused = await nexus('snapshot', 'rollback', imvu, digest, '--as', 'mallory');
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/gate 12|denied/);
    expect(readFileSync(join(volume, 'db', 'rows'), 'utf8')).toBe('corrupted\n');
    const back = await nexus('snapshot', 'rollback', imvu, digest, '--as', 'alice');
    expect(back.code, back.stderr).toBe(0);
    expect(readFileSync(join(volume, 'db', 'rows'), 'utf8')).toBe('one\ntwo\n');

    const archive = join(home, 'shop.oci.tar');
    const exp = await nexus('snapshot', 'export', imvu, digest, '-o', archive, '--as', 'alice');
    expect(exp.code, exp.stderr).toBe(0);
    const info = JSON.parse(execFileSync('skopeo', ['inspect', `oci-archive:${archive}`], { encoding: 'utf8' })) as { Digest: string };
    expect(info.Digest).toBe(digest);
    // umoci unpacks it (an OCI layout once skopeo copies the archive into one) into the rolled-back tree.
    const layout = join(home, 'layout');
    execFileSync('skopeo', ['copy', `oci-archive:${archive}`, `oci:${layout}:snap`], { stdio: 'pipe' });
    const bundle = join(home, 'bundle');
    execFileSync('umoci', ['unpack', ...(process.getuid?.() === 0 ? [] : ['--rootless']), '--image', `${layout}:snap`, bundle], { stdio: 'pipe' });
    expect(readFileSync(join(bundle, 'rootfs', 'db', 'rows'), 'utf8')).toBe('one\ntwo\n');
  }, 180_000);
});
