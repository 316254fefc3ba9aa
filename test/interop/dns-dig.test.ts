import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { startDnsServer, type DnsServer } from '../../src/domains/dns-authority/server.ts';
import { dnsFixture, type DnsFixture } from '../../src/domains/dns-authority/testing.ts';

// BIND's dig (Debian package bind9-dnsutils) against our authoritative server.

const run = promisify(execFile);
const hasDig = spawnSync('dig', ['-v']).status === 0;
if (!hasDig) console.warn('dns-dig interop: dig not found (apt-get install bind9-dnsutils); skipping');

describe.skipIf(!hasDig)('dig against the authoritative server', () => {
  let f: DnsFixture;
  let srv: DnsServer;
  const Z = 'imvu001.world';
  const dig = async (...args: string[]) => (await run('dig', ['@127.0.0.1', '-p', String(srv.port), '+time=2', '+tries=1', ...args])).stdout;
  const flags = (out: string) => /;; flags: ([a-z ]+);/.exec(out)?.[1]!.split(' ').sort() ?? [];
  const status = (out: string) => /status: ([A-Z]+)/.exec(out)?.[1];
  const section = (out: string, name: string) => {
    const m = new RegExp(`;; ${name} SECTION:\\n([\\s\\S]*?)(?:\\n\\n|$)`).exec(out);
    return m ? m[1]!.split('\n').filter((l) => l && !l.startsWith(';')).map((l) => l.split(/\s+/)) : [];
  };

  beforeAll(async () => {
    f = await dnsFixture();
    srv = await startDnsServer({ store: f.p.store, rrl: false });
  });
  afterAll(async () => {
    await srv?.close();
    await f?.p.cleanup();
  });

  it('+norec: authoritative answer, no recursion offered', async () => {
    const out = await dig('+norec', `www.${Z}`, 'A');
    expect(status(out)).toBe('NOERROR');
    expect(flags(out)).toEqual(['aa', 'qr']);
    expect(section(out, 'ANSWER')).toEqual([[`www.${Z}.`, '3600', 'IN', 'A', '192.0.2.7']]);
  });

  it('with RD set: RD echoed, RA clear, still authoritative', async () => {
    const out = await dig(`www.${Z}`, 'AAAA');
    expect(flags(out)).toEqual(['aa', 'qr', 'rd']);
    expect(out).toContain('recursion requested but not available');
  });

  it('NXDOMAIN and NODATA carry the SOA in authority with the negative TTL', async () => {
    const nx = await dig('+norec', `nope.${Z}`, 'A');
    expect(status(nx)).toBe('NXDOMAIN');
    expect(section(nx, 'AUTHORITY')[0]!.slice(0, 5)).toEqual([`${Z}.`, '300', 'IN', 'SOA', 'ns1.world.']);
    const nodata = await dig('+norec', `www.${Z}`, 'MX');
    expect(status(nodata)).toBe('NOERROR');
    expect(section(nodata, 'ANSWER')).toEqual([]);
    expect(section(nodata, 'AUTHORITY')[0]![3]).toBe('SOA');
  });

  it('+bufsize: TC over UDP when the answer exceeds it (+ignore shows it), the full answer with +tcp and by dig retrying', async () => {
    const truncated = await dig('+norec', '+ignore', '+bufsize=600', `big.${Z}`, 'TXT');
    expect(flags(truncated)).toContain('tc');
    expect(truncated).toContain('udp: 1232');
    const fits = await dig('+norec', '+bufsize=1232', `big.${Z}`, 'TXT');
    expect(flags(fits)).not.toContain('tc');
    expect(section(fits, 'ANSWER')).toHaveLength(4);
    const tcp = await dig('+norec', '+tcp', `huge.${Z}`, 'TXT');
    expect(tcp).toContain('(TCP)');
    expect(section(tcp, 'ANSWER')).toHaveLength(8);
    const retried = await dig('+norec', `huge.${Z}`, 'TXT');
    expect(retried).toContain('Truncated, retrying in TCP mode');
    expect(section(retried, 'ANSWER')).toHaveLength(8);
  });

  it('ANY: one RRset only (RFC 8482)', async () => {
    const out = await dig('+norec', Z, 'ANY');
    const types = new Set(section(out, 'ANSWER').map((r) => r[3]));
    expect(types.size).toBe(1);
  });

  it('referral for a delegated name: no AA, NS in authority, glue in additional', async () => {
    const out = await dig('+norec', `host.sub.${Z}`, 'A');
    expect(flags(out)).toEqual(['qr']);
    expect(section(out, 'AUTHORITY').map((r) => r[4]).sort()).toEqual(['ns.imvu002.world.', `ns1.sub.${Z}.`]);
    expect(section(out, 'ADDITIONAL').map((r) => `${r[3]} ${r[4]}`)).toEqual(['A 192.0.2.53', 'AAAA 2001:db8::53']);
  });

  it('REFUSED outside our zones; wildcard synthesis keeps the question name', async () => {
    expect(status(await dig('+norec', 'example.com', 'A'))).toBe('REFUSED');
    const wild = await dig('+norec', `Mixed.Case.wild.${Z}`, 'A');
    expect(section(wild, 'ANSWER')).toEqual([[`Mixed.Case.wild.${Z}.`, '3600', 'IN', 'A', '192.0.2.9']]);
  });
});
