import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { addressBytes, appendCookie, badCookieForm, ServerCookies, siphash24 } from './cookie.ts';
import { query } from './testing.ts';
import dnsPacket from 'dns-packet';

// SipHash-2-4 against the reference implementation's vectors (key 00..0f, message 00..n-1, the
// output bytes in order), and the server cookie against RFC 9018 Appendix A.

const REFERENCE = [
  '310e0edd47db6f72', 'fd67dc93c539f874', '5a4fa9d909806c0d', '2d7efbd796666785', 'b7877127e09427cf', '8da699cd64557618',
  'cee3fe586e46c9cb', '37d1018bf50002ab', '6224939a79f5f593', 'b0e4a90bdf82009e', 'f3b9dd94c5bb5d7a', 'a7ad6b22462fb3f4',
  'fbe50e86bc8f1e75', '903d84c02756ea14', 'eef27a8e90ca23f7', 'e545be4961ca29a1', 'db9bc2577fcc2a3f', '9447be2cf5e99a69',
  '9cd38d96f0b3c14b', 'bd6179a71dc96dbb', '98eea21af25cd6be', 'c7673b2eb0cbf2d0', '883ea3e395675393', 'c8ce5ccd8c030ca8',
  '94af49f6c650adb8', 'eab8858ade92e1bc', 'f315bb5bb835d817', 'adcf6b0763612e2f', 'a5c91da7acaa4dde', '716595876650a2a6',
  '28ef495c53a387ad', '42c341d8fa92d832', 'ce7cf2722f512771', 'e37859f94623f3a7', '381205bb1ab0e012', 'ae97a10fd434e015',
  'b4a31508beff4d31', '81396229f0907902', '4d0cf49ee5d4dcca', '5c73336a76d8bf9a', 'd0a704536ba93e0e', '925958fcd6420cad',
  'a915c29bc8067318', '952b79f3bc0aa6d4', 'f21df2e41d4535f9', '87577519048f53a9', '10a56cf5dfcd9adb', 'eb75095ccd986cd0',
];

const hex = (s: string) => Buffer.from(s, 'hex');
const at = (seconds: number) => () => seconds * 1000;

describe('SipHash-2-4', () => {
  it('matches the reference vectors for every message length from 0 to 47 bytes', () => {
    const key = Buffer.from(Array.from({ length: 16 }, (_, i) => i));
    const msg = Buffer.from(Array.from({ length: 64 }, (_, i) => i));
    REFERENCE.forEach((want, n) => expect(siphash24(key, msg.subarray(0, n)).toString('hex'), `length ${n}`).toBe(want));
  });

  it('is a function of key and message only (no state left between calls), and refuses a key of the wrong size', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ maxLength: 100 }), fc.uint8Array({ maxLength: 100 }), (k, a, b) => {
        const first = siphash24(k, a);
        siphash24(k, b);
        expect(siphash24(k, a).equals(first)).toBe(true);
      }),
    );
    expect(() => siphash24(Buffer.alloc(15), Buffer.alloc(0))).toThrow(/16 bytes/);
  });
});

describe('RFC 9018 server cookies (Appendix A)', () => {
  const secret = hex('e5e973e5a6b2a43f48e7dc849e37bfcf');

  it('A.1: a client cookie alone gets a new server cookie', () => {
    const c = new ServerCookies({ secret, now: at(1559731985) });
    expect(c.check(hex('2464c4abcf10c957'), '198.51.100.100')).toEqual({ valid: false, reply: hex('2464c4abcf10c957010000005cf79f111f8130c3eee29480') });
  });

  it('A.2: a valid cookie older than half an hour is renewed; a young one comes back as it was', () => {
    const learned = hex('2464c4abcf10c957010000005cf79f111f8130c3eee29480');
    expect(new ServerCookies({ secret, now: at(1559734385) }).check(learned, '198.51.100.100')).toEqual({
      valid: true,
      reply: hex('2464c4abcf10c957010000005cf7a871d4a564a1442aca77'),
    });
    expect(new ServerCookies({ secret, now: at(1559731985 + 60) }).check(learned, '198.51.100.100')).toEqual({ valid: true, reply: learned });
  });

  it('A.3: reserved bytes are covered by the hash; the reply has them zero; past the hour the cookie is no longer valid', () => {
    const sent = hex('fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5');
    const within = new ServerCookies({ secret, now: at(1559727985 + 3000) }).check(sent, '203.0.113.203');
    expect(within).toMatchObject({ valid: true });
    const late = new ServerCookies({ secret, now: at(1559734700) }).check(sent, '203.0.113.203');
    expect(late).toEqual({ valid: false, reply: hex('fc93fc62807ddb86010000005cf7a9acf73a7810aca2381e') });
  });

  it('A.4: IPv6, made with the previous secret, renewed with the new one', () => {
    const c = new ServerCookies({ secret: hex('445536bcd2513298075a5d379663c962'), previous: hex('dd3bdf9344b678b185a6f5cb60fca715'), now: at(1559741961) });
    expect(c.check(hex('22681ab97d52c298010000005cf7c57926556bd0934c72f8'), '2001:db8:220:1:59de:d0f4:8769:82b8')).toEqual({
      valid: true,
      reply: hex('22681ab97d52c298010000005cf7c609a6bb79d16625507a'),
    });
    // Without the previous secret it is not ours.
    const noPrevious = new ServerCookies({ secret: hex('445536bcd2513298075a5d379663c962'), now: at(1559741961) });
    expect(noPrevious.check(hex('22681ab97d52c298010000005cf7c57926556bd0934c72f8'), '2001:db8:220:1:59de:d0f4:8769:82b8')).toMatchObject({ valid: false });
  });

  it('binds the cookie to the address, the client cookie and the secret; rejects cookies from the future', () => {
    const c = new ServerCookies({ secret, now: at(1_700_000_000) });
    const { reply } = c.check(hex('0102030405060708'), '192.0.2.1') as { reply: Buffer };
    expect(c.check(reply, '192.0.2.1')).toMatchObject({ valid: true });
    expect(c.check(reply, '192.0.2.2')).toMatchObject({ valid: false });
    expect(c.check(reply, '::ffff:192.0.2.1')).toMatchObject({ valid: true }); // IPv4-mapped is the same client
    const otherClient = Buffer.from(reply);
    otherClient[0]! ^= 1;
    expect(c.check(otherClient, '192.0.2.1')).toMatchObject({ valid: false });
    expect(new ServerCookies({ now: at(1_700_000_000) }).check(reply, '192.0.2.1')).toMatchObject({ valid: false });
    expect(new ServerCookies({ secret, now: at(1_700_000_000 - 301) }).check(reply, '192.0.2.1')).toMatchObject({ valid: false });
    expect(new ServerCookies({ secret, now: at(1_700_000_000 - 299) }).check(reply, '192.0.2.1')).toMatchObject({ valid: true });
  });

  it('calls lengths other than 8 and 16..40 malformed (RFC 7873 5.2.2)', () => {
    const c = new ServerCookies({ secret });
    for (const n of [0, 1, 7, 9, 12, 15, 41, 64]) expect(c.check(Buffer.alloc(n, 1), '192.0.2.1'), `length ${n}`).toBe('malformed');
    for (const n of [8, 16, 24, 32, 40]) expect(c.check(Buffer.alloc(n, 1), '192.0.2.1'), `length ${n}`).toMatchObject({ valid: false });
  });

  it('maps addresses to the bytes the hash covers', () => {
    expect(addressBytes('198.51.100.100')).toEqual(Buffer.from([198, 51, 100, 100]));
    expect(addressBytes('::ffff:198.51.100.100')).toEqual(Buffer.from([198, 51, 100, 100]));
    expect(addressBytes('2001:db8::1')).toEqual(hex('20010db8000000000000000000000001'));
    expect(addressBytes('not an address')).toBeUndefined();
  });
});

describe('cookie wire helpers', () => {
  it('appends a COOKIE option to the trailing OPT record, and makes the BADCOOKIE form of an empty response', () => {
    const q = query('a.example', 'A', { id: 9, edns: 1232 });
    const resp = Buffer.from(q);
    resp.writeUInt16BE(0x8000 | 0x0400 | 0x0200 | 3, 2); // QR AA TC NXDOMAIN
    const data = Buffer.from(createHash('sha256').update('x').digest().subarray(0, 24));
    const withCookie = dnsPacket.decode(appendCookie(resp, data));
    expect(withCookie.additionals).toMatchObject([{ type: 'OPT', options: [{ code: 10, data }] }]);
    const bad = badCookieForm(resp);
    const decoded = dnsPacket.decode(appendCookie(bad, data)) as dnsPacket.DecodedPacket & { rcode: string };
    expect(bad.readUInt16BE(2)).toBe(0x8000 | 7);
    expect(decoded.additionals).toMatchObject([{ type: 'OPT', extendedRcode: 1 }]);
    expect(() => appendCookie(query('a.example', 'A'), data)).toThrow(/OPT/);
  });
});
