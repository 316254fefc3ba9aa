// Receipts are upgraded with the witness cosignatures their checkpoint gains after the command: a
// command's receipt comes back with the platform's signature only (the witnesses cosign after the
// batch commits); once two `nexus witness serve` processes have cosigned that checkpoint,
// `nexus audit verify` (and `nexus audit receipts`) fetch it once per checkpoint size, keep the
// cosignatures that verify against the creator's witness policy (or, with no policy, every
// well-formed one, marked unverified) and rewrite the receipt file. With `witnesses require 2` and a
// witness down, `nexus audit watch` fails (exit 4) naming the missing witness.
import { afterAll, describe, expect, it } from 'vitest';
import { cpSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { initDataDir } from '../../src/core/platform.ts';
import { openCheckpoint } from '../../src/core/ledger/checkpoint.ts';
import { verifyCosignature } from '../../src/core/witness/cosignature.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { run, tempDir, type Run } from '../cli/harness.ts';
import { cosignatureLines, platformPublicKey, startWitnesses, waitFor, type TestWitness } from '../support/witnesses.ts';

const cleanup: (() => void)[] = [];
let server: RunningServer | undefined;
afterAll(async () => {
  await server?.close();
  for (const c of cleanup.reverse()) c();
});

interface Listed {
  index: number;
  type: string;
  checkpointSize: number;
  cosignatures: number;
  cosigners: string[];
  unverifiedCosignatures: number;
  ok: boolean;
}

interface Kept {
  index: number;
  checkpoint: string;
}

function ok(r: Run): Run {
  expect(r.code, r.stderr + r.stdout).toBe(0);
  return r;
}

/** How many GET /v1/ledger/checkpoints/:size the daemon answered so far (its own request metric). */
async function checkpointGets(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^nexus_http_request_duration_seconds_count\{([^}]*)\} (\d+)$/gm))
    if (m[1]!.includes('route="/v1/ledger/checkpoints/:size"') && m[1]!.includes('method="GET"')) n += Number(m[2]);
  return n;
}

describe('receipt upgrade with witness cosignatures', () => {
  it('a receipt without cosignatures is upgraded once its checkpoint is cosigned, to the creator policy, cheaply', { timeout: 240_000 }, async () => {
    const data = tempDir('ru-data');
    const home = tempDir('ru-home');
    const bare = tempDir('ru-bare');
    cleanup.push(...[data, home, bare].map((d) => () => rmSync(d, { recursive: true, force: true })));
    const p = await initDataDir(data);
    const origin = p.config.origin;
    const platformKey = platformPublicKey(p);
    const ws: TestWitness[] = await startWitnesses(p, 2, cleanup);
    await p.close();
    server = await startServer({
      dataDir: data,
      host: '127.0.0.1',
      port: 0,
      logger: false,
      witnesses: { endpoints: ws.map((w) => ({ url: w.proc.url, vkey: w.vkey })), timeoutMs: 2_000, minIntervalMs: 10, backoffMs: 100 },
    });
    const { url } = server;
    const env = { NEXUS_HOME: home, NEXUS_URL: url, NEXUS_WITNESS_WAIT_MS: '30000' };
    const nexus = (...args: string[]) => run(args, env);
    const listed = async (h = home) => (JSON.parse(ok(await run(['audit', 'receipts', '--json'], { ...env, NEXUS_HOME: h })).stdout) as { receipts: Listed[] }).receipts;

    ok(await nexus('identity', 'create', 'alice', '--role', 'creator'));
    ok(await nexus('imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'EU-GDPR'));
    const platformId = readdirSync(join(home, 'receipts'))[0]!;
    const dir = join(home, 'receipts', platformId);
    const kept = (index: number, h = home) => JSON.parse(readFileSync(join(h, 'receipts', platformId, `${index}.json`), 'utf8')) as Kept;
    const files = readdirSync(dir).map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Kept);
    // As the command answered: the platform's signature only.
    expect(files.map((f) => cosignatureLines(f.checkpoint))).toEqual([[], []]);
    const creation = files.sort((a, b) => a.index - b.index)[1]!;
    const size = openCheckpoint(creation.checkpoint, [{ name: origin, publicKeyRaw: platformKey }], origin).checkpoint.size;
    // The batch of the creation is the newest: both witnesses cosign it.
    await waitFor('both cosignatures on the checkpoint of the receipt', async () => {
      const r = await fetch(`${url}/v1/ledger/checkpoints/${size}`);
      return cosignatureLines(await r.text()).length === 2;
    });
    // A copy of this NEXUS_HOME with no witness policy, for later.
    cpSync(home, bare, { recursive: true });

    // The creator's policy names w1 only: the upgrade keeps w1's cosignature and nothing else.
    ok(await nexus('audit', 'witnesses', 'add', 'w1', ws[0]!.vkey));
    ok(await nexus('audit', 'witnesses', 'require', '1'));
    const before = await checkpointGets(url);
    const verify = ok(await nexus('audit', 'verify'));
    expect(verify.stdout).toMatch(new RegExp(`upgraded with the witness cosignatures .*entry ${creation.index} \\(\\+1\\)`));
    // One request per distinct checkpoint size among the receipts not yet cosigned (two receipts, at most two sizes).
    const sizes = new Set(files.map((f) => openCheckpoint(f.checkpoint, [{ name: origin, publicKeyRaw: platformKey }], origin).checkpoint.size));
    expect((await checkpointGets(url)) - before).toBe(sizes.size);
    const once = kept(creation.index);
    expect(cosignatureLines(once.checkpoint)).toHaveLength(1);
    expect(verifyCosignature(once.checkpoint, cosignatureLines(once.checkpoint)[0]!, ws[0]!.vkey).valid).toBe(true);
    // The rest of the file is untouched, and the platform signature still verifies.
    expect(once.checkpoint.startsWith(creation.checkpoint)).toBe(true);
    expect(openCheckpoint(once.checkpoint, [{ name: origin, publicKeyRaw: platformKey }], origin).checkpoint.size).toBe(size);
    const row = (await listed()).find((r) => r.index === creation.index)!;
    expect(row).toMatchObject({ cosignatures: 1, cosigners: ['w1'], unverifiedCosignatures: 0, ok: true });
    // A receipt cosigned to the policy is not asked for again.
    const afterList = await checkpointGets(url);
    await listed();
    const identityCosigned = cosignatureLines(kept(files[0]!.index).checkpoint).length > 0;
    expect((await checkpointGets(url)) - afterList).toBe(identityCosigned ? 0 : 1);
    const human = ok(await nexus('audit', 'receipts'));
    expect(human.stdout).toMatch(/COSIGNATURES/);
    expect(human.stdout).toMatch(/1 \(w1\)/);

    // The policy now requires both witnesses: `audit verify` adds w2's cosignature to the same file.
    ok(await nexus('audit', 'witnesses', 'add', 'w2', ws[1]!.vkey));
    ok(await nexus('audit', 'witnesses', 'require', '2'));
    ok(await nexus('audit', 'verify'));
    const twice = kept(creation.index);
    const lines = cosignatureLines(twice.checkpoint);
    expect(lines).toHaveLength(2);
    expect(ws.map((w) => lines.filter((l) => verifyCosignature(twice.checkpoint, l, w.vkey).valid).length)).toEqual([1, 1]);
    expect((await listed()).find((r) => r.index === creation.index)).toMatchObject({ cosignatures: 2, cosigners: ['w1', 'w2'] });

    // With no witness policy, `audit receipts` keeps every well-formed cosignature, marked unverified.
    const unverified = (await listed(bare)).find((r) => r.index === creation.index)!;
    expect(unverified).toMatchObject({ cosignatures: 2, cosigners: [], unverifiedCosignatures: 2, ok: true });
    expect(cosignatureLines(kept(creation.index, bare).checkpoint).sort()).toEqual([...lines].sort());
    expect(ok(await run(['audit', 'receipts'], { ...env, NEXUS_HOME: bare })).stdout).toMatch(/2, not verified \(no witness policy\)/);

    // Witness 2 goes down. A new command's receipt is upgraded only partly (w1), and a watch round
    // under `require 2` fails with exit 4, naming w2.
    await ws[1]!.proc.stop('SIGKILL');
    const add = ok(await nexus('dns', 'record', 'add', 'imvu001.world', 'www', 'A', '192.0.2.7'));
    const R = Number(/Recorded as ledger entry (\d+)/.exec(add.stdout)?.[1]);
    expect(cosignatureLines(kept(R).checkpoint)).toEqual([]);
    const newest = openCheckpoint(kept(R).checkpoint, [{ name: origin, publicKeyRaw: platformKey }], origin).checkpoint.size;
    await waitFor('w1 cosigns the new checkpoint', async () => cosignatureLines(await (await fetch(`${url}/v1/ledger/checkpoints/${newest}`)).text()).length === 1);
    expect((await listed()).find((r) => r.index === R)).toMatchObject({ cosignatures: 1, cosigners: ['w1'] });
    const watch = await run(['audit', 'watch', '--once'], { ...env, NEXUS_WITNESS_WAIT_MS: '300' });
    expect(watch.code, watch.stdout + watch.stderr).toBe(4);
    expect(watch.stderr).toMatch(/has 1 of the 2 witness cosignatures your policy requires; missing: w2 \(witness\.test\/w2\)/);
  });
});
