// Shell completion and the man page, generated from the command definitions, as a user loads
// them: the built CLI prints them (no daemon needed); bash loads the script and completes; `man -l`
// renders the page. zsh and fish are checked for syntax where they are installed.
import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { run, tempDir } from './harness.ts';

const dir = tempDir('completion');
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const env = { NEXUS_HOME: join(dir, 'home'), NEXUS_URL: 'http://127.0.0.1:9' };
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

/** What the loaded bash script completes for the words typed so far (the last one being completed). */
function bashComplete(script: string, words: string[]): string[] {
  const file = join(dir, 'nexus.bash');
  writeFileSync(file, script);
  const arr = words.map((w) => `'${w}'`).join(' ');
  const out = execFileSync('bash', ['-c', `source '${file}'; COMP_WORDS=(${arr}); COMP_CWORD=${words.length - 1}; _nexus_complete; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: 'utf8' });
  return out.split('\n').filter(Boolean);
}

describe('nexus completion', () => {
  it('bash: the script loaded in bash completes `nexus im` to imvu, subcommands and their options', async () => {
    const r = await run(['completion', 'bash'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(bashComplete(r.stdout, ['nexus', 'im'])).toEqual(['imvu']);
    expect(bashComplete(r.stdout, ['nexus', 'identity', 'ro'])).toEqual(['rotate']);
    expect(bashComplete(r.stdout, ['nexus', '--json', 'imvu', 'create', '--j'])).toEqual(['--jurisdiction']);
    expect(bashComplete(r.stdout, ['nexus', 'completion', ''])).toContain('--help');
  });

  it('zsh and fish: scripts name every command group (syntax-checked where the shell is installed)', async () => {
    for (const shell of ['zsh', 'fish'] as const) {
      const r = await run(['completion', shell], env);
      expect(r.code, r.stderr).toBe(0);
      for (const w of ['imvu', 'identity', 'rotate', 'completion', '--jurisdiction'.replace(shell === 'fish' ? '--' : '', '')]) expect(r.stdout).toContain(w);
      if (has(shell)) {
        const file = join(dir, `nexus.${shell}`);
        writeFileSync(file, r.stdout);
        expect(spawnSync(shell, ['-n', file]).status).toBe(0);
      }
    }
  });

  it('an unknown shell is a usage error', async () => {
    const r = await run(['completion', 'tcsh'], env);
    expect(r.code).toBe(2);
  });
});

describe('nexus man', () => {
  it('prints a roff page that man renders, with every command and the exit codes', async () => {
    const r = await run(['man'], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^\.TH NEXUS 1 /);
    for (const c of ['nexus imvu create', 'nexus identity rotate', 'nexus audit report', 'nexus completion']) expect(r.stdout).toContain(`.SS "${c}"`);
    if (!has('man')) return;
    const page = join(dir, 'nexus.1');
    writeFileSync(page, r.stdout);
    const shown = spawnSync('man', ['-l', page], { encoding: 'utf8', env: { ...process.env, MANPAGER: 'cat', PAGER: 'cat', MANWIDTH: '100' } });
    expect(shown.status).toBe(0);
    expect(shown.stdout).toMatch(/NAME\s+nexus\s+\S\s+Nexus COS/);
    expect(shown.stdout).toMatch(/EXIT STATUS\s+0\s+ok,\s+1\s+denied by policy/);
    expect(shown.stdout).toMatch(/--jurisdiction <code>/);
  });
});
