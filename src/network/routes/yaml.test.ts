import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { policyFromYaml } from './yaml.ts';
import { parseBackend, ratePerWindow, policyProblems } from './policy.ts';

const SPEC = `# imvu042-routing-policy.yaml
public_routes:
  - path: "/*"
    backend: "public-api:3000"
    rate_limit: 1000/min
private_routes:
  - path: "/internal/*"
    backend: "private-api:3001"
    require_identity: true
restricted_routes:
  - path: "/admin/*"
    backend: "admin-api:3002"
    require_roles: ["admin"]
    ip_whitelist: ["203.0.113.0/24"]
`;

describe('routing-policy.yaml', () => {
  it("reads the spec's example as the route.set policy", () => {
    expect(policyFromYaml(SPEC)).toEqual({
      public: [{ path: '/*', backend: 'public-api:3000', rate_limit: '1000/min' }],
      private: [{ path: '/internal/*', backend: 'private-api:3001', require_identity: true }],
      restricted: [{ path: '/admin/*', backend: 'admin-api:3002', require_roles: ['admin'], ip_whitelist: ['203.0.113.0/24'] }],
    });
  });

  it('refuses unknown keys, addresses as backends, bad prefixes, aliases and junk with one clear line', () => {
    expect(() => policyFromYaml('routes: []')).toThrow(/unknown key routes/);
    expect(() => policyFromYaml('public_routes:\n  - path: /\n    backend: 127.0.0.1:22\n')).toThrow(/is an address/);
    expect(() => policyFromYaml('public_routes:\n  - path: /\n    backend: web\n    extra: 1\n')).toThrow(/policy file/);
    expect(() => policyFromYaml('restricted_routes:\n  - path: /a\n    backend: web\n    require_roles: [admin]\n    ip_whitelist: ["300.1.1.1/8"]\n')).toThrow(/ip_whitelist/);
    expect(() => policyFromYaml('public_routes: &r [{ path: /, backend: web }]\nprivate_routes: *r\n')).toThrow(/alias/i);
    expect(() => policyFromYaml('{{{')).toThrow(/not YAML/);
    expect(() => policyFromYaml('x'.repeat(600 * 1024))).toThrow(/larger than/);
  });

  it('never crashes on arbitrary input: a policy or an Error', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 400 }), (text) => {
        try {
          const p = policyFromYaml(text);
          expect(policyProblems(p)).toEqual([]);
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('backends and rates', () => {
  it('a backend is a label and a port of the own workload, never an address or a host', () => {
    expect(parseBackend('web:8080')).toEqual({ name: 'web', port: 8080 });
    expect(parseBackend('web')).toEqual({ name: 'web', port: 80 });
    for (const bad of ['127.0.0.1:80', '10.96.0.6', 'localhost:80', 'db.other.example:5432', '[::1]:80', 'web:0', 'web:65536', '2130706433:80', '-x:80'])
      expect(parseBackend(bad), bad).toHaveProperty('error');
  });

  it('no input makes parseBackend return an address-like name', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (s) => {
        const b = parseBackend(s);
        if ('name' in b) {
          expect(b.name).toMatch(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/i);
          expect(b.name).not.toMatch(/^[0-9]+$/);
        }
      }),
    );
  });

  it('scales rate limits to the counting window, never to 0', () => {
    expect(ratePerWindow('1000/min')).toBe(1000);
    expect(ratePerWindow('10/s')).toBe(600);
    expect(ratePerWindow('1/h')).toBe(1);
    expect(() => ratePerWindow('5/day')).toThrow();
  });
});

describe('allow-list entries as HAProxy prints masked addresses', () => {
  it('IPv4 and IPv6 prefixes become their network, in inet_ntop form; junk is refused', async () => {
    const { canonicalPrefix } = await import('./allow.ts');
    expect(canonicalPrefix('127.0.0.2')).toBe('127.0.0.2/32');
    expect(canonicalPrefix('10.1.2.3/8')).toBe('10.0.0.0/8');
    expect(canonicalPrefix('2001:0db8:0:0:1:0:0:1/128')).toBe('2001:db8::1:0:0:1/128');
    expect(canonicalPrefix('2001:db8::1/32')).toBe('2001:db8::/32');
    expect(canonicalPrefix('::ffff:1.2.3.4')).toBe('::ffff:1.2.3.4/128');
    expect(canonicalPrefix('1::/0')).toBe('::/0');
    for (const bad of ['300.1.1.1', '1.2.3.4/33', '1:2:3:4:5:6:7:8:9', '::1/129', 'a.b.c.d', '1.2.3.4/x']) expect(canonicalPrefix(bad), bad).toBeUndefined();
  });
});
