import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { existsSync, mkdirSync, rmSync, statSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeEntry } from '../core/ledger/ledger.ts';
import { leafHash, verifyConsistency, verifyInclusion } from '../core/ledger/merkle.ts';
import { openCheckpoint } from '../core/ledger/checkpoint.ts';
import type { LedgerEntry } from '../core/types.ts';
import { dkimKeyPath } from '../imvu/provision.ts';
import { deniedGates, newKey, startTestApi, type Actor, type TestApi } from '../../test/support/api.ts';

let api: TestApi;
let alice: Actor;
let bob: Actor;

beforeAll(async () => {
  api = await startTestApi();
  alice = await api.register('alice', 'creator');
  bob = await api.register('bob', 'creator');
});
afterAll(async () => api.close());

/** The id and primary domain the next IMVU will get. */
async function nextImvu(): Promise<{ id: string; domain: string }> {
  const n = (await api.get<{ imvus: unknown[] }>('/v1/imvus')).body.imvus.length + 1;
  const digits = String(n).padStart(3, '0');
  return { id: `IMVU-${digits}`, domain: `imvu${digits}.world` };
}

function expectCleanError(r: { status: number; body: unknown; text: string }, status: number, message: RegExp) {
  expect(r.status, r.text).toBe(status);
  const body = r.body as { error?: unknown };
  expect(typeof body.error).toBe('string');
  expect(body.error as string).toMatch(message);
  expect(body.error as string).not.toContain('\n');
  expect(r.text).not.toMatch(/\.ts:\d+|at [A-Za-z.]+ \(|node_modules/);
}

describe('reads every client needs', () => {
  it('GET /health answers ok with the ledger size', async () => {
    const r = await api.get('/health');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ status: 'ok', size: await api.size(), dns: null, serving: { dns: false, mail: false, compute: false, routes: false }, witnesses: [] }); // startServer without `dns` or witnesses: nothing served
    expect(r.body.size).toBeGreaterThanOrEqual(3); // genesis + alice + bob
  });

  it('GET /metrics is Prometheus text with commands, ledger size and request durations', async () => {
    await api.get('/health');
    const r = await api.get('/metrics');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(r.text).toContain('# TYPE nexus_commands_total counter');
    expect(r.text).toMatch(/^nexus_commands_total\{type="identity.register",outcome="allowed"\} 2$/m);
    expect(r.text).toMatch(new RegExp(`^nexus_ledger_size ${await api.size()}$`, 'm'));
    expect(r.text).toContain('# TYPE nexus_http_request_duration_seconds histogram');
    expect(r.text).toMatch(/^nexus_http_request_duration_seconds_count\{method="GET",route="\/health",status="200"\} \d+$/m);
  });

  it('GET /openapi.json lists every route of docs/API.md with request schemas from the zod schemas', async () => {
    const r = await api.get<{ openapi: string; paths: Record<string, Record<string, Record<string, unknown>>>; components: { schemas: Record<string, unknown> } }>(
      '/openapi.json',
    );
    expect(r.status).toBe(200);
    expect(r.body.openapi).toBe('3.1.0');
    const listed = Object.entries(r.body.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
    const expected = [
      'POST /v1/commands', 'POST /v1/identities', 'POST /v1/imvus', 'POST /v1/imvus/{id}/scale', 'POST /v1/imvus/{id}/suspend',
      'POST /v1/imvus/{id}/resume', 'POST /v1/imvus/{id}/exit', 'POST /v1/imvus/{id}/members', 'POST /v1/imvus/{id}/domains',
      'POST /v1/imvus/{id}/domains/verify', 'DELETE /v1/imvus/{id}/domains', 'GET /v1/imvus/{id}/domains',
      'POST /v1/zones/{zone}/records', 'DELETE /v1/zones/{zone}/records', 'POST /v1/imvus/{id}/mailboxes', 'DELETE /v1/imvus/{id}/mailboxes',
      'PUT /v1/imvus/{id}/routes', 'POST /v1/consents', 'POST /v1/usage', 'POST /v1/revenue',
      'POST /v1/imvus/{id}/snapshots', 'POST /v1/imvus/{id}/snapshots/rollback', 'GET /v1/imvus/{id}/snapshots', 'GET /v1/imvus/{id}/snapshots/draft', 'GET /v1/imvus/{id}/snapshots/{digest}/export',
      'GET /health', 'GET /v1/status', 'GET /metrics', 'GET /openapi.json', 'GET /.well-known/mta-sts.txt', 'GET /v1/platform', 'GET /v1/identities', 'GET /v1/identities/{nameOrId}',
      'GET /v1/imvus', 'GET /v1/imvus/{id}', 'GET /v1/zones/{zone}/records', 'GET /v1/zones/{zone}/export', 'GET /v1/zones/{zone}/ds', 'GET /v1/imvus/{id}/mailboxes', 'GET /v1/imvus/{id}/routes',
      'GET /v1/imvus/{id}/notifications', 'GET /v1/consents', 'GET /v1/notifications', 'GET /v1/gates', 'GET /v1/ledger/checkpoint',
      'GET /v1/ledger/checkpoints/{size}', 'GET /v1/ledger/snapshot', 'GET /v1/ledger/entries', 'GET /v1/ledger/proof/inclusion', 'GET /v1/ledger/proof/consistency', 'GET /v1/statements/{imvu}/{period}',
      'GET /tlog/checkpoint', 'GET /tlog/tile/{path}', 'GET /tlog/tile/entries/{path}',
      'POST /v1/imvus/{id}/compute/deploy', 'POST /v1/imvus/{id}/compute/start', 'POST /v1/imvus/{id}/compute/stop',
      'POST /v1/imvus/{id}/compute/restart', 'POST /v1/imvus/{id}/compute/exec', 'GET /v1/imvus/{id}/compute', 'GET /v1/imvus/{id}/compute/logs',
      'POST /v1/imvus/{id}/exit/confirm', 'POST /v1/imvus/{id}/purge', 'GET /v1/imvus/{id}/exit', 'GET /v1/imvus/{id}/exit/archive',
      'PUT /v1/imports/{archive}', 'POST /v1/imvus/import', 'GET /v1/imvus/{id}/import', 'POST /v1/imvus/{id}/import/parts', 'POST /v1/imvus/{id}/domains/transfer',
      'GET /v1/imvus/{id}/gateway', 'GET /v1/imvus/{id}/token',
    ];
    expect(listed.sort()).toEqual(expected.sort());

    // Every mutation has a request body schema; the typed ones point at their command's schema.
    const create = r.body.paths['/v1/imvus']!.post!;
    expect(create.requestBody).toMatchObject({ required: true, content: { 'application/json': { schema: { $ref: '#/components/schemas/command.imvu.create' } } } });
    const schema = r.body.components.schemas['command.imvu.create'] as { properties: { command: { properties: Record<string, { properties?: Record<string, unknown>; const?: string }> } } };
    expect(schema.properties.command.properties.type!.const).toBe('imvu.create');
    expect(Object.keys(schema.properties.command.properties.body!.properties!)).toEqual(['name', 'owner', 'jurisdiction', 'envelope']);
    for (const [path, ops] of Object.entries(r.body.paths))
      for (const [method, op] of Object.entries(ops)) if (method !== 'get') expect(op.requestBody, `${method} ${path}`).toBeDefined();
    const entries = r.body.paths['/v1/ledger/entries']!.get!.parameters as { name: string; in: string }[];
    expect(entries.map((p) => `${p.in}:${p.name}`)).toEqual(['query:from', 'query:to', 'query:imvu', 'query:newest']);
    const tile = r.body.paths['/tlog/tile/{path}']!.get!.parameters as { name: string; in: string }[];
    expect(tile.map((p) => `${p.in}:${p.name}`)).toEqual(['path:path']);
  });

  it('serves the platform key, a checkpoint it verifies, and inclusion and consistency proofs that check out', async () => {
    const platform = (await api.get<{ id: string; verifierKey: string; origin: string; publicKey: string }>('/v1/platform')).body;
    expect(platform.id).toBe(api.platformId);
    expect(platform.verifierKey.startsWith(`${platform.origin}+`)).toBe(true);
    const verifier = { name: platform.origin, publicKeyRaw: Buffer.from(platform.publicKey, 'base64') };
    const open = async () => {
      const note = (await api.get('/v1/ledger/checkpoint')).text;
      return openCheckpoint(note, [verifier], platform.origin).checkpoint;
    };
    const old = await open();
    await api.register('proof-user', 'creator');
    const now = await open();
    expect(now.size).toBe(old.size + 1);

    const entry = await api.entry(now.size - 1);
    const inc = (await api.get<{ leafHash: string; proof: string[] }>(`/v1/ledger/proof/inclusion?index=${now.size - 1}&size=${now.size}`)).body;
    expect(inc.leafHash).toBe(leafHash(encodeEntry(entry)).toString('hex'));
    const hex = (xs: string[]) => xs.map((h) => Buffer.from(h, 'hex'));
    expect(verifyInclusion(Buffer.from(inc.leafHash, 'hex'), now.size - 1, now.size, hex(inc.proof), now.rootHash)).toBe(true);
    const cons = (await api.get<{ proof: string[] }>(`/v1/ledger/proof/consistency?from=${old.size}&to=${now.size}`)).body;
    expect(verifyConsistency(old.size, now.size, old.rootHash, now.rootHash, hex(cons.proof))).toBe(true);

    expectCleanError(await api.get(`/v1/ledger/proof/inclusion?index=${now.size}`), 400, /not below size/);
    expectCleanError(await api.get(`/v1/ledger/proof/consistency?from=1&to=${now.size + 5}`), 400, /beyond the ledger/);
  });

  it('lists identities and the 17 gates', async () => {
    const ids = (await api.get<{ identities: { name: string; role: string }[] }>('/v1/identities')).body.identities;
    expect(ids.map((i) => i.name)).toEqual(expect.arrayContaining(['platform', 'alice', 'bob']));
    expect((await api.get(`/v1/identities/alice`)).body).toMatchObject({ id: alice.id, role: 'creator' });
    expect((await api.get(`/v1/identities/${bob.id}`)).body).toMatchObject({ name: 'bob' });
    expectCleanError(await api.get('/v1/identities/nobody'), 404, /unknown identity/);
    const gates = (await api.get<{ gates: { number: number }[] }>('/v1/gates')).body.gates;
    expect(gates.map((g) => g.number)).toEqual(Array.from({ length: 18 }, (_, i) => i));
  });
});

describe('bad input gets one clear line, never a crash', () => {
  it('malformed JSON, non-objects, other content types, empty and oversized bodies; the daemon keeps answering', async () => {
    const before = await api.size();
    expectCleanError(await api.request('POST', '/v1/imvus', '{"command": {', {}), 400, /not valid JSON/);
    expectCleanError(await api.request('POST', '/v1/commands', '[1, 2, 3]'), 400, /JSON object/);
    expectCleanError(await api.request('POST', '/v1/commands', 'null'), 400, /JSON object/);
    expectCleanError(await api.request('POST', '/v1/commands', '"a string"'), 400, /JSON object/);
    expectCleanError(await api.request('POST', '/v1/commands', 'hello', { 'content-type': 'text/plain' }), 400, /unsupported Content-Type "text\/plain"/);
    expectCleanError(await api.request('POST', '/v1/commands', 'a=1', { 'content-type': 'application/x-www-form-urlencoded' }), 400, /unsupported Content-Type/);
    expectCleanError(await api.request('POST', '/v1/commands', '', { 'content-type': 'application/json' }), 400, /empty/);
    expectCleanError(await api.request('POST', '/v1/commands', '{"__proto__": {"admin": true}}'), 400, /JSON/);
    const big = JSON.stringify({ command: { type: 'imvu.create', body: { name: 'x'.repeat(70 * 1024) } }, sig: 'x' });
    expectCleanError(await api.request('POST', '/v1/imvus', big), 413, /larger than 65536 bytes/);
    // None of these reached the chokepoint.
    expect(await api.size()).toBe(before);
    expect((await api.get('/health')).status).toBe(200);
  });

  it('wrong types and values in paths and queries', async () => {
    expectCleanError(await api.get('/v1/ledger/entries?from=abc'), 400, /from must be a non-negative integer/);
    expectCleanError(await api.get('/v1/ledger/entries?from=5&to=2'), 400, /before from/);
    expectCleanError(await api.get('/v1/ledger/entries?bogus=1'), 400, /invalid query/);
    expectCleanError(await api.get('/v1/ledger/proof/inclusion?index=-1'), 400, /index must be/);
    expectCleanError(await api.get('/v1/ledger/proof/inclusion'), 400, /index/);
    expectCleanError(await api.get('/v1/imvus/not-an-id'), 400, /IMVU id/);
    expectCleanError(await api.get('/v1/statements/IMVU-001/2026-13'), 400, /YYYY-MM/);
    expectCleanError(await api.get('/v1/notifications'), 400, /recipient/);
    expectCleanError(await api.get('/v1/consents'), 400, /subject and\/or imvu/);
    expectCleanError(await api.get('/v1/nowhere'), 404, /no route GET \/v1\/nowhere/);
    expect((await api.get('/health')).status).toBe(200);
  });

  it('a command sent to the wrong route, or naming another IMVU than the path, is refused before the chokepoint', async () => {
    const { body } = await api.createImvu(alice, 'RouteCheck');
    const id = (body.imvu as { id: string }).id;
    const before = await api.size();
    const exit = api.sign(alice, 'imvu.exit', { imvu: id });
    expectCleanError(await api.request('POST', `/v1/imvus/${id}/scale`, exit), 400, /takes imvu.scale commands, not imvu.exit/);
    const other = api.sign(alice, 'imvu.scale', { imvu: 'IMVU-999', cpu_cores: 3 });
    expectCleanError(await api.request('POST', `/v1/imvus/${id}/scale`, other), 400, /path names imvu .* body.imvu is "IMVU-999"/);
    const zone = api.sign(alice, 'dns.record.add', { zone: 'elsewhere.world', name: 'www', type: 'A', value: '192.0.2.1' });
    expectCleanError(await api.request('POST', `/v1/zones/imvu001.world/records`, zone), 400, /path names zone/);
    expect(await api.size()).toBe(before);
    // Not spent either: the same signed command still works at the right route.
    const r = await api.request('POST', `/v1/imvus/${id}/exit`, exit);
    expect(r.status, r.text).toBe(200);
  });

  it('compute start on a daemon without the fabric: 503 and nothing recorded, through its own route and the generic one', async () => {
    const off = await startTestApi({ compute: false });
    try {
      const carol = await off.register('carol', 'creator');
      const id = ((await off.createImvu(carol, 'NoFabric')).body.imvu as { id: string }).id;
      const before = await off.size();
      for (const type of ['compute.start', 'compute.restart'] as const) {
        const path = `/v1/imvus/${id}/compute/${type.split('.')[1]}`;
        expectCleanError(await off.request('POST', path, off.sign(carol, type, { imvu: id })), 503, /compute fabric does not run on this host.*nothing was recorded/);
        expectCleanError(await off.request('POST', '/v1/commands', off.sign(carol, type, { imvu: id })), 503, /compute fabric does not run on this host.*nothing was recorded/);
      }
      expect(await off.size()).toBe(before);
    } finally {
      await off.close();
    }
  });

  it('a command naming an IMVU or zone that does not exist is recorded and answers 404', async () => {
    const r = await api.as(alice, 'POST', '/v1/imvus/IMVU-404/scale', 'imvu.scale', { imvu: 'IMVU-404', cpu_cores: 4 });
    expectCleanError(r, 404, /gate 0: unknown IMVU IMVU-404/);
    expect((await api.entry(r.body.index as number)).decision.allowed).toBe(false);
    const z = await api.as(alice, 'POST', '/v1/zones/nowhere.world/records', 'dns.record.add', { zone: 'nowhere.world', name: 'www', type: 'A', value: '192.0.2.1' });
    expectCleanError(z, 404, /not hosted here/);
    expect(typeof z.body.index).toBe('number');
  });
});

describe('one-command IMVU creation', () => {
  // Its latency is measured in bench/, never asserted here.
  it('returns the full summary: zone, mailboxes, envelope, routes, DKIM', async () => {
    const { id, domain } = await nextImvu();
    const r = await api.createImvu(alice, 'ArtGallery');
    expect(r.status, r.text).toBe(201);
    expect(r.body).toMatchObject({ allowed: true, index: expect.any(Number) });
    const imvu = r.body.imvu as Record<string, unknown> & { zone: { serial: number; soa: { serial: number }; records: { name: string; type: string; value: string }[] } };
    expect(imvu).toMatchObject({
      id,
      name: 'ArtGallery',
      owner: { id: alice.id, name: 'alice' },
      jurisdiction: 'US-CCPA',
      status: 'active',
      domain,
      stageDomain: `stage.${domain}`,
      domains: [{ name: domain, kind: 'primary' }],
      envelope: { cpu_cores: 2, memory_gb: 4, storage_gb: 50, iops: 100, burst: { multiplier: 2, minutes: 5 } },
      mailboxes: [`admin@${domain}`, `creator@${domain}`],
      routes: {
        public: [{ path: '/*', backend: 'public-api' }],
        private: [{ path: '/internal/*', backend: 'private-api', require_identity: true }],
        restricted: [{ path: '/admin/*', backend: 'admin-api', require_roles: ['admin'] }],
      },
      dkim: { selector: 'nexus1', record: `nexus1._domainkey.${domain}` },
    });

    // The zone: SOA serial (1 at creation, +1 for the DKIM record, +1 for the DNSKEY), NS, A, MX, SPF, DMARC, DKIM.
    const zone = imvu.zone;
    expect(zone).toMatchObject({ zone: domain, imvu: id, serial: 3, soa: { mname: 'ns1.world.', rname: `hostmaster.${domain}.`, serial: 3 } });
    const has = (name: string, type: string, value: string | RegExp) =>
      expect(zone.records.some((x) => x.name === name && x.type === type && (typeof value === 'string' ? x.value === value : value.test(x.value))), `${name} ${type} ${value}`).toBe(true);
    has(domain, 'NS', 'ns1.world.');
    has(domain, 'A', '127.0.0.1');
    has(`stage.${domain}`, 'A', '127.0.0.1');
    has(domain, 'MX', `10 mail.${domain}.`);
    has(`mail.${domain}`, 'A', '127.0.0.1');
    has(domain, 'TXT', 'v=spf1 mx -all');
    has(`_dmarc.${domain}`, 'TXT', /^v=DMARC1; p=reject/);
    has(`nexus1._domainkey.${domain}`, 'TXT', /^v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*$/);

    // The DKIM private key is on disk (0600) and matches the published public key.
    const path = dkimKeyPath(api.dir, id);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const priv = createPrivateKey(readFileSync(path));
    expect(priv.asymmetricKeyDetails?.modulusLength).toBe(2048);
    const spki = createPublicKey(priv).export({ type: 'spki', format: 'der' }).toString('base64');
    has(`nexus1._domainkey.${domain}`, 'TXT', `v=DKIM1; k=rsa; p=${spki}`);

    // The key was published by a platform-signed follow-up entry; so was the zone's DNSSEC key (GET /v1/zones/:zone/ds).
    const followUps = r.body.followUps as { index: number; allowed: boolean }[];
    expect(followUps).toHaveLength(2);
    const publish = await api.entry(followUps[0]!.index);
    expect(publish.command.command).toMatchObject({ type: 'dkim.publish', actor: api.platformId, body: { imvu: id, selector: 'nexus1', publicKey: spki } });
    const dnssec = await api.entry(followUps[1]!.index);
    expect(dnssec.command.command).toMatchObject({ type: 'dnssec.publish', actor: api.platformId, body: { imvu: id, zone: domain, algorithm: 13, flags: 257 } });
    const ds = await api.get<{ zone: string; keyTag: number; digestType: number; publicKey: string; entry: number; ds: string; trustAnchor: string }>(`/v1/zones/${domain}/ds`);
    expect(ds.status).toBe(200);
    expect(ds.body).toMatchObject({ zone: domain, algorithm: 13, digestType: 2, flags: 257, publicKey: dnssec.command.command.body.publicKey, entry: followUps[1]!.index });
    expect(ds.body.ds).toMatch(new RegExp(`^${domain.replace(/\./g, '\\.')}\\. 3600 IN DS ${ds.body.keyTag} 13 2 [0-9A-F]{64}$`));
    expect((await api.get('/v1/zones/nowhere.example/ds')).status).toBe(404);

    // The reads agree with the creation's answer.
    expect((await api.get(`/v1/imvus/${id}`)).body).toEqual(imvu);
    expect((await api.get(`/v1/zones/${domain}/records`)).body).toEqual(zone);
    expect((await api.get(`/v1/imvus/${id}/mailboxes`)).body).toEqual({ imvu: id, mailboxes: imvu.mailboxes });
    expect((await api.get(`/v1/imvus/${id}/routes`)).body).toEqual({ imvu: id, routes: imvu.routes });
    const mine = (await api.get<{ entries: LedgerEntry[] }>(`/v1/ledger/entries?imvu=${id}`)).body.entries.map((e) => e.index);
    // Each platform act is notified to the creator (a follow-up of the act itself).
    const notices = [followUps[0]!, followUps[1]!].map((f) => (f as { followUps?: { index: number }[] }).followUps?.[0]?.index);
    expect(mine).toEqual([r.body.index, followUps[0]!.index, notices[0], followUps[1]!.index, notices[1]]);
  });

  it('bad input gets a clear error, is recorded when signed by a known identity, and leaves no IMVU, domain, zone, mailbox or key behind', async () => {
    await api.createImvu(bob, 'TakenName');
    const before = (await api.get<{ imvus: unknown[] }>('/v1/imvus')).body.imvus;
    const { id, domain } = await nextImvu();
    const stranger = newKey();
    const cases = [
      { r: await api.createImvu(alice, 'Mars', 'MARS-LAW'), status: 403, error: /gate 9: unknown jurisdiction 'MARS-LAW'/ },
      { r: await api.createImvu(alice, 'takenname'), status: 400, error: /gate 0: IMVU name 'takenname' is taken/ },
      {
        r: await api.request('POST', '/v1/imvus', api.sign({ name: 'x', ...stranger }, 'imvu.create', { name: 'Ghost', owner: stranger.id, jurisdiction: 'US-CCPA' })),
        status: 401,
        error: /gate 1: unknown identity/,
      },
      { r: await api.as(alice, 'POST', '/v1/imvus', 'imvu.create', { name: 'ForBob', owner: bob.id, jurisdiction: 'US-CCPA' }), status: 403, error: /gate 1: an IMVU is created by its owner's own signature/ },
      { r: await api.as(alice, 'POST', '/v1/imvus', 'imvu.create', { name: 'NoOwner', jurisdiction: 'US-CCPA' }), status: 400, error: /gate 0: invalid imvu.create: owner/ },
    ];
    for (const { r, status, error } of cases) {
      expectCleanError(r, status, error);
      // An unknown signer is not authenticated: refused, counted, never an entry.
      if (status === 401) {
        expect(r.body.index).toBeUndefined();
        continue;
      }
      const e = await api.entry(r.body.index as number);
      expect(e.decision.allowed).toBe(false);
      expect(r.body.followUps).toEqual([]);
    }
    expect((await api.get<{ imvus: unknown[] }>('/v1/imvus')).body.imvus).toEqual(before);
    expect((await api.get(`/v1/imvus/${id}`)).status).toBe(404);
    expect((await api.get(`/v1/zones/${domain}/records`)).status).toBe(404);
    expect((await api.get(`/v1/imvus/${id}/mailboxes`)).status).toBe(404);
    expect(existsSync(dkimKeyPath(api.dir, id))).toBe(false);
  });

  it('a provisioning failure rolls the whole creation back and is recorded as denied; a new signature succeeds later', async () => {
    const { id, domain } = await nextImvu();
    const before = await api.size();
    // Make the key file impossible to write: a non-empty directory where it should go.
    const path = dkimKeyPath(api.dir, id);
    mkdirSync(join(path, 'blocker'), { recursive: true });
    writeFileSync(join(path, 'blocker', 'x'), 'x');
    const cmd = api.sign(alice, 'imvu.create', { name: 'Phoenix', owner: alice.id, jurisdiction: 'EU-GDPR' });
    const r = await api.request('POST', '/v1/imvus', cmd);
    expectCleanError(r, 503, /gate 0: could not be applied/);
    // Recorded, nonce spent: one denied entry, and nothing of the IMVU.
    expect(await api.size()).toBe(before + 1);
    expect((await api.entry(before)).decision.allowed).toBe(false);
    expect((await api.get(`/v1/imvus/${id}`)).status).toBe(404);
    expect((await api.get(`/v1/zones/${domain}/records`)).status).toBe(404);
    expect(existsSync(`${path}.tmp-${process.pid}`)).toBe(false);
    expect((await api.get('/health')).status).toBe(200);

    rmSync(path, { recursive: true });
    const replay = await api.request('POST', '/v1/imvus', cmd);
    expect(replay.status).toBe(401);
    expect(replay.text).toMatch(/replayed/);
    const again = await api.request('POST', '/v1/imvus', api.sign(alice, 'imvu.create', { name: 'Phoenix', owner: alice.id, jurisdiction: 'EU-GDPR' }));
    expect(again.status, again.text).toBe(201);
    expect((again.body.imvu as { id: string }).id).toBe(id);
    expect(deniedGates(again.body)).toEqual([]);
  });
});
