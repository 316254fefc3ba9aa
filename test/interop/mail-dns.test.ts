import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApi, type Actor, type TestApi } from '../support/api.ts';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { mailboxRoot } from '../../src/mail/maildir/paths.ts';

// The mail records of an IMVU zone as a real daemon serves them, read with dig; the MTA-STS
// policy they announce, fetched with curl by Host; and the daemon's own outbound queue.

const run = promisify(execFile);
let api: TestApi;
let alice: Actor;
let dnsPort: number;
const P = 'imvu001.world';

beforeAll(async () => {
  api = await startTestApi({
    dns: { address: '127.0.0.1', port: 0 },
    // Only hosted recipients here: no MX is looked up (the root hint answers nothing).
    mailOut: { rootHints: [{ name: 'a.root', address: '127.0.0.1', port: 9 }], hostname: 'mail.world' },
  });
  dnsPort = api.server.dns!.server.port;
  alice = await api.register('alice', 'creator');
  expect((await api.createImvu(alice, 'Gallery')).status).toBe(201);
}, 60_000);
afterAll(async () => {
  await api?.close();
});

async function dig(name: string, type: string): Promise<string[]> {
  const { stdout } = await run('dig', ['@127.0.0.1', '-p', String(dnsPort), '+short', type, name]);
  return stdout.trim().split('\n').filter(Boolean);
}

describe('mail DNS of an IMVU zone', () => {
  it('MX, SPF, DKIM, DMARC, MTA-STS and TLS-RPT, consistent with each other', async () => {
    // A new zone is served within a second of its commit (the zone view's refresh), not at once.
    let mx: string[] = [];
    for (let i = 0; i < 40 && mx.length === 0; i++) {
      mx = await dig(P, 'MX');
      if (mx.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(mx).toEqual([`10 mail.${P}.`]);
    const edge = await dig(`mail.${P}`, 'A');
    expect(edge).toHaveLength(1);
    expect(await dig(P, 'TXT')).toEqual(['"v=spf1 mx -all"']);
    expect(await dig(`_dmarc.${P}`, 'TXT')).toEqual([`"v=DMARC1; p=reject; rua=mailto:admin@${P}"`]);
    expect((await dig(`nexus1._domainkey.${P}`, 'TXT')).join('')).toMatch(/^"v=DKIM1; k=rsa; p=/);
    expect(await dig(`_mta-sts.${P}`, 'TXT')).toEqual(['"v=STSv1; id=nexus1"']);
    expect(await dig(`mta-sts.${P}`, 'A')).toEqual(edge);
    expect(await dig(`_smtp._tls.${P}`, 'TXT')).toEqual([`"v=TLSRPTv1; rua=mailto:admin@${P}"`]);
  });

  it('serves the MTA-STS policy for mta-sts.<domain> only, naming the MX the zone publishes', async () => {
    const port = new URL(api.server.url).port;
    const { stdout } = await run('curl', ['-sS', '-H', `Host: mta-sts.${P}`, '-w', '\n%{http_code} %{content_type}', `http://127.0.0.1:${port}/.well-known/mta-sts.txt`]);
    const lines = stdout.split('\n');
    expect(lines.at(-1)).toMatch(/^200 text\/plain/);
    const policy = lines.slice(0, -1).join('\n');
    expect(policy).toMatch(/^version: STSv1\r$/m);
    expect(policy).toMatch(/^mode: testing\r$/m);
    expect(policy).toMatch(new RegExp(`^mx: mail\\.${P.replace('.', '\\.')}\\r$`, 'm'));
    expect(policy).toMatch(/^max_age: \d+\r$/m);
    for (const host of ['mta-sts.imvu404.world', `www.${P}`, '127.0.0.1']) {
      const r = await run('curl', ['-sS', '-o', '/dev/null', '-H', `Host: ${host}`, '-w', '%{http_code}', `http://127.0.0.1:${port}/.well-known/mta-sts.txt`]);
      expect(r.stdout).toBe('404');
    }
  });

  it('the daemon runs the outbound queue: hosted recipients are delivered locally, signed and attributed', async () => {
    const q = api.server.mailQueue!;
    expect(q).toBeDefined();
    await q.enqueue({ imvu: 'IMVU-001', identity: alice.id, mailFrom: `creator@${P}`, rcptTo: [`admin@${P}`], raw: Buffer.from(`From: <creator@${P}>\r\nTo: <admin@${P}>\r\nSubject: hi\r\n\r\nhello\r\n`) });
    await q.idle();
    expect(q.counters.perImvu.get('IMVU-001')?.messages).toBe(1);
    const dir = join(mailboxRoot(api.dir, 'IMVU-001', `admin@${P}`), 'new');
    const [file] = readdirSync(dir);
    const msg = readFileSync(join(dir, file!), 'latin1');
    expect(msg).toMatch(/^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=imvu001\.world;/);
    expect(msg).toContain(`X-Nexus-Attribution: identity=${alice.id}; imvu=IMVU-001`);
  });
});
