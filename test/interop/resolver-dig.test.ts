// BIND's dig (Debian package bind9-dnsutils) against the resolver over the loopback hierarchy
// (test/support/dns-hierarchy.ts): recursion offered (RA), never authoritative, NXDOMAIN with the
// SOA, and a refused outsider (dig -b 127.0.0.2).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { dnsFixture, type DnsFixture } from '../../src/domains/dns-authority/testing.ts';
import { startResolver, type Resolver } from '../../src/domains/resolvers/server.ts';
import { startHierarchy, type Hierarchy } from '../support/dns-hierarchy.ts';

const run = promisify(execFile);
const hasDig = spawnSync('dig', ['-v']).status === 0;
if (!hasDig) console.warn('resolver-dig interop: dig not found (apt-get install bind9-dnsutils); skipping');

describe.skipIf(!hasDig)('dig against the resolver', () => {
  let f: DnsFixture;
  let h: Hierarchy;
  let resolver: Resolver;
  const dig = async (...args: string[]) => (await run('dig', ['@127.0.0.1', '-p', String(resolver.port), '+time=5', '+tries=1', ...args])).stdout;
  const flags = (out: string) => /;; flags: ([a-z ]+);/.exec(out)?.[1]!.split(' ').sort() ?? [];
  const status = (out: string) => /status: ([A-Z]+)/.exec(out)?.[1];

  beforeAll(async () => {
    f = await dnsFixture();
    h = await startHierarchy(f.p.store);
    resolver = await startResolver({ allow: ['127.0.0.1/32'], rootHints: h.rootHints, upstreamPort: h.port });
  });
  afterAll(async () => {
    await resolver?.close();
    await h?.close();
    await f?.p.cleanup();
  });

  it('resolves through root and TLD: RA set, AA clear, the answer with its TTL', async () => {
    const out = await dig('www.imvu001.world', 'A');
    expect(status(out)).toBe('NOERROR');
    expect(flags(out)).toEqual(['qr', 'ra', 'rd']);
    expect(out).toMatch(/^www\.imvu001\.world\.\s+\d+\s+IN\s+A\s+192\.0\.2\.7$/m);
  });

  it('NXDOMAIN with the zone SOA in authority', async () => {
    const out = await dig('nothing-here.imvu001.world', 'A');
    expect(status(out)).toBe('NXDOMAIN');
    expect(out).toMatch(/^imvu001\.world\.\s+\d+\s+IN\s+SOA\s+ns1\.world\. hostmaster\.imvu001\.world\./m);
  });

  it('TCP works too (+tcp)', async () => {
    const out = await dig('+tcp', 'sip.imvu001.world', 'A');
    expect(status(out)).toBe('NOERROR');
    expect(out).toMatch(/192\.0\.2\.60/);
  });

  it('refuses a client outside the ACL (dig -b 127.0.0.2)', async () => {
    const out = await dig('-b', '127.0.0.2', 'www.imvu001.world', 'A');
    expect(status(out)).toBe('REFUSED');
  });
});
