// `nexus dns export ZONE`: the zone as a BIND master file on standard output (GET
// /v1/zones/:zone/export), for named-checkzone, a secondary, or leaving the platform. With --json:
// { zone, text } (the zone file in a field).
import type { Command } from 'commander';
import { Ctx } from '../context.ts';

export function addExportCommand(dns: Command): void {
  dns
    .command('export')
    .description('print a zone as a BIND master file (RFC 1035) on standard output, accepted by named-checkzone (--json: { zone, text })')
    .argument('<zone>', 'zone, e.g. imvu001.world', (v: string) => v.toLowerCase().replace(/\.$/, ''))
    .action(async (zone: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      // Through the witness like every read (the platform's log is checked on this contact too),
      // signed: a zone's full listing is its IMVU's business (DNS answers only the names asked for).
      const text = await ctx.getText(`/v1/zones/${encodeURIComponent(zone)}/export`);
      const file = text.endsWith('\n') ? text : text + '\n';
      ctx.print({ zone, text: file }, () => file);
    });
}
