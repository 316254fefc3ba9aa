// `nexus token issue --imvu ID [--ttl S]`: a short-lived ES256 token for the gateway's private and
// restricted routes of an IMVU. The request is a read signed with the identity's Ed25519 key; the
// daemon answers with a JWT signed by the platform's gateway key, which HAProxy verifies itself.
import { Command } from 'commander';
import { imvuId, int } from '../args.ts';
import { Ctx } from '../context.ts';

export function tokenCommand(): Command {
  const cmd = new Command('token').description("tokens for an IMVU's private and restricted routes (the gateway checks them)");
  cmd
    .command('issue')
    .description('a short-lived token for an IMVU you created or are a member of; send it as Authorization: Bearer TOKEN')
    .requiredOption('--imvu <id>', 'the IMVU (its routes are the audience)', imvuId)
    .option('--ttl <seconds>', 'lifetime, 1-3600 seconds (default 600)', int(1, 3600))
    .action(async (o: { imvu: string; ttl?: number }, c: Command) => {
      const ctx = Ctx.of(c);
      const res = await ctx.get<{ token: string; expires: string; roles: string[] }>(`/v1/imvus/${o.imvu}/token${o.ttl ? `?ttl=${o.ttl}` : ''}`);
      ctx.print(res, () => [res.token, `expires ${res.expires}; roles: ${res.roles.join(', ') || 'none'}`]);
    });
  return cmd;
}
