// Receipts through the real CLI against a real daemon: every recorded command's answer carries
// { index, checkpoint, inclusionProof }; the CLI verifies it and keeps it under NEXUS_HOME; the
// receipts survive a daemon restart; and when the operator erases or rewrites an entry somebody
// holds a receipt for, `nexus audit verify` fails naming that entry, even from a NEXUS_HOME whose
// saved checkpoint was removed (the receipt alone suffices).
import { afterAll, describe, expect, it } from 'vitest';
import { cpSync, existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'node:http';
import { loadPrivateKey } from '../../src/core/identity/keys.ts';
import { openCheckpoint } from '../../src/core/ledger/checkpoint.ts';
import { canonicalBytes } from '../../src/core/ledger/canonical.ts';
import { leafHash, verifyInclusion } from '../../src/core/ledger/merkle.ts';
import type { LedgerEntry } from '../../src/core/types.ts';
import type { RunningServer } from '../../src/api/server.ts';
import { run, startDaemon, submitDirect, tempDir } from './harness.ts';

const dirs: string[] = [];
let server: RunningServer | undefined;
afterAll(async () => {
  await server?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function get(url: string): Promise<{ status: number; text: string }> {
  return new Promise((res, rej) => {
    request(url, { agent: false }, (r) => {
      let text = '';
      r.on('data', (d: Buffer) => (text += d.toString()));
      r.on('end', () => res({ status: r.statusCode ?? 0, text }));
    })
      .on('error', rej)
      .end();
  });
}

interface Listed {
  index: number;
  type: string;
  allowed: boolean;
  checkpointSize: number;
  file: string;
  ok: boolean;
}

describe('receipts through the CLI', () => {
  it('are given for every recorded command, kept, survive a restart, and catch an erased or rewritten entry', async () => {
    const data = tempDir('rc-data');
    const old = tempDir('rc-old');
    const home = tempDir('rc-home');
    dirs.push(data, old, home);
    server = await startDaemon(data);
    const { port, url } = server;
    const env = { NEXUS_HOME: home, NEXUS_URL: url };
    const nexus = (...args: string[]) => run(args, env);
    const listed = async () => {
      const r = await nexus('audit', 'receipts', '--json');
      expect(r.code, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { receipts: Listed[] }).receipts;
    };

    expect((await nexus('identity', 'create', 'alice', '--role', 'creator')).code).toBe(0);
    const created = await nexus('imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'EU-GDPR');
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/inclusion in the platform's signed checkpoint \(tree size \d+\) verified; receipt kept/);

    // The operator keeps a copy of the data directory from before the next command.
    await server.close();
    cpSync(data, old, { recursive: true });
    server = await startDaemon(data, port);

    const add = await nexus('dns', 'record', 'add', 'imvu001.world', 'www', 'A', '192.0.2.7');
    expect(add.code, add.stderr).toBe(0);
    const R = Number(/Recorded as ledger entry (\d+)/.exec(add.stdout)?.[1]);
    const platformId = readdirSync(join(home, 'receipts'))[0]!;
    const file = join(home, 'receipts', platformId, `${R}.json`);
    const kept = JSON.parse(readFileSync(file, 'utf8')) as { entry: LedgerEntry; checkpoint: string; leafHash: string };
    expect(kept.entry.command.command.type).toBe('dns.record.add');
    expect(kept.entry.decision.allowed).toBe(true);

    // The answer itself, as any client gets it: the proof checks out with code written here from the RFC.
    const key = loadPrivateKey(join(home, 'keys', 'alice.key'));
    const direct = await submitDirect(url, '/v1/zones/imvu001.world/records', key, 'dns.record.add', { zone: 'imvu001.world', name: 'api', type: 'A', value: '192.0.2.8' });
    expect(direct.status).toBe(201);
    const receipt = direct.body.receipt as { index: number; checkpoint: string; inclusionProof: string[] };
    expect(receipt.index).toBe(direct.body.index);
    const pinned = JSON.parse(readFileSync(join(home, 'platforms.json'), 'utf8'))[url] as { origin: string; publicKey: string };
    const { checkpoint } = openCheckpoint(receipt.checkpoint, [{ name: pinned.origin, publicKeyRaw: Buffer.from(pinned.publicKey, 'base64') }], pinned.origin);
    const entries = await run(['audit', 'log', '--from', String(receipt.index), '--limit', '1', '--json', '--as', 'alice'], env);
    const entry = (JSON.parse(entries.stdout) as { entries: LedgerEntry[] }).entries[0]!;
    expect(verifyInclusion(leafHash(canonicalBytes(entry)), receipt.index, checkpoint.size, receipt.inclusionProof.map((h) => Buffer.from(h, 'hex')), checkpoint.rootHash)).toBe(true);
    // GET /v1/ledger/checkpoints/:size serves that very checkpoint; 404 for a size never saved.
    expect(await get(`${url}/v1/ledger/checkpoints/${checkpoint.size}`)).toEqual({ status: 200, text: receipt.checkpoint });
    expect((await get(`${url}/v1/ledger/checkpoints/999999999`)).status).toBe(404);

    // A refused command is recorded, and its receipt is kept too (exit 1).
    expect((await nexus('identity', 'create', 'ops', '--role', 'admin', '--data', data)).code).toBe(0);
    const scale = await nexus('imvu', 'scale', 'IMVU-001', '--cpu', '1', '--as', 'ops');
    expect(scale.code).toBe(1);
    const D = Number(/recorded as ledger entry (\d+)/.exec(scale.stderr)?.[1]);
    const afterScale = await listed();
    expect(afterScale.find((r) => r.index === D)).toMatchObject({ type: 'imvu.scale', allowed: false, ok: true });
    expect(afterScale.every((r) => r.ok)).toBe(true);
    expect(afterScale.map((r) => r.type)).toEqual(['identity.register', 'imvu.create', 'dns.record.add', 'identity.register', 'imvu.scale']);
    // imvu.create committed with its follow-ups (keys, notices): its receipt's checkpoint is the batch's,
    // and no checkpoint was saved at the size that ends with the creation entry itself.
    const creation = afterScale[1]!;
    expect(creation.checkpointSize).toBeGreaterThan(creation.index + 1);
    expect((await get(`${url}/v1/ledger/checkpoints/${creation.index + 1}`)).status).toBe(404);
    const help = await nexus('audit', 'receipts', '--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('list the receipts kept under NEXUS_HOME');

    // A restart changes nothing: every receipt is still in the log.
    await server.close();
    server = await startDaemon(data, port);
    const after = await nexus('audit', 'verify');
    expect(after.code, after.stderr).toBe(0);
    expect(after.stdout).toContain('✅ 5 kept receipts: every entry is still in the log');

    // Erasure: the operator puts the old copy back, and every entry from R on is gone.
    await server.close();
    rmSync(data, { recursive: true, force: true });
    cpSync(old, data, { recursive: true });
    server = await startDaemon(data, port);
    const erased = await nexus('audit', 'verify');
    expect(erased.code).toBe(4);
    expect(erased.stdout).toContain('entries were removed'); // the saved checkpoint's alarm
    expect(erased.stdout).toMatch(new RegExp(`✗ ledger entry ${R} \\(receipt: dns\\.record\\.add signed by nx1[a-z2-7]+, allowed at [^;]+; the platform's signed checkpoint of tree size ${R + 1} includes it\\): the log now has \\d+ entries, fewer than the ${R + 1} of the receipt's checkpoint: entries were removed, this one among them`));
    expect(erased.stderr).toMatch(new RegExp(`^nexus: ledger entry ${R} \\(receipt: dns\\.record\\.add`));

    // A NEXUS_HOME that lost its saved checkpoint (and its alarm): the receipts alone still tell.
    rmSync(join(home, 'checkpoints'), { recursive: true, force: true });
    rmSync(join(home, 'alarms'), { recursive: true, force: true });
    const alone = await nexus('audit', 'verify', '--json');
    expect(alone.code).toBe(4);
    // With --json a failure prints one error object: the report's fields beside error and code.
    const report = JSON.parse(alone.stdout) as { code: number; error: string; ok: boolean; receipts: { index: number; ok: boolean; problem?: string }[] };
    expect(report).toMatchObject({ code: 4, error: expect.stringMatching(new RegExp(`^ledger entry ${R} `)) });
    expect(report.ok).toBe(false);
    expect(report.receipts.filter((r) => !r.ok).map((r) => r.index)).toEqual([R, afterScale[3]!.index, D]);
    expect(report.receipts.filter((r) => r.ok).map((r) => r.index)).toEqual([afterScale[0]!.index, afterScale[1]!.index]);
    expect(alone.stderr).toMatch(new RegExp(`^nexus: ledger entry ${R} \\(receipt: dns\\.record\\.add.*this one among them; the receipt is kept as evidence in ${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(and 2 more receipts\\)\\n$`));
    expect(existsSync(file)).toBe(true);

    // Rewrite: a different history grows past every receipt's checkpoint; entry R is now another command.
    const biggest = Math.max(...afterScale.map((r) => r.checkpointSize));
    for (let i = 0; (await fetch(`${url}/health`).then((r) => r.json() as Promise<{ size: number }>)).size <= biggest; i++) {
      const r = await submitDirect(url, '/v1/zones/imvu001.world/records', key, 'dns.record.add', { zone: 'imvu001.world', name: `n${i}`, type: 'A', value: '198.51.100.1' });
      expect(r.status).toBe(201);
    }
    const rewritten = await nexus('audit', 'verify');
    expect(rewritten.code).toBe(4);
    expect(rewritten.stdout).toMatch(new RegExp(`✗ ledger entry ${R} \\(receipt: dns\\.record\\.add[^)]*\\): the current tree \\(size \\d+\\) does not extend the receipt's checkpoint \\(size ${R + 1}\\): the log was rewritten; ledger entry ${R} is no longer the entry the receipt proves`));
    expect(rewritten.stderr).toMatch(new RegExp(`^nexus: ledger entry ${R} `));
    // The receipts are evidence: nothing was deleted or overwritten.
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual(kept);
  }, 600_000);
});
