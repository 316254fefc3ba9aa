// `nexus dns ds ZONE`: the DS record a creator hands to the parent zone's registry, the DNSKEY it
// names and a trust anchor for `delv` (GET /v1/zones/:zone/ds), then the trust anchor of the
// platform's own zone (the suffix), whose DS records delegate to every IMVU zone: a resolver
// configured with that one anchor validates them all. Not taken on the daemon's word: the CLI
// recomputes each key tag and SHA-256 digest from its public key, and checks that each key is the
// one the platform published in the ledger (the `dnssec.publish` or `platform.zone` entry,
// proved to be in the platform's signed checkpoint).
import type { Command } from 'commander';
import type { DsView } from '../../domains/dnssec/ds.ts';
import { verificationFailed } from '../errors.ts';
import { Ctx } from '../context.ts';

interface DsResponse extends DsView {
  /** The platform's zone when it publishes this zone's DS, else null. */
  parent?: string | null;
  /** The platform's own zone (the suffix), once declared. */
  platformZone?: DsView | null;
}

/** Checks a key view against itself and against the ledger entry that published it; returns the checkpoint size that includes it. */
async function verifyKey(ctx: Ctx, ds: DsView, zone: string, type: 'dnssec.publish' | 'platform.zone'): Promise<number> {
  const [{ dnskeyRdata, keyTag }, { dsDigest }] = await Promise.all([import('../../domains/dnssec/keytag.ts'), import('../../domains/dnssec/keys.ts')]);
  const publicKey = Buffer.from(ds.publicKey, 'base64');
  const rdata = dnskeyRdata(ds.flags, ds.algorithm, publicKey);
  if (ds.zone !== zone || keyTag(rdata) !== ds.keyTag || dsDigest(zone, rdata).toString('hex').toUpperCase() !== ds.digest.toUpperCase())
    throw verificationFailed(`the daemon's DS for ${zone} does not match the DNSKEY it names`);
  const { entry: e, reader } = await ctx.entry(ds.entry);
  const cmd = e.command?.command;
  const body = cmd?.body ?? {};
  if (cmd?.type !== type || !e.decision?.allowed || body.zone !== zone || body.publicKey !== ds.publicKey || body.flags !== ds.flags)
    throw verificationFailed(`ledger entry ${ds.entry} is not the publication of this DNSKEY for ${zone}`);
  return (await ctx.witness.confirmEntry(ds.entry, e.command.sig, reader)).size;
}

export function addDsCommand(dns: Command): void {
  dns
    .command('ds')
    .description("a zone's DNSSEC DS record for the parent zone, its DNSKEY, a trust anchor for delv, and the platform zone's trust anchor (checked against the ledger)")
    .argument('<zone>', 'zone, e.g. imvu001.world', (v: string) => v.toLowerCase().replace(/\.$/, ''))
    .action(async (zone: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const ds = await ctx.get<DsResponse>(`/v1/zones/${encodeURIComponent(zone)}/ds`);
      const own = ds.imvu === null;
      const size = await verifyKey(ctx, ds, zone, own ? 'platform.zone' : 'dnssec.publish');
      const anchor = ds.platformZone && !own ? ds.platformZone : undefined;
      const anchorSize = anchor ? await verifyKey(ctx, anchor, anchor.zone, 'platform.zone') : undefined;
      const where = (d: DsView, n: number) => `; published by the platform in ledger entry ${d.entry}, included in its signed checkpoint (tree size ${n}): verified`;
      const keyLine = (d: DsView, what: string) =>
        `; ${what}: DNSSEC key ${d.keyTag}, ECDSA P-256/SHA-256 (algorithm ${d.algorithm}), flags ${d.flags}${d.flags === 257 ? ' (combined signing key)' : ''}`;
      ctx.print(ds, () => [
        keyLine(ds, own ? `zone ${ds.zone} (the platform's own zone)` : `zone ${ds.zone} (${ds.imvu})`),
        where(ds, size),
        ds.parent
          ? `; the DS record, served by the platform's zone ${ds.parent} (nothing to hand to a registry):`
          : own
            ? "; the DS record for the registry of the suffix's parent zone:"
            : '; the DS record for the registry of the parent zone:',
        ds.ds,
        '; the key it names:',
        ds.dnskey,
        `; a trust anchor file for \`delv -a FILE +root=${ds.zone}\` (or a BIND resolver's configuration):`,
        ds.trustAnchor,
        ...(anchor
          ? [
              '',
              keyLine(anchor, `the platform's own zone ${anchor.zone}`),
              where(anchor, anchorSize!),
              `; a validating resolver holding this trust anchor validates every IMVU zone under ${anchor.zone}:`,
              anchor.ds,
              anchor.dnskey,
              `; for \`delv -a FILE +root=${anchor.zone}\` (or a BIND resolver's configuration):`,
              anchor.trustAnchor,
            ]
          : []),
      ]);
    });
}
