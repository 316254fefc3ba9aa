// Local delivery for hosted domains: no network hop, straight into the recipient's Maildir under
// its own IMVU's directory (src/mail/maildir/paths.ts). The Maildir write is the standard one
// (tmp/, fsync, rename into new/, fsync of new/) so a message is never seen half written.
import type { SqlReader } from '../../core/store/index.ts';
import { deliverToMailbox, mailboxState } from '../maildir/deliver.ts';

/** A delivery the remote side would refuse for good (no such mailbox): the queue sends a DSN. */
export class PermanentFailure extends Error {
  constructor(
    message: string,
    readonly status = '5.0.0',
  ) {
    super(message);
  }
}

/** Delivers `raw` to a hosted address; throws PermanentFailure for good, anything else to retry. */
export type DeliverLocal = (address: string, raw: Buffer) => Promise<void>;

/**
 * Whether a domain is served here (an IMVU's primary domain or a zone it holds), and by which IMVU.
 * An exited IMVU's domains left with it: mail for them goes wherever DNS now says, like any other.
 */
export async function hostedDomain(db: SqlReader, domain: string): Promise<string | undefined> {
  const d = domain.toLowerCase();
  const imvu = await db.get<{ id: string; status: string }>('SELECT id, status FROM imvus WHERE domain = ?', [d]);
  if (imvu) return imvu.status === 'exited' ? undefined : imvu.id;
  const zone = await db.get<{ imvu: string }>("SELECT z.imvu AS imvu FROM zones z JOIN imvus i ON i.id = z.imvu WHERE z.name = ? AND i.status <> 'exited'", [d]);
  return zone?.imvu;
}

/**
 * The default local delivery: the `mailboxes` projection says which IMVU holds an address.
 * `onDelivered(imvu, bytes)`: each stored copy, for the receiving IMVU's meter (mail in).
 */
export function maildirDeliverer(dataDir: string, db: SqlReader, onDelivered?: (imvu: string, bytes: number) => void): DeliverLocal {
  return async (address, raw) => {
    const a = address.toLowerCase();
    const box = await mailboxState(db, dataDir, a);
    if (box.state === 'gone') throw new PermanentFailure(`550 5.1.1 <${a}>: no such mailbox here`, '5.1.1');
    if (box.state === 'importing') throw new Error(`450 4.2.1 <${a}>: this mailbox is being imported (${box.imvu}'s import is not finished yet)`);
    // The one Maildir writer (tmp/, fsync, new/, fsync; no symlink followed below the IMVU's directory).
    const { imvu } = await deliverToMailbox(db, dataDir, a, raw);
    onDelivered?.(imvu, raw.length);
  };
}
