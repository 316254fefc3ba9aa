// Python's imaplib (a client nobody here wrote) across the command list and a desktop first sync.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { A, deliver, sampleMessage, startTestServer, type TestServer } from './helpers.ts';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
  for (let i = 1; i <= 3; i++) deliver(t.rootA, sampleMessage(i));
});
afterAll(() => t.close());

describe('imaplib', () => {
  it('runs the command list and a desktop client first sync', async () => {
    const script = join(import.meta.dirname, 'imaplib_session.py');
    const { stdout } = await promisify(execFile)('python3', [script, String(t.server.port), A.user, A.pass], { timeout: 60_000 })
      .catch((e: { stdout: string; stderr: string }) => {
        throw new Error(`imaplib failed: ${e.stdout}\n${e.stderr}`);
      });
    expect(stdout).toContain('imaplib: ok');
  });
});
