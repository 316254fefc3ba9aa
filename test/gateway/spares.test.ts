// A new IMVU is served without reloading HAProxy: the configuration holds spare backends for the
// next ids `imvu.create` gives, each pinned to its sequence number's workload address, and the
// IMVU's certificate and lines come over the runtime API. A reload comes only when the spares are
// used up (and renders new ones). An IMVU that leaves is no longer routed and its certificate is
// no longer served, also without a reload; a HAProxy restarted from the files serves the same.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { testPlatform, type TestPlatform, type Actor } from '../../src/core/testing.ts';
import { Gateway } from '../../src/network/gateway/gateway.ts';
import { runtimeCommand } from '../../src/network/gateway/runtime.ts';
import { workloadNet } from '../../src/compute/fabric/addresses.ts';
import { createImvu, curl, freePort, haveHaproxy, waitFor } from './harness.ts';
import { startWorkload, type Workload } from './workloads.ts';

const RANGE = `10.211.${process.pid % 256}.0/24`;

let p: TestPlatform;
let gw: Gateway;
let alice: Actor;
let port: number;
let A: { id: string; seq: number; host: string };
const workloads: Workload[] = [];
const web = { public: [{ path: '/*', backend: 'web:8080' }], private: [], restricted: [] };

/** The worker's pid, from HAProxy itself: a reload starts a new worker. */
const workerPid = async () => /^Pid: (\d+)/m.exec(await runtimeCommand(gw.layout.adminSocket, 'show info'))?.[1];
/** The subject and names of the certificate HAProxy answers a handshake for `host` with. */
function servedCertificate(host: string): string {
  return execFileSync('sh', ['-c', `openssl s_client -connect 127.0.0.1:${port} -servername ${host} </dev/null 2>/dev/null | openssl x509 -noout -subject -ext subjectAltName`], { encoding: 'utf8' });
}
const admin = (command: string) => runtimeCommand(gw.layout.adminSocket, command);
/** The running HAProxy's server of an IMVU's backend: address and port. */
const serverOf = async (id: string) => (await admin(`show servers state be_${id}`)).split('\n').find((l) => / w /.test(l))?.split(' ').filter((_, i) => i === 4 || i === 18).join(':');
const listed = async () => (await runtimeCommand(gw.layout.adminSocket, `show ssl crt-list ${gw.layout.crtList}`)).split('\n').map((l) => l.split(' ')[0]);

async function served(host: string): Promise<boolean> {
  try {
    return curl(gw, port, host, '/hello').code === 200;
  } catch {
    return false;
  }
}

describe.skipIf(!haveHaproxy)('a new IMVU without a reload', () => {
  beforeAll(async () => {
    p = await testPlatform();
    alice = await p.register('alice', 'creator');
    A = await createImvu(p, alice, 'spareone');
    expect((await p.as(alice, 'route.set', { imvu: A.id, policy: web })).allowed).toBe(true);
    workloads.push(await startWorkload('s1', A.seq, RANGE, 'spareone', [8080]));
    port = await freePort();
    gw = new Gateway({ platform: p, httpsBind: `127.0.0.1:${port}`, range: RANGE, checkIntervalMs: 3_600_000, pollMs: 50, spareBackends: 2 });
    await gw.start();
  }, 60_000);

  afterAll(async () => {
    for (const w of workloads) w.stop();
    await gw?.stop();
    await p?.cleanup();
  });

  it('renders spare backends for the next ids, each pinned to the workload address of its sequence number', () => {
    const cfg = readFileSync(`${gw.layout.dir}/haproxy.cfg`, 'utf8');
    for (const seq of [2, 3]) expect(cfg).toMatch(new RegExp(`backend be_IMVU-00${seq}\\n(  .*\\n)*?  server w ${workloadNet(seq, RANGE).workloadAddress.replace(/\./g, '\\.')}\\n`));
    expect(cfg).not.toContain('be_IMVU-004');
  });

  it("serves a new IMVU's host, with its own certificate, at its workload, with no reload; a gone one's host and certificate go, likewise", async () => {
    const pid = await workerPid();
    const reloads = gw.reloads;
    const B = await createImvu(p, alice, 'sparetwo');
    expect(B.seq).toBe(2);
    expect((await p.as(alice, 'route.set', { imvu: B.id, policy: web })).allowed).toBe(true);
    workloads.push(await startWorkload('s2', B.seq, RANGE, 'sparetwo', [8080]));
    await waitFor(() => served(B.host), 20_000, 'the new IMVU served');
    // curl checked the certificate against the platform's CA and B's name; HAProxy chose it by SNI.
    expect(curl(gw, port, B.host, '/hello').body).toBe('sparetwo /hello 0\n');
    expect(servedCertificate(B.host)).toContain(`DNS:${B.host}`);
    expect(await listed()).toContain(gw.certFile(B.id));
    expect(gw.reloads).toBe(reloads);
    expect(await workerPid()).toBe(pid);
    // The certificate is the ledger's, recorded before it was served; the table equals the ledger's.
    await waitFor(async () => (await gw.servedCertificates([B.id]))[0]?.equal === true, 10_000, "the new IMVU's certificate served");
    expect((await gw.verify()).equal).toBe(true);
    // Its bytes are metered under its own id (its backend is the spare's).
    expect((await gw.readCounters()).counters.get(B.id)?.bytesOut).toBeGreaterThan(0n);

    expect((await p.exitNow(alice, B.id)).allowed).toBe(true);
    await waitFor(async () => !(await listed()).includes(gw.certFile(B.id)), 20_000, "the gone IMVU's certificate unloaded");
    expect(curl(gw, port, B.host, '/hello', ['-k']).code).toBe(421);
    expect(servedCertificate(B.host)).not.toContain(B.host);
    expect(gw.reloads).toBe(reloads);
    expect(await workerPid()).toBe(pid);
    expect((await gw.verify()).equal).toBe(true);
    expect(gw.alarms).toEqual([]);
  }, 90_000);

  it('reloads once the spares are used up, with new spares after it; a restart from the files serves what the runtime API added', async () => {
    const reloads = gw.reloads;
    const C = await createImvu(p, alice, 'sparethree');
    expect(C.seq).toBe(3);
    expect((await p.as(alice, 'route.set', { imvu: C.id, policy: web })).allowed).toBe(true);
    workloads.push(await startWorkload('s3', C.seq, RANGE, 'sparethree', [8080]));
    await waitFor(() => served(C.host), 20_000, 'the last spare taken');
    expect(gw.reloads).toBe(reloads);
    // Seq 4 has no spare: rendered with its own backend, and HAProxy reloads.
    const D = await createImvu(p, alice, 'sparefour');
    expect((await p.as(alice, 'route.set', { imvu: D.id, policy: web })).allowed).toBe(true);
    workloads.push(await startWorkload('s4', D.seq, RANGE, 'sparefour', [8080]));
    await waitFor(() => served(D.host), 30_000, 'the IMVU past the spares served');
    // The new worker serves before the gateway has seen it answer on the socket.
    await waitFor(() => gw.reloads === reloads + 1, 30_000, 'the reload counted');
    const cfg = readFileSync(`${gw.layout.dir}/haproxy.cfg`, 'utf8');
    expect(cfg).toContain('backend be_IMVU-005');
    expect(cfg).toContain('backend be_IMVU-006');
    expect(cfg).not.toContain('backend be_IMVU-002');

    // A new IMVU on a spare again, then HAProxy killed: the restarted one reads the files.
    const E = await createImvu(p, alice, 'sparefive');
    expect((await p.as(alice, 'route.set', { imvu: E.id, policy: web })).allowed).toBe(true);
    workloads.push(await startWorkload('s5', E.seq, RANGE, 'sparefive', [8080]));
    await waitFor(() => served(E.host), 20_000, 'the new spare taken');
    expect(gw.reloads).toBe(reloads + 1);
    const restarts = gw.restarts;
    process.kill(gw.haproxyPid!, 'SIGKILL');
    await waitFor(() => gw.restarts > restarts, 30_000, 'HAProxy restarted');
    await waitFor(() => served(E.host), 30_000, 'served after the restart');
    expect(servedCertificate(E.host)).toContain(`DNS:${E.host}`);
    for (const i of [C, D]) expect(curl(gw, port, i.host, '/hello').code).toBe(200);
    expect((await gw.verify()).equal).toBe(true);
    expect(gw.alarms).toEqual([]);
  }, 120_000);

  it("a backend's server moved over the runtime API to another IMVU's workload is put back and alarmed by the next check; with its port changed too, HAProxy reloads from the files", async () => {
    const C = { seq: 3, address: workloadNet(3, RANGE).workloadAddress };
    expect(curl(gw, port, A.host, '/x').body).toBe('spareone /x 0\n');
    expect(await admin(`set server be_${A.id}/w addr ${C.address}`)).toMatch(/IP changed/);
    // The diversion works: A's visitors reach C's workload.
    expect(curl(gw, port, A.host, '/x').body).toBe('sparethree /x 0\n');
    const alarms = gw.alarms.length;
    const reloads = gw.reloads;
    await gw.verify();
    expect(await serverOf(A.id)).toBe(`${workloadNet(A.seq, RANGE).workloadAddress}:0`);
    expect(curl(gw, port, A.host, '/x').body).toBe('spareone /x 0\n');
    expect(gw.alarms.length).toBe(alarms + 1);
    expect(gw.alarms.at(-1)!.imvus).toEqual([A.id]);
    expect(gw.alarms.at(-1)!.detail).toContain(`${A.id} served by ${C.address}:(route port), pinned to ${workloadNet(A.seq, RANGE).workloadAddress}; put back`);
    expect(gw.reloads).toBe(reloads);

    // A port cannot be handed back to the route over the runtime API: the check reloads HAProxy.
    expect(await admin(`set server be_${A.id}/w addr ${C.address} port 8080`)).toMatch(/IP changed/);
    expect(curl(gw, port, A.host, '/x').body).toBe('sparethree /x 0\n');
    await gw.verify();
    expect(gw.reloads).toBe(reloads + 1);
    expect(await serverOf(A.id)).toBe(`${workloadNet(A.seq, RANGE).workloadAddress}:0`);
    expect(curl(gw, port, A.host, '/x').body).toBe('spareone /x 0\n');
    expect(gw.alarms.length).toBe(alarms + 2);
    expect(gw.alarms.at(-1)!.detail).toMatch(/put back \(HAProxy reloaded from the ledger's files\)$/);
    expect((await gw.verify()).equal).toBe(true);
    expect(gw.alarms.length).toBe(alarms + 2);

    // A second server added to A's backend by hand (HAProxy 2.6's dynamic servers) takes a share of its traffic.
    expect(await admin(`add server be_${A.id}/evil ${C.address}:8080`)).toMatch(/New server registered/);
    expect(await admin(`enable server be_${A.id}/evil`)).toBe('\n');
    const bodies = new Set(Array.from({ length: 6 }, () => curl(gw, port, A.host, '/x').body));
    expect(bodies).toContain('sparethree /x 0\n');
    await gw.verify();
    expect(gw.reloads).toBe(reloads + 2);
    expect(gw.alarms.at(-1)!.detail).toContain(`${A.id} served by ${workloadNet(A.seq, RANGE).workloadAddress}:(route port), ${C.address}:8080`);
    expect(new Set(Array.from({ length: 6 }, () => curl(gw, port, A.host, '/x').body))).toEqual(new Set(['spareone /x 0\n']));
  }, 90_000);

  it('a spare moved before its IMVU exists: the IMVU is not routed to it; HAProxy reloads from the files and the move is alarmed', async () => {
    const cfg = readFileSync(`${gw.layout.dir}/haproxy.cfg`, 'utf8');
    const next = (await p.store.get<{ n: number }>('SELECT MAX(seq) + 1 AS n FROM imvus'))!.n;
    const spare = `IMVU-${String(next).padStart(3, '0')}`;
    expect(cfg).toContain(`backend be_${spare}\n`);
    expect(await admin(`set server be_${spare}/w addr ${workloadNet(A.seq, RANGE).workloadAddress}`)).toMatch(/IP changed/);
    const alarms = gw.alarms.length;
    const reloads = gw.reloads;
    const F = await createImvu(p, alice, 'sparesix');
    expect(F.id).toBe(spare);
    expect((await p.as(alice, 'route.set', { imvu: F.id, policy: web })).allowed).toBe(true);
    workloads.push(await startWorkload('s6', F.seq, RANGE, 'sparesix', [8080]));
    await waitFor(() => served(F.host), 30_000, 'the new IMVU served');
    await waitFor(() => gw.reloads === reloads + 1, 30_000, 'the reload counted');
    expect(curl(gw, port, F.host, '/x').body).toBe('sparesix /x 0\n');
    expect(gw.alarms.length).toBe(alarms + 1);
    expect(gw.alarms.at(-1)!.detail).toContain(`${F.id} served by ${workloadNet(A.seq, RANGE).workloadAddress}:(route port), pinned to ${workloadNet(F.seq, RANGE).workloadAddress}; before its IMVU was routed to it`);
    expect((await gw.verify()).equal).toBe(true);
  }, 90_000);
});
