// No silent redirection without any change to trigger a check (issue 13 item 3, gates 8 and 14): a
// map edited by hand over the runtime socket while the ledger stays as it is is found by the
// gateway's own periodic check, reverted to the ledger's table, alarmed and notified to the
// creator. Nothing here calls verify() or sync(): only the timer can bring A's host back.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { testPlatform, type TestPlatform, type Actor } from '../../src/core/testing.ts';
import { decodeEntry } from '../../src/core/ledger/ledger.ts';
import { Gateway } from '../../src/network/gateway/gateway.ts';
import { startWorkload, type Workload } from './workloads.ts';
import { createImvu, curl, freePort, haveHaproxy, waitFor } from './harness.ts';

const RANGE = `10.208.${process.pid % 256}.0/24`;

let p: TestPlatform;
let gw: Gateway;
let alice: Actor;
let A: { id: string; seq: number; host: string };
let B: { id: string; seq: number; host: string };
let port: number;
const workloads: Workload[] = [];

describe.skipIf(!haveHaproxy)('the gateway checks what it serves on a timer', () => {
  beforeAll(async () => {
    p = await testPlatform();
    alice = await p.register('alice', 'creator');
    const bob = await p.register('bob', 'creator');
    A = await createImvu(p, alice, 'shopa');
    B = await createImvu(p, bob, 'shopb');
    const policy = { public: [{ path: '/*', backend: 'web:8080' }], private: [], restricted: [] };
    expect((await p.as(alice, 'route.set', { imvu: A.id, policy })).allowed).toBe(true);
    expect((await p.as(bob, 'route.set', { imvu: B.id, policy })).allowed).toBe(true);
    workloads.push(await startWorkload('a', A.seq, RANGE, 'shopa', [8080]));
    workloads.push(await startWorkload('b', B.seq, RANGE, 'shopb', [8080]));
    port = await freePort();
    gw = new Gateway({ platform: p, httpsBind: `127.0.0.1:${port}`, range: RANGE, checkIntervalMs: 1000 });
    await gw.start();
  }, 60_000);

  afterAll(async () => {
    await gw?.stop();
    for (const w of workloads) w.stop();
    await p?.cleanup();
  });

  it('a hand edit of the hosts map is reverted by the periodic check, alarmed in the ledger and notified', async () => {
    expect(curl(gw, port, A.host, '/x').body).toBe('shopa /x 0\n');
    const alarmsBefore = gw.alarms.length;
    const sizeBefore = p.chokepoint.ledger.size;
    // Point A's host at B by hand: silent redirection, with no ledger change behind it.
    execFileSync('socat', ['-', `UNIX-CONNECT:${gw.layout.adminSocket}`], { input: `set map ${gw.layout.maps.hosts} ${A.host} ${B.id}\n` });
    expect(curl(gw, port, A.host, '/x').body).toBe('shopb /x 0\n');
    expect(p.chokepoint.ledger.size).toBe(sizeBefore);
    await waitFor(() => curl(gw, port, A.host, '/x').body === 'shopa /x 0\n', 30_000, "A's host served by A again");
    await waitFor(() => gw.alarms.length > alarmsBefore, 30_000, 'the alarm');
    const alarm = gw.alarms.at(-1)!;
    expect(alarm.imvus).toContain(A.id);
    const row = (await p.store.get<{ data: Buffer }>('SELECT data FROM ledger_entries WHERE idx = ?', [alarm.index]))!;
    expect(decodeEntry(Buffer.from(row.data)).command?.command.type).toBe('integrity.alarm');
    expect(await p.store.get('SELECT recipient, gate FROM notifications WHERE about = ?', [alarm.index])).toEqual({ recipient: alice.id, gate: 14 });
    expect((await gw.served()).equal).toBe(true);
  }, 90_000);
});
