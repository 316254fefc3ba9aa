import { afterAll, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { startServer, type RunningServer } from '../../src/api/server.ts';

let s: RunningServer | undefined;
const dir = mkdtempSync(join(tmpdir(), 'nexus-mail-daemon-'));
afterAll(async () => {
  await s?.close();
  rmSync(dir, { recursive: true, force: true });
});

it('startServer runs the MX and submission, shows them in status, and greets on each', async () => {
  const { initDataDir } = await import('../../src/core/platform.ts');
  await (await initDataDir(dir, {})).close();
  s = await startServer({ dataDir: dir, port: 0, logger: false, mail: { hostname: 'mx.test', smtpPort: 0, submissionPort: 0, smtpsPort: null, resolver: { rootHints: [{ name: 'root.', address: '127.0.0.1', port: 9 }] } } });
  const status = await s.status();
  const mail = status.listeners.filter((l) => l.service === 'smtp' || l.service === 'submission');
  expect(mail.map((l) => l.service).sort()).toEqual(['smtp', 'submission']);
  for (const l of mail) {
    const greeting = await new Promise<string>((resolve, reject) => {
      const c = net.connect(l.port, '127.0.0.1');
      c.once('data', (d) => (c.destroy(), resolve(d.toString())));
      c.once('error', reject);
    });
    expect(greeting).toMatch(/^220 mx\.test ESMTP/);
  }
  expect(s.mail!.identity.name).toBe('mail');
});

// As root with no mail port given, `nexus serve` serves mail on the well-known ports.
it('chooses 25, 587, 465, 143 and 993 as root when no port is given, none otherwise or with --no-mail, and a given port wins', async () => {
  const { smtpPorts, imapPorts } = await import('../../src/api/server.ts');
  expect(smtpPorts({}, {}, true)).toEqual({ smtpPort: 25, submissionPort: 587, smtpsPort: 465 });
  expect(imapPorts({}, {}, true)).toEqual({ port: 143, tlsPort: 993 });
  expect(smtpPorts({}, {}, false)).toBeNull();
  expect(imapPorts({}, {}, false)).toBeNull();
  expect(smtpPorts({ mail: false }, {}, true)).toBeNull();
  expect(imapPorts({}, { NEXUS_MAIL: 'false' }, true)).toBeNull();
  expect(smtpPorts({ smtpPort: 2525 }, {}, true)).toEqual({ smtpPort: 2525, submissionPort: null, smtpsPort: null });
  expect(imapPorts({}, { NEXUS_IMAPS_PORT: '9993' }, true)).toEqual({ tlsPort: 9993 });
});

const free = (port: number) =>
  new Promise<boolean>((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });

it.skipIf(process.getuid?.() !== 0)('a daemon started as root with no mail flags greets on 25 (SMTP) and 143 (IMAP)', async () => {
  for (const p of [25, 587, 465, 143, 993]) expect(await free(p), `port ${p} is taken on this machine`).toBe(true);
  const { spawnDaemon } = await import('../support/daemon.ts');
  const data = mkdtempSync(join(tmpdir(), 'nexus-mail-root-'));
  const d = await spawnDaemon(data, [], { env: { NEXUS_MAIL: '' } });
  try {
    const greet = (port: number) =>
      new Promise<string>((resolve, reject) => {
        const c = net.connect(port, '127.0.0.1');
        c.once('data', (b) => (c.destroy(), resolve(b.toString())));
        c.once('error', reject);
      });
    expect(await greet(25)).toMatch(/^220 .*ESMTP/);
    expect(await greet(143)).toMatch(/^\* OK/);
  } finally {
    await d.stop();
    rmSync(data, { recursive: true, force: true });
  }
}, 120_000);
