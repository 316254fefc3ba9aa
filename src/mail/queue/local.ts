// Local delivery for hosted domains: no network hop, straight into the recipient's Maildir under
// its own IMVU's directory (src/mail/maildir/paths.ts). The Maildir write is the standard one
// (tmp/, fsync, link into new/, fsync of new/) so a message is never seen half written; a
// dedicated Maildir writer can replace `maildirWrite` without touching the queue.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { SqlReader } from '../../core/store/index.ts';
import { fsyncDir } from '../../core/durable.ts';
import { mailboxRoot } from '../maildir/paths.ts';

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

/** Writes a message into a Maildir++ root's new/, durably; returns the file name. */
export function maildirWrite(root: string, raw: Buffer): string {
  for (const d of ['tmp', 'new', 'cur']) mkdirSync(join(root, d), { recursive: true, mode: 0o700 });
  const name = `${Date.now()}.${process.pid}_${randomBytes(6).toString('hex')}.${hostname().replace(/[/:]/g, '_')}`;
  const tmp = join(root, 'tmp', name);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    let off = 0;
    while (off < raw.length) off += writeSync(fd, raw, off, raw.length - off);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(root, 'new', name));
  fsyncDir(join(root, 'new'));
  return name;
}

/** Whether a domain is served here (an IMVU's primary domain or a zone it holds), and by which IMVU. */
export async function hostedDomain(db: SqlReader, domain: string): Promise<string | undefined> {
  const d = domain.toLowerCase();
  const imvu = await db.get<{ id: string }>('SELECT id FROM imvus WHERE domain = ?', [d]);
  if (imvu) return imvu.id;
  const zone = await db.get<{ imvu: string }>('SELECT imvu FROM zones WHERE name = ?', [d]);
  return zone && zone.imvu !== '' ? zone.imvu : undefined;
}

/** The default local delivery: the `mailboxes` projection says which IMVU holds an address. */
export function maildirDeliverer(dataDir: string, db: SqlReader): DeliverLocal {
  return async (address, raw) => {
    const a = address.toLowerCase();
    const row = await db.get<{ imvu: string }>('SELECT imvu FROM mailboxes WHERE address = ?', [a]);
    if (!row) throw new PermanentFailure(`550 5.1.1 <${a}>: no such mailbox here`, '5.1.1');
    maildirWrite(mailboxRoot(dataDir, row.imvu, a), raw);
  };
}
