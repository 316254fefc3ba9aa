import { Command } from 'commander';
import type { ZoneView } from '../../imvu/summary.ts';
import type { Json } from '../../core/types.ts';
import { RECORD_TYPES } from '../../core/policy/vocabulary.ts';
import { checkRecordValue, int, recordName } from '../args.ts';
import { Ctx, receiptLine } from '../context.ts';
import { table } from '../format.ts';
import { fetchImvu } from './imvu.ts';
import { InvalidArgumentError } from 'commander';
import { addExportCommand } from './dns-export.ts';
import { addDsCommand } from './dns-ds.ts';

function recordType(v: string): string {
  const t = v.toUpperCase();
  if (!(RECORD_TYPES as readonly string[]).includes(t)) throw new InvalidArgumentError(`expected one of ${RECORD_TYPES.join(', ')}, got '${v}'.`);
  return t;
}

// Names go out in their canonical (lower-case) form: the schemas refuse any other rather than
// rewrite what was signed.
const ZONE_RE = /^(?=.{1,253}$)[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63})*$/;

function zoneName(v: string): string {
  const z = v.toLowerCase().replace(/\.$/, '');
  if (!ZONE_RE.test(z)) throw new InvalidArgumentError(`expected a zone such as imvu001.world (labels of a-z, 0-9 and -, none empty), got '${v}'.`);
  return z;
}

async function fetchZone(ctx: Ctx, zone: string): Promise<ZoneView> {
  return ctx.get<ZoneView>(`/v1/zones/${encodeURIComponent(zone)}/records`);
}

/** The owner of the IMVU a zone belongs to, to pick the default signer. */
async function zoneOwner(ctx: Ctx, zone: string): Promise<string | undefined> {
  const z = await fetchZone(ctx, zone);
  return z.imvu ? (await fetchImvu(ctx, z.imvu)).owner.id : undefined;
}

export function dnsCommand(): Command {
  const dns = new Command('dns').description('authoritative DNS of IMVU zones');
  const record = dns.command('record').description('records of a zone (changes need the signature of the IMVU creator or a member)');

  record
    .command('add')
    .description('add a record')
    .argument('<zone>', 'zone, e.g. imvu001.world', zoneName)
    .argument('<name>', "record name relative to the zone ('@' for the apex)", recordName)
    .argument('<type>', RECORD_TYPES.join('|'), recordType)
    .argument('<value>', 'record value, e.g. 192.0.2.7 or "10 mail.example.world."')
    .option('--ttl <seconds>', 'time to live', int(0, 604800))
    .action(async (zone: string, name: string, type: string, value: string, o: { ttl?: number }, c: Command) => {
      const ctx = Ctx.of(c);
      checkRecordValue(type, value);
      const signer = await ctx.signerLazy(() => zoneOwner(ctx, zone), `dns record add`);
      const body: { [k: string]: Json } = { zone, name, type, value };
      if (o.ttl !== undefined) body.ttl = o.ttl;
      const s = await ctx.submit('POST', `/v1/zones/${encodeURIComponent(zone)}/records`, 'dns.record.add', body, signer);
      ctx.print({ zone, name, type, value, ttl: o.ttl ?? null, index: s.receipt.index }, () => [`✅ ${zone}: added ${name} ${type} ${value}${o.ttl !== undefined ? ` (ttl ${o.ttl})` : ''}`, `✅ ${receiptLine(s)}`]);
    });

  record
    .command('rm')
    .alias('remove')
    .description('remove records (all of that name and type, or only the one with VALUE)')
    .argument('<zone>', 'zone', zoneName)
    .argument('<name>', 'record name', recordName)
    .argument('<type>', RECORD_TYPES.join('|'), recordType)
    .argument('[value]', 'only the record with this value')
    .action(async (zone: string, name: string, type: string, value: string | undefined, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const signer = await ctx.signerLazy(() => zoneOwner(ctx, zone), `dns record rm`);
      const body: { [k: string]: Json } = { zone, name, type };
      if (value !== undefined) body.value = value;
      const s = await ctx.submit('DELETE', `/v1/zones/${encodeURIComponent(zone)}/records`, 'dns.record.remove', body, signer);
      ctx.print({ zone, name, type, value: value ?? null, index: s.receipt.index }, () => [`✅ ${zone}: removed ${name} ${type}${value ? ` ${value}` : ''}`, `✅ ${receiptLine(s)}`]);
    });

  record
    .command('list')
    .alias('ls')
    .description("list a zone's records")
    .argument('<zone>', 'zone', zoneName)
    .action(async (zone: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const z = await fetchZone(ctx, zone);
      ctx.print(z, () => [
        `; zone ${z.zone}${z.imvu ? ` (${z.imvu})` : ''}, serial ${z.serial}`,
        ...(z.soa ? [`; SOA ${z.soa.mname} ${z.soa.rname} ${z.soa.serial}`] : []),
        table(['NAME', 'TTL', 'TYPE', 'VALUE'], z.records.map((r) => [r.name, r.ttl, r.type, r.value])),
      ]);
    });
  addExportCommand(dns);
  addDsCommand(dns);
  return dns;
}
