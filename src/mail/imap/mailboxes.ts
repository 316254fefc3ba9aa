// Mailbox names to directories, inside one Maildir++ root and nowhere else (gate 16). The IMAP
// hierarchy delimiter is '.', as in Maildir++ itself: "Archive.2024" is the directory
// ".Archive.2024"; names travel in modified UTF-7 (RFC 3501 5.1.3) and are stored as they travel.
// A name that could reach outside the root (a '/', a '\', an empty hierarchy level, a leading '~'
// or '.', a NUL) is refused and the refusal reported, not merely "not found".
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { fsyncDir } from '../../core/durable.ts';
import { ensureMaildir, writeFileDurable } from '../maildir/store.ts';

export const DELIMITER = '.';
export const SPECIAL_USE: Record<string, string> = {
  Drafts: '\\Drafts', Sent: '\\Sent', Trash: '\\Trash', Junk: '\\Junk', Archive: '\\Archive',
};
export const DEFAULT_FOLDERS = ['Drafts', 'Sent', 'Trash', 'Junk', 'Archive'];

export type Resolved =
  | { ok: true; name: string; dir: string; inbox: boolean }
  /** `escape`: the name tried to leave the root (recorded); otherwise merely invalid. */
  | { ok: false; escape: boolean; reason: string };

const MUTF7_RUN = /&([A-Za-z0-9+,]*)-/g;

/** Whether s is valid modified UTF-7 (RFC 3501 5.1.3). */
export function validMutf7(s: string): boolean {
  if (!/^[\x20-\x7e]*$/.test(s)) return false;
  const stripped = s.replace(MUTF7_RUN, '');
  return !stripped.includes('&');
}

/** The canonical name of a client-supplied mailbox name, and its directory under root. */
export function resolveMailbox(root: string, raw: string): Resolved {
  if (raw.length === 0) return { ok: false, escape: false, reason: 'empty mailbox name' };
  if (raw.length > 255) return { ok: false, escape: false, reason: 'mailbox name too long' };
  if (/[/\\\0]/.test(raw) || raw.startsWith('~') || raw.includes('..') || raw.startsWith('.') || raw.endsWith('.')) {
    return { ok: false, escape: true, reason: 'mailbox name outside this account' };
  }
  if (raw.toUpperCase() === 'INBOX') return { ok: true, name: 'INBOX', dir: root, inbox: true };
  // eslint-disable-next-line no-control-regex
  if (!validMutf7(raw) || /[%*\x00-\x1f\x7f]/.test(raw)) return { ok: false, escape: false, reason: 'invalid mailbox name' };
  // "INBOX.x" is a child of INBOX: the INBOX prefix is case-insensitive.
  const name = /^inbox\./i.test(raw) ? `INBOX${raw.slice(5)}` : raw;
  const dir = join(root, `.${name}`);
  const rootAbs = resolve(root);
  if (!resolve(dir).startsWith(rootAbs + sep)) return { ok: false, escape: true, reason: 'mailbox name outside this account' };
  // A symlink planted inside the root must not lead out of it.
  if (existsSync(dir)) {
    try {
      if (lstatSync(dir).isSymbolicLink() || !realpathSync(dir).startsWith(realpathSync(rootAbs) + sep)) {
        return { ok: false, escape: true, reason: 'mailbox outside this account' };
      }
    } catch {
      return { ok: false, escape: false, reason: 'mailbox unreadable' };
    }
  }
  return { ok: true, name, dir, inbox: false };
}

export function mailboxExists(r: { dir: string; inbox: boolean }): boolean {
  return r.inbox || existsSync(join(r.dir, 'cur'));
}

/** Every selectable mailbox of the root: INBOX and the `.Name` folders (no symlinks). */
export function listMailboxes(root: string): string[] {
  const out = ['INBOX'];
  let names: string[] = [];
  try {
    names = readdirSync(root);
  } catch {
    return out;
  }
  for (const n of names) {
    if (!n.startsWith('.') || n === '.' || n === '..' || n.length < 2) continue;
    const name = n.slice(1);
    if (name.includes('..') || name.endsWith('.') || !validMutf7(name)) continue;
    try {
      const st = lstatSync(join(root, n));
      if (!st.isDirectory() || !existsSync(join(root, n, 'cur'))) continue;
    } catch {
      continue;
    }
    out.push(name);
  }
  return out.sort((a, b) => (a === 'INBOX' ? -1 : b === 'INBOX' ? 1 : a < b ? -1 : a > b ? 1 : 0));
}

/** A LIST pattern ('*' anything, '%' anything but the delimiter) as a RegExp. */
export function patternRegex(ref: string, pattern: string): RegExp {
  const full = ref + pattern;
  let re = '';
  for (const c of full) {
    if (c === '*') re += '.*';
    else if (c === '%') re += '[^.]*';
    else re += c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  }
  // INBOX matches case-insensitively.
  return new RegExp(`^${re}$`, /^inbox/i.test(full) ? 'i' : '');
}

export function createMailbox(root: string, dir: string): void {
  ensureMaildir(root);
  ensureMaildir(dir);
  // Maildir++ marks folders with an empty maildirfolder file.
  writeFileSync(join(dir, 'maildirfolder'), '');
  fsyncDir(root);
}

export function deleteMailbox(root: string, dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  fsyncDir(root);
}

/** Rename a folder and its children (".A" and ".A.*" to ".B" and ".B.*"). */
export function renameMailbox(root: string, from: string, to: string): void {
  const moves: [string, string][] = [];
  for (const n of readdirSync(root)) {
    if (n === `.${from}` || n.startsWith(`.${from}.`)) moves.push([n, `.${to}${n.slice(from.length + 1)}`]);
  }
  for (const [a, b] of moves) renameSync(join(root, a), join(root, b));
  fsyncDir(root);
}

const SUBS = 'subscriptions';

export function readSubscriptions(root: string): Set<string> {
  try {
    return new Set(readFileSync(join(root, SUBS), 'utf8').split('\n').filter((s) => s.length > 0 && s.length <= 255));
  } catch {
    return new Set();
  }
}

export function writeSubscriptions(root: string, subs: Set<string>): void {
  mkdirSync(root, { recursive: true, mode: 0o700 });
  writeFileDurable(join(root, SUBS), [...subs].join('\n') + '\n', root);
}
