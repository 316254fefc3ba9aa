// `nexus audit log` as a person reads it, on the built CLI against a real daemon: newest first,
// column headers and aligned columns, the IMVU column filled for every entry about an IMVU (also
// when the body names only a zone, for the creation itself and for follow-ups), a footer that says
// what is not shown with the command that pages to it, and --follow until interrupted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { RunningServer } from '../../src/api/server.ts';
import { BIN, ROOT, run, startDaemon, tempDir } from './harness.ts';

let server: RunningServer;
let dir: string;
let env: Record<string, string>;
const nexus = (...args: string[]) => run(args, env);

interface Row {
  index: number;
  cells: Record<string, string>;
  line: string;
}

const HEADERS = ['INDEX', 'TIME', 'COMMAND', 'ACTOR', 'IMVU', 'DECISION'];

/** Splits the table at the header's column offsets; checks every row is aligned to them. */
function parseTable(stdout: string): { rows: Row[]; footer: string[] } {
  const lines = stdout.split('\n');
  const header = lines[0]!;
  expect(header).toMatch(/^INDEX\s+TIME\s+COMMAND\s+ACTOR\s+IMVU\s+DECISION$/);
  const offsets = HEADERS.map((h) => header.indexOf(h));
  const blank = lines.indexOf('');
  const rows = lines.slice(1, blank).map((line) => {
    const cells: Record<string, string> = {};
    HEADERS.forEach((h, i) => {
      const start = offsets[i]!;
      // Aligned: each column starts right after two spaces (or at the line's start).
      if (i > 0) expect(line.slice(start - 2, start), `${h} in: ${line}`).toBe('  ');
      expect(line[start], `${h} in: ${line}`).not.toBe(' ');
      cells[h] = (i + 1 < HEADERS.length ? line.slice(start, offsets[i + 1]) : line.slice(start)).trim();
    });
    return { index: Number(cells.INDEX!.replace('#', '')), cells, line };
  });
  return { rows, footer: lines.slice(blank + 1).filter(Boolean) };
}

async function ledgerSize(): Promise<number> {
  return ((await (await fetch(`${server.url}/health`)).json()) as { size: number }).size;
}

beforeAll(async () => {
  dir = tempDir('audit-log');
  server = await startDaemon(join(dir, 'data'));
  env = { NEXUS_HOME: join(dir, 'home'), NEXUS_URL: server.url };
  const ok = async (...args: string[]) => {
    const r = await nexus(...args);
    expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
  };
  await ok('identity', 'create', 'alice', '--role', 'creator');
  await ok('identity', 'create', 'bob', '--role', 'creator');
  await ok('imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'EU-GDPR', '--as', 'alice');
  await ok('dns', 'record', 'add', 'imvu001.world', 'www', 'A', '192.0.2.7', '--as', 'alice');
  await ok('dns', 'record', 'add', 'imvu001.world', 'shop', 'A', '192.0.2.8', '--as', 'alice');
  // bob, a stranger, tries alice's zone: denied, recorded, and alice is notified (a follow-up).
  const denied = await nexus('dns', 'record', 'add', 'imvu001.world', 'evil', 'A', '192.0.2.66', '--as', 'bob');
  expect(denied.code, denied.stderr).toBe(1);
}, 180_000);

afterAll(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('nexus audit log', () => {
  it('reads newest first under column headers, aligned, with the IMVU column filled', async () => {
    const size = await ledgerSize();
    const r = await nexus('audit', 'log', '--as', 'alice');
    expect(r.code, r.stderr).toBe(0);
    const { rows, footer } = parseTable(r.stdout);
    expect(rows.map((x) => x.index)).toEqual(Array.from({ length: size }, (_, i) => size - 1 - i));
    const byType = (t: string) => rows.filter((x) => x.cells.COMMAND === t);
    // The creation (its body names no IMVU: the platform numbers it), commands that name only the
    // zone, the refused one among them, and the notice that follows it up.
    expect(byType('imvu.create').map((x) => x.cells.IMVU)).toEqual(['IMVU-001']);
    expect(byType('dns.record.add').map((x) => x.cells.IMVU)).toEqual(['IMVU-001', 'IMVU-001', 'IMVU-001']);
    const refused = byType('dns.record.add').find((x) => x.cells.DECISION?.startsWith('DENIED'));
    expect(refused?.cells.ACTOR).toBe('bob');
    expect(byType('notify.creator').length).toBeGreaterThan(0);
    for (const n of byType('notify.creator')) expect(n.cells.IMVU).toBe('IMVU-001');
    // Entries about no IMVU say so.
    for (const x of byType('identity.register')) expect(x.cells.IMVU).toBe('-');
    expect(byType('identity.register').map((x) => x.cells.ACTOR)).toContain('alice');
    // Everything is shown: the footer says so and how to page and follow.
    expect(footer[0]).toBe(`${size} entries shown, newest first: #${size - 1} to #0 of the ledger's ${size} (#0 to #${size - 1}).`);
    expect(footer.join('\n')).not.toMatch(/not shown/);
    expect(footer.join('\n')).toMatch(/--from N .*--limit N.*--follow/);

    const j = await nexus('audit', 'log', '--as', 'alice', '--json');
    const o = JSON.parse(j.stdout) as { entries: { index: number }[]; summary: { index: number; imvu: string | null; actorName: string | null }[]; size: number; olderFrom: number | null };
    expect(o.entries.map((e) => e.index)).toEqual(rows.map((x) => x.index));
    expect(o.summary.map((e) => e.index)).toEqual(rows.map((x) => x.index));
    expect(o.summary.map((e) => e.imvu ?? '-')).toEqual(rows.map((x) => x.cells.IMVU));
    // The entries stay as stored (their leaf hashes can be checked): the digest is beside them.
    expect(o.entries.every((e) => !('imvu' in e) && !('actorName' in e))).toBe(true);
    expect(o.olderFrom).toBeNull();
  });

  it('pages back with the command the footer names, without gaps or repeats', async () => {
    const size = await ledgerSize();
    const seen: number[] = [];
    let args = ['audit', 'log', '--limit', '3'];
    for (let page = 0; page < 20; page++) {
      const r = await nexus(...args, '--as', 'alice');
      expect(r.code, r.stderr).toBe(0);
      const { rows, footer } = parseTable(r.stdout);
      expect(rows.length).toBeLessThanOrEqual(3);
      seen.push(...rows.map((x) => x.index));
      const older = footer.find((l) => /not shown: nexus audit log/.test(l));
      if (!older) break;
      expect(older).toMatch(new RegExp(`^${rows.at(-1)!.index} older entr(y|ies) \\(#0 to #${rows.at(-1)!.index - 1}\\) not shown: nexus audit log --from ${rows.at(-1)!.index - 1} --limit 3$`));
      args = older.replace(/^.*not shown: nexus /, '').split(' ');
    }
    expect(seen).toEqual(Array.from({ length: size }, (_, i) => size - 1 - i));
  });

  it('--from shows an older page and says which newer entries it did not look at', async () => {
    const size = await ledgerSize();
    const r = await nexus('audit', 'log', '--from', '1', '--as', 'alice');
    expect(r.code, r.stderr).toBe(0);
    const { rows, footer } = parseTable(r.stdout);
    expect(rows.map((x) => x.index)).toEqual([1, 0]);
    expect(footer.join('\n')).toContain(`${size - 2} newer entries (#2 to #${size - 1}) not looked at`);
  });

  it('--imvu pages through the entries about one IMVU', async () => {
    const r = await nexus('audit', 'log', '--imvu', 'IMVU-001', '--limit', '2', '--as', 'alice');
    expect(r.code, r.stderr).toBe(0);
    const { rows, footer } = parseTable(r.stdout);
    expect(rows).toHaveLength(2);
    for (const x of rows) expect(x.cells.IMVU).toBe('IMVU-001');
    const older = footer.find((l) => l.includes('not shown'));
    expect(older).toMatch(new RegExp(`^Older entries about IMVU-001 \\(below #${rows[1]!.index}\\) not shown: nexus audit log --from ${rows[1]!.index - 1} --imvu IMVU-001 --limit 2$`));
  });

  it('--follow keeps printing new entries, aligned, until interrupted', async () => {
    const child = spawn(process.execPath, [BIN, 'audit', 'log', '--follow', '--interval', '0.2', '--limit', '2', '--as', 'alice'], {
      cwd: ROOT,
      env: { ...process.env, ...env, NEXUS_AS: undefined, NEXUS_DATA: undefined },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
    const until = async (what: () => boolean, label: string) => {
      for (let i = 0; i < 600 && !what(); i++) await new Promise((r) => setTimeout(r, 50));
      expect(what(), `${label}\nstdout:\n${out}\nstderr:\n${err}`).toBe(true);
    };
    let next = -1;
    try {
      await until(() => out.includes('Following: new entries appear below'), 'the page and the footer');
      next = await ledgerSize();
      const added = await nexus('dns', 'record', 'add', 'imvu001.world', 'late', 'A', '192.0.2.9', '--as', 'alice');
      expect(added.code, added.stderr).toBe(0);
      await until(() => new RegExp(`^#${next}\\s`, 'm').test(out), 'the new entry');
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
    const { rows } = parseTable(out);
    expect(rows).toHaveLength(2);
    const header = out.split('\n')[0]!;
    const line = out.split('\n').find((l) => l.startsWith(`#${next} `))!;
    // The new row is aligned to the same columns as the page.
    expect(line.slice(header.indexOf('COMMAND')).startsWith('dns.record.add')).toBe(true);
    expect(line.slice(header.indexOf('IMVU')).startsWith('IMVU-001')).toBe(true);
  });
});
