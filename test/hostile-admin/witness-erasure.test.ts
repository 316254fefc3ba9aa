// The erasure attack against a creator with a witness policy (K=2 of two witness processes): the
// operator rolls the data directory back to an earlier copy (every entry after it is gone), and
// goes on with a new history signed with the platform key. The witnesses cosigned the longer tree,
// so they refuse the rewritten one; the daemon can serve it only without cosignatures, and the
// creator's CLI fails with exit 4 naming both missing witnesses, whether it saved a checkpoint
// before or starts from a fresh NEXUS_HOME. Nothing is saved as trusted.
import { afterAll, describe, expect, it } from 'vitest';
import { cpSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadPrivateKey } from '../../src/core/identity/keys.ts';
import { initDataDir } from '../../src/core/platform.ts';
import { parseCheckpoint, splitNote } from '../../src/core/ledger/checkpoint.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import type { WitnessStatus } from '../../src/core/witness/collector.ts';
import { run, submitDirect, tempDir } from '../cli/harness.ts';
import { cosignatureLines, startWitnesses, waitFor, type TestWitness } from '../support/witnesses.ts';

const cleanup: (() => void)[] = [];
let server: RunningServer | undefined;
afterAll(async () => {
  await server?.close();
  for (const c of cleanup.reverse()) c();
});

const sizeOf = (note: string) => parseCheckpoint(splitNote(note).text).size;

describe('erasure of entries after a saved checkpoint, with a 2-of-2 witness policy', () => {
  it('is refused by the witnesses and detected by the creator (saved checkpoint or fresh home)', { timeout: 240_000 }, async () => {
    const data = tempDir('er-data');
    const old = tempDir('er-old');
    const home = tempDir('er-home');
    const fresh = tempDir('er-fresh');
    for (const d of [data, old, home, fresh]) cleanup.push(() => rmSync(d, { recursive: true, force: true }));
    const p = await initDataDir(data);
    const ws: TestWitness[] = await startWitnesses(p, 2, cleanup);
    await p.close();
    const start = (dir: string, port = 0) =>
      startServer({
        dataDir: dir,
        host: '127.0.0.1',
        port,
        logger: false,
        witnesses: { endpoints: ws.map((w) => ({ url: w.proc.url, vkey: w.vkey })), timeoutMs: 2_000, minIntervalMs: 10, backoffMs: 100 },
      });
    server = await start(data);
    const { url, port } = server;
    const as = (h: string) => (...args: string[]) => run(args, { NEXUS_HOME: h, NEXUS_URL: url, NEXUS_WITNESS_WAIT_MS: '1500' });
    const alice = as(home);
    const bob = as(fresh);

    // alice trusts a checkpoint only if both witnesses cosigned it.
    for (const [i, w] of ws.entries()) expect((await alice('audit', 'witnesses', 'add', `w${i + 1}`, w.vkey)).code).toBe(0);
    const req = await alice('audit', 'witnesses', 'require', '2');
    expect(req.code, req.stderr).toBe(0);
    expect(req.stdout).toContain('at least 2 of these 2 witnesses');
    expect((await alice('identity', 'create', 'alice', '--role', 'creator')).code).toBe(0);
    const created = await alice('imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'EU-GDPR');
    expect(created.code, created.stderr).toBe(0);

    // The operator keeps a copy; the log grows, both witnesses cosign it, alice saves it.
    await server.close();
    cpSync(data, old, { recursive: true });
    server = await start(data, port);
    const add = await alice('dns', 'record', 'add', 'imvu001.world', 'www', 'A', '192.0.2.7');
    expect(add.code, add.stderr).toBe(0);
    const platformId = JSON.parse(readFileSync(join(home, 'platforms.json'), 'utf8'))[url].id as string;
    const savedFile = join(home, 'checkpoints', `${platformId}.note`);
    const saved = readFileSync(savedFile, 'utf8');
    expect(cosignatureLines(saved)).toHaveLength(2);
    const seen = sizeOf(saved);

    // Erasure: back to the copy (every entry after it gone) and a new history, checkpoints re-signed.
    await server.close();
    server = await start(old, port);
    const key = loadPrivateKey(join(home, 'keys', 'alice.key'));
    for (const value of ['198.51.100.1', '198.51.100.2', '198.51.100.3']) {
      const r = await submitDirect(url, '/v1/zones/imvu001.world/records', key, 'dns.record.add', { zone: 'imvu001.world', name: 'www', type: 'A', value });
      expect(r.status).toBe(201);
    }
    const rewritten = (await server.store.latestCheckpoint())!.size;

    // Both witnesses refuse the rewritten tree (they cosigned size `seen` of the other history).
    const health = await waitFor('both witnesses to refuse', async () => {
      const h = (await (await fetch(`${url}/health`)).json()) as { witnesses: WitnessStatus[] };
      return h.witnesses.every((w) => w.lastError && w.lastError.kind !== 'unreachable') ? h : undefined;
    });
    for (const w of health.witnesses) {
      expect(['conflict', 'unprocessable', 'behind']).toContain(w.lastError!.kind);
      expect(w.lagging).toBe(true);
      expect(w.cosignedSize).toBeLessThan(rewritten);
    }
    const served = await (await fetch(`${url}/v1/ledger/checkpoint`)).text();
    expect(sizeOf(served)).toBe(rewritten);
    expect(cosignatureLines(served)).toHaveLength(0);

    // alice, who saved the longer tree: every command fails, naming both witnesses; her checkpoint stays.
    const policyError = new RegExp(
      `^nexus: the platform's checkpoint of tree size ${rewritten} has 0 of the 2 witness cosignatures your policy requires; missing: w1 \\(witness\\.test/w1\\), w2 \\(witness\\.test/w2\\)\\. ` +
        'The witnesses may be unreachable, or they refused this tree \\(a rewritten log\\); it was not saved as trusted',
    );
    const list = await alice('imvu', 'list');
    expect(list.code).toBe(4);
    expect(list.stderr).toMatch(policyError);
    const verify = await alice('audit', 'verify');
    expect(verify.code).toBe(4);
    expect(verify.stderr).toMatch(policyError);
    expect(readFileSync(savedFile, 'utf8')).toBe(saved);
    expect(seen).toBeGreaterThan(0);

    // bob never saved anything: the witnesses saw the longer tree, so he is not fooled either.
    for (const [i, w] of ws.entries()) expect((await bob('audit', 'witnesses', 'add', `w${i + 1}`, w.vkey)).code).toBe(0);
    expect((await bob('audit', 'witnesses', 'require', '2')).code).toBe(0);
    const bobVerify = await bob('audit', 'verify');
    expect(bobVerify.code).toBe(4);
    expect(bobVerify.stderr).toMatch(policyError);
    expect(existsSync(join(fresh, 'checkpoints'))).toBe(false);

    // Without the policy the same fresh home trusts (and saves) the rewritten tree: the policy is what detects it.
    expect((await bob('audit', 'witnesses', 'require', '0')).code).toBe(0);
    const trusting = await bob('audit', 'verify');
    expect(trusting.stderr).not.toMatch(/witness cosignatures/);
    const bobId = JSON.parse(readFileSync(join(fresh, 'platforms.json'), 'utf8'))[url].id as string;
    expect(sizeOf(readFileSync(join(fresh, 'checkpoints', `${bobId}.note`), 'utf8'))).toBe(rewritten);
  });
});
