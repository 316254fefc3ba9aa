// Errors a script can use, observed on the built CLI run as a subprocess against a real daemon:
// --json prints one error object on stdout for every failure, usage errors are caught before
// anything is signed (the ledger does not grow), "not found" has its own exit code, required
// options are marked in --help and an unknown flag is named even when a required one is missing,
// gate 0 is listed and explained.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { RunningServer } from '../../src/api/server.ts';
import { buildProgram, leafCommands } from '../../src/cli/program.ts';
import { EXIT } from '../../src/cli/errors.ts';
import { JURISDICTIONS } from '../../src/core/policy/vocabulary.ts';
import { run, startDaemon, tempDir, type Run } from './harness.ts';

let server: RunningServer;
let dir: string;
let env: Record<string, string>;
const nexus = (...args: string[]) => run(args, env);

async function ledgerSize(): Promise<number> {
  return ((await (await fetch(`${server.url}/health`)).json()) as { size: number }).size;
}

/** The one JSON object a failure prints with --json; its code is the exit code. */
function failure(r: Run, only = true): { error: string; code: number; index: number | null; gates: unknown[] | null } {
  const lines = r.stdout.trim().split('\n');
  expect(lines, r.stdout).toHaveLength(1);
  const o = JSON.parse(lines[0]!) as { error: string; code: number; index: number | null; gates: unknown[] | null };
  if (only) expect(Object.keys(o).sort()).toEqual(['code', 'error', 'gates', 'index']);
  else expect(Object.keys(o)).toEqual(expect.arrayContaining(['code', 'error', 'gates', 'index']));
  expect(typeof o.error).toBe('string');
  expect(o.error.length).toBeGreaterThan(0);
  expect(o.code).toBe(r.code);
  expect(o.index === null || Number.isSafeInteger(o.index)).toBe(true);
  expect(o.gates === null || Array.isArray(o.gates)).toBe(true);
  return o;
}

beforeAll(async () => {
  dir = tempDir('errors');
  server = await startDaemon(join(dir, 'data'));
  env = { NEXUS_HOME: join(dir, 'home'), NEXUS_URL: server.url };
  for (const [name, role] of [
    ['alice', 'creator'],
    ['mallory', 'creator'],
  ] as const) {
    const r = await nexus('identity', 'create', name, '--role', role);
    expect(r.code, r.stderr).toBe(0);
  }
  const r = await nexus('imvu', 'create', '--name', 'Shop', '--owner', 'alice', '--jurisdiction', 'EU-GDPR', '--as', 'alice');
  expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('--json failures', () => {
  const leaves = leafCommands(buildProgram());

  it('the command tree has its leaves', () => {
    expect(leaves.length).toBeGreaterThan(40);
    expect(leaves.map((l) => l.path.join(' '))).toEqual(expect.arrayContaining(['imvu create', 'dns export', 'audit log', 'audit witnesses add', 'witness serve', 'gates']));
  });

  it('every leaf command, given an unknown flag or too many arguments, prints one error object and exits 2', async () => {
    const check = async (path: string[]) => {
      const unknownFlag = await nexus(...path, '--json', '--no-such-flag');
      expect(unknownFlag.code, `${path.join(' ')}: ${unknownFlag.stderr}`).toBe(EXIT.usage);
      expect(failure(unknownFlag).error, path.join(' ')).toMatch(/unknown option '--no-such-flag'/);
      const extra = await nexus(...path, 'x1', 'x2', 'x3', 'x4', 'x5', 'x6', '--json');
      expect(extra.code, `${path.join(' ')}: ${extra.stderr}`).toBe(EXIT.usage);
      failure(extra);
    };
    // Two at a time: the machine is shared.
    for (let i = 0; i < leaves.length; i += 2) await Promise.all(leaves.slice(i, i + 2).map((l) => check(l.path)));
  }, 600_000);

  it('a daemon that cannot be reached: 3, as an object', async () => {
    const r = await run(['imvu', 'list', '--json'], { ...env, NEXUS_URL: 'http://127.0.0.1:9' });
    expect(r.code).toBe(EXIT.unreachable);
    expect(failure(r).error).toMatch(/cannot reach the daemon/);
  });

  it('a refusal recorded in the ledger carries its entry index and the gates', async () => {
    const before = await ledgerSize();
    const r = await nexus('imvu', 'suspend', 'IMVU-001', '--reason', 'mine now', '--as', 'mallory', '--json');
    expect(r.code, r.stderr).toBe(EXIT.denied);
    const o = failure(r);
    expect(o.index).toBeGreaterThanOrEqual(before);
    expect(o.gates).toEqual(expect.arrayContaining([expect.objectContaining({ status: 'deny' })]));
  });

  it('a failure after output prints one object: the error, and what the command found (a list in details, an object beside)', async () => {
    // Every gate is enforced now, so a daemon that reports one as not yet enforced makes --strict fail after its output.
    const real = (await fetch(`${server.url}/v1/gates`).then((x) => x.json())) as { gates?: { number: number; status: string }[] } | { number: number; status: string }[];
    const list = Array.isArray(real) ? real : real.gates!;
    const pending = list.map((g) => (g.number === 16 ? { ...g, status: 'not-yet-enforced', reason: 'test' } : g));
    // A proxy to the real daemon that changes only /v1/gates.
    const fake = createServer((req, res) => {
      if (req.url === '/v1/gates') {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(Array.isArray(real) ? pending : { ...real, gates: pending }));
        return;
      }
      void fetch(`${server.url}${req.url}`, { headers: Object.fromEntries(Object.entries(req.headers).filter(([k, v]) => typeof v === 'string' && !['host', 'connection'].includes(k)) as [string, string][]) }).then(async (up) => {
        res.statusCode = up.status;
        res.setHeader('content-type', up.headers.get('content-type') ?? 'application/json');
        res.end(Buffer.from(await up.arrayBuffer()));
      });
    });
    await new Promise<void>((ok) => fake.listen(0, '127.0.0.1', ok));
    const r = await run(['gates', '--strict', '--json'], { ...env, NEXUS_URL: `http://127.0.0.1:${(fake.address() as AddressInfo).port}` }).finally(() => fake.close());
    expect(r.code, r.stdout + r.stderr).toBe(EXIT.verification);
    expect((await nexus('gates', '--strict', '--json')).code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const o = JSON.parse(lines[0]!) as { code: number; error: string; details: { number: number }[] };
    expect(o.code).toBe(EXIT.verification);
    expect(o.details.map((g) => g.number)).toContain(17);
    const down = await run(['status', '--json'], { ...env, NEXUS_URL: 'http://127.0.0.1:9' });
    expect(down.code).toBe(EXIT.unreachable);
    const s = failure(down, false) as unknown as { error: string; up: boolean; reason: string };
    expect(s).toMatchObject({ up: false, error: s.reason });
    expect(s.error).toMatch(/connection refused/);
  });

  it('success output honours --json too: dns export gives the zone file in a field', async () => {
    const r = await nexus('dns', 'export', 'imvu001.world', '--json', '--as', 'alice');
    expect(r.code, r.stderr).toBe(0);
    const o = JSON.parse(r.stdout) as { zone: string; text: string };
    expect(o.zone).toBe('imvu001.world');
    expect(o.text).toMatch(/\bSOA\b/);
    const plain = await nexus('dns', 'export', 'imvu001.world', '--as', 'alice');
    expect(() => JSON.parse(plain.stdout)).toThrow();
  });
});

describe('usage errors are caught before signing: exit 2, the ledger unchanged', () => {
  const cases: [string, string[], RegExp][] = [
    ['a malformed IPv4 address', ['dns', 'record', 'add', 'imvu001.world', 'www', 'A', '999.1.2.3'], /not a valid A record value/],
    ['a malformed IPv6 address', ['dns', 'record', 'add', 'imvu001.world', 'www', 'AAAA', '2001:::1'], /not a valid AAAA record value/],
    ['an MX without its preference', ['dns', 'record', 'add', 'imvu001.world', '@', 'MX', 'mail.imvu001.world.'], /not a valid MX record value/],
    ['a record name with a space', ['dns', 'record', 'add', 'imvu001.world', 'a b', 'A', '192.0.2.1'], /'a b'/],
    ['an IMVU name with a space', ['imvu', 'create', '--name', 'my shop', '--owner', 'alice', '--jurisdiction', 'EU-GDPR'], /no spaces/],
    ['a lower-case jurisdiction code', ['imvu', 'create', '--name', 'Other', '--owner', 'alice', '--jurisdiction', 'eu-gdpr'], /did you mean 'EU-GDPR'/],
    ['an unknown jurisdiction code', ['imvu', 'create', '--name', 'Other', '--owner', 'alice', '--jurisdiction', 'XX-NONE'], /expected one of US-CCPA/],
    ['a misspelt flag while a required one is missing', ['imvu', 'create', '--name', 'Other', '--owner', 'alice', '--jurisdicton', 'EU-GDPR'], /unknown option '--jurisdicton'/],
    ['an unknown flag and a missing required flag', ['imvu', 'suspend', 'IMVU-001', '--bogus'], /unknown option '--bogus'/],
    ['a mailbox address with a space', ['mail', 'mailbox', 'add', 'IMVU-001', 'in fo'], /not a mailbox address/],
    ['an empty reason', ['imvu', 'suspend', 'IMVU-001', '--reason', ' '], /--reason/],
  ];
  for (const [what, args, message] of cases)
    it(what, async () => {
      const before = await ledgerSize();
      const r = await nexus(...args, '--as', 'alice');
      expect(r.code, r.stderr).toBe(EXIT.usage);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toMatch(/^nexus: [^\n]+\n$/);
      const j = await nexus(...args, '--as', 'alice', '--json');
      expect(failure(j).error).toMatch(message);
      expect(await ledgerSize()).toBe(before);
    });

  it('a missing required flag alone is still named', async () => {
    const r = await nexus('imvu', 'create', '--name', 'Other', '--owner', 'alice');
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toMatch(/required option '--jurisdiction <code>' not specified/);
  });
});

describe('not found has its own exit code', () => {
  // (A read of an IMVU the reader may not read answers as one that does not exist, 403: exit 1, so
  // that nobody learns which IMVUs exist; a signed command naming one is recorded, below.)
  it('an unknown zone, identity, alarm or data directory: 7', async () => {
    for (const args of [
      ['dns', 'record', 'list', 'nothing.world'],
      ['dns', 'export', 'nothing.world'],
      ['identity', 'show', 'nobody'],
      ['member', 'add', 'IMVU-001', 'nobody'],
      ['audit', 'acknowledge', 'deadbeef'],
      ['audit', 'verify', '--data', join(dir, 'no-such-dir')],
    ]) {
      const r = await nexus(...args, '--as', 'alice');
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(EXIT.notFound);
      expect(failure(await nexus(...args, '--as', 'alice', '--json')).code).toBe(EXIT.notFound);
    }
  });

  it('a signed command naming an unknown IMVU is recorded (gate 0) and exits 7 with its index', async () => {
    const before = await ledgerSize();
    const r = await nexus('imvu', 'resume', 'IMVU-999', '--as', 'alice', '--json');
    expect(r.code, r.stderr).toBe(EXIT.notFound);
    const o = failure(r);
    expect(o.error).toMatch(/not found: .*IMVU-999/);
    expect(o.index).toBe(before);
    expect(o.gates).toEqual(expect.arrayContaining([expect.objectContaining({ gate: 0, status: 'deny' })]));
  });

  it('is documented in --help', async () => {
    const r = await nexus('--help');
    expect(r.stdout).toMatch(/7 not found/);
    expect(r.stdout).toMatch(/"error": "\.\.\.", "code": <exit code>, "index"/);
  });
});

describe('help and gates', () => {
  it('required options are marked, and imvu create lists every jurisdiction code', async () => {
    const r = await nexus('imvu', 'create', '--help');
    expect(r.code).toBe(0);
    for (const flag of ['--name', '--owner', '--jurisdiction']) expect(r.stdout).toMatch(new RegExp(`${flag} <[^>]+>[\\s\\S]*?\\(required\\)`));
    expect(r.stdout).not.toMatch(/--cpu <cores>\s+CPU cores \(required\)/);
    for (const code of JURISDICTIONS) expect(r.stdout).toContain(code);
    const suspend = await nexus('imvu', 'suspend', '--help');
    expect(suspend.stdout).toMatch(/--reason <text>[\s\S]*\(required\)/);
    const role = await nexus('identity', 'create', '--help');
    expect(role.stdout).toMatch(/--role <role>[\s\S]*\(required\)/);
  });

  it('nexus gates lists gate 0 (schema and preconditions) and explains it', async () => {
    const j = await nexus('gates', '--json');
    expect(j.code, j.stderr).toBe(0);
    const gates = JSON.parse(j.stdout) as { number: number; name: string; status: string }[];
    expect(gates[0]).toMatchObject({ number: 0, name: 'Schema and preconditions', status: 'enforced' });
    const h = await nexus('gates');
    expect(h.stdout).toMatch(/^0\s+Schema and preconditions\s+✅ enforced/m);
    const help = await nexus('gates', '--help');
    expect(help.stdout).toMatch(/gate 0/i);
    expect(help.stdout).toMatch(/schema/);
  });
});
