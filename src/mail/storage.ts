// Mail storage per IMVU, in bytes: what the `mail` service meters (mail.storage_gb_months) and what
// the QUOTA extension reports against the envelope's storage. Messages only (cur/ and new/ of every
// folder of every address); indexes and tmp/ are ours, not the IMVU's.
import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { imvuDir } from './maildir/paths.ts';

function sumDir(dir: string): bigint {
  let total = 0n;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0n;
  }
  for (const n of names) {
    try {
      const st = lstatSync(join(dir, n));
      if (st.isFile()) total += BigInt(st.size);
    } catch {
      // Moved or expunged while we looked.
    }
  }
  return total;
}

/** Bytes of mail an IMVU holds, over all its addresses and folders (symlinks are not followed). */
export function sampleMailStorage(dataDir: string, imvu: string): bigint {
  const mail = join(imvuDir(dataDir, imvu), 'mail');
  let total = 0n;
  let addresses: string[];
  try {
    addresses = readdirSync(mail);
  } catch {
    return 0n;
  }
  for (const a of addresses) {
    const root = join(mail, a);
    const folders = [root];
    try {
      if (!lstatSync(root).isDirectory()) continue;
      for (const n of readdirSync(root)) {
        if (n.startsWith('.') && n.length > 1 && n !== '..' && lstatSync(join(root, n)).isDirectory()) folders.push(join(root, n));
      }
    } catch {
      continue;
    }
    for (const f of folders) total += sumDir(join(f, 'cur')) + sumDir(join(f, 'new'));
  }
  return total;
}
