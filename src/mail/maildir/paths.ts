// Where an IMVU's mail lives: one Maildir++ root per mailbox under the IMVU's own directory, so
// nothing addressed to one IMVU is ever written below another's (gate 16). The SMTP side delivers
// into new/; the IMAP side keeps UIDs and flags beside the messages.
import { join } from 'node:path';

const IMVU_ID = /^IMVU-\d{3,9}$/;
const ADDRESS = /^[a-z0-9_+-]+(\.[a-z0-9_+-]+)*@[a-z0-9-]+(\.[a-z0-9-]+)+$/;

/** DATA/imvus/<IMVU>: everything an IMVU owns on disk (compute data, mail). */
export function imvuDir(dataDir: string, imvu: string): string {
  if (!IMVU_ID.test(imvu)) throw new Error(`not an IMVU id: ${imvu}`);
  return join(dataDir, 'imvus', imvu);
}

/** DATA/imvus/<IMVU>/mail/<address>: a Maildir++ root (cur, new, tmp; folders as .Name). */
export function mailboxRoot(dataDir: string, imvu: string, address: string): string {
  if (!ADDRESS.test(address) || address.length > 320) throw new Error(`not a mailbox address: ${address}`);
  return join(imvuDir(dataDir, imvu), 'mail', address);
}
