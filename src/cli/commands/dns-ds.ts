// `nexus dns ds ZONE`: the DS record a creator hands to the parent zone's registry, the DNSKEY it
// names and a trust anchor for `delv` (GET /v1/zones/:zone/ds). Not taken on the daemon's word:
// the CLI recomputes the key tag and the SHA-256 digest from the public key, and checks that the
// key is the one the platform published in the ledger (the `dnssec.publish` entry, proved to be
// in the platform's signed checkpoint).
import type { Command } from 'commander';
import { dnskeyRdata, keyTag } from '../../domains/dnssec/keytag.ts';
import { dsDigest } from '../../domains/dnssec/keys.ts';
import type { DsView } from '../../domains/dnssec/ds.ts';
import { verificationFailed } from '../errors.ts';
import { Ctx } from '../context.ts';

export function addDsCommand(dns: Command): void {
  dns
    .command('ds')
    .description("a zone's DNSSEC DS record for the parent zone, its DNSKEY, and a trust anchor for delv (checked against the ledger)")
    .argument('<zone>', 'zone, e.g. imvu001.world', (v: string) => v.toLowerCase().replace(/\.$/, ''))
    .action(async (zone: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const ds = await ctx.get<DsView>(`/v1/zones/${encodeURIComponent(zone)}/ds`);
      const publicKey = Buffer.from(ds.publicKey, 'base64');
      const rdata = dnskeyRdata(ds.flags, ds.algorithm, publicKey);
      if (ds.zone !== zone || keyTag(rdata) !== ds.keyTag || dsDigest(zone, rdata).toString('hex').toUpperCase() !== ds.digest.toUpperCase())
        throw verificationFailed(`the daemon's DS for ${zone} does not match the DNSKEY it names`);
      const { entry: e, reader } = await ctx.entry(ds.entry);
      const cmd = e.command?.command;
      const body = cmd?.body ?? {};
      if (cmd?.type !== 'dnssec.publish' || !e.decision?.allowed || body.zone !== zone || body.publicKey !== ds.publicKey || body.flags !== ds.flags)
        throw verificationFailed(`ledger entry ${ds.entry} is not the publication of this DNSKEY for ${zone}`);
      const checkpoint = await ctx.witness.confirmEntry(ds.entry, e.command.sig, reader);
      ctx.print(ds, () => [
        `; zone ${ds.zone} (${ds.imvu}): DNSSEC key ${ds.keyTag}, ECDSA P-256/SHA-256 (algorithm ${ds.algorithm}), flags ${ds.flags}${ds.flags === 257 ? ' (combined signing key)' : ''}`,
        `; published by the platform in ledger entry ${ds.entry}, included in its signed checkpoint (tree size ${checkpoint.size}): verified`,
        '; the DS record for the registry of the parent zone:',
        ds.ds,
        '; the key it names:',
        ds.dnskey,
        `; a trust anchor file for \`delv -a FILE +root=${ds.zone}\` (or a BIND resolver's configuration):`,
        ds.trustAnchor,
      ]);
    });
}
