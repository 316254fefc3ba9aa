// Python's mailbox.mbox (a reader nobody here wrote) reads the export back: the same messages, byte
// for byte once mboxrd's quoting is undone, with the flags in Status / X-Status.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureMaildir } from '../maildir/store.ts';
import { exportMboxToFile, readMaildirFolder } from './mbox.ts';

let dir: string;
const messages = [
  'From: a@example.org\r\nSubject: one\r\n\r\nFrom the start of a line\r\n>From already quoted\r\n>>From twice\r\nnot From here\r\n',
  'From: b@example.org\r\nSubject: two\r\nStatus: U\r\n\r\nbody two\r\n\r\nFrom \r\n',
  'From: c@example.org\r\nSubject: three, no final newline\r\n\r\nend',
];
const infos = ['S', 'FRS', 'T'];
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'mbox-'));
  ensureMaildir(dir);
  messages.forEach((m, i) => {
    writeFileSync(join(dir, 'tmp', `m${i}`), m);
    renameSync(join(dir, 'tmp', `m${i}`), join(dir, 'cur', `100${i}.m${i}.host:2,${infos[i]}`));
  });
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const PY = `
import mailbox, json, sys
out = []
box = mailbox.mbox(sys.argv[1])
for key in box.keys():
    b = box.get_bytes(key).decode('latin1')
    m = box.get_message(key)
    out.append({'bytes': b, 'status': m.get('Status'), 'xstatus': m.get('X-Status'), 'flags': m.get_flags()})
print(json.dumps(out))
`;

describe('mbox export', () => {
  it('writes the same bytes from messages already read as from the folder (the exit archive reads each once)', () => {
    const list = readMaildirFolder(dir);
    expect(list.map((m) => m.info)).toEqual(infos);
    expect(exportMboxToFile(list, join(dir, 'from-list.mbox'))).toBe(3);
    exportMboxToFile(dir, join(dir, 'from-dir.mbox'));
    expect(readFileSync(join(dir, 'from-list.mbox')).equals(readFileSync(join(dir, 'from-dir.mbox')))).toBe(true);
    expect(exportMboxToFile([], join(dir, 'empty.mbox'))).toBe(0);
    expect(readFileSync(join(dir, 'empty.mbox')).length).toBe(0);
  });

  it('is read back by Python\'s mailbox.mbox with the same messages and flags', () => {
    const file = join(dir, 'out.mbox');
    expect(exportMboxToFile(dir, file)).toBe(3);
    const got = JSON.parse(execFileSync('python3', ['-c', PY, file], { encoding: 'utf8' })) as { bytes: string; status: string; xstatus: string | null; flags: string }[];
    expect(got).toHaveLength(3);
    got.forEach((g, i) => {
      const unquoted = g.bytes.replace(/^>(>*From )/gm, '$1').replace(/^(Status|X-Status):.*\n/gm, '');
      const original = messages[i]!.replace(/\r\n/g, '\n').replace(/^Status:.*\n/m, '');
      // A message without a final newline gets one (an mbox separator needs a line of its own).
      expect(unquoted).toBe(original.endsWith('\n') ? original : original + '\n');
    });
    // mailbox.mboxMessage's own reading of the flags.
    expect(got.map((g) => g.flags.split('').sort().join(''))).toEqual(['OR', 'AFOR', 'DO']);
    expect(got.map((g) => [g.status, g.xstatus])).toEqual([['RO', null], ['RO', 'AF'], ['O', 'D']]);
  });
});
