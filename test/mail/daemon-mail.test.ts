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
