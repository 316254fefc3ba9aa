// Metering (issue 13, item 6; gate 6): bytes in and out per IMVU from HAProxy's per-backend
// counters, reported by the `gateway` service identity. A request of a known size is found in
// the ledger to the byte; HAProxy killed and restarted (its counters start again from zero)
// neither counts anything twice nor loses what was already counted; an IMVU reporting its own
// traffic changes nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testPlatform, type TestPlatform, type Actor } from '../../src/core/testing.ts';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { Gateway } from '../../src/network/gateway/gateway.ts';
import { gatewayIdentity } from '../../src/network/metering/counters.ts';
import { startWorkload, type Workload } from './workloads.ts';
import { createImvu, curl, freePort, haveHaproxy, rawTls, waitFor } from './harness.ts';

const RANGE = `10.204.${process.pid % 256}.0/24`;

describe.skipIf(!haveHaproxy)('gateway metering', () => {
  let p: TestPlatform;
  let gw: Gateway;
  let alice: Actor;
  let bob: Actor;
  let A: { id: string; seq: number; host: string };
  let B: { id: string; seq: number; host: string };
  let port: number;
  const workloads: Workload[] = [];

  const total = async (imvu: string, metric: string) =>
    BigInt((await p.store.get<{ q: string }>('SELECT COALESCE(SUM(CAST(quantity AS INTEGER)), 0) AS q FROM usage_totals WHERE imvu = ? AND metric = ?', [imvu, metric]))!.q);
  const totals = async (imvu: string) => ({ in: await total(imvu, 'network.bytes_in'), out: await total(imvu, 'network.bytes_out') });
  /** The quantities of the ledger's usage.report entries for an IMVU's network metrics, summed. */
  const ledgerSum = async (imvu: string) => {
    const rows = await p.store.all<{ data: Buffer }>('SELECT data FROM ledger_entries ORDER BY idx');
    const sum = { in: 0n, out: 0n, reports: 0 };
    for (const r of rows) {
      const e = JSON.parse(Buffer.from(r.data).toString('utf8')) as { command: { command: { type: string; body: { imvu: string; metrics: Record<string, string> } } }; decision: { allowed: boolean } };
      const c = e.command.command;
      if (c.type !== 'usage.report' || c.body.imvu !== imvu || !e.decision.allowed) continue;
      sum.in += BigInt(c.body.metrics['network.bytes_in'] ?? '0');
      sum.out += BigInt(c.body.metrics['network.bytes_out'] ?? '0');
      sum.reports++;
    }
    return sum;
  };
  /** One HTTP/1.1 request of exactly `size` bytes on the wire (head and body), connection closed after. */
  const sized = async (path: string, body: number) => {
    const head = (len: number) => `POST ${path} HTTP/1.1\r\nhost: ${A.host}\r\ncontent-length: ${len}\r\nconnection: close\r\n\r\n`;
    const request = head(body) + 'x'.repeat(body);
    const answer = await rawTls(port, A.host, gw.caCert, request, 15_000);
    expect(answer.text).toContain(`shopa ${path} ${body}`);
    const split = answer.text.indexOf('\r\n\r\n');
    return { request: Buffer.byteLength(request), response: Buffer.byteLength(answer.text, 'latin1'), responseBody: answer.text.length - split - 4 };
  };

  beforeAll(async () => {
    p = await testPlatform();
    alice = await p.register('alice', 'creator');
    bob = await p.register('bob', 'creator');
    A = await createImvu(p, alice, 'shopa');
    B = await createImvu(p, bob, 'shopb');
    for (const [who, i] of [[alice, A], [bob, B]] as const) expect((await p.as(who, 'route.set', { imvu: i.id, policy: { public: [{ path: '/*', backend: 'web:8080' }], private: [], restricted: [] } })).allowed).toBe(true);
    workloads.push(await startWorkload('ma', A.seq, RANGE, 'shopa', [8080]));
    workloads.push(await startWorkload('mb', B.seq, RANGE, 'shopb', [8080]));
    port = await freePort();
    const id = await gatewayIdentity(p);
    gw = new Gateway({ platform: p, httpsBind: `127.0.0.1:${port}`, range: RANGE, checkIntervalMs: 3_600_000, refusalIntervalMs: 3_600_000, meter: { key: id.key, intervalMs: 3_600_000 }, log: (l) => console.log(l) });
    await gw.start();
  }, 90_000);

  afterAll(async () => {
    await gw?.stop();
    for (const w of workloads) w.stop();
    await p?.cleanup();
  });

  it('a request of a known size is in the ledger to the byte, as HAProxy counted it for the IMVU', async () => {
    await gw.meter!.flush();
    const before = { totals: await totals(A.id), ledger: await ledgerSum(A.id), b: await totals(B.id) };
    const c0 = (await gw.readCounters()).counters.get(A.id)!;
    const sent = await sized('/upload', 54_321);
    const c1 = (await gw.readCounters()).counters.get(A.id)!;
    console.log(`metering: request ${sent.request} bytes on the wire, HAProxy counted ${c1.bytesIn - c0.bytesIn} in; response ${sent.response} bytes, counted ${c1.bytesOut - c0.bytesOut} out`);
    const r = await gw.meter!.flush();
    expect(r.denied.length + r.failed.length).toBe(0);
    const after = { totals: await totals(A.id), ledger: await ledgerSum(A.id), b: await totals(B.id) };
    // HAProxy counts the body exactly plus the request head as it forwarded it; the ledger holds
    // exactly what HAProxy counted, in the usage entries and in the totals.
    const counted = { in: c1.bytesIn - c0.bytesIn, out: c1.bytesOut - c0.bytesOut };
    expect(counted.in).toBeGreaterThanOrEqual(54_321n);
    expect(counted.in).toBeLessThan(54_321n + 1024n);
    expect(after.ledger.in - before.ledger.in).toBe(counted.in);
    expect(after.ledger.out - before.ledger.out).toBe(counted.out);
    expect(after.totals.in - before.totals.in).toBe(counted.in);
    expect(after.totals.out - before.totals.out).toBe(counted.out);
    // B's traffic was not A's.
    expect(after.b).toEqual(before.b);
    // The same request with exactly 1000 bytes more body (same head length): the ledger grows by
    // exactly 1000 bytes more than it did for the first.
    await sized('/upload', 55_321);
    await gw.meter!.flush();
    const second = (await ledgerSum(A.id)).in - after.ledger.in;
    expect(second - (after.ledger.in - before.ledger.in)).toBe(1000n);
    // And the same request again: exactly the same count.
    const mid = (await ledgerSum(A.id)).in;
    await sized('/upload', 55_321);
    await gw.meter!.flush();
    expect((await ledgerSum(A.id)).in - mid).toBe(second);
  }, 60_000);

  it("an IMVU's own report of its traffic is refused and changes nothing", async () => {
    await gw.meter!.flush();
    const before = await totals(A.id);
    const body = (imvu: string) => ({ imvu, service: 'gateway', period: { start: new Date(Date.now() - 60_000).toISOString(), end: new Date().toISOString() }, metrics: { 'network.bytes_in': '999999999', 'network.bytes_out': '1' } });
    for (const [who, imvu] of [[alice, A.id], [bob, A.id], [alice, B.id]] as const) {
      const r = await p.chokepoint.submit(signCommand(who.key, 'usage.report', body(imvu), { origin: p.config.origin }));
      expect(r.allowed, `${who.name} reporting ${imvu}`).toBe(false);
    }
    expect(await totals(A.id)).toEqual(before);
  });

  it('HAProxy killed: the restarted worker counts from zero; nothing counted twice, nothing counted lost', async () => {
    await gw.meter!.flush();
    const start = await ledgerSum(A.id);
    const c0 = (await gw.readCounters()).counters.get(A.id)!;
    await sized('/before', 10_000);
    // Sampled (counted), not yet reported, when HAProxy dies.
    await gw.meter!.sample();
    const c1 = (await gw.readCounters()).counters.get(A.id)!;
    const old = gw.haproxyPid!;
    process.kill(old, 'SIGKILL');
    await waitFor(async () => gw.haproxyPid !== undefined && gw.haproxyPid !== old && (await gw.readCounters().then(() => true, () => false)), 30_000, 'haproxy to restart');
    await waitFor(() => curl(gw, port, A.host, '/ping').code === 200, 30_000, 'the restarted gateway to serve');
    await sized('/after', 20_000);
    const c2 = (await gw.readCounters()).counters.get(A.id)!;
    // The new worker's counters started from zero.
    expect(c2.bytesIn).toBeLessThan(c1.bytesIn);
    const r = await gw.meter!.flush();
    expect(r.denied.length + r.failed.length).toBe(0);
    const end = await ledgerSum(A.id);
    expect(end.in - start.in).toBe(c1.bytesIn - c0.bytesIn + c2.bytesIn);
    expect(end.out - start.out).toBe(c1.bytesOut - c0.bytesOut + c2.bytesOut);
    // And again: a flush with nothing new reports nothing more.
    await gw.meter!.flush();
    expect((await ledgerSum(A.id)).in).toBe(end.in);
  }, 90_000);
});
