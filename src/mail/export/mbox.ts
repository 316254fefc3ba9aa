// One mailbox as an mboxrd file (the "exit" format: every mail reader imports it). Each message:
// a `From ` separator line (envelope sender, internal date in asctime form), the message with LF
// line ends, its flags as Status / X-Status headers (R seen, O old; A answered, F flagged, T draft,
// D deleted) in place of any the message carried, and mboxrd quoting: a body line matching
// /^>*From / gets one more '>', so a reader that strips one '>' gets the message back exactly.
//
// It reads the Maildir directly and never writes beside it (the daemon owns the index): messages in
// UID order as far as the index knows them, then any not yet indexed, oldest first.
import { closeSync, existsSync, fsyncSync, openSync, readdirSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';

const FLAG_LETTERS: Record<string, [string, string]> = { S: ['Status', 'R'], R: ['X-Status', 'A'], F: ['X-Status', 'F'], D: ['X-Status', 'T'], T: ['X-Status', 'D'] };
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

export interface MboxMessage {
  content: Buffer;
  /** Maildir info letters (`:2,` suffix), e.g. "FS". */
  info: string;
  internalDate: number;
}

function asctime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} ${d.getUTCFullYear()}`;
}

/** The messages of a Maildir folder, in UID order (index) then delivery order. */
export function readMaildirFolder(dir: string): MboxMessage[] {
  const files = new Map<string, { path: string; info: string; mtime: number }>();
  for (const sub of ['cur', 'new']) {
    if (!existsSync(join(dir, sub))) continue;
    for (const name of readdirSync(join(dir, sub))) {
      if (name.startsWith('.')) continue;
      const i = name.indexOf(':2,');
      const base = i === -1 ? name : name.slice(0, i);
      const path = join(dir, sub, name);
      let st;
      try {
        st = statSync(path);
      } catch {
        continue;
      }
      if (st.isFile()) files.set(base, { path, info: i === -1 ? '' : name.slice(i + 3), mtime: st.mtimeMs });
    }
  }
  const order: { base: string; date: number }[] = [];
  const idx = join(dir, 'nexus-uidlist');
  if (existsSync(idx)) {
    for (const line of readFileSync(idx, 'utf8').split('\n').slice(1)) {
      const m = /^(\d+) \d+ \d+ (\d+) \S+ (\S+)$/.exec(line);
      if (m && files.has(m[3]!)) order.push({ base: m[3]!, date: Number(m[2]) });
    }
  }
  const known = new Set(order.map((o) => o.base));
  const rest = [...files.entries()].filter(([b]) => !known.has(b)).sort((a, b) => a[1].mtime - b[1].mtime || (a[0] < b[0] ? -1 : 1));
  for (const [base, f] of rest) order.push({ base, date: Math.floor(f.mtime) });
  const out: MboxMessage[] = [];
  for (const o of order) {
    const f = files.get(o.base)!;
    try {
      out.push({ content: readFileSync(f.path), info: f.info, internalDate: o.date });
    } catch {
      // Expunged while we read.
    }
  }
  return out;
}

/** One message as an mboxrd entry. */
export function mboxEntry(m: MboxMessage): Buffer {
  const text = m.content.toString('latin1').replace(/\r\n/g, '\n');
  const split = text.indexOf('\n\n');
  const headerText = split === -1 ? text : text.slice(0, split + 1);
  const body = split === -1 ? '' : text.slice(split + 1);
  // Drop Status/X-Status the message carried (with their continuation lines): ours say the truth.
  const headers = headerText.replace(/^(Status|X-Status):.*\n([ \t].*\n)*/gim, '');
  const status = new Set<string>(['O']);
  const xstatus = new Set<string>();
  for (const c of m.info) {
    const f = FLAG_LETTERS[c];
    if (f) (f[0] === 'Status' ? status : xstatus).add(f[1]);
  }
  const statusLines = `Status: ${[...status].sort().reverse().join('')}\n` + (xstatus.size ? `X-Status: ${[...xstatus].sort().join('')}\n` : '');
  const sender = /^Return-Path:\s*<([^>\s]*)>/im.exec(headers)?.[1] || 'MAILER-DAEMON';
  const quoted = (headers + statusLines + body).replace(/^(>*From )/gm, '>$1');
  const ending = quoted.endsWith('\n') ? '\n' : '\n\n';
  return Buffer.from(`From ${sender} ${asctime(m.internalDate)}\n${quoted}${ending}`, 'latin1');
}

/** Write a Maildir folder as mboxrd to a file descriptor; returns the number of messages. */
export function exportMbox(folderDir: string, fd: number): number {
  return writeMbox(readMaildirFolder(folderDir), fd);
}

/** Write messages already read (readMaildirFolder) as mboxrd to a file descriptor; returns their number. */
export function writeMbox(msgs: readonly MboxMessage[], fd: number): number {
  for (const m of msgs) {
    const buf = mboxEntry(m);
    let off = 0;
    while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off);
  }
  return msgs.length;
}

/** Export a folder, or its messages already read, to a file path (created 0600, fsynced). */
export function exportMboxToFile(folderDir: string | readonly MboxMessage[], path: string): number {
  const fd = openSync(path, 'w', 0o600);
  try {
    const n = typeof folderDir === 'string' ? exportMbox(folderDir, fd) : writeMbox(folderDir, fd);
    fsyncSync(fd);
    return n;
  } finally {
    closeSync(fd);
  }
}
