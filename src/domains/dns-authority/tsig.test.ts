import { describe, expect, it } from 'vitest';
import dnsPacket from 'dns-packet';
import {
  appendUnsignedError,
  parseTsig,
  readName,
  ResponseSigner,
  ResponseVerifier,
  signRequest,
  TSIG_ERROR,
  tsigKey,
  verifyRequest,
  walk,
  RCODE_FORMERR,
  RCODE_NOTAUTH,
} from './tsig.ts';

// RFC 8945 has no test vectors, so these come from implementations that are not ours, captured on
// the wire (Knot DNS 3.2.6's kdig and knotd, BIND 9.18's dig), with the key
//   xfr-key. hmac-sha256 c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==   ("secret-secret-secret-secret!")

const SECRET = 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0IQ==';
const key = tsigKey({ name: 'xfr-key', secret: SECRET });

/** `kdig -y hmac-sha256:xfr-key.:SECRET SOA imvu001.world` (no EDNS; TSIG is the only additional record). */
const KDIG_QUERY =
  '062e0120000100000000000107696d767530303105776f726c640000060001077866722d6b65790000fa00ff00000000003d0b686d61632d7368613235360000006b09a059012c002047866ccee72447b84309db303d498cc6ff1e25caa06c254648143f917c58da65062e00000000';
/** `dig -y hmac-sha256:xfr-key:SECRET imvu001.world SOA` (with an OPT record and a cookie before the TSIG). */
const DIG_QUERY =
  'bf5d0120000100000000000207696d767530303105776f726c64000006000100002904d000000000000c000a0008676a7bcf91f9facb077866722d6b65790000fa00ff00000000003d0b686d61632d7368613235360000006b09a05d012c0020425f0c4d4ab80176e73bfe692558868bc34b37f7704254268ca79abcbb1634a9bf5d00000000';
/** A NOTIFY for imvu001.world signed by our signRequest at 1795793308, and knotd 3.2.6's signed answer to it. */
const OUR_NOTIFY =
  '12342400000100000000000107696d767530303105776f726c640000060001077866722d6b65790000fa00ff00000000003d0b686d61632d7368613235360000006b09a19c012c00201ab0666a8289b8bd6ab55bc9c5775cef92c0bef169a548a012c2cf96c7749959123400000000';
const KNOT_NOTIFY_ANSWER =
  '1234a000000100000000000107696d767530303105776f726c640000060001077866722d6b65790000fa00ff00000000003d0b686d61632d7368613235360000006b09a19c012c0020ccfa5f6b753dc3b5fb970e60b560afebe9f48c823900941e752e58019d088dec123400000000';

const hex = (h: string) => Buffer.from(h, 'hex');
const check = (msg: Buffer, now: number, keys = [key]) => verifyRequest(msg, walk(msg), keys, now);

describe('TSIG HMAC-SHA256 (RFC 8945)', () => {
  it('verifies requests signed by kdig and by dig', () => {
    const k = check(hex(KDIG_QUERY), 0x6b09a059);
    expect(k.ok).toBe(true);
    if (k.ok) {
      expect(k.tsig).toMatchObject({ keyName: 'xfr-key', algorithm: 'hmac-sha256', timeSigned: 0x6b09a059, fudge: 300, originalId: 0x062e, error: 0 });
      // What the rest of the server sees: the query without its TSIG.
      const q = dnsPacket.decode(k.stripped);
      expect(q.questions).toEqual([{ name: 'imvu001.world', type: 'SOA', class: 'IN' }]);
      expect(q.additionals).toEqual([]);
    }
    const d = check(hex(DIG_QUERY), 0x6b09a05d);
    expect(d.ok).toBe(true);
    if (d.ok) expect(dnsPacket.decode(d.stripped).additionals!.map((a) => a.type)).toEqual(['OPT']);
  });

  it('signs a request exactly as knotd expects, and its answer verifies; our response signer reproduces knotd byte for byte', () => {
    const ours = signRequest(dnsPacket.encode({ type: 'query', id: 0x1234, flags: (4 << 11) | dnsPacket.AUTHORITATIVE_ANSWER, questions: [{ name: 'imvu001.world', type: 'SOA', class: 'IN' }] }), key, 1795793308);
    expect(ours.message.toString('hex')).toBe(OUR_NOTIFY);
    const answer = hex(KNOT_NOTIFY_ANSWER);
    expect(new ResponseVerifier(key, ours.mac).verify(answer).error).toBe(0);
    // The same answer signed by us (same request MAC, same time) is the same bytes.
    const tsigAt = walk(answer).lastAdditional!.at;
    const unsigned = Buffer.from(answer.subarray(0, tsigAt));
    unsigned.writeUInt16BE(0, 10);
    expect(new ResponseSigner(key, ours.mac, 0x1234, () => 1795793308).sign(unsigned).toString('hex')).toBe(KNOT_NOTIFY_ANSWER);
  });

  it('refuses what RFC 8945 5.2 refuses: unknown key (BADKEY), wrong MAC (BADSIG), stale time (BADTIME)', () => {
    const q = hex(KDIG_QUERY);
    const other = tsigKey({ name: 'other-key', secret: SECRET });
    expect(check(q, 0x6b09a059, [other])).toMatchObject({ ok: false, rcode: RCODE_NOTAUTH, error: TSIG_ERROR.BADKEY });
    const wrongSecret = tsigKey({ name: 'xfr-key', secret: Buffer.from('another-secret-of-some-length').toString('base64') });
    expect(check(q, 0x6b09a059, [wrongSecret])).toMatchObject({ ok: false, rcode: RCODE_NOTAUTH, error: TSIG_ERROR.BADSIG });
    // One bit of the question changed.
    const tampered = Buffer.from(q);
    tampered.writeUInt8(tampered.readUInt8(14) ^ 0x20, 14);
    expect(check(tampered, 0x6b09a059)).toMatchObject({ ok: false, error: TSIG_ERROR.BADSIG });
    // A different message id is fine (the MAC covers the original id), a different original id is not.
    const forwarded = Buffer.from(q);
    forwarded.writeUInt16BE(0xbeef, 0);
    expect(check(forwarded, 0x6b09a059).ok).toBe(true);
    expect(check(q, 0x6b09a059 + 300).ok).toBe(true);
    expect(check(q, 0x6b09a059 + 301)).toMatchObject({ ok: false, rcode: RCODE_NOTAUTH, error: TSIG_ERROR.BADTIME });
    expect(check(q, 0x6b09a059 - 301)).toMatchObject({ ok: false, error: TSIG_ERROR.BADTIME });
  });

  it('FORMERR for a TSIG that is not the last record, a second TSIG, or a MAC too short; BADTRUNC for a short but right MAC', () => {
    const q = hex(KDIG_QUERY);
    const at = walk(q).lastAdditional!.at;
    const tsigRR = q.subarray(at);
    const opt = dnsPacket.encode({ additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] }] }).subarray(12);
    const notLast = Buffer.concat([q, opt]);
    notLast.writeUInt16BE(2, 10);
    expect(check(notLast, 0x6b09a059)).toMatchObject({ ok: false, rcode: RCODE_FORMERR });
    const twice = Buffer.concat([q, tsigRR]);
    twice.writeUInt16BE(2, 10);
    expect(check(twice, 0x6b09a059)).toMatchObject({ ok: false, rcode: RCODE_FORMERR });
    // Re-encode the TSIG with its MAC cut to 8 and to 16 bytes.
    const t = parseTsig(q, at);
    const cut = (n: number) => {
      const head = q.subarray(0, at);
      const name = Buffer.from('077866722d6b657900', 'hex');
      const alg = Buffer.from('0b686d61632d73686132353600', 'hex');
      const rd = Buffer.concat([alg, Buffer.from('00006b09a059012c', 'hex'), Buffer.from([0, n]), t.mac.subarray(0, n), Buffer.from('062e00000000', 'hex')]);
      const fixed = Buffer.alloc(10);
      fixed.writeUInt16BE(250, 0);
      fixed.writeUInt16BE(255, 2);
      fixed.writeUInt16BE(rd.length, 8);
      return Buffer.concat([head, name, fixed, rd]);
    };
    expect(check(cut(8), 0x6b09a059)).toMatchObject({ ok: false, rcode: RCODE_FORMERR });
    expect(check(cut(16), 0x6b09a059)).toMatchObject({ ok: false, rcode: RCODE_NOTAUTH, error: TSIG_ERROR.BADTRUNC });
  });

  it('signs every message of a multi-message response with the running MAC; a verifier rejects a changed, dropped or reordered message', () => {
    const request = signRequest(dnsPacket.encode({ type: 'query', id: 7, questions: [{ name: 'imvu001.world', type: 'AXFR', class: 'IN' }] }), key, 1_800_000_000);
    const msgs = [1, 2, 3].map((i) =>
      dnsPacket.encode({ type: 'response', id: 7, flags: dnsPacket.AUTHORITATIVE_ANSWER, answers: [{ name: `n${i}.imvu001.world`, type: 'A', class: 'IN', ttl: 60, data: `192.0.2.${i}` }] }),
    );
    const signer = new ResponseSigner(key, request.mac, 7, () => 1_800_000_000);
    const signed = msgs.map((m) => signer.sign(m));
    const v = new ResponseVerifier(key, request.mac);
    for (const m of signed) expect(v.verify(m).error).toBe(0);

    const changed = signed.map((m) => Buffer.from(m));
    changed[1]!.writeUInt8(changed[1]!.readUInt8(20) ^ 1, 20);
    const v2 = new ResponseVerifier(key, request.mac);
    v2.verify(changed[0]!);
    expect(() => v2.verify(changed[1]!)).toThrow(/bad TSIG MAC/);

    const v3 = new ResponseVerifier(key, request.mac);
    v3.verify(signed[0]!);
    expect(() => v3.verify(signed[2]!)).toThrow(/bad TSIG MAC/);
    // Signed for another request: the first message fails.
    expect(() => new ResponseVerifier(key, Buffer.alloc(32)).verify(signed[0]!)).toThrow(/bad TSIG MAC/);
  });

  it('error answers: BADKEY/BADSIG carry an empty MAC and the request time', () => {
    const q = hex(KDIG_QUERY);
    const t = parseTsig(q, walk(q).lastAdditional!.at);
    const head = Buffer.from(q.subarray(0, 12));
    head.writeUInt16BE(0x8000 | RCODE_NOTAUTH, 2);
    head.writeUInt16BE(0, 4);
    head.writeUInt16BE(0, 10);
    const out = appendUnsignedError(head, t, TSIG_ERROR.BADKEY);
    const back = parseTsig(out, 12);
    expect(back).toMatchObject({ keyName: 'xfr-key', mac: Buffer.alloc(0), error: TSIG_ERROR.BADKEY, timeSigned: t.timeSigned, originalId: 0x062e });
    expect(out.readUInt16BE(10)).toBe(1);
  });

  it('keys: base64 secrets of 16 bytes or more, HMAC-SHA256 only, names normalised', () => {
    expect(tsigKey({ name: 'XFR-Key.', secret: SECRET }).name).toBe('xfr-key');
    expect(() => tsigKey({ name: 'k', secret: 'c2hvcnQ=' })).toThrow(/too short/);
    expect(() => tsigKey({ name: 'k', secret: 'not base64!' })).toThrow(/base64/);
    expect(() => tsigKey({ name: 'k', secret: SECRET, algorithm: 'hmac-md5.sig-alg.reg.int' })).toThrow(/not supported/);
    expect(() => tsigKey({ name: 'a..b', secret: SECRET })).toThrow(/key name/);
  });

  it('names on the wire: compression pointers followed backwards only, loops refused', () => {
    const msg = Buffer.from('000000000000000000000000' + '03666f6f00' + '03626172c00c' + 'c017', 'hex');
    expect(readName(msg, 17)).toEqual({ name: 'bar.foo', end: 23 });
    expect(() => readName(msg, 23)).toThrow(/pointer/); // points at itself
    const forward = Buffer.from('000000000000000000000000' + 'c00e' + '03666f6f00', 'hex');
    expect(() => readName(forward, 12)).toThrow(/pointer/);
    expect(() => walk(Buffer.from('0000000000010000000000000366', 'hex'))).toThrow();
  });
});
