// Mail between two nexus instances (issue 11 item 6): two daemons, each with its own data
// directory, platform suffix (alpha, beta), authoritative DNS, MX, submission and outbound queue,
// on loopback. A root server delegates each suffix to its daemon's DNS; each queue finds the other
// IMVU's MX through the project's resolver from that root, delivers over SMTP with STARTTLS, and
// the receiving MX verifies SPF, DKIM and DMARC against the sender's DNS (mailauth verdicts in
// Authentication-Results, its Received trace says ESMTPS). python3-dkim, a verifier we did not
// write, checks the stored copy against the sender's DNS server too.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import nodemailer from 'nodemailer';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { generateKeyPair, identityIdFromPublicKey, publicKeyRaw } from '../../src/core/identity/keys.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { initDataDir } from '../../src/core/platform.ts';
import type { CommandType, Json } from '../../src/core/types.ts';
import { hashAppPassword } from '../../src/mail/auth/app-password.ts';
import { mailboxRoot } from '../../src/mail/maildir/paths.ts';
import { soa, startFixedZoneServer, type FixedZoneServer } from '../support/fixed-zone-server.ts';
import { freePort } from '../support/postfix.ts';

const VERIFY = join(import.meta.dirname, '..', 'support', 'dkimverify-dig.py');
const ROOT = '127.0.54.3';
const DNS = { alpha: '127.0.54.1', beta: '127.0.54.2' } as const;
type Side = keyof typeof DNS;

interface Nexus {
  side: Side;
  dir: string;
  server: RunningServer;
  creator: { id: string; key: import('node:crypto').KeyObject };
  domain: string;
  origin: string;
}

async function post(url: string, path: string, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

let root: FixedZoneServer;
let port: number;
const nexus = {} as Record<Side, Nexus>;
const PASSWORD = 'two nexus pass';

async function startNexus(side: Side, mxPort: number, otherMxPort: number): Promise<Nexus> {
  const dir = mkdtempSync(join(tmpdir(), `nexus-two-${side}-`));
  await (await initDataDir(dir, { suffix: side })).close();
  const rootHints = [{ name: 'a.root', address: ROOT, port }];
  const server = await startServer({
    dataDir: dir,
    port: 0,
    logger: false,
    dns: { address: DNS[side], port },
    mail: { hostname: `mail.${side}`, smtpPort: mxPort, submissionPort: 0, smtpsPort: null, resolver: { rootHints, upstreamPort: port, limits: { timeoutMs: 1000, requestTimeoutMs: 4000 } } },
    // The other nexus's MX listens on its own port of 127.0.0.1 (both edges are 127.0.0.1).
    mailOut: { rootHints, upstreamPort: port, relayPort: otherMxPort, hostname: `mail.${side}`, retry: { baseMs: 300, maxMs: 2000, maxAttempts: 30 } },
  });
  const origin = ((await (await fetch(`${server.url}/v1/platform`)).json()) as { origin: string }).origin;
  const { privateKey } = generateKeyPair();
  const raw = publicKeyRaw(privateKey);
  const id = identityIdFromPublicKey(raw);
  const sign = (type: CommandType, body: { [k: string]: Json }) => signCommand(privateKey, type, body, { origin });
  expect((await post(server.url, '/v1/identities', sign('identity.register', { name: `creator-${side}`, role: 'creator', publicKey: raw.toString('base64') }))).status).toBe(201);
  expect((await post(server.url, '/v1/imvus', sign('imvu.create', { name: 'Gallery', owner: id, jurisdiction: 'US-CCPA' }))).status).toBe(201);
  const domain = `imvu001.${side}`;
  const set = await post(server.url, '/v1/commands', sign('mail.password.set', { imvu: 'IMVU-001', address: `creator@${domain}`, hash: await hashAppPassword(PASSWORD) }));
  expect(set.status, JSON.stringify(set.body)).toBeLessThan(300);
  return { side, dir, server, creator: { id, key: privateKey }, domain, origin };
}

beforeAll(async () => {
  // The root on a free port; both daemons' DNS servers on the same port at their own addresses,
  // as name servers share port 53 (the resolver asks referred servers on one port).
  root = await startFixedZoneServer({
    address: ROOT,
    port: 0,
    zones: [
      {
        origin: '',
        records: [
          soa('', 300),
          { name: '', type: 'NS', data: 'a.root.' },
          { name: 'a.root', type: 'A', data: ROOT },
          { name: 'alpha', type: 'NS', data: 'ns1.alpha.' },
          { name: 'ns1.alpha', type: 'A', data: DNS.alpha },
          { name: 'beta', type: 'NS', data: 'ns1.beta.' },
          { name: 'ns1.beta', type: 'A', data: DNS.beta },
        ],
      },
    ],
  });
  port = root.port;
  const [mxA, mxB] = [await freePort(), await freePort()];
  nexus.alpha = await startNexus('alpha', mxA, mxB);
  nexus.beta = await startNexus('beta', mxB, mxA);
}, 120_000);

afterAll(async () => {
  for (const n of Object.values(nexus)) {
    await n.server.close().catch(() => undefined);
    rmSync(n.dir, { recursive: true, force: true });
  }
  await root?.close();
});

function inbox(n: Nexus): string[] {
  const dir = join(mailboxRoot(n.dir, 'IMVU-001', `creator@${n.domain}`), 'new');
  try {
    return readdirSync(dir).map((f) => readFileSync(join(dir, f), 'latin1'));
  } catch {
    return [];
  }
}

function dkimverify(message: string, address: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn('/usr/bin/python3', [VERIFY, address, String(port)], { timeout: 30_000 });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('error', reject);
    c.on('close', () => resolve(out));
    c.stdin.end(Buffer.from(message, 'latin1'));
  });
}

async function until<T>(what: string, f: () => T | undefined, ms = 60_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('mail between two nexus instances', () => {
  it.each([
    ['alpha', 'beta'],
    ['beta', 'alpha'],
  ] as const)('%s -> %s: MX found through the resolver, STARTTLS, DKIM/SPF/DMARC pass at the receiver', async (from, to) => {
    const s = nexus[from];
    const r = nexus[to];
    const subject = `from ${from} to ${to}`;
    const submission = nodemailer.createTransport({
      host: '127.0.0.1',
      port: s.server.mail!.submission!.port,
      secure: false,
      requireTLS: true,
      tls: { rejectUnauthorized: false },
      auth: { user: `creator@${s.domain}`, pass: PASSWORD },
    });
    const info = await submission.sendMail({ from: `creator@${s.domain}`, to: `creator@${r.domain}`, subject, text: `Hello from ${from}.` });
    expect(info.response).toMatch(/^250/);
    const got = await until(`the message in ${to}'s mailbox`, () => inbox(r).find((m) => m.includes(`Subject: ${subject}`)));
    const unfolded = got.replace(/\r\n[ \t]+/g, ' ');
    // The receiving MX's trace: the sender's queue upgraded the session to TLS.
    expect(unfolded).toMatch(new RegExp(`Received: from mail\\.${from} \\(\\[127\\.0\\.0\\.1\\]\\) by mail\\.${to} with ESMTPS \\(using TLSv1\\.[23] with cipher`));
    // mailauth's verdicts at the receiver, from the sender's DNS.
    const ar = /^Authentication-Results: [^\r\n]*/m.exec(unfolded)![0];
    expect(ar).toMatch(new RegExp(`^Authentication-Results: mail\\.${to};`));
    expect(ar).toMatch(new RegExp(`dkim=pass header\\.i=@imvu001\\.${from} header\\.s=nexus1`));
    expect(ar).toMatch(new RegExp(`spf=pass [^;]*smtp\\.mailfrom=creator@imvu001\\.${from}`));
    expect(ar).toMatch(new RegExp(`dmarc=pass [^;]*header\\.from=imvu001\\.${from}`));
    expect(got).toContain(`X-Nexus-Attribution: identity=${s.creator.id}; imvu=IMVU-001`);
    // And a verifier we did not write, asking the sender's DNS server.
    expect(await dkimverify(got, DNS[from])).toContain('signature ok');
  }, 120_000);
});
