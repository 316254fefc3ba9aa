import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Answer, RrsigData } from 'dns-packet';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { decode, eventually, framed, query, tcpExchange, udpAsk, type Reply } from '../../src/domains/dns-authority/testing.ts';
import { verifyRRset } from '../../src/domains/dnssec/sign.ts';
import { Client, newKey, type Actor } from '../support/api.ts';
import { spawnDaemon, type DaemonProcess } from '../support/daemon.ts';
import { freePort, hasKnotd, startKnot, type Knot } from '../support/knot.ts';

// Zone transfers configured the way an operator does it: `nexus start` (what `npm start` runs) as
// its own process with `--xfr-allow 127.0.0.1 --tsig-name nexus-xfr --notify 127.0.0.1:<port>` and
// the secret in a 0600 file named by NEXUS_TSIG_SECRET_FILE. Knot DNS (knotd) is the secondary:
// it bootstraps the IMVU's zone by TSIG-signed AXFR, and a record added over the HTTP API reaches
// it by NOTIFY (the SOA refresh is an hour, so nothing else could bring it within the wait), signed
// (the zone has a DNSSEC key: Knot serves our RRSIGs). Without knotd (Debian package `knot`) only
// the daemon-side checks run (/health, the start-up log, an AXFR allowed by address).

if (!hasKnotd) console.warn('daemon-xfr interop: knotd not found (apt-get install knot); skipping the transfers to Knot (the daemon-side checks still run)');

const KEY = 'nexus-xfr';
const SECRET = Buffer.from('daemon xfr interop key, 32 bytes').toString('base64');

interface Health {
  dns: { address: string; port: number; xfr: { allow: string[]; tsig: string | null; notify: { address: string; port: number }[] } } | null;
}

describe('`nexus start` with transfers configured, Knot as its secondary', () => {
  let dir: string;
  let daemon: DaemonProcess;
  let knot: Knot | undefined;
  let knotPort: number;
  let api: Client;
  let dnsPort: number;
  let alice: Actor;
  let zone: string;

  const serialOf = async () => (await api.get<{ serial: number }>(`/v1/zones/${zone}/records`)).body.serial;
  const askKnot = (name: string, type: string, dnssecOk = false): Promise<Reply> => udpAsk(knotPort, query(name, type, { edns: 1232, do: dnssecOk, rd: false }));
  const knotFailed = (what: string, err: unknown) => new Error(`${what}:\n${knot?.log() ?? ''}\n${String(err)}`);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nexus-daemon-xfr-'));
    const secretFile = join(dir, 'tsig.key');
    writeFileSync(secretFile, SECRET + '\n');
    chmodSync(secretFile, 0o600);
    // Knot's port first: the daemon is told to NOTIFY it; Knot is told where the daemon is.
    knotPort = await freePort();
    daemon = await spawnDaemon(join(dir, 'data'), ['--xfr-allow', '127.0.0.1', '--tsig-name', KEY, '--notify', `127.0.0.1:${knotPort}`], {
      via: 'cli',
      env: { NEXUS_TSIG_SECRET_FILE: secretFile },
      timeoutMs: 30_000,
    });
    api = new Client(daemon.url);
    dnsPort = (await api.get<Health>('/health')).body.dns!.port;
    const k = newKey();
    alice = { name: 'alice', id: k.id, key: k.key };
    api.reader = alice; // the zone's records are read by its creator (signed reads)
    const reg = await api.request('POST', '/v1/identities', signCommand(alice.key, 'identity.register', { name: 'alice', role: 'creator', publicKey: k.publicKey }, { origin: await api.origin() }));
    expect(reg.status, reg.text).toBe(201);
    const created = await api.as(alice, 'POST', '/v1/imvus', 'imvu.create', { name: 'Mirrored', owner: alice.id, jurisdiction: 'EU-GDPR' });
    expect(created.status, created.text).toBe(201);
    zone = (created.body.imvu as { domain: string }).domain;
    // The daemon's zone view picks the new zone up within its refresh interval (200 ms); until then
    // a transfer is NOTAUTH and Knot would wait 20 s before trying again.
    const serial = await serialOf();
    await eventually(async () => {
      const soa = (await udpAsk(dnsPort, query(zone, 'SOA', { rd: false }))).answers?.find((a) => a.type === 'SOA') as (Answer & { data: { serial: number } }) | undefined;
      expect(soa?.data.serial).toBe(serial);
    }, 10_000);
    if (hasKnotd) knot = startKnot({ port: knotPort, primary: { port: dnsPort }, key: { name: KEY, secret: SECRET }, zones: [zone] });
  }, 60_000);

  afterAll(async () => {
    await knot?.stop();
    if (daemon) expect(await daemon.stop()).toEqual({ code: 0, signal: null });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('/health and the start-up log show who may transfer and who is notified, never the secret', async () => {
    const health = await api.get<Health>('/health');
    const xfr = { allow: ['127.0.0.1'], tsig: KEY, notify: [{ address: '127.0.0.1', port: knotPort }] };
    expect(health.body.dns).toEqual({ address: '127.0.0.1', port: dnsPort, xfr, zones: 'ready' });
    expect((daemon.listening.dns as { xfr: unknown }).xfr).toEqual(xfr);
    expect(health.text).not.toContain(SECRET);
    expect(daemon.output.join('\n')).not.toContain(SECRET);
  });

  it('--xfr-allow 127.0.0.1: an AXFR from loopback without TSIG gets the zone, SOA first', async () => {
    const [raw] = await tcpExchange(dnsPort, framed(query(zone, 'AXFR', { rd: false })), 1, 5000);
    const r = decode(raw!);
    expect(r.rcode).toBe('NOERROR');
    expect(r.answers![0]).toMatchObject({ name: zone, type: 'SOA' });
  });

  it.skipIf(!hasKnotd)('Knot bootstraps the zone by TSIG-signed AXFR and serves the serial we serve', async () => {
    try {
      await eventually(async () => {
        const soa = (await askKnot(zone, 'SOA')).answers?.find((a) => a.type === 'SOA') as (Answer & { data: { serial: number } }) | undefined;
        expect(soa?.data.serial).toBe(await serialOf());
      }, 15_000);
    } catch (err) {
      throw knotFailed('Knot did not serve the zone within 15 s', err);
    }
    expect(knot!.log()).toMatch(/AXFR, incoming.*finished/);
    expect(knot!.log()).not.toMatch(/NOTAUTH|not allowed/);
  }, 30_000);

  it.skipIf(!hasKnotd)('a record added over the API reaches Knot by NOTIFY, with its RRSIG', async () => {
    const before = await serialOf();
    const add = await api.as(alice, 'POST', `/v1/zones/${zone}/records`, 'dns.record.add', { zone, name: 'mirror', type: 'A', value: '192.0.2.123' });
    expect(add.status, add.text).toBe(201);
    let answer: Reply;
    try {
      answer = await eventually(async () => {
        const r = await askKnot(`mirror.${zone}`, 'A', true);
        expect((r.answers ?? []).map((a) => a.type)).toEqual(['A', 'RRSIG']);
        return r;
      }, 15_000);
    } catch (err) {
      throw knotFailed('Knot did not pick up the change within 15 s', err);
    }
    // The SOA refresh is 3600 s: it was the NOTIFY that brought it.
    expect(knot!.log()).toMatch(/notify, incoming, remote 127\.0\.0\.1/);
    expect(await serialOf()).toBeGreaterThan(before);
    // Knot signs its SOA checks and transfers with the key and accepts NOTIFY only signed with it
    // (knot.conf's acl): neither side refused anything, so the daemon has the key from the file.
    expect(knot!.log()).not.toMatch(/denied|NOTAUTH|BADSIG|BADKEY|BADTIME|not allowed|refresh.*failed/i);
    const [a, sig] = answer.answers! as [Answer & { data: string }, Answer & { data: RrsigData }];
    expect(a.data).toBe('192.0.2.123');
    // Knot serves our signature as transferred; it verifies with the key the ledger published.
    const ds = (await api.get<{ publicKey: string; keyTag: number }>(`/v1/zones/${zone}/ds`)).body;
    expect(sig.data).toMatchObject({ typeCovered: 'A', keyTag: ds.keyTag, signersName: zone });
    expect(verifyRRset(Buffer.from(ds.publicKey, 'base64'), sig.data, sig.name, [a.data])).toBe(true);
  }, 30_000);
});
