// Gate 16 for mail: credentials of IMVU A never open, list, select, append to or copy into anything
// of IMVU B. Every command that takes a mailbox name is tried with names that point at B's
// mailbox, and every refusal is recorded.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { A, B, deliver, sampleMessage, startTestServer, type TestServer } from './helpers.ts';
import { Raw } from './raw.ts';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
  deliver(t.rootA, sampleMessage(1));
  deliver(t.rootB, sampleMessage(2, ' secret of B'));
});
afterAll(() => t.close());

function treeHash(dir: string): string {
  const h = createHash('sha256');
  const walk = (d: string): void => {
    for (const n of readdirSync(d).sort()) {
      const p = join(d, n);
      const st = statSync(p);
      h.update(relative(dir, p));
      if (st.isDirectory()) walk(p);
      else h.update(readFileSync(p));
    }
  };
  walk(dir);
  return h.digest('hex');
}

describe('IMAP isolation between IMVUs (gate 16)', { timeout: 60_000 }, () => {
  it('refuses every mailbox-taking command on names that reach B', async () => {
    // Let B's own session create its index first, so B's tree is what it will stay.
    const b = await Raw.open(t.server.port!);
    expect(await b.cmd('b1', `LOGIN ${B.user} ${B.pass}`)).toContain('b1 OK');
    expect(await b.cmd('b2', 'SELECT INBOX')).toContain('1 EXISTS');
    b.close();
    // A planted link inside A's root that leads to B (only someone with disk access could plant it).
    symlinkSync(t.rootB, join(t.rootA, '.Linked'));
    const before = treeHash(t.rootB);
    const names = [
      t.rootB, `${t.rootB}/.Trash`, `../../../${B.imvu}/mail/${B.address}`, `../${B.address}`, '..', '.', '~bob', '~/../..',
      `INBOX/../../../../${B.imvu}`, '..\\..', 'Linked', 'a..b', '.hidden', '/etc',
    ];
    const c = await Raw.open(t.server.port!);
    expect(await c.cmd('a1', `LOGIN ${A.user} ${A.pass}`)).toContain('a1 OK');
    let n = 0;
    const q = (s: string): string => `"${s.replace(/[\\"]/g, '\\$&')}"`;
    const attempts: [string, string][] = [];
    for (const name of names) {
      const mb = q(name);
      attempts.push(
        ['SELECT', `SELECT ${mb}`], ['EXAMINE', `EXAMINE ${mb}`], ['CREATE', `CREATE ${mb}`], ['DELETE', `DELETE ${mb}`],
        ['RENAME', `RENAME ${mb} Mine`], ['RENAME', `RENAME Trash ${mb}`], ['SUBSCRIBE', `SUBSCRIBE ${mb}`],
        ['UNSUBSCRIBE', `UNSUBSCRIBE ${mb}`], ['STATUS', `STATUS ${mb} (MESSAGES UIDNEXT)`], ['LIST', `LIST ${mb} "*"`],
        ['LIST', `LIST "" ${mb}`], ['LSUB', `LSUB "" ${mb}`], ['GETQUOTAROOT', `GETQUOTAROOT ${mb}`],
        ['APPEND', `APPEND ${mb} {5+}\r\nhello`],
      );
    }
    for (const [cmd, text] of attempts) {
      const res = await c.cmd(`t${++n}`, text);
      const tagged = res.split('\r\n').find((l) => l.startsWith(`t${n} `))!;
      if ((cmd === 'LIST' || cmd === 'LSUB') && / OK /.test(tagged)) {
        // A pattern that can only match inside A's tree (e.g. the planted link's name) lists nothing.
        expect(res, text).not.toMatch(/^\* (LIST|LSUB)/m);
      } else {
        expect(tagged, text).toMatch(/ (NO|BAD) /);
      }
      expect(res).not.toContain('secret of B');
    }
    // COPY / MOVE / UID COPY / UID MOVE need a selected mailbox of A.
    expect(await c.cmd('s', 'SELECT INBOX')).toContain('s OK');
    for (const name of names) {
      for (const cmd of ['COPY 1', 'MOVE 1', 'UID COPY 1', 'UID MOVE 1']) {
        const res = await c.cmd(`t${++n}`, `${cmd} ${q(name)}`);
        expect(res.split('\r\n').find((l) => l.startsWith(`t${n} `)), `${cmd} ${name}`).toMatch(/ (NO|BAD) /);
      }
    }
    // A's message is still there (MOVE refused), B is byte for byte what it was.
    expect(await c.cmd('f', 'FETCH 1 (UID)')).toContain('* 1 FETCH');
    c.close();
    expect(treeHash(t.rootB)).toBe(before);
    // Every attempt that named something outside A's root was recorded, with the command.
    const commands = new Set(t.refusals.map((r) => r.command));
    for (const cmd of ['SELECT', 'EXAMINE', 'CREATE', 'DELETE', 'RENAME', 'SUBSCRIBE', 'UNSUBSCRIBE', 'STATUS', 'LIST', 'LSUB', 'GETQUOTAROOT', 'APPEND', 'COPY', 'MOVE']) {
      expect(commands, cmd).toContain(cmd);
    }
    expect(t.refusals.every((r) => r.imvu === A.imvu && r.address === A.address)).toBe(true);
    const absolute = t.refusals.filter((r) => r.mailbox === t.rootB);
    expect(absolute.map((r) => r.command).sort().join(" ")).toBe(
      "APPEND COPY COPY CREATE DELETE EXAMINE GETQUOTAROOT LIST LSUB MOVE MOVE RENAME RENAME SELECT STATUS SUBSCRIBE UNSUBSCRIBE",
    );
  });

  it('LIST shows only A\'s own mailboxes', async () => {
    const c = await Raw.open(t.server.port!);
    await c.cmd('a1', `LOGIN ${A.user} ${A.pass}`);
    const res = await c.cmd('a2', 'LIST "" "*"');
    expect(res).not.toContain(B.address);
    expect(res).not.toContain('Linked');
    c.close();
  });
});
