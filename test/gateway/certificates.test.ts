// The certificates the gateway serves, whichever CA issued them, are in the ledger and checked
// against it: without an ACME CA the platform's local CA issues and the issuance is recorded as
// `certificate.issued` before HAProxy serves it; `GET /v1/imvus/:id/gateway` and
// `nexus imvu gateway` show the certificate HAProxy serves (read back over its runtime API) next to
// the ledger's; a certificate replaced by hand over the runtime API is found by the comparison,
// put back and raised as an integrity alarm.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { initDataDir, isInitialised } from '../../src/core/platform.ts';
import { startServer, type RunningServer } from '../../src/api/server.ts';
import { decodeEntry } from '../../src/core/ledger/ledger.ts';
import { ensureLocalCa, issueLocal } from '../../src/network/gateway/certs.ts';
import { runtimeCommand } from '../../src/network/gateway/runtime.ts';
import { run, tempDir } from '../cli/harness.ts';
import { freePort, haveHaproxy } from './harness.ts';

/** The SHA-256 fingerprint (lower-case hex) of the certificate served for `host`, by SNI. */
function servedSha256(port: number, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: host, rejectUnauthorized: false }, () => {
      const fp = s.getPeerCertificate().fingerprint256.replace(/:/g, '').toLowerCase();
      s.end();
      resolve(fp);
    });
    s.on('error', reject);
  });
}

describe.skipIf(!haveHaproxy)('gateway certificates against the ledger (local CA)', () => {
  let dir: string;
  let server: RunningServer;
  let env: Record<string, string>;
  let port: number;
  const host = 'imvu001.world';
  const nexus = (...args: string[]) => run(args, env);

  async function entries(type: string): Promise<{ index: number; body: Record<string, unknown>; allowed: boolean }[]> {
    const rows = await server.store.all<{ idx: number; data: Buffer }>('SELECT idx, data FROM ledger_entries ORDER BY idx');
    return rows
      .map((r) => ({ index: Number(r.idx), e: decodeEntry(Buffer.from(r.data)) }))
      .filter((x) => x.e.command?.command.type === type)
      .map((x) => ({ index: x.index, body: x.e.command!.command.body as Record<string, unknown>, allowed: x.e.decision.allowed }));
  }

  beforeAll(async () => {
    dir = tempDir('gateway-certs');
    const data = join(dir, 'data');
    if (!isInitialised(data)) await (await initDataDir(data)).close();
    port = await freePort();
    server = await startServer({ dataDir: data, host: '127.0.0.1', port: 0, logger: false, gateway: { address: '127.0.0.1', port, httpPort: await freePort() } });
    expect(server.gateway).toBeDefined();
    env = { NEXUS_HOME: join(dir, 'home'), NEXUS_URL: server.url };
    for (const args of [
      ['identity', 'create', 'alice', '--role', 'creator'],
      ['imvu', 'create', '--name', 'Certs', '--owner', 'alice', '--jurisdiction', 'US-CCPA', '--as', 'alice'],
    ]) {
      const r = await nexus(...args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
    await server.gateway!.sync();
  }, 240_000);

  afterAll(async () => {
    await server?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("records the local CA's certificate as certificate.issued (issuer named) before it is served", async () => {
    const issued = (await entries('certificate.issued')).filter((e) => e.body.imvu === 'IMVU-001');
    expect(issued.length).toBe(1);
    const e = issued[0]!;
    expect(e.allowed).toBe(true);
    expect(e.body.directory).toBe('urn:nexus:local-ca');
    expect(e.body.issuer).toBe('CN=nexus platform CA');
    expect(e.body.names).toEqual([host, `stage.${host}`]);
    expect(await servedSha256(port, host)).toBe(e.body.sha256);
    expect(await servedSha256(port, `stage.${host}`)).toBe(e.body.sha256);
    const row = await server.store.get<{ sha256: string; entry: number }>('SELECT sha256, entry FROM certificates WHERE imvu = ?', ['IMVU-001']);
    expect(row).toEqual({ sha256: e.body.sha256, entry: e.index });
    // The reload that served it came after the record: nothing served before the creator could find it.
    const gw = await server.store.get<{ entry: number }>("SELECT entry FROM imvus WHERE id = 'IMVU-001'");
    expect(e.index).toBeGreaterThan(gw!.entry);
  });

  it('shows the served certificate next to the ledger\'s (API and CLI)', async () => {
    const r = await nexus('imvu', 'gateway', 'IMVU-001', '--json');
    expect(r.code, r.stderr).toBe(0);
    const view = JSON.parse(r.stdout) as { certificate: { equal: boolean; served: { serial: string; notAfter: string }; ledger: { serial: string; notAfter: string; directory: string } } };
    expect(view.certificate.equal).toBe(true);
    expect(view.certificate.served.serial).toBe(view.certificate.ledger.serial);
    expect(view.certificate.served.notAfter).toBe(view.certificate.ledger.notAfter);
    expect(view.certificate.ledger.directory).toBe('urn:nexus:local-ca');
    const human = await nexus('imvu', 'gateway', 'IMVU-001');
    expect(human.stdout).toMatch(/✅ Certificate for imvu001\.world, stage\.imvu001\.world: served as the ledger recorded it/);
  }, 60_000);

  it("a creator's view of its IMVU reads back that IMVU's certificate only (one command, not one per IMVU of the platform)", async () => {
    const r = await nexus('imvu', 'create', '--name', 'Other', '--owner', 'alice', '--jurisdiction', 'US-CCPA', '--as', 'alice');
    expect(r.code, r.stderr).toBe(0);
    const gw = server.gateway!;
    await gw.sync();
    expect((await gw.servedCertificates()).length).toBe(2);
    const g = gw as unknown as { cmd: (command: string, payload?: string) => Promise<string> };
    const cmd = g.cmd.bind(gw);
    const sent: string[] = [];
    const spy = vi.spyOn(g, 'cmd').mockImplementation((command: string, payload?: string) => {
      sent.push(command);
      return cmd(command, payload);
    });
    try {
      const view = await nexus('imvu', 'gateway', 'IMVU-001', '--json');
      expect(view.code, view.stderr).toBe(0);
      expect((JSON.parse(view.stdout) as { certificate: { imvu: string; equal: boolean } }).certificate).toMatchObject({ imvu: 'IMVU-001', equal: true });
    } finally {
      spy.mockRestore();
    }
    expect(sent.filter((c) => c.startsWith('show ssl cert '))).toEqual([`show ssl cert ${gw.certFile('IMVU-001')}`]);
    // No map is read whole (one listing of their line counts): each of IMVU-001's lines is looked up by its key, and nothing of IMVU-002's.
    expect(sent.filter((c) => c.startsWith('show map'))).toEqual(['show map']);
    const lookups = sent.filter((c) => c.startsWith('get map '));
    expect(lookups.length).toBeGreaterThan(2);
    for (const c of lookups) expect(c).toMatch(/ (IMVU-001\b|[a-z.]*imvu001\.world$)/);
  }, 60_000);

  it("the view finds a line of its IMVU edited by hand as it is served now, before any check; the other IMVU's view is unaffected", async () => {
    const gw = server.gateway!;
    const hosts = gw.layout.maps.hosts;
    // Someone with the admin socket points IMVU-001's name at IMVU-002.
    expect((await runtimeCommand(gw.layout.adminSocket, `set map ${hosts} ${host} IMVU-002`)).trim()).toBe('');
    try {
      const view = JSON.parse((await nexus('imvu', 'gateway', 'IMVU-001', '--json')).stdout) as { equal: boolean; differences: { map: string; missing: string[] }[]; routes: { hosts: string[] } };
      expect(view.equal).toBe(false);
      expect(view.differences).toEqual([{ map: 'hosts', extra: [], missing: [`${host} IMVU-001`] }]);
      expect(view.routes.hosts).toEqual([`stage.${host} IMVU-001`]);
      const other = JSON.parse((await nexus('imvu', 'gateway', 'IMVU-002', '--json')).stdout) as { equal: boolean };
      expect(other.equal).toBe(true);
    } finally {
      await gw.verify();
    }
    expect((await gw.servedMaps()).hosts).toContainEqual([host, 'IMVU-001']);
  }, 60_000);

  it('a certificate replaced by hand over the runtime API is detected, reverted to the ledger\'s and alarmed', async () => {
    const gw = server.gateway!;
    const ledger = (await entries('certificate.issued')).filter((e) => e.body.imvu === 'IMVU-001').at(-1)!.body.sha256 as string;
    // Someone with the admin socket swaps in a certificate of another CA for the same names.
    const other = mkdtempSync(join(tmpdir(), 'nexus-other-ca-'));
    try {
      await issueLocal(ensureLocalCa(join(other, 'ca')), [host, `stage.${host}`], join(other, 'forged.pem'));
      const file = gw.certFile('IMVU-001');
      const set = await runtimeCommand(gw.layout.adminSocket, `set ssl cert ${file}`, { payload: readFileSync(join(other, 'forged.pem'), 'utf8') });
      expect(set).toMatch(/Transaction (created|updated)/);
      expect(await runtimeCommand(gw.layout.adminSocket, `commit ssl cert ${file}`)).toMatch(/Success/);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
    expect(await servedSha256(port, host)).not.toBe(ledger);
    const seen = (await gw.servedCertificates()).find((c) => c.imvu === 'IMVU-001')!;
    expect(seen.equal).toBe(false);
    expect(seen.fileIsLedger).toBe(true);
    const before = (await entries('integrity.alarm')).length;
    // The comparison the timer runs.
    await gw.verify();
    expect(await servedSha256(port, host)).toBe(ledger);
    expect((await gw.servedCertificates()).find((c) => c.imvu === 'IMVU-001')!.equal).toBe(true);
    const alarms = await entries('integrity.alarm');
    expect(alarms.length).toBe(before + 1);
    const alarm = alarms.at(-1)!;
    expect(alarm.allowed).toBe(true);
    expect(alarm.body.tables).toEqual(['certificates']);
    expect(alarm.body.imvus).toEqual(['IMVU-001']);
    expect(String(alarm.body.detail)).toMatch(/reverted to the ledger's certificate/);
    expect(gw.alarms.at(-1)!.imvus).toEqual(['IMVU-001']);
    // A second pass finds nothing more.
    await gw.verify();
    expect((await entries('integrity.alarm')).length).toBe(before + 1);
  }, 60_000);
});
