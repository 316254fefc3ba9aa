import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import dnsPacket from 'dns-packet';
import type { Answer } from 'dns-packet';
import { decodeZonemd, encodeZonemd, verifyZonemd, zonemdAnswer, zonemdDigest, ZONEMD, type ZoneRR } from './zonemd.ts';

// Known answers from RFC 8976 Appendix A (the example zones and the digests the RFC publishes),
// written out as RRs. Not computed by this code.

const rr = (name: string, type: string, ttl: number, data: unknown): ZoneRR => ({ name, type, class: 'IN', ttl, data });
const zonemd = (name: string, ttl: number, serial: number, scheme: number, algorithm: number, hex: string) =>
  rr(name, ZONEMD, ttl, encodeZonemd({ serial, scheme, algorithm, digest: Buffer.from(hex, 'hex') }));
const soa = (name: string, ttl: number, mname: string, rname: string, serial: number, refresh: number, retry: number, expire: number, minimum: number) =>
  rr(name, 'SOA', ttl, { mname, rname, serial, refresh, retry, expire, minimum });

// A.1 Simple ZONEMD Example.
const A1_DIGEST = 'c68090d90a7aed716bc459f9340e3d7c1370d4d24b7e2fc3a1ddc0b9a87153b9a9713b3c9ae5cc27777f98b8e730044c';
const A1: ZoneRR[] = [
  soa('example', 86400, 'ns1.example', 'admin.example', 2018031900, 1800, 900, 604800, 86400),
  rr('example', 'NS', 86400, 'ns1.example'),
  rr('example', 'NS', 86400, 'ns2.example'),
  zonemd('example', 86400, 2018031900, 1, 1, A1_DIGEST),
  rr('ns1.example', 'A', 3600, '203.0.113.63'),
  rr('ns2.example', 'AAAA', 3600, '2001:db8::63'),
];

// A.2 Complex ZONEMD Example: occluded data, duplicates, out-of-zone data, upper case, wildcards,
// names inside RDATA, RDATA ordering, a non-apex ZONEMD.
const A2_DIGEST = 'a3b69bad980a3504e1cffcb0fd6397f93848071c93151f552ae2f6b1711d4bd2d8b39808226d7b9db71e34b72077f8fe';
const A2: ZoneRR[] = [
  soa('example', 86400, 'ns1.example', 'admin.example', 2018031900, 1800, 900, 604800, 86400),
  rr('example', 'NS', 86400, 'ns1.example'),
  rr('example', 'NS', 86400, 'ns2.example'),
  zonemd('example', 86400, 2018031900, 1, 1, A2_DIGEST),
  rr('ns1.example', 'A', 3600, '203.0.113.63'),
  rr('NS2.example', 'AAAA', 3600, '2001:db8::63'),
  rr('occluded.sub.example', 'TXT', 7200, ["I'm occluded but must be digested"]),
  rr('sub.example', 'NS', 7200, 'ns1.example'),
  rr('duplicate.example', 'TXT', 300, ['I must be digested just once']),
  rr('duplicate.example', 'TXT', 300, ['I must be digested just once']),
  rr('foo.test', 'TXT', 555, ['out-of-zone data must be excluded']),
  rr('UPPERCASE.example', 'TXT', 3600, ['canonicalize uppercase owner names']),
  rr('*.example', 'PTR', 777, 'dont-forget-about-wildcards.example'),
  rr('mail.example', 'MX', 3600, { preference: 20, exchange: 'MAIL1.example' }),
  rr('mail.example', 'MX', 3600, { preference: 10, exchange: 'Mail2.Example' }),
  rr('sortme.example', 'AAAA', 3600, '2001:db8::5:61'),
  rr('sortme.example', 'AAAA', 3600, '2001:db8::3:62'),
  rr('sortme.example', 'AAAA', 3600, '2001:db8::4:63'),
  rr('sortme.example', 'AAAA', 3600, '2001:db8::1:65'),
  rr('sortme.example', 'AAAA', 3600, '2001:db8::2:64'),
  zonemd('non-apex.example', 900, 2018031900, 1, 1, Buffer.from('allowed but ignored. allowed but ignored. allowe').toString('hex')),
];

// A.3 Example with Multiple Digests (SHA-512, and private-use scheme and algorithm).
const A3_SHA512 =
  '08cfa1115c7b948c4163a901270395ea226a930cd2cbcf2fa9a5e6eb85f37c8a4e114d884e66f176eab121cb02db7d652e0cc4827e7a3204f166b47e5613fd27';
const A3: ZoneRR[] = [
  soa('example', 86400, 'ns1.example', 'admin.example', 2018031900, 1800, 900, 604800, 86400),
  rr('example', 'NS', 86400, 'ns1.example'),
  rr('example', 'NS', 86400, 'ns2.example'),
  zonemd('example', 86400, 2018031900, 1, 2, A3_SHA512),
  zonemd('example', 86400, 2018031900, 1, 240, 'e2d523f654b9422a96c5a8f44607bbee'),
  zonemd('example', 86400, 2018031900, 241, 1, 'e1846540e33a9e4189792d18d5d131f605fc283e'),
  rr('ns1.example', 'A', 3600, '203.0.113.63'),
  rr('ns2.example', 'TXT', 86400, ['This example has multiple digests']),
  rr('NS2.EXAMPLE', 'AAAA', 3600, '2001:db8::63'),
];

// A.4 The URI.ARPA Zone (DNSSEC-signed: RRSIG, NSEC, DNSKEY; NAPTR).
const t = (s: string) => Date.UTC(+s.slice(0, 4), +s.slice(4, 6) - 1, +s.slice(6, 8), +s.slice(8, 10), +s.slice(10, 12), +s.slice(12, 14)) / 1000;
const sig = (owner: string, ttl: number, covered: string, labels: number, keyTag: number, b64: string) =>
  rr(owner, 'RRSIG', ttl, {
    typeCovered: covered,
    algorithm: 8,
    labels,
    originalTTL: ttl,
    expiration: t('20210217232440'),
    inception: t('20210120232440'),
    keyTag,
    signersName: 'uri.arpa',
    signature: Buffer.from(b64, 'base64'),
  });
const naptr = (owner: string, regexp: string) => rr(owner, 'NAPTR', 604800, { order: 0, preference: 0, flags: '', services: '', regexp, replacement: '.' });
const A4_DIGEST = '0dbc3c4dbfd75777c12ca19c337854b1577799901307c482e9d91d5d15cd934d16319d98e30c4201cf25a1d5a0254960';
const A4: ZoneRR[] = [
  soa('uri.arpa', 3600, 'sns.dns.icann.org', 'noc.dns.icann.org', 2018100702, 10800, 3600, 1209600, 3600),
  sig('uri.arpa', 3600, 'SOA', 2, 37444, 'GzQw+QzwLDJr13REPGVmpEChjD1D2XlX0ie1DnWHpgaEw1E/dhs3lCN3+BmHd4Kx3tffTRgiyq65HxR6feQ5v7VmAifjyXUYB1DZur1eP5q0Ms2ygCB3byoeMgCNsFS1oKZ2LdzNBRpy3oace8xQn1SpmHGfyrsgg+WbHKCT1dY='),
  ...['a.iana-servers.net', 'b.iana-servers.net', 'c.iana-servers.net', 'ns2.lacnic.net', 'sec3.apnic.net'].map((ns) => rr('uri.arpa', 'NS', 86400, ns)),
  sig('uri.arpa', 86400, 'NS', 2, 37444, 'M+Iei2lcewWGaMtkPlrhM9FpUAHXFkCHTVpeyrjxjEONeNgKtHZor5e4V4qJBOzNqo8go/qJpWlFBm+T5Hn3asaBZVstFIYky38/C8UeRLPKq1hTTHARYUlFrexr5fMtSUAVOgOQPSBfH3xBq/BgSccTdRb9clD+HE7djpqrLS4='),
  rr('uri.arpa', 'MX', 600, { preference: 10, exchange: 'pechora.icann.org' }),
  sig('uri.arpa', 600, 'MX', 2, 37444, 'kQAJQivmv6A5hqYBK8h6Z13ESY69gmosXwKI6WE09I8RFetfrxr24ecdnYd0lpnDtgNNSoHkYRSOoB+C4+zuJsoyAAzGo9uoWMWj97/2xeGhf3PTC9meQ9Ohi6hul9By7OR76XYmGhdWX8PBi60RUmZ1guslFBfQ8izwPqzuphs='),
  rr('uri.arpa', 'DNSKEY', 3600, { flags: 256, algorithm: 8, key: Buffer.from('AwEAAbMxuFuLeVDuOwIMzYOTD/bTREjLflo7wOi6ieIJhqltEzgjNzmWJf9kGwwDmzxU7kbthMEhBNBZNn84zmcyRSCMzuStWveL7xmqqUlE3swL8kLOvdZvc75XnmpHrk3ndTyEb6eZM7slh2C63Oh6K8VR5VkiZAkEGg0uZIT3NjsF', 'base64') }),
  rr('uri.arpa', 'DNSKEY', 3600, {
    flags: 257,
    algorithm: 8,
    key: Buffer.from(
      'AwEAAdkTaWkZtZuRh7/OobBUFxM+ytTst+bCu0r9w+rEwXD7GbDs0pIMhMenrZzoAvmv1fQxw2MGs6Ri6yPKfNULcFOSt9l8i6BVBLI+SKTY6XXeDUQpSEmSaxohHeRPMQFzpysfjxINp/L2rGtZ7yPmxY/XRiFPSO0myqwGJa9r06Zw9CHM5UDHKWV/E+zxPFq/I7CfPbrrzbUotBX7Z6Vh3Sarllbe8cGUB2UFNaTRgwB0TwDBPRD5ER3w2Dzbry9NhbElTr7vVfhaGWeOGuqAUXwlXEg6CrNkmJXJ2F1Rzr9WHUzhp7uWxhAbmJREGfi2dEyPAbUAyCjBqhFaqglknvc=',
      'base64',
    ),
  }),
  rr('uri.arpa', 'DNSKEY', 3600, {
    flags: 257,
    algorithm: 8,
    key: Buffer.from(
      'AwEAAenQaBoFmDmvRT+/H5oNbm0Tr5FmNRNDEun0Jpj/ELkzeUrTWhNpQmZeIMC8I0kZ185tEvOnRvn8OvV39B17QIdrvvKGIh2HlgeDRCLolhaojfn2QM0DStjF/WWHpxJOmE6CIuvhqYEU37yoJscGAPpPVPzNvnL1HhYTaao1VRYWQ/maMrJ+bfHg+YX1N6M/8MnRjIKBif1FWjbCKvsn6dnuGGL9oCWYUFJ3DwofXuhgPyZMkzPc88YkJj5EMvbMH4wtelbCwC+ivx732l0w/rXJn0ciQSOgoeVvDio8dIJmWQITWQAuP+q/ZHFEFHPlrP3gvQh5mcVS48eLX71Bq7c=',
      'base64',
    ),
  }),
  sig('uri.arpa', 3600, 'DNSKEY', 2, 12670, 'DBE2gkKAoxJCfz47KKxzoImN/0AKArhIVHE7TyTwy0DdRPo44V5R+vL6thUxlQ1CJi2Rw0jwAXymx5Y3Q873pOEllH+4bJoIT4dmoBmPXfYWW7Clvw9UPKHRP0igKHmCVwIeBYDTU3gfLcMTbR4nEWPDN0GxlL1Mf7ITaC2Ioabo79Ip3M/MR8I3Vx/xZ4ZKKPHtLn3xUuJluPNanqJrED2gTslL2xWZ1tqjsAjJv7JnJo2HJ8XVRB5zBto0IaJ2oBlqcjdcQ/0VlyoM8uOy1pDwHQ2BJl7322gNMHBP9HSiUPIOaIDNUCwW8eUcW6DIUk+s9u3GN1uTqwWzsYB/rA=='),
  sig('uri.arpa', 3600, 'DNSKEY', 2, 30577, 'Kx6HwP4UlkGc1UZ7SERXtQjPajOF4iUvkwDj7MEG1xbQFB1KoJiEb/eiW0qmSWdIhMDv8myhgauejRLyJxwxz8HDRV4xOeHWnRGfWBk4XGYwkejVzOHzoIArVdUVRbr2JKigcTOoyFN+uu52cNB7hRYu7dH5y1hlc6UbOnzRpMtGxcgVyKQ+/ARbIqGG3pegdEOvV49wTPWEiyY65P2urqhvnRg5ok/jzwAdMx4XGshiib7Ojq0sRVl2ZIzj4rFgY/qsSO8SEXEhMo2VuSkoJNiofVzYoqpxEeGnANkIT7Tx2xJL1BWyJxyc7E8Wr2QSgCcc+rYL6IkHDtJGHy7TaQ=='),
  zonemd('uri.arpa', 3600, 2018100702, 1, 1, A4_DIGEST),
  sig('uri.arpa', 3600, ZONEMD, 2, 37444, 'QDo4XZcL3HMyn8aAHyCUsu/Tqj4Gkth8xY1EqByOb8XOTwVtA4ZNQORE1siqNqjtJUbeJPtJSbLNqCL7rCq0CzNNnBscv6IIf4gnqJZjlGtHO30ohXtKvEc4z7SU3IASsi6bB3nLmEAyERdYSeU6UBfx8vatQDIRhkgEnnWUTh4='),
  rr('uri.arpa', 'NSEC', 3600, { nextDomain: 'ftp.uri.arpa', rrtypes: ['NS', 'SOA', 'MX', 'RRSIG', 'NSEC', 'DNSKEY', ZONEMD] }),
  sig('uri.arpa', 3600, 'NSEC', 2, 37444, 'dU/rXLM/naWd1+1PiWiYVaNJyCkiuyZJSccr91pJI673T8r3685B4ODMYFafZRboVgwnl3ZrXddY6xOhZL3n9V9nxXZwjLJ2HJUojFoKcXTlpnUyYUYvVQ2kj4GHAo6fcGCEp5QFJ2KbCpeJoS+PhKGRRx28icCiNT4/uXQvO2E='),
  naptr('ftp.uri.arpa', '!^ftp://([^:/?#]*).*$!\\1!i'),
  sig('ftp.uri.arpa', 604800, 'NAPTR', 3, 37444, 'EygekDgl+Lyyq4NMSEpPyOrOywYf9Y3FAB4v1DT44J3R5QGidaH8l7ZFjHoYFI8sY64iYOCV4sBnX/dh6C1L5NgpY+8l5065Xu3vvjyzbtuJ2k6YYwJrrCbvl5DDn53zAhhO2hL9uLgyLraZGi9i7TFGd0sm3zNyUF/EVL0CcxU='),
  rr('ftp.uri.arpa', 'NSEC', 3600, { nextDomain: 'http.uri.arpa', rrtypes: ['NAPTR', 'RRSIG', 'NSEC'] }),
  sig('ftp.uri.arpa', 3600, 'NSEC', 3, 37444, 'pbP4KxevPXCu/bDqcvXiuBppXyFEmtHyiy0eAN5gS7mi6mp9Z9bWFjx/LdH9+6oFGYa5vGmJ5itu/4EDMe8iQeZbI8yrpM4TquB7RR/MGfBnTd8S+sjyQtlRYG7yqEu77Vd78Fme22BKPJ+MVqjS0JHMUE/YUGomPkAjLJJwwGw='),
  naptr('http.uri.arpa', '!^http://([^:/?#]*).*$!\\1!i'),
  sig('http.uri.arpa', 604800, 'NAPTR', 3, 37444, 'eTqbWvt1GvTeXozuvm4ebaAfkXFQKrtdu0cEiExto80sHIiCbO0WL8UDa/J3cDivtQca7LgUbOb6c17NESsrsVkc6zNPx5RK2tG7ZQYmhYmtqtfg1oU5BRdHZ5TyqIXcHlw9Blo2pir1Y9IQgshhD7UOGkbkEmvB1Lrd0aHhAAg='),
  rr('http.uri.arpa', 'NSEC', 3600, { nextDomain: 'mailto.uri.arpa', rrtypes: ['NAPTR', 'RRSIG', 'NSEC'] }),
  sig('http.uri.arpa', 3600, 'NSEC', 3, 37444, 'R9rlNzw1CVz2N08q6DhULzcsuUm0UKcPaGAWEU40tr81jEDHsFHNM+khCdOI8nDstzA42aee4rwCEgijxJpRCcY9hrO1Ysrrr2fdqNz60JikMdarvU5O0p0VXeaaJDfJQT44+o+YXaBwI7Qod3FTMx7aRib8i7istvPm1Rr7ixA='),
  naptr('mailto.uri.arpa', '!^mailto:(.*)@(.*)$!\\2!i'),
  sig('mailto.uri.arpa', 604800, 'NAPTR', 3, 37444, 'Ch2zTG2F1plEvQPyIH4Yd80XXLjXOPvMbiqDjpJBcnCJsV8QF7kr0wTLnUT3dB+asQudOjPyzaHGwFlMzmrrAsszN4XAMJ6htDtFJdsgTMP/NkHhYRSmVv6rLeAhd+mVfObY12M//b/GGVTjeUI/gJaLW0fLVZxr1Fp5U5CRjyw='),
  rr('mailto.uri.arpa', 'NSEC', 3600, { nextDomain: 'urn.uri.arpa', rrtypes: ['NAPTR', 'RRSIG', 'NSEC'] }),
  sig('mailto.uri.arpa', 3600, 'NSEC', 3, 37444, 'fQUbSIE6E7JDi2rosah4SpCOTrKufeszFyj5YEavbQuYlQ5cNFvtm8KuE2xXMRgRI4RGvM2leVqcoDw5hS3m2pOJLxH8l2WE72YjYvWhvnwc5Rofe/8yB/vaSK9WCnqN8y2q6Vmy73AGP0fuiwmuBra7LlkOiqmyx3amSFizwms='),
  naptr('urn.uri.arpa', '/urn:([^:]+)/\\1/i'),
  sig('urn.uri.arpa', 604800, 'NAPTR', 3, 37444, 'CVt2Tgz0e5ZmaSXqRfNys/8OtVCk9nfP0zhezhN8Bo6MDt6yyKZ2kEEWJPjkN7PCYHjO8fGjnUn0AHZI2qBNv7PKHcpR42VY03q927q85a65weOO1YE0vPYMzACpua9TOtfNnynM2Ws0uN9URxUyvYkXBdqOC81N3sx1dVELcwc='),
  rr('urn.uri.arpa', 'NSEC', 3600, { nextDomain: 'uri.arpa', rrtypes: ['NAPTR', 'RRSIG', 'NSEC'] }),
  sig('urn.uri.arpa', 3600, 'NSEC', 3, 37444, 'JuKkMiC3/j9iM3V8/izcouXWAVGnSZjkOgEgFPhutMqoylQNRcSkbEZQzFK8B/PIVdzZF0Y5xkO6zaKQjOzz6OkSaNPIo1a7Vyyl3wDY/uLCRRAHRJfpknuY7O+AUNXvVVIEYJqZggd4kl/Rjh1GTzPYZTRrVi5eQidI1LqCOeg='),
];

describe('zonemdDigest: RFC 8976 Appendix A', () => {
  it('A.1 simple zone: the published SHA-384 digest', () => {
    expect(zonemdDigest('example', 2018031900, A1).toString('hex')).toBe(A1_DIGEST);
    expect(verifyZonemd('example.', A1)).toMatchObject({ ok: true, serial: 2018031900 });
  });

  it('A.2 complex zone: occluded data in, out-of-zone data out, duplicates once, names lower-cased', () => {
    expect(zonemdDigest('example', 2018031900, A2).toString('hex')).toBe(A2_DIGEST);
    expect(verifyZonemd('example', A2).ok).toBe(true);
  });

  it('A.3 multiple digests: SHA-512, private-use scheme and algorithm ignored', () => {
    expect(zonemdDigest('example', 2018031900, A3, { algorithm: 2 }).toString('hex')).toBe(A3_SHA512);
    expect(verifyZonemd('example', A3).ok).toBe(true);
  });

  it('A.4 uri.arpa, DNSSEC-signed: RRSIGs, NSEC, DNSKEY in, the apex ZONEMD and its RRSIG out', () => {
    expect(zonemdDigest('uri.arpa', 2018100702, A4).toString('hex')).toBe(A4_DIGEST);
    expect(verifyZonemd('uri.arpa', A4).ok).toBe(true);
  });

  it('works on what dns-packet decodes from the wire (ZONEMD as UNKNOWN_63 with raw RDATA)', () => {
    const wire = dnsPacket.encode({ type: 'response', id: 1, answers: A4 as Answer[] });
    const decoded = dnsPacket.decode(wire).answers as ZoneRR[];
    expect(decoded.find((a) => a.type === ZONEMD)).toBeDefined();
    expect(zonemdDigest('uri.arpa', 2018100702, decoded).toString('hex')).toBe(A4_DIGEST);
  });

  it('checks the serial against the SOA and needs one SOA', () => {
    expect(() => zonemdDigest('example', 2018031901, A1)).toThrow(/serial/);
    expect(() => zonemdDigest('example', 2018031900, A1.slice(1))).toThrow(/no SOA/);
    const wrongSerial = A1.map((r) => (r.type === ZONEMD ? zonemd('example', 86400, 2018031901, 1, 1, A1_DIGEST) : r));
    expect(verifyZonemd('example', wrongSerial)).toMatchObject({ ok: false, reason: 'no ZONEMD with the SOA serial' });
    const twice = [...A1, zonemd('example', 86400, 2018031900, 1, 1, A1_DIGEST.replace(/^c6/, '00'))];
    expect(verifyZonemd('example', twice)).toMatchObject({ ok: false });
  });
});

// Zones made of arbitrary records: the digest is a function of the set of RRs.
const label = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,10}$/);
const owner = fc.oneof(fc.constant('zone.test'), label.map((l) => `${l}.zone.test`), fc.tuple(label, label).map(([a, b]) => `${a}.${b}.zone.test`));
const record: fc.Arbitrary<ZoneRR> = fc.oneof(
  fc.tuple(owner, fc.integer({ min: 0, max: 86400 }), fc.ipV4()).map(([n, ttl, a]) => rr(n, 'A', ttl, a)),
  fc.tuple(owner, fc.integer({ min: 0, max: 86400 }), fc.array(fc.string({ maxLength: 40 }), { minLength: 1, maxLength: 3 })).map(([n, ttl, s]) => rr(n, 'TXT', ttl, s)),
  fc.tuple(owner, fc.integer({ min: 0, max: 86400 }), fc.integer({ min: 0, max: 65535 }), owner).map(([n, ttl, p, x]) => rr(n, 'MX', ttl, { preference: p, exchange: x })),
);
const SOA = soa('zone.test', 3600, 'ns1.zone.test', 'hostmaster.zone.test', 7, 3600, 600, 1209600, 300);
// One TTL per (owner, type, RDATA) so that duplicates are true duplicates.
const zone = fc.uniqueArray(record, { selector: (r) => `${r.name} ${r.type} ${JSON.stringify(r.data)}`, maxLength: 25 }).map((rs) => [SOA, ...rs]);

describe('zonemdDigest: properties', () => {
  it('does not depend on the order of the RRs nor on duplicates', () => {
    fc.assert(
      fc.property(zone, fc.infiniteStream(fc.nat()), fc.array(fc.nat(), { maxLength: 5 }), (rrs, order, dups) => {
        const base = zonemdDigest('zone.test', 7, rrs);
        const keys = rrs.map(() => order.next().value as number);
        const shuffled = rrs.map((r, i) => [keys[i]!, r] as const).sort((a, b) => a[0] - b[0]).map(([, r]) => r);
        const withDups = [...shuffled, ...dups.map((d) => rrs[d % rrs.length]!)];
        expect(zonemdDigest('zone.test', 7, withDups).equals(base)).toBe(true);
        // Case of owner names does not matter either.
        expect(zonemdDigest('ZONE.test.', 7, withDups.map((r) => ({ ...r, name: r.name.toUpperCase() }))).equals(base)).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it('changes when any RR is removed, added, or has its TTL or data changed', () => {
    fc.assert(
      fc.property(zone, fc.nat(), record, (rrs, i, extra) => {
        const base = zonemdDigest('zone.test', 7, rrs).toString('hex');
        const k = 1 + (i % Math.max(1, rrs.length - 1));
        const key = (r: ZoneRR) => `${r.name.toLowerCase()} ${r.type} ${JSON.stringify(r.data)}`;
        // A record generated twice is one RR (RFC 8976 digests the zone's RRs, duplicates collapse):
        // removing or re-timing one copy of it need not change the digest.
        const duplicated = rrs.length > 1 && rrs.some((r, j) => j !== k && key(r) === key(rrs[k]!));
        if (rrs.length > 1 && !duplicated) {
          const target = rrs[k]!;
          expect(zonemdDigest('zone.test', 7, rrs.filter((_, j) => j !== k)).toString('hex')).not.toBe(base);
          expect(zonemdDigest('zone.test', 7, rrs.map((r, j) => (j === k ? { ...r, ttl: (r.ttl! + 1) % 86401 } : r))).toString('hex')).not.toBe(base);
          const changed = target.type === 'A' ? { ...target, data: '0.0.0.0' === target.data ? '0.0.0.1' : '0.0.0.0' } : target.type === 'TXT' ? { ...target, data: [...(target.data as string[]), 'x'] } : { ...target, data: { ...(target.data as object), preference: ((target.data as { preference: number }).preference + 1) % 65536 } };
          expect(zonemdDigest('zone.test', 7, rrs.map((r, j) => (j === k ? changed : r))).toString('hex')).not.toBe(base);
        }
        if (!rrs.some((r) => key(r) === key(extra))) expect(zonemdDigest('zone.test', 7, [...rrs, extra]).toString('hex')).not.toBe(base);
        // The SOA serial is in it too.
        expect(zonemdDigest('zone.test', 8, rrs.map((r) => (r.type === 'SOA' ? { ...r, data: { ...(r.data as object), serial: 8 } } : r))).toString('hex')).not.toBe(base);
      }),
      { numRuns: 200 },
    );
  });

  it('leaves the records it digests as they were (TXT strings stay strings)', () => {
    const txt = rr('zone.test', 'TXT', 60, ['', 'abc']);
    zonemdDigest('zone.test', 7, [SOA, txt]);
    expect(txt.data).toEqual(['', 'abc']);
    // A TXT RR that equals one already in the zone (another TTL) is the same RR: no change.
    const base = zonemdDigest('zone.test', 7, [SOA, txt]).toString('hex');
    expect(zonemdDigest('zone.test', 7, [SOA, txt, rr('zone.test', 'TXT', 61, ['', 'abc'])]).toString('hex')).toBe(base);
  });

  it('leaves out the apex ZONEMD and the RRSIG over it, nothing else', () => {
    const base = zonemdDigest('example', 2018031900, A1);
    const without = A1.filter((r) => r.type !== ZONEMD);
    expect(zonemdDigest('example', 2018031900, without).equals(base)).toBe(true);
    const belowApex = [...A1, zonemd('x.example', 60, 1, 1, 1, A1_DIGEST)];
    expect(zonemdDigest('example', 2018031900, belowApex).equals(base)).toBe(false);
  });
});

describe('ZONEMD RDATA', () => {
  it('round-trips', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 255 }), fc.uint8Array({ minLength: 12, maxLength: 100 }), (serial, scheme, bytes) => {
        const d = { serial, scheme, algorithm: 200, digest: Buffer.from(bytes) };
        expect(decodeZonemd(encodeZonemd(d))).toEqual(d);
      }),
    );
  });

  it('decodes hostile bytes without crashing: either a value or an Error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        try {
          const d = decodeZonemd(bytes);
          expect(d.digest.length).toBe(bytes.length - 6);
          expect(d.digest.length).toBeGreaterThanOrEqual(12);
          if (d.scheme === 1 && d.algorithm === 1) expect(d.digest.length).toBe(48);
          if (d.scheme === 1 && d.algorithm === 2) expect(d.digest.length).toBe(64);
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
          expect((err as Error).message).toMatch(/^ZONEMD: /);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses short RDATA, truncated digests and digests of the wrong size', () => {
    expect(() => decodeZonemd(Buffer.alloc(17))).toThrow(/too short/);
    expect(() => decodeZonemd(Buffer.concat([Buffer.from([0, 0, 0, 1, 1, 1]), Buffer.alloc(47)]))).toThrow(/48 octets/);
    expect(() => decodeZonemd(Buffer.concat([Buffer.from([0, 0, 0, 1, 1, 2]), Buffer.alloc(48)]))).toThrow(/64 octets/);
    expect(() => decodeZonemd('x' as unknown as Uint8Array)).toThrow(/not bytes/);
    expect(() => verifyZonemd('example', [...A1.filter((r) => r.type !== ZONEMD), rr('example', ZONEMD, 60, Buffer.alloc(20))])).not.toThrow();
    expect(verifyZonemd('example', [...A1.filter((r) => r.type !== ZONEMD), rr('example', ZONEMD, 60, Buffer.alloc(20))]).ok).toBe(false);
  });

  it('zonemdAnswer encodes through dns-packet and decodes back', () => {
    const a = zonemdAnswer('example.', 86400, { serial: 2018031900, scheme: 1, algorithm: 1, digest: Buffer.from(A1_DIGEST, 'hex') });
    const back = dnsPacket.decode(dnsPacket.encode({ type: 'response', answers: [a] })).answers![0] as unknown as { type: string; data: Buffer };
    expect(back.type).toBe(ZONEMD);
    expect(decodeZonemd(back.data).digest.toString('hex')).toBe(A1_DIGEST);
  });
});
