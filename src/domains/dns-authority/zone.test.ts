import { describe, expect, it } from 'vitest';
import { synthesiseSoa } from '../records/soa.ts';
import { MAX_CHAIN, Zone, type RecordRow } from './zone.ts';

// The answer algorithm on a compiled zone, without sockets.

const Z = 'example.world';
const row = (name: string, type: string, value: string, ttl = 3600): RecordRow => ({ name: name === '@' ? Z : `${name}.${Z}`, type, value, ttl });
const zone = (rows: RecordRow[]) => new Zone(Z, 'IMVU-009', 5, synthesiseSoa(Z, 5, 'world'), rows);
const brief = (z: Zone, name: string, type: string) => {
  const r = z.lookup(name, name, type);
  return { rcode: r.rcode, aa: r.aa, answers: r.answers.map((a) => `${a.name} ${a.type}`), authority: r.authorities.map((a) => `${a.name} ${a.type}`) };
};

describe('Zone.lookup', () => {
  it('bounds CNAME chains at MAX_CHAIN links', () => {
    const rows = Array.from({ length: 20 }, (_, i) => row(`c${i}`, 'CNAME', `c${i + 1}.${Z}.`));
    const r = zone(rows).lookup(`c0.${Z}`, `c0.${Z}`, 'A');
    expect(r.answers).toHaveLength(MAX_CHAIN);
    expect(r.rcode).toBe(0);
  });

  it('answers NODATA from a wildcard that is itself an empty non-terminal (RFC 4592 2.2.2)', () => {
    const z = zone([row('a.*.w', 'A', '192.0.2.1')]);
    expect(brief(z, `x.w.${Z}`, 'A')).toMatchObject({ rcode: 0, answers: [], authority: [`${Z} SOA`] });
    expect(brief(z, `a.*.w.${Z}`, 'A').answers).toEqual([`a.*.w.${Z} A`]);
    expect(brief(z, `b.x.w.${Z}`, 'A')).toMatchObject({ rcode: 0, answers: [] });
  });

  it('a wildcard at the apex covers only names that do not exist', () => {
    const z = zone([row('*', 'A', '192.0.2.1'), row('www', 'MX', `10 mx.${Z}.`), row('a.b', 'TXT', 'x')]);
    expect(brief(z, `nope.${Z}`, 'A').answers).toEqual([`nope.${Z} A`]);
    expect(brief(z, `deep.nope.${Z}`, 'A').answers).toEqual([`deep.nope.${Z} A`]);
    expect(brief(z, `www.${Z}`, 'A')).toMatchObject({ rcode: 0, answers: [] });
    expect(brief(z, `b.${Z}`, 'A')).toMatchObject({ rcode: 0, answers: [] }); // empty non-terminal
    expect(brief(z, `x.www.${Z}`, 'A')).toMatchObject({ rcode: 3 }); // closest encloser www: no *.www
  });

  it('serves one TTL per RRset (the smallest), skips values that do not parse and a CNAME at the apex', () => {
    const z = zone([row('h', 'A', '192.0.2.1', 600), row('h', 'A', '192.0.2.2', 60), row('h', 'A', 'not-an-ip'), row('@', 'CNAME', `h.${Z}.`)]);
    const r = z.lookup(`h.${Z}`, `h.${Z}`, 'A');
    expect(r.answers.map((a) => [(a as { data: unknown }).data, (a as { ttl: number }).ttl])).toEqual([['192.0.2.1', 60], ['192.0.2.2', 60]]);
    expect(z.recordCount).toBe(2);
    expect(brief(z, Z, 'CNAME')).toMatchObject({ answers: [] });
  });

  it('prefers the topmost delegation and never answers authoritatively below it', () => {
    const z = zone([row('a', 'NS', `ns.other.world.`), row('b.a', 'NS', `ns.other.world.`)]);
    expect(z.lookup(`x.b.a.${Z}`, `x.b.a.${Z}`, 'A')).toMatchObject({ aa: false, answers: [] });
    expect(z.lookup(`x.b.a.${Z}`, `x.b.a.${Z}`, 'A').authorities.map((a) => a.name)).toEqual([`a.${Z}`]);
    expect(z.lookup(Z, Z, 'NS').aa).toBe(true);
  });

  it('answers ANY with a single RRset, preferring the CNAME, then addresses', () => {
    const z = zone([row('h', 'TXT', 'x'), row('h', 'AAAA', '2001:db8::1'), row('h', 'MX', `0 h.${Z}.`)]);
    expect(brief(z, `h.${Z}`, 'ANY').answers).toEqual([`h.${Z} AAAA`]);
    expect(brief(z, Z, 'ANY').answers).toEqual([`${Z} SOA`]);
  });
});
