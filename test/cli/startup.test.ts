// The built CLI loads only what a command uses: `--version` and `--help` never load the daemon's
// server (fastify), the store (better-sqlite3), the chokepoint or the zod schemas, and a client
// command loads none of them either. Observed in a real subprocess through a module-resolution hook
// that writes every module it resolves to a file.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { RunningServer } from '../../src/api/server.ts';
import { BIN, run, startDaemon, tempDir } from './harness.ts';

const dir = tempDir('startup');
const hooks = join(dir, 'hooks.mjs');
const register = join(dir, 'register.mjs');
writeFileSync(hooks, `import { appendFileSync } from 'node:fs';
export async function resolve(spec, ctx, next) {
  const r = await next(spec, ctx);
  appendFileSync(process.env.NEXUS_TRACE_FILE, r.url + '\\n');
  return r;
}
`);
writeFileSync(register, `import { register } from 'node:module';\nregister(${JSON.stringify(pathToFileURL(hooks).href)});\n`);

let n = 0;
/** Runs the built CLI with the hook; returns its result and every module URL it resolved. */
async function traced(args: string[], env: Record<string, string | undefined> = {}) {
  const trace = join(dir, `trace-${++n}.txt`);
  writeFileSync(trace, '');
  const r = await run(['--import', pathToFileURL(register).href, BIN, ...args], { ...env, NEXUS_TRACE_FILE: trace }, { cmd: process.execPath });
  return { ...r, modules: readFileSync(trace, 'utf8').split('\n').filter(Boolean) };
}

const HEAVY = [/\/node_modules\/fastify\//, /\/node_modules\/better-sqlite3\//, /\/node_modules\/zod\//, /\/chokepoint\.js$/, /\/core\/store\//, /\/api\/server\.js$/];
const heavyIn = (modules: string[]) => modules.filter((m) => HEAVY.some((re) => re.test(m)));

describe('the built CLI', () => {
  let api: RunningServer;
  beforeAll(async () => {
    api = await startDaemon(join(dir, 'data'));
    const made = await run(['identity', 'create', 'alice', '--role', 'creator'], { NEXUS_URL: api.url, NEXUS_HOME: join(dir, 'home') });
    expect(made.code, made.stderr).toBe(0);
  });
  afterAll(async () => {
    await api?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs compiled JavaScript from dist/: no TypeScript source and no tsx loader', async () => {
    const r = await traced(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    expect(r.modules.some((m) => m.endsWith('/dist/cli/main.js'))).toBe(true);
    expect(r.modules.filter((m) => m.endsWith('.ts') || m.includes('/node_modules/tsx/'))).toEqual([]);
  });

  it('--version and --help load neither the server, the store, the chokepoint nor the schemas', async () => {
    for (const args of [['--version'], ['--help'], ['imvu', 'create', '--help'], ['serve', '--help'], ['status', '--help'], ['stop', '--help']]) {
      const r = await traced(args);
      expect(r.code, args.join(' ')).toBe(0);
      expect(heavyIn(r.modules), args.join(' ')).toEqual([]);
    }
  });

  it('a client command (imvu list against a running daemon) loads none of them either', async () => {
    const r = await traced(['imvu', 'list', '--as', 'alice'], { NEXUS_URL: api.url, NEXUS_HOME: join(dir, 'home') });
    expect(r.code, r.stderr).toBe(0);
    expect(heavyIn(r.modules)).toEqual([]);
  });

  it('nexus status (by URL) loads none of them either', async () => {
    const r = await traced(['status'], { NEXUS_URL: api.url, NEXUS_HOME: join(dir, 'home') });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^daemon +up /m);
    expect(heavyIn(r.modules)).toEqual([]);
  });

  it('an operator command loads what it needs when it runs (init opens the store)', async () => {
    const r = await traced(['init', '--data', join(dir, 'fresh')], { NEXUS_HOME: join(dir, 'home') });
    expect(r.code, r.stderr).toBe(0);
    expect(r.modules.some((m) => /\/node_modules\/better-sqlite3\//.test(m))).toBe(true);
  });
});
