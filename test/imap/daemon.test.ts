// The daemon starts IMAP when asked (--imap-port): a real client reaches it, and until app
// passwords are wired in, the default authenticate refuses everyone.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ImapFlow } from 'imapflow';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { initDataDir } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';

let dir: string;
let server: RunningServer;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nexus-imap-'));
  await (await initDataDir(dir)).close();
  server = await startServer({ dataDir: dir, port: 0, logger: false, imap: { port: 0 } });
});
afterAll(async () => {
  await server.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('nexus serve with IMAP', () => {
  it('lists the IMAP listener and refuses every login by default', async () => {
    const st = await server.status();
    const l = st.listeners.find((x) => x.service === 'imap');
    expect(l?.protocol).toBe('imap');
    const c = new ImapFlow({ host: '127.0.0.1', port: l!.port, secure: false, doSTARTTLS: false, auth: { user: 'a@b.example', pass: 'x' }, logger: false } as ConstructorParameters<typeof ImapFlow>[0]);
    // Without TLS the server offers no login at all (LOGINDISABLED): refused either way.
    await expect(c.connect()).rejects.toThrow();
  });
});
