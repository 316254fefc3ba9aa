// Threat model section 2 (malicious admin), over the real HTTP API: every attempt is refused with
// the right status, recorded in the ledger with the gate that said no, and the creator is told.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BODY_SCHEMAS } from '../../src/core/policy/commands.ts';
import { PriceBookBody } from '../../src/core/handshake/index.ts';
import { COMMAND_TYPES, type CommandType } from '../../src/core/types.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { newKey, startTestApi, type Actor, type TestApi } from '../support/api.ts';
import { expectRecordedDenial, imvuEntries } from '../support/ledger.ts';

let api: TestApi;
let alice: Actor;
let ops: Actor;
let biller: Actor;
let imvu: string;

beforeAll(async () => {
  api = await startTestApi();
  alice = await api.register('alice', 'creator');
  ops = await api.register('ops', 'admin');
  biller = await api.register('biller', 'service');
  const r = await api.createImvu(alice, 'Gallery');
  expect(r.status, r.text).toBe(201);
  imvu = (r.body.imvu as { id: string }).id;
});
afterAll(async () => api.close());

type Notification = { entry: number; recipient: string; imvu: string; about: number; gate: number; message: string };

async function notificationsFor(recipient: string): Promise<Notification[]> {
  return (await api.get<{ notifications: Notification[] }>(`/v1/notifications?recipient=${recipient}`)).body.notifications;
}

describe('scenario 2.2: secret resource throttling', () => {
  it("an admin lowering an IMVU's CPU gets 403, is recorded, and the creator is notified", async () => {
    const cmd = api.sign(ops, 'imvu.scale', { imvu, cpu_cores: 1 });
    const r = await api.request('POST', `/v1/imvus/${imvu}/scale`, cmd);
    await expectRecordedDenial(api, r, cmd, 403, 15, /needs its creator's signature; ops \(admin\) alone cannot throttle it/);
    expect((await imvuEntries(api, imvu)).map((e) => e.index)).toContain(r.body.index);

    // The creator's feed says who tried what, and points at the entry.
    const note = (await notificationsFor(alice.id)).find((n) => n.about === r.body.index);
    expect(note).toMatchObject({ recipient: alice.id, imvu, gate: 15 });
    expect(note!.message).toMatch(/ops \(admin\) tried imvu.scale .* BLOCKED by gate 15/);
    const [followUp] = r.body.followUps as { index: number }[];
    expect(note!.entry).toBe(followUp!.index);
    expect((await api.entry(followUp!.index)).command.command).toMatchObject({ type: 'notify.creator', actor: api.platformId });
    expect((await api.get<{ notifications: Notification[] }>(`/v1/imvus/${imvu}/notifications`)).body.notifications).toContainEqual(note);

    // Nothing changed; an increase by the admin and a decrease by the creator both go through.
    expect(((await api.get(`/v1/imvus/${imvu}`)).body.envelope as { cpu_cores: number }).cpu_cores).toBe(2);
    expect((await api.as(ops, 'POST', `/v1/imvus/${imvu}/scale`, 'imvu.scale', { imvu, memory_gb: 8 })).status).toBe(200);
    expect((await api.as(alice, 'POST', `/v1/imvus/${imvu}/scale`, 'imvu.scale', { imvu, cpu_cores: 1 })).status).toBe(200);
    expect((await api.get(`/v1/imvus/${imvu}`)).body.envelope).toMatchObject({ cpu_cores: 1, memory_gb: 8 });
  });
});

describe('scenario 2.1: silent traffic rerouting', () => {
  it("an admin replacing an IMVU's routes gets 403, is recorded, and the creator is notified", async () => {
    const before = (await api.get(`/v1/imvus/${imvu}/routes`)).body;
    const evil = { public: [{ path: '/*', backend: 'interceptor' }], private: [], restricted: [] };
    // Another admin than scenario 1's: refusals are notified once per source identity per interval.
    const ops2 = await api.register('ops-two', 'admin');
    const cmd = api.sign(ops2, 'route.set', { imvu, policy: evil });
    const r = await api.request('PUT', `/v1/imvus/${imvu}/routes`, cmd);
    await expectRecordedDenial(api, r, cmd, 403, 14, /route change for .* needs its creator's signature/);
    expect((await notificationsFor(alice.id)).find((n) => n.about === r.body.index)).toMatchObject({ gate: 14 });
    expect((await api.get(`/v1/imvus/${imvu}/routes`)).body).toEqual(before);
  });
});

describe('scenario 2.3: revenue siphoning', () => {
  const words = /split|share|ratio|percent/i;

  it('no command type, and no field of any command, can set the split', () => {
    expect(COMMAND_TYPES.filter((t) => words.test(t))).toEqual([]);
    const fields = (COMMAND_TYPES as readonly CommandType[]).flatMap((t) => {
      const s = BODY_SCHEMAS[t] as unknown as { shape?: Record<string, unknown> };
      return Object.keys(s.shape ?? {}).map((k) => `${t}.${k}`);
    });
    fields.push(...Object.keys(PriceBookBody.shape).map((k) => `pricebook.publish.${k}`));
    expect(fields.length).toBeGreaterThan(40);
    expect(fields.filter((f) => words.test(f))).toEqual([]);
    // And no extra field can be smuggled in: every body schema refuses unknown keys (the price
    // book is validated by its own strict schema).
    for (const t of COMMAND_TYPES) {
      const r = (t === 'pricebook.publish' ? PriceBookBody : BODY_SCHEMAS[t]).safeParse({ creator_share: 40 });
      expect(!r.success && r.error.issues.some((i) => i.code === 'unrecognized_keys'), t).toBe(true);
    }
  });

  it('a made-up split command and a smuggled split field are refused and recorded; the statement still splits 55/45', async () => {
    const invented = api.sign(ops, 'revenue.split.set' as CommandType, { imvu, creator: 40, platform: 60 });
    const r1 = await api.request('POST', '/v1/commands', invented);
    await expectRecordedDenial(api, r1, invented, 400, 0, /unknown command type revenue.split.set/);

    const smuggled = api.sign(biller, 'revenue.record', { imvu, amount: '1000', currency: 'USD', creator_percent: 40 });
    const r2 = await api.request('POST', '/v1/revenue', smuggled);
    await expectRecordedDenial(api, r2, smuggled, 400, 0, /invalid revenue.record: .*creator_percent/);

    // Revenue comes from the one source the platform registered for it, dated now (gate 6).
    const source = await api.request('POST', '/v1/commands', api.sign({ name: 'platform', id: api.platformId, key: api.platformKey }, 'meter.register', { identity: biller.id, metrics: ['revenue.records'] }));
    expect(source.status, source.text).toBe(200);
    const month = new Date().toISOString().slice(0, 7);
    for (const amount of ['1000', '1']) {
      const r = await api.as(biller, 'POST', '/v1/revenue', 'revenue.record', { imvu, amount, currency: 'USD' });
      expect(r.status, r.text).toBe(200);
    }
    const s = await api.get(`/v1/statements/${imvu}/${month}`);
    expect(s.status, s.text).toBe(200);
    // creator = ceil(1001 * 55 / 100) = 551, platform = 1001 - 551 = 450: rounding favours the creator.
    expect(s.body).toMatchObject({ imvu, period: month, currency: 'USD', revenueTotal: '1001', total: '1001', creator: '551', platform: '450', closedBy: null });
    expect((await api.get(`/v1/statements/IMVU-999/${month}`)).status).toBe(404);
  });
});

describe('scenario 2.5: exit sabotage', () => {
  it("an admin suspends an IMVU; the admin cannot exit for the creator; the creator's exit is accepted anyway", async () => {
    const created = await api.createImvu(alice, 'Leaving');
    const id = (created.body.imvu as { id: string }).id;

    const suspend = await api.as(ops, 'POST', `/v1/imvus/${id}/suspend`, 'imvu.suspend', { imvu: id, reason: 'unpaid invoice' });
    expect(suspend.status, suspend.text).toBe(200);
    expect((await api.get(`/v1/imvus/${id}`)).body.status).toBe('suspended');
    expect((await notificationsFor(alice.id)).find((n) => n.about === suspend.body.index)!.message).toMatch(/ops \(admin\) performed imvu.suspend .*unpaid invoice/);

    const adminExit = api.sign(ops, 'imvu.exit', { imvu: id });
    await expectRecordedDenial(api, await api.request('POST', `/v1/imvus/${id}/exit`, adminExit), adminExit, 403, 13, /exit of .* needs its creator's signature/);

    const exit = await api.as(alice, 'POST', `/v1/imvus/${id}/exit`, 'imvu.exit', { imvu: id });
    expect(exit.status, exit.text).toBe(200);
    expect((exit.body.gates as { gate: number; reason?: string }[]).find((g) => g.gate === 13)?.reason).toMatch(/status was suspended/);
    // Exiting: still served, and nobody but the creator can touch it until the exit ends.
    expect((await api.get(`/v1/imvus/${id}`)).body.status).toBe('exiting');
    // The whole story is in the IMVU's part of the ledger, in order.
    const types = (await imvuEntries(api, id)).map((e) => `${e.command.command.type}:${e.decision.allowed ? 'allowed' : 'denied'}`);
    // Every platform act about the IMVU (its keys) and every refused attempt by someone else is notified to the creator.
    expect(types).toEqual([
      'imvu.create:allowed',
      'dkim.publish:allowed',
      'notify.creator:allowed',
      'dnssec.publish:allowed',
      'notify.creator:allowed',
      'imvu.suspend:allowed',
      'notify.creator:allowed',
      'imvu.exit:denied',
      'notify.creator:allowed',
      'imvu.exit:allowed',
    ]);
  });

  it('an admin cannot register itself: admins are registered by the platform', async () => {
    const k = newKey();
    const cmd = signCommand(k.key, 'identity.register', { name: 'mallory', role: 'admin', publicKey: k.publicKey }, { origin: api.platformOrigin });
    await expectRecordedDenial(api, await api.request('POST', '/v1/identities', cmd), cmd, 403, 1, /admin identity is registered by the platform, not by itself/);
    expect((await api.get('/v1/identities/mallory')).status).toBe(404);
  });
});
