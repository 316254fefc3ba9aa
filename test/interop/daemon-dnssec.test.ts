import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Answer, RrsigData } from 'dns-packet';
import { signCommand } from '../../src/core/identity/envelope.ts';
import { decode, eventually, framed, query, tcpExchange, udpAsk, type Reply } from '../../src/domains/dns-authority/testing.ts';
import { generateZoneKey } from '../../src/domains/dnssec/keys.ts';
import { verifyRRset } from '../../src/domains/dnssec/sign.ts';
import { Client, newKey, type Actor } from '../support/api.ts';
import { spawnDaemon, type DaemonProcess } from '../support/daemon.ts';

// DNSSEC as the daemon serves it: the daemon runs as its own process, started the way `nexus
// serve` starts it (src/api/daemon.ts → serve(): config, first-run init, the DNS service with
// `onlineSigner`), with no DNS flag but a free port. An IMVU created over the HTTP API gets a zone
// key (the provision hook); DO queries are answered with RRSIGs that verify with the key the
// ledger published (`GET /v1/zones/:zone/ds`), and, if delv (Debian bind9-dnsutils) is installed,
// delv validates answers with nothing but that trust anchor. Zone transfers are not configured,
// so an AXFR is refused and /health says who may transfer: nobody.

const run = promisify(execFile);
const hasDelv = !spawnSync('delv', ['-v']).error;
if (!hasDelv) console.warn('daemon-dnssec interop: delv not found (apt-get install bind9-dnsutils); skipping the delv validation');

interface Health {
  dns: { address: string; port: number; xfr: { allow: string[]; tsig: string | null; notify: unknown[] } } | null;
}
interface Ds {
  zone: string;
  keyTag: number;
  algorithm: number;
  publicKey: string;
  trustAnchor: string;
}

describe('the daemon signs its zones (DNSSEC through `nexus serve`)', () => {
  let dir: string;
  let daemon: DaemonProcess;
  let api: Client;
  let dnsPort: number;
  let alice: Actor;
  let zone: string;
  let ds: Ds;

  const ask = (name: string, type: string, dnssecOk = true): Promise<Reply> => udpAsk(dnsPort, query(name, type, { edns: 1232, do: dnssecOk, rd: false }));
  const rrsigsOf = (r: Reply) => (r.answers ?? []).filter((a): a is Answer & { type: 'RRSIG'; data: RrsigData } => a.type === 'RRSIG');
  /** Checks every RRSIG in the answer over the RRset it covers, with the key the ledger published. */
  const verifyAnswer = (r: Reply) => {
    const sigs = rrsigsOf(r);
    for (const sig of sigs) {
      const set = (r.answers ?? []).filter((a) => a.type === sig.data.typeCovered && a.name.toLowerCase() === sig.name.toLowerCase());
      expect(set.length, `${sig.name} ${sig.data.typeCovered}`).toBeGreaterThan(0);
      expect(verifyRRset(Buffer.from(ds.publicKey, 'base64'), sig.data, sig.name, set.map((a) => (a as { data: unknown }).data)), `${sig.name} ${sig.data.typeCovered}`).toBe(true);
    }
    return sigs;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nexus-daemon-dnssec-'));
    // The daemon initialises the data directory itself, as `nexus start` / `npm start` do.
    daemon = await spawnDaemon(join(dir, 'data'));
    api = new Client(daemon.url);
    const health = (await api.get<Health>('/health')).body;
    dnsPort = health.dns!.port;
    const k = newKey();
    alice = { name: 'alice', id: k.id, key: k.key };
    const reg = await api.request('POST', '/v1/identities', signCommand(alice.key, 'identity.register', { name: 'alice', role: 'creator', publicKey: k.publicKey }, { origin: await api.origin() }));
    expect(reg.status, reg.text).toBe(201);
    const created = await api.as(alice, 'POST', '/v1/imvus', 'imvu.create', { name: 'SignedGallery', owner: alice.id, jurisdiction: 'EU-GDPR' });
    expect(created.status, created.text).toBe(201);
    zone = (created.body.imvu as { domain: string }).domain;
    const r = await api.get<Ds>(`/v1/zones/${zone}/ds`);
    expect(r.status, r.text).toBe(200);
    ds = r.body;
  }, 60_000);

  afterAll(async () => {
    if (daemon) expect(await daemon.stop()).toEqual({ code: 0, signal: null });
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the IMVU zone is imvu001.world with an ECDSA P-256 key; /health shows DNS with transfers refused', async () => {
    expect(zone).toBe('imvu001.world');
    expect(ds).toMatchObject({ zone, algorithm: 13 });
    const health = (await api.get<Health>('/health')).body;
    expect(health.dns).toEqual({ address: '127.0.0.1', port: dnsPort, xfr: { allow: [], tsig: null, notify: [] }, zones: 'ready' });
  });

  it('a DO query for the apex DNSKEY returns the key the ledger published, signed', async () => {
    // The zone view picks the new zone up within its refresh interval.
    const r = await eventually(async () => {
      const reply = await ask(zone, 'DNSKEY');
      expect(reply.rcode).toBe('NOERROR');
      expect(rrsigsOf(reply)).toHaveLength(1);
      return reply;
    }, 10_000);
    expect((r.flags ?? 0) & 0x400).toBeTruthy(); // AA
    const keys = (r.answers ?? []).filter((a) => a.type === 'DNSKEY') as (Answer & { data: { flags: number; algorithm: number; key: Buffer } })[];
    expect(keys).toHaveLength(1);
    expect(keys[0]!.data).toMatchObject({ flags: 257, algorithm: 13 });
    expect(keys[0]!.data.key.toString('base64')).toBe(ds.publicKey);
    const [sig] = verifyAnswer(r);
    expect(sig!.data).toMatchObject({ typeCovered: 'DNSKEY', algorithm: 13, keyTag: ds.keyTag, signersName: zone });
    // The check is not vacuous: another P-256 key does not verify the signature.
    const other = await generateZoneKey();
    expect(verifyRRset(other.publicKey, sig!.data, sig!.name, keys.map((k) => k.data))).toBe(false);
  });

  it(`a DO query for imvu001.world SOA returns the SOA and its RRSIG; without DO, no RRSIG`, async () => {
    const r = await eventually(async () => {
      const reply = await ask(zone, 'SOA');
      expect(rrsigsOf(reply)).toHaveLength(1);
      return reply;
    }, 10_000);
    expect(r.rcode).toBe('NOERROR');
    expect((r.answers ?? []).map((a) => a.type)).toEqual(['SOA', 'RRSIG']);
    const [sig] = verifyAnswer(r);
    expect(sig!.data).toMatchObject({ typeCovered: 'SOA', algorithm: 13, keyTag: ds.keyTag, signersName: zone, labels: 2 });
    const now = Date.now() / 1000;
    expect(sig!.data.inception).toBeLessThan(now);
    expect(sig!.data.expiration).toBeGreaterThan(now + 86_400);
    const plain = await ask(zone, 'SOA', false);
    expect((plain.answers ?? []).map((a) => a.type)).toEqual(['SOA']);
  });

  it('a record added over the API is served signed', async () => {
    const add = await api.as(alice, 'POST', `/v1/zones/${zone}/records`, 'dns.record.add', { zone, name: 'www', type: 'A', value: '192.0.2.80' });
    expect(add.status, add.text).toBe(201);
    const r = await eventually(async () => {
      const reply = await ask(`www.${zone}`, 'A');
      expect((reply.answers ?? []).map((a) => a.type)).toEqual(['A', 'RRSIG']);
      return reply;
    }, 10_000);
    expect((r.answers ?? []).find((a) => a.type === 'A')).toMatchObject({ data: '192.0.2.80' });
    verifyAnswer(r);
  });

  it('zone transfers are refused: none of --xfr-allow, --tsig-name, --notify was given', async () => {
    const [raw] = await tcpExchange(dnsPort, framed(query(zone, 'AXFR', { rd: false })), 1, 5000);
    const r = decode(raw!);
    expect(r.rcode).toBe('REFUSED');
    expect(r.answers ?? []).toEqual([]);
  });

  describe.skipIf(!hasDelv)('delv, with the trust anchor from GET /v1/zones/:zone/ds', () => {
    let anchor: string;
    beforeAll(() => {
      anchor = join(dir, 'anchor.conf');
      writeFileSync(anchor, ds.trustAnchor + '\n');
    });

    /** delv against the daemon only, with the zone's own trust anchor (no root, no recursion). */
    const delv = async (name: string, type: string): Promise<string> => {
      const args = ['@127.0.0.1', '-p', String(dnsPort), '-a', anchor, `+root=${zone}`, name, type];
      const r = await run('delv', args, { timeout: 20_000 }).catch((err: { stdout?: string; stderr?: string }) => ({ stdout: err.stdout ?? '', stderr: err.stderr ?? '' }));
      return r.stdout + r.stderr;
    };

    it('validates the A answers for the apex and for a record added over the API', async () => {
      const apex = await delv(zone, 'A');
      expect(apex).toContain('; fully validated');
      expect(apex).toMatch(/^imvu001\.world\.\s+\d+\s+IN\s+A\s+127\.0\.0\.1$/m);
      const www = await eventually(async () => {
        const out = await delv(`www.${zone}`, 'A');
        expect(out).toContain('192.0.2.80');
        return out;
      }, 10_000);
      expect(www).toContain('; fully validated');
      expect(www).toMatch(/RRSIG\s+A 13 3 \d+ \d{14} \d{14} \d+ imvu001\.world\./);
    }, 30_000);

    it('validates a negative answer (NSEC chain denial) too', async () => {
      const out = await delv(`nothing.${zone}`, 'A');
      expect(out).toContain('; negative response, fully validated');
    }, 30_000);
  });
});
