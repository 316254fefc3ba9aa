import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { startDnsServer, type DnsServer } from '../../src/domains/dns-authority/server.ts';
import { dnsFixture, eventually, type DnsFixture } from '../../src/domains/dns-authority/testing.ts';
import { generateZoneKey, zoneKeyOf, type ZoneKey } from '../../src/domains/dnssec/keys.ts';
import { OnlineSigner } from '../../src/domains/dnssec/online.ts';
import { freePort, hasKnotd, startKnot, type Knot } from '../support/knot.ts';

// Zone transfers to a stock secondary: Knot DNS (knotd, Debian package `knot`) runs on loopback as
// a secondary of imvu001.world with our server as its primary and a TSIG key. It bootstraps the
// zone by AXFR; a record added through the chokepoint makes us send NOTIFY, Knot refreshes (SOA
// query, then IXFR, all TSIG-signed) and serves the new answer. Then kdig and dig transfer the
// zone themselves: AXFR with the key (dig checks the TSIG of every message), AXFR without it
// refused, IXFR from an older serial gives the difference. A second zone, imvu002.world, has a
// DNSSEC key: Knot gets it signed (DNSKEY, RRSIGs, NSEC) and serves the signatures.
// Debian packages: knot (knotd), knot-dnsutils (kdig), bind9-dnsutils (dig).

const run = promisify(execFile);
const has = (cmd: string, arg: string) => spawnSync(cmd, [arg], { stdio: 'ignore' }).status === 0;
const hasKdig = has('kdig', '-V');
const hasDig = has('dig', '-v');
if (!hasKnotd) console.warn('dns-xfr interop: knotd not found (apt-get install knot); skipping the secondary test');
if (!hasKdig || !hasDig) console.warn('dns-xfr interop: kdig or dig not found (apt-get install knot-dnsutils bind9-dnsutils); skipping');

const Z = 'imvu001.world';
const SIGNED = 'imvu002.world';
const KEY = 'xfr-key';
const SECRET = Buffer.from('nexus xfr interop key, 32 bytes!').toString('base64');

/** Runs a tool: `out` is stdout and stderr together (for messages), `stdout` alone (for data). */
async function sh(cmd: string, args: string[]): Promise<{ out: string; stdout: string; code: number }> {
  try {
    const r = await run(cmd, args, { timeout: 15_000 });
    return { out: r.stdout + r.stderr, stdout: r.stdout, code: 0 };
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: number };
    return { out: (e.stdout ?? '') + (e.stderr ?? ''), stdout: e.stdout ?? '', code: typeof e.code === 'number' ? e.code : 1 };
  }
}

/** Records of a dig/kdig listing (owner, ttl, class, type, rdata...), comments and TSIG dropped. */
function records(out: string): string[][] {
  return out
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith(';'))
    .map((l) => l.trim().split(/\s+/))
    .filter((r) => r[3] !== 'TSIG' && r.length >= 5);
}

describe.skipIf(!hasKdig || !hasDig)('zone transfers to stock tools', () => {
  let f: DnsFixture;
  let srv: DnsServer;
  let knot: Knot | undefined;
  let knotPort = 0;
  const knotLog = () => knot?.log() ?? '';
  let zoneKey: ZoneKey;

  const ours = (...args: string[]) => ['@127.0.0.1', '-p', String(srv.port), ...args];
  const kdigKnot = async (...args: string[]) => (await sh('kdig', ['@127.0.0.1', '-p', String(knotPort), '+time=1', '+retry=0', ...args])).stdout;
  /** The zone's serial as committed (the server's answers follow within its refresh interval). */
  const serial = async () => Number((await f.p.store.get<{ serial: number }>('SELECT serial FROM zones WHERE name = ?', [Z]))!.serial);

  beforeAll(async () => {
    f = await dnsFixture();
    knotPort = hasKnotd ? await freePort() : 0;
    const { privateKey, publicKey } = await generateZoneKey();
    zoneKey = zoneKeyOf(SIGNED, { imvu: 'IMVU-002', algorithm: 13, flags: 257, public_key: publicKey.toString('base64') }, privateKey);
    srv = await startDnsServer({
      store: f.p.store,
      rrl: false,
      refreshMs: 100,
      dnssec: new OnlineSigner({ forZone: (zone) => (zone === SIGNED ? zoneKey : undefined) }),
      xfr: { tsig: { name: KEY, secret: SECRET }, ...(hasKnotd ? { notify: [{ address: '127.0.0.1', port: knotPort }] } : {}), notifyTimeoutMs: 500 },
    });
    if (!hasKnotd) return;
    knot = startKnot({ port: knotPort, primary: { port: srv.port }, key: { name: KEY, secret: SECRET }, zones: [Z, SIGNED] });
  }, 30_000);

  afterAll(async () => {
    await knot?.stop();
    await srv?.close();
    await f?.p.cleanup();
  });

  it.skipIf(!hasKnotd)('Knot bootstraps the zone from us by AXFR with TSIG and serves it', async () => {
    const version = (await sh('knotd', ['-V'])).out.trim();
    expect(version).toMatch(/Knot DNS/);
    try {
      await eventually(async () => expect((await kdigKnot('+short', `www.${Z}`, 'A')).trim()).toBe('192.0.2.7'), 10_000);
    } catch (err) {
      throw new Error(`Knot did not serve the zone within 10 s:\n${knotLog()}\n${String(err)}`);
    }
    expect(knotLog()).toMatch(/AXFR, incoming.*finished/);
    await eventually(async () => expect(Number(records(await kdigKnot(Z, 'SOA'))[0]![6])).toBe(await serial()), 5000);
    // Not only the easy names: the wildcard, the long TXT, the delegation (Knot refers, as we do).
    expect((await kdigKnot('+short', `anything.wild.${Z}`, 'A')).trim()).toBe('192.0.2.9');
    const txt = (s: string) => s.replace(/"\s*"/g, '').replace(/"/g, '').trim();
    expect(txt(await kdigKnot('+tcp', '+short', `long.${Z}`, 'TXT'))).toBe(txt((await sh('kdig', ours('+tcp', '+short', `long.${Z}`, 'TXT'))).stdout));
    expect(txt(await kdigKnot('+tcp', '+short', `long.${Z}`, 'TXT'))).toMatch(/^k=(abcdefghij){60}$/);
    const referral = await kdigKnot('+norec', `host.sub.${Z}`, 'A');
    expect(referral).toMatch(/AUTHORITY SECTION:[\s\S]*sub\.imvu001\.world\.\s+\d+\s+IN\s+NS/);
  }, 20_000);

  it.skipIf(!hasKnotd)('a record added through the chokepoint reaches Knot by NOTIFY and IXFR within 10 s', async () => {
    const before = await serial();
    const t0 = Date.now();
    await f.add('fresh', 'A', '192.0.2.123');
    try {
      await eventually(async () => expect((await kdigKnot('+short', `fresh.${Z}`, 'A')).trim()).toBe('192.0.2.123'), 10_000);
    } catch (err) {
      throw new Error(`Knot did not pick up the change within 10 s:\n${knotLog()}\n${String(err)}`);
    }
    const took = Date.now() - t0;
    // It was the NOTIFY, not the SOA refresh timer (3600 s), that brought it.
    expect(took).toBeLessThan(10_000);
    expect(srv.notifier!.stats.acknowledged).toBeGreaterThanOrEqual(1);
    expect(knotLog()).toMatch(/notify, incoming, remote 127\.0\.0\.1/);
    expect(knotLog()).toMatch(new RegExp(`IXFR, incoming.*finished`));
    expect(knotLog()).toMatch(new RegExp(`serial ${before} -> ${before + 1}`));
    expect(srv.xfr!.stats.ixfrIncremental).toBeGreaterThanOrEqual(1);
    const soa = records(await kdigKnot(Z, 'SOA'));
    expect(Number(soa[0]![6])).toBe(before + 1);
  }, 20_000);

  it.skipIf(!hasKnotd)('Knot takes the signed zone as it is and serves its DNSKEY and signatures', async () => {
    await eventually(async () => expect(await kdigKnot('+short', SIGNED, 'DNSKEY')).toMatch(/^257 3 13 /), 10_000);
    const out = await kdigKnot('+dnssec', '+norec', SIGNED, 'A');
    const rs = records(out);
    expect(rs.map((r) => r[3])).toEqual(['A', 'RRSIG']);
    expect(rs[1]!.slice(4, 6)).toEqual(['A', '13']);
    expect(Number(rs[1]![10])).toBe(zoneKey.keyTag);
    // Denial from the transferred NSEC chain (Knot's own answer, not our online one).
    const nx = records(await kdigKnot('+dnssec', '+norec', `nothing.${SIGNED}`, 'A'));
    expect(nx.some((r) => r[3] === 'NSEC')).toBe(true);
  }, 20_000);

  it('kdig AXFR with the TSIG key gets the whole zone; without the key it is refused', async () => {
    const signed = await sh('kdig', ours('-y', `hmac-sha256:${KEY}:${SECRET}`, 'AXFR', Z));
    expect(signed.code).toBe(0);
    const rs = records(signed.out);
    expect(rs[0]![3]).toBe('SOA');
    expect(rs[rs.length - 1]![3]).toBe('SOA');
    expect(rs.filter((r) => r[3] === 'SOA')).toHaveLength(2);
    expect(rs.some((r) => r[0] === `www.${Z}.` && r[3] === 'A' && r[4] === '192.0.2.7')).toBe(true);
    expect(signed.out).toMatch(/TSIG/);
    const unsigned = await sh('kdig', ours('AXFR', Z));
    expect(unsigned.out).toMatch(/REFUSED/);
    expect(records(unsigned.out)).toEqual([]);
    const wrongKey = await sh('dig', ours('-y', `hmac-sha256:${KEY}:${Buffer.from('some other key of thirty-two b!!').toString('base64')}`, 'AXFR', Z));
    expect(wrongKey.out).toMatch(/NOTAUTH|BADSIG|failed/i);
    expect(records(wrongKey.out)).toEqual([]);
  }, 20_000);

  it('dig verifies the TSIG of every message of a multi-message AXFR', async () => {
    // Enough data for several messages (16 KiB each).
    for (let i = 0; i < 24; i++) await f.add(`bulk${i}`, 'TXT', `${i} ${'x'.repeat(1500)}`);
    const out = (await sh('dig', ours('-y', `hmac-sha256:${KEY}:${SECRET}`, 'AXFR', Z))).out;
    const size = /XFR size: (\d+) records \(messages (\d+)/.exec(out);
    expect(size, out).not.toBeNull();
    expect(Number(size![2])).toBeGreaterThan(2);
    expect(out).not.toMatch(/could not be validated|verify failure|Couldn't verify/i);
    expect(out.match(/\bTSIG\b.*NOERROR/g)!.length).toBe(Number(size![2]));
  }, 30_000);

  it('dig IXFR=serial with the key gets the difference since that serial', async () => {
    const from = await serial();
    await f.add('delta', 'A', '192.0.2.250');
    await f.remove('www', 'AAAA');
    const out = (await sh('dig', ours('-y', `hmac-sha256:${KEY}:${SECRET}`, `IXFR=${from}`, Z))).out;
    expect(out).not.toMatch(/could not be validated|verify failure|Couldn't verify/i);
    const rs = records(out).map((r) => (r[3] === 'SOA' ? `SOA ${r[6]}` : `${r[0]} ${r[3]} ${r[4]}`));
    // Each difference also swaps the apex ZONEMD (RFC 8976): out with the old serial's, in with the new one's.
    expect(rs).toEqual([
      `SOA ${from + 2}`,
      `SOA ${from}`,
      `${Z}. ZONEMD ${from}`,
      `SOA ${from + 1}`,
      `${Z}. ZONEMD ${from + 1}`,
      `delta.${Z}. A 192.0.2.250`,
      `SOA ${from + 1}`,
      `${Z}. ZONEMD ${from + 1}`,
      `www.${Z}. AAAA 2001:db8::7`,
      `SOA ${from + 2}`,
      `${Z}. ZONEMD ${from + 2}`,
      `SOA ${from + 2}`,
    ]);
    // Up to date: only the SOA.
    const none = records((await sh('dig', ours('-y', `hmac-sha256:${KEY}:${SECRET}`, `IXFR=${from + 2}`, Z))).out);
    expect(none.map((r) => `${r[3]} ${r[6]}`)).toEqual([`SOA ${from + 2}`]);
  }, 20_000);
});
