// The daemon as a real process: kill -9 right after acknowledgements loses nothing, SIGTERM lets
// commands in flight commit and exits 0, and the data directory verifies afterwards.
import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { signCommand } from '../core/identity/envelope.ts';
import { decodeEntry } from '../core/ledger/ledger.ts';
import { verifyDataDir } from '../core/policy/verify.ts';
import { openStore } from '../core/store/index.ts';
import type { LedgerEntry, SignedCommand } from '../core/types.ts';
import { dkimKeyPath } from '../imvu/provision.ts';
import { Client, newKey } from '../../test/support/api.ts';
import { spawnDaemon } from '../../test/support/daemon.ts';

const dir = mkdtempSync(join(tmpdir(), 'nexus-daemon-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Acked {
  index: number;
  sent: SignedCommand;
}

/**
 * Sends every command at once and calls `onFirstAck` synchronously inside the first 2xx. Every 2xx
 * that reaches the client counts as acknowledged, even one read after the kill: it was written.
 */
function burst(client: Client, requests: { method: string; path: string; body: SignedCommand }[], onFirstAck: () => void): { acked: Acked[]; all: Promise<unknown> } {
  const acked: Acked[] = [];
  const all = Promise.all(
    requests.map((r) =>
      client.request(r.method, r.path, r.body).then(
        (res) => {
          if (res.status >= 300) return;
          acked.push({ index: res.body.index as number, sent: r.body });
          if (acked.length === 1) onFirstAck();
        },
        () => undefined, // the connection died with the daemon: not acknowledged
      ),
    ),
  );
  return { acked, all };
}

async function until(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('the daemon process', () => {
  it('kill -9 right after acknowledgements loses none of them; SIGTERM drains in-flight commands and exits 0', { timeout: 90_000 }, async () => {
    const alice = { name: 'alice', ...newKey() };
    const acked: Acked[] = [];
    const send = async (client: Client, method: string, path: string, body: SignedCommand) => {
      const r = await client.request(method, path, body);
      expect(r.status, r.text).toBeLessThan(300);
      acked.push({ index: r.body.index as number, sent: body });
      return r;
    };

    // First run: the daemon initialises the data directory itself.
    const first = await spawnDaemon(dir);
    const c1 = new Client(first.url);
    const origin = await c1.origin();
    await send(c1, 'POST', '/v1/identities', signCommand(alice.key, 'identity.register', { name: 'alice', role: 'creator', publicKey: alice.publicKey }, { origin: origin }));
    const created = await send(c1, 'POST', '/v1/imvus', signCommand(alice.key, 'imvu.create', { name: 'Durable', owner: alice.id, jurisdiction: 'EU-GDPR' }, { origin: origin }));
    const imvu = created.body.imvu as { id: string; domain: string };
    const record = (i: number) => ({
      method: 'POST',
      path: `/v1/zones/${imvu.domain}/records`,
      body: signCommand(alice.key, 'dns.record.add', { zone: imvu.domain, name: `host${i}`, type: 'A', value: `192.0.2.${i}` }, { origin: origin }),
    });
    // A burst that is fully acknowledged, then kill -9 the moment the next burst's first answer arrives.
    await Promise.all(Array.from({ length: 20 }, (_, i) => send(c1, record(i).method, record(i).path, record(i).body)));
    const b = burst(c1, Array.from({ length: 20 }, (_, i) => record(100 + i)), () => first.child.kill('SIGKILL'));
    expect(await first.exited).toMatchObject({ signal: 'SIGKILL' });
    await b.all;
    acked.push(...b.acked);
    expect(acked.length).toBeGreaterThanOrEqual(23);

    // Second run on the same directory: every acknowledged command is there, as sent, allowed.
    const second = await spawnDaemon(dir);
    // Alice reads what she wrote (her own signed reads: she created the IMVU and signed every command).
    const c2 = new Client(second.url, alice);
    for (const a of acked) {
      const e = await c2.entry(a.index);
      expect(e.command).toEqual(a.sent);
      expect(e.decision.allowed).toBe(true);
    }
    const zone = (await c2.get<{ records: { name: string }[] }>(`/v1/zones/${imvu.domain}/records`)).body.records.map((r) => r.name);
    for (const a of acked.filter((x) => x.sent.command.type === 'dns.record.add')) expect(zone).toContain(`${String(a.sent.command.body.name)}.${imvu.domain}`);
    expect(statSync(dkimKeyPath(dir, imvu.id)).mode & 0o777).toBe(0o600);
    expect((await c2.get(`/v1/imvus/${imvu.id}`)).body.dkim).toMatchObject({ selector: 'nexus1' });

    // SIGTERM while IMVU creations are in flight (the daemon has logged receiving them; DKIM key
    // generation keeps them busy): they still commit and are answered, then the exit is clean.
    const names = ['DrainA', 'DrainB', 'DrainC'];
    const creates = names.map((name) => {
      const body = signCommand(alice.key, 'imvu.create', { name, owner: alice.id, jurisdiction: 'EU-GDPR' }, { origin: origin });
      return c2.request('POST', '/v1/imvus', body).then((res) => ({ res, body }));
    });
    const incoming = () => second.output.filter((l) => l.includes('"msg":"incoming request"') && l.includes('"url":"/v1/imvus"')).length;
    await until('the daemon to receive the creations', () => incoming() === names.length);
    second.child.kill('SIGTERM');
    for (const { res, body } of await Promise.all(creates)) {
      expect(res.status, res.text).toBe(201);
      acked.push({ index: res.body.index as number, sent: body });
    }
    expect(await second.exited).toEqual({ code: 0, signal: null });
    expect(second.output.join('\n')).toMatch(/store closed; bye/);

    // Offline: the log verifies (signatures, tree, replay through the gates, projections).
    const report = await verifyDataDir(dir);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    const store = openStore(dir);
    try {
      for (const a of acked) {
        const [data] = await store.readEntries(a.index, a.index + 1);
        expect((decodeEntry(data!) as LedgerEntry).command).toEqual(a.sent);
      }
    } finally {
      await store.close();
    }
    expect(existsSync(join(dir, 'keys', 'platform.key'))).toBe(true);
  });

  it('refuses a bad configuration with one line on stderr and exit code 2', { timeout: 30_000 }, async () => {
    const err = await spawnDaemon(join(dir, 'unused'), ['--port', 'eighty']).then(
      () => 'started',
      (e: Error) => e.message,
    );
    expect(err).toMatch(/exited \(code 2[,)]/);
    expect(err).toMatch(/nexus serve: invalid --port "eighty": must be an integer 0-65535\n/);
  });
});
