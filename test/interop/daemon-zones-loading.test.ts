// The daemon's DNS server binds before it has read its zone list (a read of seconds at 100,000
// IMVUs runs beside the rest of the start): until the list is read, GET /health says
// `dns.zones: "loading"`, and a query that arrives then waits and is answered from the whole list
// (never REFUSED for a hosted zone). The first read is held here to see that window from outside.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { promises as dns } from 'node:dns';
import { ZoneView } from '../../src/domains/dns-authority/zone-view.ts';
import { startTestApi, type TestApi } from '../support/api.ts';

let api: TestApi;
let release!: () => void;
const held = new Promise<void>((r) => (release = r));

beforeAll(async () => {
  // Every look of the view waits until the test lets it go: the daemon must start anyway.
  const refresh = ZoneView.prototype.refresh;
  vi.spyOn(ZoneView.prototype, 'refresh').mockImplementation(function (this: ZoneView, force?: boolean) {
    return held.then(() => refresh.call(this, force));
  });
  api = await startTestApi({ dns: { port: 0, meterIntervalMs: 60_000 } });
});
afterAll(async () => {
  release();
  vi.restoreAllMocks();
  await api?.close();
});

type Health = { status: string; dns: { zones: string; port: number } };

describe('daemon start: the zone list read after the DNS server binds', () => {
  it('/health says "loading" until the list is read; a query sent meanwhile waits and is answered, then "ready"', async () => {
    const before = await api.get<Health>('/health');
    expect(before.status).toBe(200);
    expect(before.body.dns.zones).toBe('loading');
    const suffix = (await api.get<{ suffix: string }>('/v1/platform')).body.suffix;
    const r = new dns.Resolver({ timeout: 5000, tries: 1 });
    r.setServers([`127.0.0.1:${before.body.dns.port}`]);
    let answered = false;
    const asked = r.resolveSoa(suffix).then((soa) => {
      answered = true;
      return soa;
    });
    await new Promise((res) => setTimeout(res, 300));
    // Not answered from a list the server has not read (it would be REFUSED: no zone encloses the name).
    expect(answered).toBe(false);
    expect((await api.get<Health>('/health')).body.dns.zones).toBe('loading');
    release();
    const soa = await asked;
    expect(soa.nsname).toBeTruthy();
    for (let i = 0; i < 100 && (await api.get<Health>('/health')).body.dns.zones !== 'ready'; i++) await new Promise((res) => setTimeout(res, 20));
    expect((await api.get<Health>('/health')).body.dns.zones).toBe('ready');
  });
});
