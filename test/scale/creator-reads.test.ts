// A creator's lists cost that creator's IMVUs, not the platform's (issue 16, per-IMVU reads): the
// IMVU list and the identity list a creator reads are looked up by id and by role, never by reading
// every IMVU or every identity of the platform and filtering. Checked on the statements the API
// actually runs for the request, with SQLite's query plan, and on what each reader gets back.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { DB_FILE } from '../../src/core/store/index.ts';
import { startTestApi, type Actor, type TestApi } from '../support/api.ts';

let api: TestApi;
let alice: Actor;
let bob: Actor;

beforeAll(async () => {
  api = await startTestApi();
  alice = await api.register('alice', 'creator');
  bob = await api.register('bob', 'creator');
  expect((await api.createImvu(alice, 'Gallery')).status).toBe(201);
  expect((await api.createImvu(bob, 'Shop')).status).toBe(201);
  expect((await api.createImvu(alice, 'Studio')).status).toBe(201);
});
afterAll(async () => api?.close());

/** The statements (and their parameters) the store runs while `fn` runs. */
async function statements(fn: () => Promise<unknown>): Promise<{ sql: string; params: unknown[] }[]> {
  const seen: { sql: string; params: unknown[] }[] = [];
  const store = api.server.store as unknown as Record<'all' | 'get', (sql: string, params?: unknown[]) => Promise<unknown>>;
  const spies = (['all', 'get'] as const).map((m) => {
    const orig = store[m].bind(store);
    return vi.spyOn(store, m).mockImplementation((sql: string, params?: unknown[]) => {
      seen.push({ sql, params: params ?? [] });
      return orig(sql, params);
    });
  });
  try {
    await fn();
  } finally {
    for (const s of spies) s.mockRestore();
  }
  return seen;
}

/** Plan lines that read a whole table of `tables` (SCAN, not SEARCH through an index or key). */
function fullScans(sql: string, params: unknown[], tables: string[]): string[] {
  const db = new Database(join(api.dir, DB_FILE), { readonly: true });
  try {
    const plan = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...(params as never[])) as { detail: string }[];
    const aliases = new Set(tables);
    // `FROM imvus i`: the plan names the alias.
    for (const t of tables) for (const m of sql.matchAll(new RegExp(`\\b${t}\\s+(?:AS\\s+)?([a-z])\\b`, 'g'))) aliases.add(m[1]!);
    return plan.map((p) => p.detail).filter((d) => /^SCAN (\w+)/.test(d) && aliases.has(/^SCAN (\w+)/.exec(d)![1]!));
  } finally {
    db.close();
  }
}

describe("a creator's lists read the creator's rows only", () => {
  it('GET /v1/imvus: its own IMVUs, found by id', async () => {
    let res!: Awaited<ReturnType<TestApi['getAs']>>;
    const ran = await statements(async () => (res = await api.getAs<{ imvus: { id: string; owner: string }[] }>(alice, '/v1/imvus')));
    expect(res.status).toBe(200);
    const imvus = (res.body as unknown as { imvus: { id: string; owner: string }[] }).imvus;
    expect(imvus.map((i) => i.owner)).toEqual([alice.id, alice.id]);
    const lists = ran.filter((s) => /FROM imvus/.test(s.sql));
    expect(lists.length).toBeGreaterThan(0);
    for (const s of lists) expect(fullScans(s.sql, s.params, ['imvus']), s.sql).toEqual([]);
    // An admin (here the platform) still lists every IMVU.
    expect(((await api.get<{ imvus: unknown[] }>('/v1/imvus')).body.imvus).length).toBe(3);
  });

  it('GET /v1/identities: the public roles and the people of its IMVUs, found by role and id', async () => {
    let res!: Awaited<ReturnType<TestApi['getAs']>>;
    const ran = await statements(async () => (res = await api.getAs(alice, '/v1/identities')));
    expect(res.status).toBe(200);
    const ids = (res.body as unknown as { identities: { id: string; role: string }[] }).identities;
    expect(ids.some((i) => i.id === alice.id)).toBe(true);
    expect(ids.some((i) => i.id === bob.id)).toBe(false);
    expect(ids.some((i) => i.role === 'platform')).toBe(true);
    expect(ids.every((i) => i.id === alice.id || ['platform', 'admin', 'service'].includes(i.role))).toBe(true);
    const lists = ran.filter((s) => /FROM identities/.test(s.sql));
    expect(lists.length).toBeGreaterThan(0);
    for (const s of lists) expect(fullScans(s.sql, s.params, ['identities']), s.sql).toEqual([]);
    // The platform reads every identity.
    const all = (await api.get<{ identities: { id: string }[] }>('/v1/identities')).body.identities;
    expect(all.some((i) => i.id === bob.id)).toBe(true);
  });

  it("GET /v1/consents of its IMVU, or of a subject: that IMVU's or subject's rows, found by index", async () => {
    const imvu = ((await api.getAs<{ imvus: { id: string }[] }>(alice, '/v1/imvus')).body.imvus)[0]!.id;
    for (const purpose of ['newsletter', 'analytics'])
      expect((await api.as(alice, 'POST', '/v1/consents', 'consent.record', { imvu, subject: alice.id, purpose, granted: true })).status).toBeLessThan(300);
    for (const path of [`/v1/consents?imvu=${imvu}`, `/v1/consents?subject=${alice.id}`, `/v1/consents?imvu=${imvu}&subject=${alice.id}`]) {
      let res!: Awaited<ReturnType<TestApi['getAs']>>;
      const ran = await statements(async () => (res = await api.getAs(alice, path)));
      expect(res.status, path).toBe(200);
      expect((res.body as unknown as { consents: { purpose: string }[] }).consents.map((c) => c.purpose), path).toEqual(['newsletter', 'analytics']);
      const reads = ran.filter((s) => /FROM consents/.test(s.sql));
      expect(reads.length, path).toBe(1);
      for (const s of reads) expect(fullScans(s.sql, s.params, ['consents']), s.sql).toEqual([]);
    }
  });
});
