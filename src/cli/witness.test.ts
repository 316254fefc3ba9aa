// The checkpoint memory against a real daemon: trust on first use, consistency on every contact,
// and a rewritten history (the platform re-signing a different log with the same key) caught by
// the creator's CLI, persistently, until acknowledged.
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { cpSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPair, identityIdFromPublicKey, publicKeyRaw } from '../core/identity/keys.ts';
import type { RunningServer } from '../api/server.ts';
import { startDaemon, submitDirect, tempDir } from '../../test/cli/harness.ts';
import { Client } from './client.ts';
import { CliError, EXIT } from './errors.ts';
import { Home } from './home.ts';
import { Witness, acknowledge, openAlarms } from './witness.ts';

const dirs: string[] = [];
const servers: RunningServer[] = [];
afterAll(async () => {
  for (const s of servers) await s.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function dir(prefix: string): string {
  const d = tempDir(prefix);
  dirs.push(d);
  return d;
}

async function daemon(dataDir: string, port = 0): Promise<RunningServer> {
  const s = await startDaemon(dataDir, port);
  servers.push(s);
  return s;
}

/** Registers `n` fresh creators: `n` new ledger entries. */
async function grow(url: string, n: number, prefix: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    const { privateKey } = generateKeyPair();
    const r = await submitDirect(url, '/v1/identities', privateKey, 'identity.register', { name: `${prefix}-${i}`, role: 'creator', publicKey: publicKeyRaw(privateKey).toString('base64') });
    expect(r.status).toBe(201);
  }
}

async function rejection(p: Promise<unknown>): Promise<CliError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(CliError);
    return err as CliError;
  }
  throw new Error('expected a rejection');
}

describe('witness (checkpoint memory)', () => {
  let home: Home;
  beforeEach(() => {
    home = new Home(dir('home'));
  });

  it('pins the platform key on first contact, saves the checkpoint, and follows a growing log', async () => {
    const s = await daemon(dir('data'));
    const w1 = new Witness(home, new Client(s.url));
    const first = await w1.contact();
    expect(first.previousSize).toBeNull();
    expect(home.platforms()[s.url]?.id).toBe(first.platform.id);
    expect(home.savedCheckpoint(first.platform.id)).toContain(`\n${first.checkpoint.size}\n`);

    await grow(s.url, 3, 'grow');
    const second = await new Witness(home, new Client(s.url)).contact();
    expect(second.previousSize).toBe(first.checkpoint.size);
    expect(second.checkpoint.size).toBe(first.checkpoint.size + 3);
    expect(home.savedCheckpoint(first.platform.id)).toBe(second.checkpoint.note);
  });

  it('proves a submitted entry is the signed command and is in the signed checkpoint', async () => {
    const s = await daemon(dir('data'));
    const w = new Witness(home, new Client(s.url));
    await w.contact();
    const { privateKey } = generateKeyPair();
    const r = await submitDirect(s.url, '/v1/identities', privateKey, 'identity.register', { name: 'proved', role: 'creator', publicKey: publicKeyRaw(privateKey).toString('base64') });
    const index = r.body.index as number;
    // Its signer reads the entry back (a signed read: the ledger is not public).
    const as = { id: identityIdFromPublicKey(publicKeyRaw(privateKey)), key: privateKey };
    expect((await rejection(w.entry(index))).message).toMatch(/must be signed/);
    const entry = await w.entry(index, as);
    const cp = await w.confirmEntry(index, entry.command.sig, as);
    expect(cp.size).toBeGreaterThan(index);
    const wrong = await rejection(w.confirmEntry(index, 'not-the-signature', as));
    expect(wrong.code).toBe(EXIT.verification);
    expect(wrong.message).toMatch(/not the command this CLI signed/);
  });

  it('detects a rewritten history signed with the same key, keeps failing until acknowledged, and keeps the evidence', async () => {
    const data = dir('data');
    let s = await daemon(data);
    const port = s.port;
    await grow(s.url, 2, 'before');
    const url = s.url;
    await new Witness(home, new Client(url)).contact();

    // The operator keeps a copy of the history so far...
    await s.close();
    const old = dir('old');
    cpSync(data, old, { recursive: true });
    // ...the log grows and the creator sees it...
    s = await daemon(data, port);
    await grow(url, 2, 'seen');
    const seen = await new Witness(home, new Client(url)).contact();
    const savedSize = seen.checkpoint.size;
    await s.close();

    // ...then the platform goes back to the copy and writes a different, longer history.
    s = await daemon(old, port);
    await grow(url, 4, 'rewritten');
    const err = await rejection(new Witness(home, new Client(url)).contact());
    expect(err.code).toBe(EXIT.verification);
    const newSize = savedSize + 2;
    expect(err.message).toBe(
      `the platform's log was rewritten: the checkpoint you saw at tree size ${savedSize} is not a prefix of the tree of size ${newSize}; ` +
        'run `nexus audit verify` to see the evidence and how to acknowledge it, and keep your saved checkpoint as evidence',
    );

    // The alarm persists: the next contact fails before it asks the daemon anything.
    const alarms = openAlarms(home);
    expect(alarms).toHaveLength(1);
    const alarm = alarms[0]!;
    expect(alarm).toMatchObject({ kind: 'rewritten', saved: { size: savedSize }, seen: { size: newSize }, url });
    expect(alarm.proof?.length).toBeGreaterThan(0);
    const again = await rejection(new Witness(home, new Client(url)).contact());
    expect(again.code).toBe(EXIT.verification);
    expect(again.message).toMatch(new RegExp(`tree size ${savedSize} is not a prefix of the tree of size ${newSize}`));
    // The saved checkpoint is untouched: it is the evidence.
    expect(home.savedCheckpoint(alarm.platformId)).toBe(alarm.saved!.note);

    // Acknowledging needs the code (shown with the evidence), files the evidence, and continues.
    expect(() => acknowledge(home, 'deadbeef')).toThrow(/no open alarm with code 'deadbeef'/);
    const { evidence } = acknowledge(home, alarm.code);
    expect(JSON.parse(readFileSync(evidence, 'utf8'))).toMatchObject({ code: alarm.code, acknowledgedAt: expect.any(String) });
    const filed = readdirSync(join(home.dir, 'evidence'));
    expect(filed.some((f) => f.endsWith(`saved-${savedSize}.note`))).toBe(true);
    expect(filed.some((f) => f.endsWith(`seen-${newSize}.note`))).toBe(true);
    expect(openAlarms(home)).toHaveLength(0);
    await grow(url, 1, 'after');
    const after = await new Witness(home, new Client(url)).contact();
    expect(after.previousSize).toBe(newSize);
    expect(after.checkpoint.size).toBe(newSize + 1);
  });

  it('detects a log that shrank (entries removed) and a platform whose key changed at the same URL', async () => {
    const data = dir('data');
    let s = await daemon(data);
    const { port, url } = s;
    await s.close();
    const old = dir('old');
    cpSync(data, old, { recursive: true });
    s = await daemon(data, port);
    await grow(url, 2, 'x');
    await new Witness(home, new Client(url)).contact();
    await s.close();

    s = await daemon(old, port);
    const shrank = await rejection(new Witness(home, new Client(url)).contact());
    expect(shrank.code).toBe(EXIT.verification);
    expect(shrank.message).toMatch(/is not a prefix of the tree of size \d+ \(entries were removed\)/);
    acknowledge(home, openAlarms(home)[0]!.code);
    await s.close();

    s = await daemon(dir('other'), port);
    const changed = await rejection(new Witness(home, new Client(url)).contact());
    expect(changed.code).toBe(EXIT.verification);
    expect(changed.message).toMatch(new RegExp(`the platform at ${url.replace(/[.]/g, '\\.')} changed its identity: it presents key nx1`));
    const alarm = openAlarms(home)[0]!;
    expect(alarm.kind).toBe('key-changed');
    acknowledge(home, alarm.code);
    expect(home.platforms()[url]?.id).toBe(alarm.presented?.id);
    await new Witness(home, new Client(url)).contact();
    await s.close();
  });

  it('refuses a saved checkpoint whose signature does not verify, and reports an unreachable daemon as exit 3', async () => {
    const s = await daemon(dir('data'));
    const first = await new Witness(home, new Client(s.url)).contact();
    const file = home.checkpointPath(first.platform.id);
    const note = readFileSync(file, 'utf8');
    const lines = note.split('\n');
    lines[1] = String(Number(lines[1]) + 1); // claim a bigger tree under the same signature
    writeFileSync(file, lines.join('\n'));
    const err = await rejection(new Witness(home, new Client(s.url)).contact());
    expect(err.code).toBe(EXIT.verification);
    expect(err.message).toMatch(/your saved checkpoint .* does not verify against the platform key/);
    expect(existsSync(join(home.dir, 'alarms'))).toBe(false);

    const { port } = s;
    await s.close();
    const down = await rejection(new Witness(new Home(dir('home')), new Client(`http://127.0.0.1:${port}`)).contact());
    expect(down.code).toBe(EXIT.unreachable);
    expect(down.message).toMatch(/cannot reach the daemon at http:\/\/127\.0\.0\.1:\d+ \(connection refused\)/);
  });
});
