// The daemon gets its checkpoints cosigned by independent witnesses (two `nexus witness serve`
// processes on loopback): the newest checkpoint is served with both cosignatures; with one witness
// killed, commands still go through, /health and the metrics name the witness that fails, and the
// checkpoint is served with the one cosignature left; a restarted daemon still serves them.
import { afterAll, describe, expect, it } from 'vitest';
import { rmSync } from 'node:fs';
import { initDataDir } from '../../src/core/platform.ts';
import { openCheckpoint, splitNote } from '../../src/core/ledger/checkpoint.ts';
import { verifyCosignature } from '../../src/core/witness/cosignature.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import type { WitnessStatus } from '../../src/core/witness/collector.ts';
import { run, tempDir } from '../cli/harness.ts';
import { cosignatureLines, platformPublicKey, startWitnesses, waitFor, type TestWitness } from '../support/witnesses.ts';

const cleanup: (() => void)[] = [];
let server: RunningServer | undefined;
afterAll(async () => {
  await server?.close();
  for (const c of cleanup.reverse()) c();
});

async function get(url: string, path: string): Promise<{ status: number; text: string }> {
  const res = await fetch(url + path);
  return { status: res.status, text: await res.text() };
}

describe('witness cosignatures collected by the daemon', () => {
  it('serves checkpoints cosigned by two witness processes, survives one going down and a restart', { timeout: 180_000 }, async () => {
    const data = tempDir('wc-data');
    const home = tempDir('wc-home');
    cleanup.push(() => rmSync(data, { recursive: true, force: true }), () => rmSync(home, { recursive: true, force: true }));
    const p = await initDataDir(data);
    const origin = p.config.origin;
    const key = platformPublicKey(p);
    const ws: TestWitness[] = await startWitnesses(p, 2, cleanup);
    await p.close();
    const start = (port = 0) =>
      startServer({
        dataDir: data,
        host: '127.0.0.1',
        port,
        logger: false,
        witnesses: { endpoints: ws.map((w) => ({ url: w.proc.url, vkey: w.vkey })), timeoutMs: 2_000, minIntervalMs: 10, backoffMs: 100 },
      });
    server = await start();
    const { url, port } = server;
    const nexus = (...args: string[]) => run(args, { NEXUS_HOME: home, NEXUS_URL: url });

    // Commands go through; the newest checkpoint gets both cosignatures, each valid under its witness's key.
    expect((await nexus('identity', 'create', 'alice', '--role', 'creator')).code).toBe(0);
    const created = await nexus('imvu', 'create', '--name', 'Gallery', '--owner', 'alice', '--jurisdiction', 'EU-GDPR');
    expect(created.code, created.stderr).toBe(0);
    const size = (await server.store.latestCheckpoint())!.size;
    const both = await waitFor('both cosignatures on the newest checkpoint', async () => {
      const note = (await get(url, '/v1/ledger/checkpoint')).text;
      return cosignatureLines(note).length === 2 ? note : undefined;
    });
    const opened = openCheckpoint(both, [{ name: origin, publicKeyRaw: key }], origin);
    expect(opened.checkpoint.size).toBe(size);
    const lines = cosignatureLines(both);
    expect(ws.map((w) => lines.filter((l) => verifyCosignature(both, l, w.vkey).valid).length)).toEqual([1, 1]);
    let health = (await (await fetch(`${url}/health`)).json()) as { witnesses: WitnessStatus[] };
    expect(health.witnesses.map((w) => [w.name, w.cosignedSize, w.lastError, w.lagging])).toEqual([
      ['witness.test/w1', size, null, false],
      ['witness.test/w2', size, null, false],
    ]);

    // Witness 2 dies. Commands still succeed; the daemon says which witness fails and why.
    await ws[1]!.proc.stop('SIGKILL');
    const add = await nexus('dns', 'record', 'add', 'imvu001.world', 'www', 'A', '192.0.2.7');
    expect(add.code, add.stderr).toBe(0);
    const newest = (await server.store.latestCheckpoint())!.size;
    expect(newest).toBeGreaterThan(size);
    health = await waitFor('the health of both witnesses', async () => {
      const h = (await (await fetch(`${url}/health`)).json()) as { witnesses: WitnessStatus[] };
      return h.witnesses[0]!.cosignedSize === newest && h.witnesses[1]!.lagging ? h : undefined;
    });
    expect(health.witnesses[0]).toMatchObject({ cosignedSize: newest, lastError: null, lagging: false });
    expect(health.witnesses[1]).toMatchObject({ cosignedSize: size, lagging: true, lastError: { kind: 'unreachable' } });
    expect(health.witnesses[1]!.lastError!.message).toContain('connection refused');
    const metrics = (await get(url, '/metrics')).text;
    expect(metrics).toMatch(/nexus_witness_failures_total\{witness="witness.test\/w2",reason="unreachable"\} [1-9]/);
    expect(metrics).toContain(`nexus_witness_cosigned_size{witness="witness.test/w1"} ${newest}`);
    expect(metrics).toContain(`nexus_witness_cosigned_size{witness="witness.test/w2"} ${size}`);
    expect(metrics).toContain('nexus_witness_lagging{witness="witness.test/w2"} 1');
    expect(metrics).toMatch(/\nnexus_checkpoint_cosignatures 1\n/);
    const one = (await get(url, '/v1/ledger/checkpoint')).text;
    expect(openCheckpoint(one, [{ name: origin, publicKeyRaw: key }], origin).checkpoint.size).toBe(newest);
    expect(cosignatureLines(one)).toHaveLength(1);
    expect(verifyCosignature(one, cosignatureLines(one)[0]!, ws[0]!.vkey).valid).toBe(true);

    // The daemon restarts: the cosignatures it collected are still served, before anything new happens.
    await server.close();
    server = await start(port);
    const again = (await get(url, '/v1/ledger/checkpoint')).text;
    expect(again).toBe(one);
    // The older checkpoint both witnesses cosigned is still there for a client that asks for it.
    const older = (await get(url, `/v1/ledger/checkpoint?cosigners=${ws[0]!.keyId},${ws[1]!.keyId}`)).text;
    expect(openCheckpoint(older, [{ name: origin, publicKeyRaw: key }], origin).checkpoint.size).toBe(size);
    expect(splitNote(older).sigs).toHaveLength(3);
    expect(older).toBe(both);
  });
});
