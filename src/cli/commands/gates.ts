import { Command } from 'commander';
import type { GateInfo } from '../../core/policy/gate-status.ts';
import { Ctx } from '../context.ts';
import { verificationFailed } from '../errors.ts';
import { table } from '../format.ts';
import { listOf } from './imvu.ts';

export function gatesCommand(): Command {
  return new Command('gates')
    .description('the 17 gates: where each is enforced and whether it is yet (as the daemon runs them)')
    .option('--local', "this installation's gates instead of the daemon's (no daemon needed)")
    .option('--strict', 'fail (exit 4) unless every gate is enforced')
    .action(async (o: { local?: boolean; strict?: boolean }, c: Command) => {
      const ctx = Ctx.of(c);
      const gates = o.local ? (await import('../../core/policy/gate-status.ts')).gateStatus() : listOf<GateInfo>(await ctx.get('/v1/gates'), 'gates');
      const numbers = gates.map((g) => g.number).sort((a, b) => a - b);
      const complete = numbers.length === 17 && numbers.every((n, i) => n === i + 1);
      const pending = gates.filter((g) => g.status !== 'enforced');
      ctx.print(gates, () => [
        table(
          ['#', 'GATE', 'STATUS', 'ENFORCED IN'],
          gates.map((g) => [g.number, g.name, g.status === 'enforced' ? '✅ enforced' : '⏳ not yet', g.status === 'enforced' ? g.enforcedIn : `${g.enforcedIn} — ${g.reason ?? ''}`]),
        ),
        '',
        `${gates.length} gates, ${gates.length - pending.length} enforced${pending.length ? `, ${pending.length} not yet (${pending.map((g) => g.number).join(', ')}): reported as not-enforced on every command they guard, never as passed` : ''}`,
      ]);
      if (!complete) throw verificationFailed(`expected gates 1-17, got ${numbers.join(', ') || 'none'}`);
      if (o.strict && pending.length) throw verificationFailed(`${pending.length} of 17 gates are not yet enforced: ${pending.map((g) => g.number).join(', ')}`);
    });
}
