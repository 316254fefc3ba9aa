// Private data through the CLI: reads are signed with the chosen identity (RFC 9421), a creator's
// `audit verify` works on a log from which other IMVUs' entries are withheld, and a consent is
// recorded under a pseudonym the subject alone can link to itself.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { RunningServer } from '../../src/api/server.ts';
import type { LedgerEntry } from '../../src/core/types.ts';
import { run, startDaemon, tempDir } from './harness.ts';

let server: RunningServer;
const dirs: string[] = [];
let alice: (...args: string[]) => ReturnType<typeof run>;
let bob: (...args: string[]) => ReturnType<typeof run>;
let nobody: (...args: string[]) => ReturnType<typeof run>;
let aliceHome: string;

beforeAll(async () => {
  const data = tempDir('reads-data');
  aliceHome = tempDir('reads-alice');
  const bobHome = tempDir('reads-bob');
  const emptyHome = tempDir('reads-nobody');
  dirs.push(data, aliceHome, bobHome, emptyHome);
  server = await startDaemon(data);
  alice = (...args) => run(args, { NEXUS_HOME: aliceHome, NEXUS_URL: server.url });
  bob = (...args) => run(args, { NEXUS_HOME: bobHome, NEXUS_URL: server.url });
  nobody = (...args) => run(args, { NEXUS_HOME: emptyHome, NEXUS_URL: server.url });
  for (const [cli, name, imvu] of [
    [alice, 'alice', 'AliceArt'],
    [bob, 'bob', 'BobBooks'],
  ] as const) {
    const id = await cli('identity', 'create', name, '--role', 'creator');
    expect(id.code, id.stderr).toBe(0);
    const c = await cli('imvu', 'create', '--name', imvu, '--owner', name, '--jurisdiction', 'EU-GDPR');
    expect(c.code, c.stderr).toBe(0);
  }
}, 180_000);

afterAll(async () => {
  await server?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('signed reads from the CLI', { timeout: 180_000 }, () => {
  it("without an identity, private data is refused (401, exit 1); with one, only one's own IMVUs are listed", async () => {
    const anon = await nobody('imvu', 'list');
    expect(anon.code).toBe(1);
    expect(anon.stderr).toMatch(/^nexus: denied: this read must be signed by a registered identity/);
    const mine = await alice('imvu', 'list', '--json');
    expect(mine.code, mine.stderr).toBe(0);
    expect((JSON.parse(mine.stdout) as { id: string }[]).map((i) => i.id)).toEqual(['IMVU-001']);
    const other = await bob('imvu', 'show', 'IMVU-001');
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/^nexus: denied: bob is neither the creator nor a member of IMVU-001/);
  });

  it("a creator's audit verify: the tree is checked with the other IMVU's entries withheld, and the replay is left to the whole log", async () => {
    const r = await bob('audit', 'verify', '--json');
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { ok: boolean; withheld: number; readable: number; replayed: boolean; size: number; reader: { name: string } };
    expect(report).toMatchObject({ ok: true, replayed: false, reader: { name: 'bob' } });
    expect(report.withheld).toBeGreaterThan(0);
    expect(report.readable + report.withheld).toBe(report.size);
    // (--full: a second verify would otherwise check only what is new since the first, test/cli/verify-incremental.test.ts.)
    const human = await bob('audit', 'verify', '--full');
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toMatch(/withheld as leaf hashes\): the Merkle root recomputed here from their bytes equals the root the platform signed/);
    expect(human.stdout).toMatch(/Replay through the 17 gates not done: it needs the whole log/);
    // bob's audit log shows alice's entries as withheld leaf hashes only.
    const log = await bob('audit', 'log', '--limit', '1000');
    expect(log.code, log.stderr).toBe(0);
    expect(log.stdout).toMatch(/\(withheld\)\s+-\s+-\s+concerns an IMVU you cannot read; leaf hash [0-9a-f]{16}…/);
    expect(log.stdout).not.toMatch(/AliceArt|imvu001/);
  });

  it('a consent is recorded under a pseudonym: the ledger never names the subject, who still lists its own history', async () => {
    // bob consents to alice's newsletter.
    const rec = await bob('consent', 'record', '--imvu', 'IMVU-001', '--purpose', 'newsletter', '--granted', '--json');
    expect(rec.code, rec.stderr).toBe(0);
    const out = JSON.parse(rec.stdout) as { subject: string; index: number };
    const bobId = (JSON.parse(readFileSync(join(dirs[2]!, 'identities.json'), 'utf8')) as Record<string, string>).bob!;
    expect(out.subject).toMatch(/^nx1/);
    expect(out.subject).not.toBe(bobId);
    // alice, the IMVU's creator, sees the consent entry and the pseudonym, not bob.
    const log = await alice('audit', 'log', '--imvu', 'IMVU-001', '--json', '--limit', '1000');
    expect(log.code, log.stderr).toBe(0);
    const entries = (JSON.parse(log.stdout) as { entries: LedgerEntry[] }).entries;
    const consent = entries.find((e) => e.index === out.index);
    expect(consent?.command.command).toMatchObject({ type: 'consent.record', actor: out.subject, body: { subject: out.subject, purpose: 'newsletter' } });
    expect(log.stdout).not.toContain(bobId);
    const byImvu = await alice('consent', 'list', '--imvu', 'IMVU-001', '--json');
    expect(byImvu.code, byImvu.stderr).toBe(0);
    expect(JSON.parse(byImvu.stdout)).toEqual([expect.objectContaining({ subject: out.subject, purpose: 'newsletter', granted: true })]);
    // bob lists his own history through his pseudonyms; a stranger may not list alice's consents.
    const own = await bob('consent', 'list', '--subject', 'bob', '--json');
    expect(own.code, own.stderr).toBe(0);
    expect(JSON.parse(own.stdout)).toEqual([expect.objectContaining({ imvu: 'IMVU-001', subject: out.subject, purpose: 'newsletter', granted: true })]);
    const revoke = await bob('consent', 'record', '--imvu', 'IMVU-001', '--purpose', 'newsletter', '--revoked');
    expect(revoke.code, revoke.stderr).toBe(0);
    expect(JSON.parse((await bob('consent', 'list', '--subject', 'bob', '--json')).stdout)).toHaveLength(2);
    const denied = await bob('consent', 'list', '--imvu', 'IMVU-001');
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/may read the consents of IMVU-001 only as its creator/);
  });
});
