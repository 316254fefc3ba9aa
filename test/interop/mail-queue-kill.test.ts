import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, describe, expect, it } from 'vitest';
import { startSink, type Sink } from '../support/smtp-sink.ts';

// A process holding the outbound queue is killed with SIGKILL while messages are queued, one of
// them in the middle of its SMTP transaction (the receiver holds its MAIL FROM). A new process on
// the same data directory delivers every message whose enqueue had resolved, none twice, counted
// at a receiving SMTP server we did not write (smtp-server).

const CHILD = join(import.meta.dirname, '..', 'support', 'mail-queue-child.ts');
const N = 20;
const FIRST_BATCH = 5;

interface Child {
  proc: ChildProcess;
  lines: string[];
  waitFor(pred: (lines: string[]) => boolean, ms?: number): Promise<void>;
}

function startChild(dataDir: string, port: number): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, dataDir, String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    lines.push(l);
    for (const w of waiters) w();
  });
  return {
    proc,
    lines,
    waitFor: (pred, ms = 60_000) =>
      new Promise<void>((resolve, reject) => {
        if (pred(lines)) return resolve();
        const t = setTimeout(() => reject(new Error(`timed out; child said: ${lines.slice(-5).join(' | ')}`)), ms);
        waiters.push(() => {
          if (pred(lines)) {
            clearTimeout(t);
            resolve();
          }
        });
      }),
  };
}

const dirs: string[] = [];
let sink: Sink | undefined;
const children: ChildProcess[] = [];
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await sink?.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('outbound queue survives kill -9', () => {
  it('delivers every accepted message after a restart, none twice', { timeout: 120_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'nexus-mailq-'));
    dirs.push(dataDir);
    let hold = true;
    const held: (() => void)[] = [];
    let heldSignal: () => void = () => {};
    const holding = new Promise<void>((r) => (heldSignal = r));
    sink = await startSink({
      // The first FIRST_BATCH messages go through; then every MAIL FROM waits (a transaction in flight).
      mailFrom: (_from, count) => {
        if (!hold || count < FIRST_BATCH) return;
        heldSignal();
        return new Promise<void>((r) => held.push(r));
      },
    });

    const a = startChild(dataDir, sink.port);
    children.push(a.proc);
    await a.waitFor((l) => l.some((x) => x.startsWith('started')));
    for (let i = 0; i < N; i++) {
      const raw = Buffer.from(`From: <creator@imvu001.world>\r\nTo: <r${i}@outside.test>\r\nSubject: m${i}\r\nMessage-ID: <m${i}@imvu001.world>\r\n\r\nbody ${i}\r\n`);
      a.proc.stdin!.write(JSON.stringify({ mailFrom: 'creator@imvu001.world', rcptTo: [`r${i}@outside.test`], raw: raw.toString('base64') }) + '\n');
    }
    await a.waitFor((l) => l.filter((x) => x.startsWith('ok ')).length === N);
    await holding;
    // Every message accepted, FIRST_BATCH delivered, one in mid-transaction: kill -9.
    a.proc.kill('SIGKILL');
    await new Promise((r) => a.proc.once('exit', r));
    const accepted = a.lines.filter((x) => x.startsWith('ok ')).map((x) => x.split(' ')[2]!);
    expect(accepted).toHaveLength(N);
    expect(sink.messages).toHaveLength(FIRST_BATCH);
    // What is on disk: the undelivered messages, one of them marked in flight.
    const left = readdirSync(join(dataDir, 'mail-queue')).filter((f) => f.endsWith('.json'));
    expect(left).toHaveLength(N - FIRST_BATCH);

    hold = false;
    for (const r of held) r();
    const b = startChild(dataDir, sink.port);
    children.push(b.proc);
    await b.waitFor((l) => l.some((x) => x.startsWith('started')));
    expect(b.lines.find((x) => x.startsWith('started'))).toBe(`started ${N - FIRST_BATCH} 1`);
    await b.waitFor((l) => l.includes('idle'));
    b.proc.kill('SIGTERM');

    const ids = sink.messages.map((m) => /Message-ID: <([^>]+)>/i.exec(m.raw.toString())![1]);
    expect(ids).toHaveLength(N);
    expect(new Set(ids).size).toBe(N);
    expect(new Set(ids)).toEqual(new Set(Array.from({ length: N }, (_, i) => `m${i}@imvu001.world`)));
    expect(readdirSync(join(dataDir, 'mail-queue'))).toEqual([]);
  });
});
