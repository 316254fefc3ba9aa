import { Command } from 'commander';
import type { GateInfo } from '../../core/policy/gate-status.ts';
import { Ctx } from '../context.ts';
import { verificationFailed } from '../errors.ts';
import { table } from '../format.ts';
import { listOf } from './imvu.ts';

export function gatesCommand(): Command {
  return new Command('gates')
    .description('gate 0 (schema and preconditions) and the 17 gates: where each is enforced and whether it is yet (as the daemon runs them)')
    .option('--local', "this installation's gates instead of the daemon's (no daemon needed)")
    .option('--strict', 'fail (exit 4) unless every gate is enforced')
    .addHelpText(
      'after',
      `
Every signed command meets gate 0 first: its type must be known, its body must match the type's
schema and fit one ledger entry, and it must agree with the state (the IMVU or zone it names exists,
the name it creates is free, a record value is well-formed). A command refused there is recorded
as denied by gate 0, like any refusal; the CLI checks what it can (flags, names, addresses) before
signing, so a usage error (exit 2) never reaches the ledger. Then the 17 gates weigh it.`,
    )
    .action(async (o: { local?: boolean; strict?: boolean }, c: Command) => {
      const ctx = Ctx.of(c);
      const all = o.local ? (await import('../../core/policy/gate-status.ts')).gateStatus() : listOf<GateInfo>(await ctx.get('/v1/gates'), 'gates');
      // A daemon from before gate 0 was listed sends the 17 only.
      const zero = all.find((g) => g.number === 0);
      const gates = all.filter((g) => g.number !== 0);
      const numbers = gates.map((g) => g.number).sort((a, b) => a - b);
      const complete = numbers.length === 17 && numbers.every((n, i) => n === i + 1);
      const pending = gates.filter((g) => g.status !== 'enforced');
      ctx.print(all, () => [
        table(
          ['#', 'GATE', 'STATUS', 'ENFORCED IN'],
          all.map((g) => [g.number, g.name, g.status === 'enforced' ? '✅ enforced' : '⏳ not yet', g.status === 'enforced' ? g.enforcedIn : `${g.enforcedIn} — ${g.reason ?? ''}`]),
        ),
        '',
        `${zero ? 'Gate 0 (schema and preconditions), then ' : ''}${gates.length} gates, ${gates.length - pending.length} enforced${pending.length ? `, ${pending.length} not yet (${pending.map((g) => g.number).join(', ')}): reported as not-enforced on every command they guard, never as passed` : ''}`,
      ]);
      if (!complete) throw verificationFailed(`expected gates 1-17, got ${numbers.join(', ') || 'none'}`);
      if (o.strict && pending.length) throw verificationFailed(`${pending.length} of 17 gates are not yet enforced: ${pending.map((g) => g.number).join(', ')}`);
    });
}
