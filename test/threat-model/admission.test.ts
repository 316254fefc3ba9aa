// What may enter the ledger, attacked through the real daemon over HTTP:
// - one form of a command: a non-canonical name is refused and recorded, never half-applied, and
//   never fails the other commands of its batch (the "poison pill");
// - only authenticated attempts are recorded: an anonymous flood is counted and summarised, and
//   leaves the ledger as it was but for the summary entries;
// - rate limits per source and per identity answer 429 with Retry-After before any work;
// - a refused command's stored body is bounded.
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { generateKeyPair } from '../../src/core/identity/keys.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { verifyDataDir } from '../../src/core/policy/verify.ts';
import type { LedgerEntry } from '../../src/core/types.ts';
import { newKey, startTestApi, type Actor, type Res, type TestApi } from '../support/api.ts';

let api: TestApi | undefined;
afterEach(async () => {
  await api?.close();
  api = undefined;
});

async function entries(t: TestApi, from: number): Promise<LedgerEntry[]> {
  return (await t.get<{ entries: LedgerEntry[] }>(`/v1/ledger/entries?from=${from}`)).body.entries;
}

async function setUp(opts: Parameters<typeof startTestApi>[0] = {}) {
  const t = await startTestApi(opts);
  api = t;
  const alice = await t.register('alice', 'creator');
  const bob = await t.register('bob', 'creator');
  const a = (await t.createImvu(alice, 'AliceWorld')).body.imvu as { id: string; domain: string };
  const b = (await t.createImvu(bob, 'BobWorld')).body.imvu as { id: string; domain: string };
  return { t, alice, bob, a, b };
}

describe('one form of a command, end to end', () => {
  it('a non-canonical domain from four senders fails none of the legitimate commands batched with it, and cannot be resent', async () => {
    const { t, alice, bob, a, b } = await setUp();
    const poison = [alice, bob, alice, bob].map((who, i) => ({ who, cmd: t.sign(who, 'domain.claim', { imvu: who === alice ? a.id : b.id, domain: `Poison-Pill${i}.COM` }) }));
    const legit = Array.from({ length: 60 }, (_, i) => {
      const who = i % 2 ? alice : bob;
      const zone = who === alice ? a.domain : b.domain;
      return t.sign(who, 'dns.record.add', { zone, name: `host${i}`, type: 'A', value: `192.0.2.${i + 1}` });
    });
    const sends: Promise<{ kind: 'poison' | 'legit'; r: Res }>[] = [];
    legit.forEach((cmd, i) => {
      sends.push(t.request('POST', `/v1/zones/${cmd.command.body.zone as string}/records`, cmd).then((r) => ({ kind: 'legit', r })));
      const p = poison[i % 4]!;
      if (i < 4) sends.push(t.request('POST', `/v1/imvus/${p.cmd.command.body.imvu as string}/domains`, p.cmd).then((r) => ({ kind: 'poison', r })));
    });
    const results = await Promise.all(sends);
    expect(results.filter(({ r }) => r.status >= 500)).toEqual([]);
    for (const { kind, r } of results) {
      if (kind === 'legit') expect(r.status, r.text).toBe(201);
      else {
        expect(r.status, r.text).toBe(400);
        expect(r.body.error).toMatch(/gate 0: invalid domain.claim: domain: a domain name must be in canonical form: lower case/);
      }
    }
    // Each poison pill is a recorded denial (its nonce spent); sent again it is a replay, not a new entry.
    for (const { cmd } of poison) {
      const size = await t.size();
      const again = await t.request('POST', `/v1/imvus/${cmd.command.body.imvu as string}/domains`, cmd);
      expect(again.status).toBe(401);
      expect(again.body.error).toMatch(/replayed command/);
      expect(await t.size()).toBe(size);
    }
    expect((await verifyDataDir(t.dir)).problems).toEqual([]);
  });

  it('random mixes of valid, invalid and hostile commands in concurrent batches: every valid one acknowledged and recorded, every authenticated other one recorded as denied, no 500', async () => {
    const { t, alice, bob, a, b } = await setUp();
    const stranger = { name: 'stranger', ...newKey() };
    let n = 0;
    const kinds = ['valid', 'upper-case', 'empty-label', 'bad-value', 'forged', 'unknown', 'junk', 'other-origin', 'unknown-type'] as const;
    type Kind = (typeof kinds)[number];
    const make = (kind: Kind, who: Actor): { path: string; body: unknown; expect: 'allowed' | 'denied' | 'unrecorded' } => {
      const zone = who === alice ? a.domain : b.domain;
      const i = n++;
      const path = `/v1/zones/${zone}/records`;
      const record = (name: string, value = `192.0.2.${(i % 250) + 1}`) => t.sign(who, 'dns.record.add', { zone, name, type: 'A', value });
      switch (kind) {
        case 'valid':
          return { path, body: record(`ok${i}`), expect: 'allowed' };
        case 'upper-case':
          return { path, body: record(`Up${i}`), expect: 'denied' };
        case 'empty-label':
          return { path, body: record(`x${i}..y`), expect: 'denied' };
        case 'bad-value':
          return { path, body: record(`bad${i}`, 'not-an-address'), expect: 'denied' };
        case 'forged': {
          const real = record(`forged${i}`);
          return { path, body: { ...real, sig: t.sign(who === alice ? bob : alice, 'dns.record.add', real.command.body).sig }, expect: 'unrecorded' };
        }
        case 'unknown':
          return { path, body: t.sign(stranger, 'dns.record.add', { zone, name: `s${i}`, type: 'A', value: '192.0.2.1' }), expect: 'unrecorded' };
        case 'junk':
          return { path, body: { command: { type: 'dns.record.add', body: { zone } }, sig: '!!' }, expect: 'unrecorded' };
        case 'other-origin':
          return { path, body: signCommand(who.key, 'dns.record.add', { zone, name: `o${i}`, type: 'A', value: '192.0.2.1' }, { origin: 'nexus.example/other' }), expect: 'unrecorded' };
        case 'unknown-type':
          return { path: '/v1/commands', body: t.sign(who, 'zone.steal' as never, { zone }), expect: 'denied' };
      }
    };
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.constantFrom(...kinds), fc.boolean()), { minLength: 5, maxLength: 40 }), async (mix) => {
        const sent = mix.map(([kind, first]) => make(kind, first ? alice : bob));
        const replies = await Promise.all(sent.map((s) => t.request('POST', s.path, s.body)));
        const recorded = new Map((await entries(t, 0)).map((e) => [e.index, e]));
        replies.forEach((r, i) => {
          const s = sent[i]!;
          expect(r.status, r.text).toBeLessThan(500);
          if (s.expect === 'unrecorded') {
            expect(r.status, r.text).toBe(401);
            expect(r.body.index).toBeUndefined();
            return;
          }
          const e = recorded.get(r.body.index as number);
          expect(e?.command).toEqual(s.body);
          expect(e?.decision.allowed).toBe(s.expect === 'allowed');
          expect(r.status, r.text).toBe(s.expect === 'allowed' ? 201 : 400);
        });
      }),
      { numRuns: 12 },
    );
    expect((await verifyDataDir(t.dir)).problems).toEqual([]);
  });
});

describe('only authenticated attempts enter the ledger', () => {
  it('an anonymous flood of 60 KB junk from 16 clients leaves the ledger unchanged but for one summary entry per interval', async () => {
    const { t } = await setUp({ noiseIntervalMs: 300 });
    const before = await t.size();
    const junk = JSON.stringify({ command: { v: 1, type: 'imvu.create', actor: 'nx1' + 'a'.repeat(32), body: { pad: 'x'.repeat(60_000) } }, sig: 'AAAA' });
    const statuses: number[] = [];
    const started = Date.now();
    const deadline = started + 1500;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (Date.now() < deadline || statuses.length <= 32) statuses.push((await t.request('POST', '/v1/commands', junk)).status);
      }),
    );
    expect(statuses.length).toBeGreaterThan(16);
    expect(new Set(statuses)).toEqual(new Set([401]));
    // Counted per source prefix, with the reason.
    const metrics = (await t.get('/metrics')).text;
    expect(metrics).toMatch(new RegExp(`nexus_unauthenticated_attempts_total\\{prefix="127\\.0\\.0\\.0/24",reason="oversize|malformed"\\} \\d+`));
    // Summarised: what was added is only noise.summary entries, small, with the counts.
    // Until every refusal is in a summary (the last interval flushes after the flood ends; a loaded
    // machine stretches both), then at most one summary per interval the flood and the wait spanned.
    const countOf = (added: Awaited<ReturnType<typeof entries>>) =>
      added.flatMap((e) => e.command.command.body.counts as { source: string; reason: string; count: number }[]).reduce((s, c) => s + c.count, 0);
    let added = await entries(t, before);
    for (let i = 0; i < 100 && countOf(added) < statuses.length; i++) {
      await new Promise((r) => setTimeout(r, 100));
      added = await entries(t, before);
    }
    const spanned = Date.now() - started;
    expect(added.length).toBeGreaterThan(0);
    expect(added.length).toBeLessThanOrEqual(Math.ceil(spanned / 300) + 1);
    expect(added.every((e) => e.command.command.type === 'noise.summary' && e.command.command.actor === t.platformId)).toBe(true);
    expect(countOf(added)).toBe(statuses.length);
    expect(added.every((e) => JSON.stringify(e).length < 2000)).toBe(true);
    expect((await verifyDataDir(t.dir)).problems).toEqual([]);
  }, 60_000);

  it('per-source and per-identity limits answer 429 with Retry-After and record nothing', async () => {
    const { t, alice, a } = await setUp({ limits: { perIdentity: { rate: 0.5, burst: 3 }, perSource: { rate: 1000, burst: 1000 } } });
    const size = await t.size();
    const replies: Res[] = [];
    for (let i = 0; i < 5; i++) replies.push(await t.as(alice, 'POST', `/v1/zones/${a.domain}/records`, 'dns.record.add', { zone: a.domain, name: `r${i}`, type: 'A', value: '192.0.2.9' }));
    const limited = replies.filter((r) => r.status === 429);
    expect(limited.length).toBeGreaterThan(0);
    expect(Number(limited[0]!.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(await t.size()).toBe(size + replies.filter((r) => r.status === 201).length);
    await t.close();

    // Per source: refused before the body is read.
    const s = await setUp({ limits: { perSource: { rate: 0.5, burst: 20 } } });
    const codes: number[] = [];
    for (let i = 0; i < 30; i++) codes.push((await s.t.request('POST', '/v1/commands', { command: {}, sig: '' })).status);
    expect(codes.filter((c) => c === 429).length).toBeGreaterThan(0);
  }, 60_000);

  it("a refused command's stored body is bounded: a 50 KB denied body is kept as its hash and size, and the log still verifies", async () => {
    const { t, alice, a } = await setUp();
    const cmd = t.sign(alice, 'dns.record.add', { zone: a.domain, name: 'big', type: 'TXT', value: 'ok', junk: 'x'.repeat(50_000) });
    const r = await t.request('POST', `/v1/zones/${a.domain}/records`, cmd);
    expect(r.status, r.text).toBe(400);
    const e = (await entries(t, r.body.index as number))[0]!;
    expect(e.decision.allowed).toBe(false);
    expect(e.elided).toMatchObject({ bytes: expect.any(Number), sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    expect(e.elided!.bytes).toBeGreaterThan(50_000);
    expect(JSON.stringify(e).length).toBeLessThan(4096);
    // Its nonce is spent all the same.
    expect((await t.request('POST', `/v1/zones/${a.domain}/records`, cmd)).status).toBe(401);
    expect((await verifyDataDir(t.dir)).problems).toEqual([]);
  });
});

describe('keys', () => {
  it('a key nobody registered cannot even cost the ledger an entry by self-registering as an admin', async () => {
    const { t } = await setUp();
    const k = generateKeyPair().privateKey;
    const size = await t.size();
    const r = await t.request('POST', '/v1/identities', t.sign({ name: 'm', id: 'x', key: k }, 'identity.register', { name: 'mallory', role: 'admin', publicKey: 'A'.repeat(43) + '=' }));
    expect(r.status).toBe(401);
    expect(await t.size()).toBe(size);
  });
});
