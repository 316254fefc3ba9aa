// Billing attacks against a running daemon, over HTTP: inflated usage signed with the DNS service's
// own key, a new service reporting a metric it does not meter, usage for a month the daemon has
// sealed by itself. Each is refused (403, gate 6) and recorded; statements come from the running
// totals and equal the ones recomputed from the ledger; the data directory still verifies.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { initDataDir } from '../../src/core/platform.ts';
import { loadPrivateKey } from '../../src/core/identity/keys.ts';
import { serviceKeyPath } from '../../src/core/service-identity.ts';
import { statement, statementToJson } from '../../src/core/handshake/index.ts';
import { verifyDataDir } from '../../src/core/policy/verify.ts';
import type { LedgerEntry } from '../../src/core/types.ts';
import { Client, newKey, type Actor } from '../support/api.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import type { KeyObject } from 'node:crypto';

const DAY = 86_400_000;
let dir: string;
let server: RunningServer;
let client: Client;
let platformKey: KeyObject;
let origin: string;
let alice: Actor;
let dns: Actor;
let imvu: string;
/** The month the data directory was created in, two months back: sealed by the daemon at start. */
let oldMonth: string;
/** When the IMVU was created (its entry's time): no usage interval may start earlier. */
let createdAt: number;

const month = (ms: number) => new Date(ms).toISOString().slice(0, 7);

async function entries(): Promise<LedgerEntry[]> {
  const out: LedgerEntry[] = [];
  for (;;) {
    const r = await client.get<{ entries: LedgerEntry[]; next?: number }>(`/v1/ledger/entries?from=${out.length}`);
    out.push(...r.body.entries);
    if (r.body.next === undefined) return out;
  }
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nexus-billing-'));
  const past = Date.now() - 62 * DAY;
  oldMonth = month(past);
  // A platform initialised two months ago (its genesis, first price book and capacities are dated then).
  const init = await initDataDir(dir, {}, { clock: () => new Date(past) });
  platformKey = init.platformKey;
  origin = init.config.origin;
  await init.close();
  server = await startServer({ dataDir: dir, port: 0, logger: false, dns: { port: 0, meterIntervalMs: 3_600_000 } });
  client = new Client(server.url, { name: 'platform', id: init.platformId, key: platformKey });
  const k = newKey();
  alice = { name: 'alice', id: k.id, key: k.key };
  expect((await client.as(alice, 'POST', '/v1/identities', 'identity.register', { name: 'alice', role: 'creator', publicKey: k.publicKey })).status).toBe(201);
  const created = await client.as(alice, 'POST', '/v1/imvus', 'imvu.create', { name: 'Gallery', owner: alice.id, jurisdiction: 'US-CCPA' });
  expect(created.status, created.text).toBe(201);
  imvu = (created.body.imvu as { id: string }).id;
  createdAt = Date.parse((await client.entry(created.body.index as number)).at);
  await new Promise((r) => setTimeout(r, 50));
  dns = { name: 'dns', id: server.dns!.identity.id, key: loadPrivateKey(serviceKeyPath(dir, 'dns')) };
});
afterAll(async () => {
  await server?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function usage(actor: Actor, start: number, end: number, metrics: Record<string, string>) {
  return client.as(actor, 'POST', '/v1/usage', 'usage.report', { imvu, service: actor.name, period: { start: new Date(start).toISOString(), end: new Date(end).toISOString() }, metrics });
}

function reason(body: unknown): string {
  return ((body as { gates?: { status: string; reason?: string }[] }).gates ?? []).filter((g) => g.status === 'deny').map((g) => g.reason).join('; ');
}

describe('billing against the daemon', () => {
  it('seals the months that ended while it was not running, by itself, at start', async () => {
    const closes = await until('the daemon to close the old months', async () => {
      const found = (await entries()).filter((e) => e.command.command.type === 'period.close' && e.decision.allowed);
      return found.length >= 2 ? found : undefined;
    });
    expect(closes.map((e) => (e.command.command.body as { period: string }).period).slice(0, 2)).toEqual([oldMonth, month(Date.parse(`${oldMonth}-15T00:00:00Z`) + 31 * DAY)]);
    const platform = (await client.get<{ id: string }>('/v1/platform')).body.id;
    expect(closes.every((e) => e.command.command.actor === platform)).toBe(true);
  });

  it('the DNS meter is named in the ledger, signed by the platform, for creators to see', async () => {
    const reg = (await entries()).find((e) => e.command.command.type === 'meter.register');
    expect(reg?.command.command.body).toEqual({ identity: dns.id, metrics: ['dns.queries'] });
    expect(reg?.decision.allowed).toBe(true);
  });

  it('5,000,000,000 DNS queries in one report, signed with the dns service key itself: 403, recorded', async () => {
    const r = await usage(dns, createdAt, Date.now() - 1, { 'dns.queries': '5000000000' });
    expect(r.status, r.text).toBe(403);
    expect(reason(r.body)).toMatch(/5000000000 dns.queries in [0-9.]+ s is more than .* can physically use: at most \d+ \(the published capacity/);
    expect((await client.entry(r.body.index as number)).decision.allowed).toBe(false);
  });

  it('a brand-new billing service reporting DNS queries: 403, recorded', async () => {
    const k = newKey();
    const billing: Actor = { name: 'billing', id: k.id, key: k.key };
    const reg = await client.request('POST', '/v1/identities', signCommand(platformKey, 'identity.register', { name: 'billing', role: 'service', publicKey: k.publicKey }, { origin }));
    expect(reg.status, reg.text).toBe(201);
    const r = await usage(billing, createdAt, Date.now() - 1, { 'dns.queries': '10' });
    expect(r.status).toBe(403);
    expect(reason(r.body)).toMatch(/dns.queries is metered by dns .*, not by billing/);
  });

  it('usage for a sealed month: 403, recorded', async () => {
    const start = Date.parse(`${oldMonth}-20T10:00:00.000Z`);
    const r = await usage(dns, start, start + 60_000, { 'dns.queries': '100' });
    expect(r.status).toBe(403);
    expect(reason(r.body)).toMatch(new RegExp(`period ${oldMonth} is closed \\(ledger entry \\d+\\): nothing more can be reported for it`));
  });

  it('statements are served from the running totals, equal to the ones recomputed from the ledger; sealed ones say by which entry', async () => {
    const current = month(Date.now());
    // Some usage for the current month, as the meter reports it.
    const ok = await usage(dns, createdAt, Date.now() - 1, { 'dns.queries': '1234' });
    expect(ok.status, ok.text).toBe(200);
    const all = await entries();
    const s = await client.get(`/v1/statements/${imvu}/${current}`);
    expect(s.status, s.text).toBe(200);
    expect(s.body).toEqual({ ...statementToJson(statement(all, imvu, current)), closedBy: null });
    expect(s.body).toMatchObject({ total: '13', creator: '8', platform: '5' });
    const sealed = await client.get(`/v1/statements/${imvu}/${oldMonth}`);
    const close = all.find((e) => e.command.command.type === 'period.close' && (e.command.command.body as { period: string }).period === oldMonth)!;
    expect(sealed.body).toEqual({ ...statementToJson(statement(all, imvu, oldMonth)), closedBy: close.index });
  });

  it('the data directory verifies after all of it', async () => {
    await server.close();
    const report = await verifyDataDir(dir);
    expect(report.problems).toEqual([]);
  });
});
