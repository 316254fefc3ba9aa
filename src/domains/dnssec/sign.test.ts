import { createHash, createPrivateKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { RrsigData } from 'dns-packet';
import { dnskeyRdata, keyTag } from './keytag.ts';
import { dsDigest, generateZoneKey, publicKeyFromRaw, rawPublicKey } from './keys.ts';
import { rrsigPrefix, signedData, signedOwner, signRRset, verifyRRset } from './sign.ts';
import { canonicalRRset, compareNames, labelCount, nameWire } from './wire.ts';

// Known answers from the RFCs, not from this code: RFC 6605 section 6.1 (ECDSA P-256 key, DS and
// a signature over www.example.net A) and RFC 4034 section 5.4 (a DNSKEY and its SHA-1 DS).

const RFC6605 = {
  zone: 'example.net',
  publicKey: Buffer.from('GojIhhXUN/u4v54ZQqGSnyhWJwaubCvTmeexv7bR6edbkrSqQpF64cYbcB7wNcP+e+MAnLr+Wi9xMWyQLc8NAA==', 'base64'),
  privateKey: Buffer.from('GU6SnQ/Ou+xC5RumuIUIuJZteXT2z0O/ok1s38Et6mQ=', 'base64'),
  keyTag: 55648,
  dsDigest: 'b4c8c1fe2e7477127b27115656ad6256f424625bf5c1e2770ce6d6e37df61d17',
  // www.example.net. 3600 IN RRSIG A 13 3 3600 20100909100439 20100812100439 55648 example.net. ...
  rrsig: {
    typeCovered: 'A',
    algorithm: 13,
    labels: 3,
    originalTTL: 3600,
    expiration: Date.UTC(2010, 8, 9, 10, 4, 39) / 1000,
    inception: Date.UTC(2010, 7, 12, 10, 4, 39) / 1000,
    keyTag: 55648,
    signersName: 'example.net',
    signature: Buffer.from('qx6wLYqmh+l9oCKTN6qIc+bw6ya+KJ8oMz0YP107epXAyGmt+3SNruPFKG7tZoLBLlUzGGus7ZwmwWep666VCw==', 'base64'),
  } satisfies RrsigData,
};

const RFC4034 = {
  owner: 'dskey.example.com',
  flags: 256,
  algorithm: 5,
  publicKey: Buffer.from(
    'AQOeiiR0GOMYkDshWoSKz9XzfwJr1AYtsmx3TGkJaNXVbfi/2pHm822aJ5iI9BMzNXxeYCmZDRD99WYwYqUSdjMmmAphXdvxegXd/M5+X7OrzKBaMbCVdFLUUh6DhweJBjEVv5f2wwjM9XzcnOf+EPbtG9DMBmADjFDc2w/rljwvFw==',
    'base64',
  ),
  keyTag: 60485,
  sha1: '2BB183AF5F22588179A53B0A98631FAD1A292118',
};

describe('key tag and DS (RFC 4034 appendix B, 5.1.4; RFC 4509)', () => {
  it('RFC 6605 6.1: key tag 55648 and the SHA-256 DS digest of example.net', () => {
    const rdata = dnskeyRdata(257, 13, RFC6605.publicKey);
    expect(keyTag(rdata)).toBe(RFC6605.keyTag);
    expect(dsDigest(RFC6605.zone, rdata).toString('hex')).toBe(RFC6605.dsDigest);
    // The owner name is canonical (lower case) in the digest.
    expect(dsDigest('Example.NET.', rdata).toString('hex')).toBe(RFC6605.dsDigest);
  });

  it('RFC 4034 5.4: key tag 60485 and the SHA-1 DS digest of dskey.example.com (an RSA key: the tag is over bytes only)', () => {
    const rdata = dnskeyRdata(RFC4034.flags, RFC4034.algorithm, RFC4034.publicKey);
    expect(keyTag(rdata)).toBe(RFC4034.keyTag);
    const sha1 = createHash('sha1').update(nameWire(RFC4034.owner)).update(rdata).digest('hex').toUpperCase();
    expect(sha1).toBe(RFC4034.sha1);
  });

  it('a generated key: 64-octet public key that round-trips through the DNSKEY field', async () => {
    const k = await generateZoneKey();
    expect(k.publicKey).toHaveLength(64);
    expect(rawPublicKey(publicKeyFromRaw(k.publicKey)).equals(k.publicKey)).toBe(true);
    expect(rawPublicKey(createPrivateKey(k.pem)).equals(k.publicKey)).toBe(true);
  });
});

describe('canonical form (RFC 4034 section 6)', () => {
  it('orders names as RFC 4034 6.1 lists them', () => {
    const ordered = ['example', 'a.example', 'yljkjljk.a.example', 'Z.a.example', 'zABC.a.EXAMPLE', 'z.example', '\u0001.z.example', '*.z.example', '\u00c8.z.example'];
    // \200 in the RFC is octet 0x80; as a JS string we use a character whose UTF-8 starts above 0x7f.
    const shuffled = [...ordered].reverse();
    expect(shuffled.sort(compareNames)).toEqual(ordered);
    expect(compareNames('WWW.example', 'www.EXAMPLE')).toBe(0);
  });

  it('names in wire form: uncompressed, lower case', () => {
    expect(nameWire('WwW.Example.NET.')).toEqual(Buffer.from('\x03www\x07example\x03net\x00', 'latin1'));
    expect(nameWire('')).toEqual(Buffer.from([0]));
    expect(labelCount('www.example.net')).toBe(3);
    expect(labelCount('*.example.net')).toBe(2);
    expect(signedOwner('a.b.example.net', 2)).toBe('*.example.net');
    expect(signedOwner('a.b.example.net', 4)).toBe('a.b.example.net');
  });

  it('RRset: owner and embedded names lower-cased, original TTL, RRs sorted by RDATA, duplicates once', () => {
    const mx = canonicalRRset('Example.NET', 'MX', 300, [
      { preference: 20, exchange: 'MAIL.example.net' },
      { preference: 10, exchange: 'Mx.Example.net' },
      { preference: 10, exchange: 'mx.example.net' },
    ]);
    const owner = Buffer.from('\x07example\x03net\x00', 'latin1');
    const rr = (pref: number, host: string) => {
      const name = Buffer.concat([nameWire(host)]);
      const rdata = Buffer.concat([Buffer.from([pref >> 8, pref & 0xff]), name]);
      return Buffer.concat([owner, Buffer.from([0, 15, 0, 1, 0, 0, 1, 44, rdata.length >> 8, rdata.length & 0xff]), rdata]);
    };
    expect(mx).toEqual(Buffer.concat([rr(10, 'mx.example.net'), rr(20, 'mail.example.net')]));
    // RDATA compares as octets: 192.0.2.9 (last octet 0x09) before 192.0.2.10 (0x0a).
    const a = canonicalRRset('x.example', 'A', 60, ['192.0.2.10', '192.0.2.9']);
    expect(a.subarray(a.length - 4)).toEqual(Buffer.from([192, 0, 2, 10]));
    // TXT keeps case: only the names of RFC 4034 6.2's types are lower-cased.
    const txt = canonicalRRset('x.example', 'TXT', 60, [[Buffer.from('Hello')]]);
    expect(txt.includes(Buffer.from('Hello'))).toBe(true);
  });
});

describe('RRSIG (RFC 4034 3.1.8.1, RFC 6605)', () => {
  it('verifies the RFC 6605 6.1 signature over www.example.net A 192.0.2.1, and nothing altered', () => {
    const { rrsig, publicKey } = RFC6605;
    expect(verifyRRset(publicKey, rrsig, 'www.example.net', ['192.0.2.1'])).toBe(true);
    expect(verifyRRset(publicKey, rrsig, 'WWW.Example.Net.', ['192.0.2.1'])).toBe(true);
    expect(verifyRRset(publicKey, rrsig, 'www.example.net', ['192.0.2.2'])).toBe(false);
    expect(verifyRRset(publicKey, { ...rrsig, originalTTL: 3599 }, 'www.example.net', ['192.0.2.1'])).toBe(false);
    expect(verifyRRset(publicKey, { ...rrsig, inception: rrsig.inception + 1 }, 'www.example.net', ['192.0.2.1'])).toBe(false);
    const flipped = Buffer.from(publicKey);
    flipped[5]! ^= 1;
    expect(() => verifyRRset(flipped, rrsig, 'www.example.net', ['192.0.2.1'])).toThrow(); // no longer a point on the curve
  });

  it('the RRSIG RDATA prefix is the 18 fixed octets and the signer name', () => {
    const p = rrsigPrefix(RFC6605.rrsig);
    // type A, algorithm 13, 3 labels, TTL 3600, expiration 1284026679, inception 1281607479, key tag 55648
    expect(p.subarray(0, 18).toString('hex')).toBe('0001' + '0d' + '03' + '00000e10' + '4c88b137' + '4c63c737' + 'd960');
    expect(p.subarray(18)).toEqual(nameWire('example.net'));
  });

  it('signs with the RFC 6605 private key; the signature verifies with the published key', () => {
    const d = RFC6605.privateKey.toString('base64url');
    const x = RFC6605.publicKey.subarray(0, 32).toString('base64url');
    const y = RFC6605.publicKey.subarray(32).toString('base64url');
    const privateKey = createPrivateKey({ key: { kty: 'EC', crv: 'P-256', d, x, y }, format: 'jwk' });
    const sig = signRRset({ zone: 'example.net', algorithm: 13, keyTag: 55648, privateKey }, 'www.example.net', 'A', 3600, ['192.0.2.1'], {
      inception: RFC6605.rrsig.inception,
      expiration: RFC6605.rrsig.expiration,
    });
    expect(sig.signature).toHaveLength(64);
    expect({ ...sig, signature: undefined }).toEqual({ ...RFC6605.rrsig, signature: undefined });
    expect(verifyRRset(RFC6605.publicKey, sig, 'www.example.net', ['192.0.2.1'])).toBe(true);
    // The data signed is the prefix then the RRset: the same bytes the published signature covers.
    expect(signedData(sig, 'www.example.net', ['192.0.2.1'])).toEqual(signedData(RFC6605.rrsig, 'www.example.net', ['192.0.2.1']));
  });

  it('a wildcard RRset is signed over its `*` owner with Labels not counting it, and verifies for any expansion', async () => {
    const k = await generateZoneKey();
    const key = { zone: 'example.net', algorithm: 13, keyTag: 1, privateKey: k.privateKey };
    const sig = signRRset(key, '*.w.example.net', 'A', 60, ['192.0.2.9'], { inception: 0, expiration: 2 ** 32 - 1 });
    expect(sig.labels).toBe(3);
    expect(verifyRRset(k.publicKey, sig, 'anything.w.example.net', ['192.0.2.9'])).toBe(true);
    expect(verifyRRset(k.publicKey, sig, 'a.b.w.example.net', ['192.0.2.9'])).toBe(true);
  });
});
