// `nexus domain`: claim a domain outside the platform suffix, prove control of it with a TXT record,
// list an IMVU's domains and pending claims, release one.
import { Command, InvalidArgumentError } from 'commander';
import { DOMAIN_RE } from '../../core/policy/vocabulary.ts';
import { imvuId } from '../args.ts';
import { Ctx, receiptLine } from '../context.ts';
import { addTransferIn } from './import.ts';
import { ApiError } from '../client.ts';
import { CliError, EXIT, notFound, usage } from '../errors.ts';
import { table } from '../format.ts';
import { fetchImvu } from './imvu.ts';

/** A domain as the schemas want it: lower case (the canonical form), no final dot, no empty labels. */
export function domainName(v: string): string {
  const d = v.trim().toLowerCase().replace(/\.$/, '');
  if (!DOMAIN_RE.test(d)) throw new InvalidArgumentError(`expected a domain name such as example.com (labels of a-z, 0-9 and -, none empty), got '${v}'.`);
  return d;
}

interface Challenge {
  name: string;
  type: string;
  value: string;
  expires: string;
}

interface DomainsView {
  imvu: string;
  domains: { name: string; kind: string; status: string; entry: number }[];
  pending: { name: string; status: string; entry: number; expires: string; challenge: Challenge }[];
}

const publishLines = (domain: string, imvu: string, c: Challenge) => [
  `Publish this TXT record where ${domain} is hosted now, then run \`nexus domain verify ${imvu} ${domain}\`:`,
  `  ${c.name}. 300 IN TXT "${c.value}"`,
  `The claim lapses unproven at ${c.expires}.`,
];

export function domainCommand(): Command {
  const cmd = new Command('domain')
    .description('domains of IMVUs: claim, prove with a TXT record, list, release')
    .addHelpText(
      'after',
      `
An IMVU's own domain (imvuNNN.SUFFIX) comes with it; names under the platform suffix are the
registry's and cannot be claimed. Any other domain is claimed pending proof of control: publish the
TXT record the claim answers with at _nexus-challenge.DOMAIN, then \`nexus domain verify\`. Until
then the domain is not served, other IMVUs may claim it too (the first to prove it gets it), and
the claim lapses after 7 days. Public suffixes (com, co.uk, github.io, ...) cannot be claimed.`,
    );

  addTransferIn(cmd);

  cmd
    .command('claim')
    .description('claim a domain for an IMVU (signed by its creator or a member); it stays pending until proven')
    .argument('<imvu>', 'IMVU id', imvuId)
    .argument('<domain>', 'domain name outside the platform suffix, e.g. artgallery.example', domainName)
    .action(async (id: string, domain: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const signer = await ctx.signerLazy(async () => (await fetchImvu(ctx, id)).owner.id, 'domain claim');
      const s = await ctx.submit('POST', `/v1/imvus/${id}/domains`, 'domain.claim', { imvu: id, domain }, signer);
      const challenge = s.receipt.challenge as Challenge | undefined;
      ctx.print({ imvu: id, domain, status: 'pending', challenge: challenge ?? null, index: s.receipt.index }, () => [
        `✅ ${domain} is claimed for ${id}, pending proof of control (not served yet)`,
        ...(challenge ? publishLines(domain, id, challenge) : []),
        `✅ ${receiptLine(s)}`,
      ]);
    });

  cmd
    .command('verify')
    .description('prove control of a claimed domain: the platform looks up the TXT at _nexus-challenge.DOMAIN; once found the domain is served')
    .argument('<imvu>', 'IMVU id', imvuId)
    .argument('<domain>', 'the claimed domain', domainName)
    .action(async (id: string, domain: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const signer = await ctx.signerLazy(async () => (await fetchImvu(ctx, id)).owner.id, 'domain verify');
      let s;
      try {
        s = await ctx.submit('POST', `/v1/imvus/${id}/domains/verify`, 'domain.verify', { imvu: id, domain }, signer);
      } catch (err) {
        // Not proven: the request is recorded, the domain stays pending; say what to publish.
        if (err instanceof ApiError && err.status === 422) {
          const b = err.body as { error?: string; challenge?: Challenge; found?: string[] };
          const lines = [(b.error ?? 'not proven').replace(/^not proven: /, '')];
          if (b.found?.length) lines.push(`found: ${b.found.map((t) => JSON.stringify(t)).join(', ')}`);
          if (b.challenge) lines.push(...publishLines(domain, id, b.challenge));
          throw new CliError(`${domain} is not proven yet: ${lines.join(' ')}`, EXIT.denied);
        }
        throw err;
      }
      const verified = s.receipt.verified as { index: number } | undefined;
      ctx.print({ imvu: id, domain, status: 'verified', index: s.receipt.index, verified: verified?.index ?? null }, () => [
        `✅ ${domain} is proven and is now a domain of ${id}: its zone is served${verified ? ` (ledger entry ${verified.index})` : ''}`,
        `Next: delegate ${domain} to the platform's name servers, and give its parent the DS (nexus dns ds ${domain})`,
        `✅ ${receiptLine(s)}`,
      ]);
    });

  cmd
    .command('list')
    .alias('ls')
    .description("list an IMVU's domains and its claims pending proof")
    .argument('<imvu>', 'IMVU id', imvuId)
    .action(async (id: string, _o: unknown, c: Command) => {
      const ctx = Ctx.of(c);
      const v = await ctx.get<DomainsView>(`/v1/imvus/${id}/domains`);
      ctx.print(v, () => [
        table(
          ['DOMAIN', 'STATUS', 'KIND / CHALLENGE'],
          [
            ...v.domains.map((d) => [d.name, d.status, d.kind]),
            ...v.pending.map((p) => [p.name, `${p.status} until ${p.expires}`, `${p.challenge.name} TXT "${p.challenge.value}"`]),
          ],
        ),
      ]);
    });

  cmd
    .command('release')
    .alias('rm')
    .description("release a domain (or a pending claim) of one's own IMVU: its zone, records and DNSSEC key go (creator or member; never the primary domain)")
    .argument('<domain>', 'domain to release', domainName)
    .option('--imvu <id>', 'the IMVU that holds it (default: the IMVU whose zone it is)', imvuId)
    .action(async (domain: string, o: { imvu?: string }, c: Command) => {
      const ctx = Ctx.of(c);
      let id = o.imvu;
      if (!id) {
        const z = await ctx.get<{ imvu?: string }>(`/v1/zones/${encodeURIComponent(domain)}/records`).catch((err: unknown) => {
          if (err instanceof ApiError && err.status === 404) throw notFound(`${domain} is not a served zone here; for a pending claim name its IMVU with --imvu`);
          throw err;
        });
        if (!z.imvu) throw usage(`cannot tell which IMVU holds ${domain}; name it with --imvu`);
        id = z.imvu;
      }
      const imvu = id;
      const signer = await ctx.signerLazy(async () => (await fetchImvu(ctx, imvu)).owner.id, 'domain release');
      const s = await ctx.submit('DELETE', `/v1/imvus/${imvu}/domains`, 'domain.release', { imvu, domain }, signer);
      ctx.print({ imvu, domain, index: s.receipt.index }, () => [`✅ ${domain} released by ${imvu}: no longer served, free to be claimed`, `✅ ${receiptLine(s)}`]);
    });
  return cmd;
}
