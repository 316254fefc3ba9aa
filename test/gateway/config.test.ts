// The rendered HAProxy configuration: which per-request rules a listener gets. The allow-list's
// lookups (one per prefix length) are the terms of one ACL behind a single rule, and the IPv6 ones
// are only rendered for listeners that can see IPv6 clients.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acceptsIpv6, renderConfig, type HaproxyLayout } from '../../src/network/gateway/haproxy-config.ts';
import { MAP_NAMES, type MapName } from '../../src/network/gateway/table.ts';
import { haveHaproxy } from './harness.ts';

const layout: HaproxyLayout = {
  dir: '/gw',
  adminSocket: '/gw/admin.sock',
  masterSocket: '/gw/master.sock',
  logSocket: '127.0.0.1:5140',
  crtList: '/gw/crt-list',
  jwtKey: '/gw/keys/jwt.pem',
  maps: Object.fromEntries(MAP_NAMES.map((m) => [m, `/gw/maps/${m}.map`])) as Record<MapName, string>,
  acmeMap: '/gw/maps/acme-http01.map',
};
const render = (httpsBind: string) => renderConfig({ layout, httpsBind, httpsPort: 443, imvus: [{ id: 'IMVU-001', seq: 1, address: '10.200.0.2', hosts: ['a.world'], jurisdiction: 'US-CCPA' }] });
const allowLookups = (cfg: string, acl: string) => cfg.split('\n').filter((l) => l.startsWith(`  acl ${acl} `) && l.includes(`map_str(${layout.maps.allow})`));
const requestRules = (cfg: string) => cfg.split('\n').filter((l) => l.startsWith('  http-request '));

describe('rendered configuration', () => {
  it('an IPv4 listener gets the 33 IPv4 allow-list lookups and none of the IPv6 ones', () => {
    const cfg = render('127.0.0.1:8443');
    expect(allowLookups(cfg, 'allowed4').length).toBe(33);
    expect(allowLookups(cfg, 'allowed6').length).toBe(0);
    expect(allowLookups(render('0.0.0.0:443'), 'allowed4').length).toBe(33);
    // An IPv6 client (none can reach it) would be refused, not let through.
    expect(cfg).toContain('http-request set-var(txn.why) str(ip-not-allowed) if listed is_v4 !allowed4 || listed !is_v4\n');
  });

  it('a listener that may see IPv6 clients keeps the 129 IPv6 lookups as well', () => {
    for (const bind of ['[::]:443', '[::1]:8443', '[2001:db8::1]:443', 'localhost:443', ':::443', 'gw.example:443']) {
      const cfg = render(bind);
      expect(allowLookups(cfg, 'allowed4').length, bind).toBe(33);
      expect(allowLookups(cfg, 'allowed6').length, bind).toBe(129);
      expect(cfg, bind).toContain('http-request set-var(txn.why) str(ip-not-allowed) if listed is_v4 !allowed4 || listed !is_v4 !allowed6\n');
    }
  });

  it('the allow-list is one per-request rule, whatever the number of prefix lengths (bench/gateway)', () => {
    for (const bind of ['127.0.0.1:8443', '[::]:443']) {
      const rules = requestRules(render(bind));
      expect(rules.filter((l) => /allowed[46]|map_str\(\/gw\/maps\/allow\.map\)/.test(l)).length, bind).toBe(1);
      // Every per-request rule, allow-list included: the IPv6 listener has no more than the IPv4 one.
      expect(rules.length, bind).toBe(requestRules(render('127.0.0.1:8443')).length);
    }
  });

  it('acceptsIpv6: false exactly for an IPv4 literal and port', () => {
    const octet = fc.integer({ min: 0, max: 255 });
    const port = fc.integer({ min: 1, max: 65535 });
    fc.assert(fc.property(fc.tuple(octet, octet, octet, octet), port, (o, p) => !acceptsIpv6(`${o.join('.')}:${p}`)));
    fc.assert(fc.property(fc.ipV6(), port, (a, p) => acceptsIpv6(`[${a}]:${p}`)));
    fc.assert(
      fc.property(fc.domain(), port, (d, p) => {
        fc.pre(!/^[\d.]+$/.test(d));
        return acceptsIpv6(`${d}:${p}`);
      }),
    );
  });

  it('each route class ends its rules with its rates and an allow: a public request evaluates no token rule, a private one no role rule', () => {
    const rules = requestRules(render('127.0.0.1:8443'));
    const publicEnd = rules.indexOf('  http-request allow if !gated');
    const privateEnd = rules.indexOf('  http-request allow if !restricted');
    expect(publicEnd).toBeGreaterThan(0);
    expect(privateEnd).toBeGreaterThan(publicEnd);
    const token = (l: string) => /txn\.(jwt|jok|jp|exp)\b|str\((no-token|bad-signature|wrong-audience|expired)\)/.test(l);
    const role = (l: string) => /txn\.(roles|role\d|ok\d)\b|missing-role/.test(l);
    expect(rules.slice(0, publicEnd).filter((l) => token(l) || role(l))).toEqual([]);
    expect(rules.slice(publicEnd, privateEnd).filter(token).length).toBeGreaterThan(5);
    expect(rules.slice(0, privateEnd).filter(role)).toEqual([]);
    // Every class is rate-limited and forwarded to its route's port; a gated one after its token check.
    const tracks = rules.flatMap((l, i) => (l.includes('track-sc0 var(txn.route),field(4,|) table st_route') ? [i] : []));
    expect(tracks.length).toBe(3);
    expect(tracks[0]).toBeLessThan(publicEnd);
    expect(tracks[1]).toBeGreaterThan(rules.findIndex((l) => l.includes('status 401')));
    expect(rules.filter((l) => l.includes('set-dst-port')).length).toBe(3);
  });

  it('a public request makes one map lookup for its route and none of the IMVU, and builds no route id', () => {
    const cfg = render('127.0.0.1:8443');
    const rules = requestRules(cfg);
    const publicRules = rules.slice(0, rules.indexOf('  http-request allow if !gated'));
    // Every lookup of the imvus map and every route id built is for gated or listed routes only.
    expect(publicRules.filter((l) => l.includes(`map_str(${layout.maps.imvus})`) && !/ if gated$/.test(l))).toEqual([]);
    expect(publicRules.filter((l) => /set-var(-fmt)?\(txn\.rid\)/.test(l) && !/ if listed$/.test(l))).toEqual([]);
    // The IMVU's bounds are the route value's sixth and seventh fields.
    expect(publicRules.filter((l) => /var\(txn\.route\),field\([67],\|\)/.test(l)).length).toBe(2);
  });

  it("the client's entry in st_src is looked up once per connection; the token cache is filled without a tracking slot", () => {
    const cfg = render('127.0.0.1:8443');
    expect(cfg).toContain('  tcp-request connection track-sc2 src table st_src\n');
    // No per-request lookup of the client's entry, and no stream tracking of sc2 (a stream starts
    // with its session's slots: it would find sc2 taken).
    expect(cfg).not.toMatch(/src_(inc_)?gpc0|track-sc2 var/);
    expect(requestRules(cfg).filter((l) => /\{ sc2_inc_gpc0 gt 0 \} \{ sc2_gpc0_rate gt \d+ \}$/.test(l)).length).toBe(1);
    // Every IMVU's backend stores a token verified by the request it serves.
    expect(cfg).toContain('backend be_IMVU-001\n  stick store-request var(txn.jwt) table st_jwt if { var(txn.jstore) -m bool }\n');
  });

  it('served requests are silenced in the log; refusals are answered before that rule', () => {
    const cfg = render('127.0.0.1:8443');
    expect(cfg).toContain('http-response set-log-level silent if { status lt 500 }');
    // The JWT payload is decoded once per request.
    expect(cfg.match(/ub64dec/g)?.length).toBe(1);
    expect(cfg).not.toMatch(/jwt_payload_query/);
  });
});

describe.skipIf(!haveHaproxy)('rendered configuration, checked by HAProxy', () => {
  it('both forms (an IPv4 listener, an IPv6 one with its 129 extra lookups) are valid HAProxy 2.6 configurations', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nexus-gwcfg-'));
    try {
      const key = join(dir, 'key.pem');
      const cert = join(dir, 'cert.pem');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=a.world', '-days', '1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
      const pem = join(dir, 'a.pem');
      execFileSync('sh', ['-c', `cat "${cert}" "${key}" > "${pem}"`]);
      const jwtKey = join(dir, 'jwt.pub');
      execFileSync('openssl', ['ec', '-in', key, '-pubout', '-out', jwtKey], { stdio: 'ignore' });
      writeFileSync(join(dir, 'crt-list'), `${pem}\n`);
      const maps = Object.fromEntries(MAP_NAMES.map((m) => [m, join(dir, `${m}.map`)])) as Record<MapName, string>;
      for (const f of Object.values(maps)) writeFileSync(f, '');
      const acmeMap = join(dir, 'acme-http01.map');
      writeFileSync(acmeMap, '');
      const L: HaproxyLayout = { dir, adminSocket: join(dir, 'admin.sock'), masterSocket: join(dir, 'master.sock'), logSocket: '127.0.0.1:5140', crtList: join(dir, 'crt-list'), jwtKey, maps, acmeMap };
      for (const bind of ['127.0.0.1:8443', '[::1]:8443']) {
        const cfg = join(dir, 'haproxy.cfg');
        writeFileSync(cfg, renderConfig({ layout: L, httpsBind: bind, httpsPort: 443, imvus: [{ id: 'IMVU-001', seq: 1, address: '10.200.0.2', hosts: ['a.world'], jurisdiction: 'US-CCPA' }] }));
        const r = spawnSync('haproxy', ['-c', '-f', cfg], { encoding: 'utf8' });
        expect(r.status, `${bind}: ${r.stdout}${r.stderr}`).toBe(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
