// The creator keeps the platform honest: the operator rolls the daemon back to an old copy of its
// data directory and writes a different history with the same platform key. The creator's next
// CLI call fails with exit 4 naming both tree sizes, and so does every later one, until the
// creator has looked at the evidence (`nexus audit verify`) and acknowledged it by its code.
import { afterAll, describe, expect, it } from 'vitest';
import { cpSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadPrivateKey } from '../../src/core/identity/keys.ts';
import type { RunningServer } from '../../src/api/server.ts';
import { run, startDaemon, submitDirect, tempDir } from './harness.ts';

const dirs: string[] = [];
let server: RunningServer | undefined;
afterAll(async () => {
  await server?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('checkpoint memory through the CLI', () => {
  it('detects a rewritten log (exit 4), keeps failing until acknowledged, and keeps the evidence', async () => {
    const data = tempDir('rw-data');
    const old = tempDir('rw-old');
    const home = tempDir('rw-home');
    dirs.push(data, old, home);
    server = await startDaemon(data);
    const { port, url } = server;
    const env = { NEXUS_HOME: home, NEXUS_URL: url };
    const nexus = (...args: string[]) => run(args, env);

    expect((await nexus('identity', 'create', 'alice', '--role', 'creator')).code).toBe(0);
    const created = await nexus('imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'EU-GDPR');
    expect(created.code, created.stderr).toBe(0);
    const copied = Number(/tree size (\d+)\)/.exec(created.stdout)?.[1]);

    // The operator keeps a copy; the log grows and alice's CLI sees it.
    await server.close();
    cpSync(data, old, { recursive: true });
    server = await startDaemon(data, port);
    const add = await nexus('dns', 'record', 'add', 'imvu001.world', 'www', 'A', '192.0.2.7');
    expect(add.code, add.stderr).toBe(0);
    const seen = Number(/tree size (\d+)\)/.exec(add.stdout)?.[1]);
    expect(seen).toBeGreaterThan(0);

    // Back to the copy, and a different history, longer than what alice saw, signed with the same key.
    await server.close();
    server = await startDaemon(old, port);
    const key = loadPrivateKey(join(home, 'keys', 'alice.key'));
    for (const value of ['198.51.100.1', '198.51.100.2', '198.51.100.3']) {
      const r = await submitDirect(url, '/v1/zones/imvu001.world/records', key, 'dns.record.add', { zone: 'imvu001.world', name: 'www', type: 'A', value });
      expect(r.status).toBe(201);
    }
    const size = copied + 3;
    expect(size).toBeGreaterThan(seen);

    const first = await nexus('imvu', 'list');
    expect(first.code).toBe(4);
    expect(first.stderr).toBe(
      `nexus: the platform's log was rewritten: the checkpoint you saw at tree size ${seen} is not a prefix of the tree of size ${size}; ` +
        'run `nexus audit verify` to see the evidence and how to acknowledge it, and keep your saved checkpoint as evidence\n',
    );

    // Every later call fails the same way, whatever it is.
    const later = await nexus('dns', 'record', 'list', 'imvu001.world');
    expect(later.code).toBe(4);
    expect(later.stderr).toMatch(new RegExp(`^nexus: the platform's log was rewritten: the checkpoint you saw at tree size ${seen} is not a prefix of the tree of size ${size}; detected `));

    // Looking: audit verify shows both signed checkpoints and the code to acknowledge with.
    const look = await nexus('audit', 'verify');
    expect(look.code).toBe(4);
    expect(look.stdout).toContain(`the checkpoint you saved earlier (tree size ${seen}), signed by the platform:`);
    expect(look.stdout).toContain(`the checkpoint the platform signed now (tree size ${size}):`);
    const code = /nexus audit acknowledge ([0-9a-f]{8})/.exec(look.stdout)?.[1];
    expect(code).toBeDefined();

    const ack = await nexus('audit', 'acknowledge', code!);
    expect(ack.code, ack.stderr).toBe(0);
    expect(ack.stdout).toContain(`From now on the platform's log must extend its checkpoint of tree size ${size}`);
    expect(readdirSync(join(home, 'evidence')).filter((f) => f.endsWith('.note'))).toHaveLength(2);

    const after = await nexus('imvu', 'list');
    expect(after.code, after.stderr).toBe(0);
    expect(after.stdout).toContain('IMVU-001');
  });
});
