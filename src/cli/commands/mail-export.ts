// `nexus mail export IMVU --mailbox NAME [--address A] [--out FILE]`: one mailbox as mboxrd, read
// from the data directory directly (--data / NEXUS_DATA). It runs on the host, by whoever can read
// the data directory: that person can read the Maildir anyway, so going through the daemon would
// add a signature but no protection; it writes nothing beside the Maildir.
import { Command } from 'commander';
import { imvuId } from '../args.ts';
import { Ctx } from '../context.ts';
import { usage, notFound } from '../errors.ts';
import { dataDirOf } from './operator.ts';

export function addMailExportCommand(mail: Command): void {
  mail
    .command('export')
    .description('write one mailbox as an mboxrd file (flags in Status/X-Status), read from the data directory')
    .argument('<imvu>', 'IMVU id', imvuId)
    .requiredOption('--mailbox <name>', 'mailbox (folder) name: INBOX, Sent, Archive.2026, ...')
    .option('--address <address>', 'which address of the IMVU (default: its only one)')
    .option('--out <file>', 'output file (default: standard output)')
    .option('--data <dir>', 'data directory (default: $NEXUS_DATA or the platform default)')
    .action(async (id: string, o: { mailbox: string; address?: string; out?: string; data?: string }, c: Command) => {
      const ctx = Ctx.of(c);
      const { existsSync, readdirSync } = await import('node:fs');
      const { join } = await import('node:path');
      const { imvuDir, mailboxRoot } = await import('../../mail/maildir/paths.ts');
      const { resolveMailbox, mailboxExists } = await import('../../mail/imap/mailboxes.ts');
      const { exportMbox, exportMboxToFile } = await import('../../mail/export/mbox.ts');
      const dataDir = dataDirOf(o.data);
      const mailDir = join(imvuDir(dataDir, id), 'mail');
      const addresses = existsSync(mailDir) ? readdirSync(mailDir) : [];
      const address = o.address?.toLowerCase() ?? (addresses.length === 1 ? addresses[0]! : undefined);
      if (!address) throw usage(addresses.length ? `${id} has several addresses (${addresses.join(', ')}): choose one with --address` : `${id} has no mail in ${dataDir}`);
      let root: string;
      try {
        root = mailboxRoot(dataDir, id, address);
      } catch (err) {
        throw usage((err as Error).message);
      }
      const mb = resolveMailbox(root, o.mailbox);
      if (!mb.ok) throw usage(`${o.mailbox}: ${mb.reason}`);
      if (!existsSync(root) || !mailboxExists(mb)) throw notFound(`no mailbox ${o.mailbox} for ${address} of ${id}`);
      const n = o.out ? exportMboxToFile(mb.dir, o.out) : exportMbox(mb.dir, 1);
      if (o.out) ctx.print({ imvu: id, address, mailbox: mb.name, messages: n, file: o.out }, () => `✅ ${n} message${n === 1 ? '' : 's'} of ${address} ${mb.name} written to ${o.out}`);
    });
}
