// cosignature/v1 against the specification's own values and published keys, and every way a
// cosignature line can be wrong; hostile lines never crash the parser or the verifier.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { generateKeyPair, publicKeyRaw } from '../identity/keys.ts';
import { formatCheckpoint, signCheckpoint } from '../ledger/checkpoint.ts';
import { cosign, cosignedMessage, cosignerKeyId, cosignerVerifierKey, parseCosignerVerifierKey, parseSignatureLines, verifyCosignature } from './cosignature.ts';

const root = createHash('sha256').update('root').digest();
const text = formatCheckpoint({ origin: 'example.com/log', size: 20852163, rootHash: root });

describe('cosignature/v1 format', () => {
  it('derives the key ID with signature type 0x04, as a published witness vkey has it', () => {
    // A witness key published with its vkey (type 0x04): its key ID must come out the same.
    const vkey = 'remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2';
    const w = parseCosignerVerifierKey(vkey);
    expect(w.name).toBe('remora.n621.de');
    expect(cosignerKeyId(w.name, w.publicKeyRaw).toString('hex')).toBe('da77ade7');
    expect(cosignerVerifierKey(w.name, w.publicKeyRaw)).toBe(vkey);
    // The same key under the plain Ed25519 note type (0x01) has another ID: no cross-use.
    const asLogKey = createHash('sha256').update('remora.n621.de\n\x01').update(w.publicKeyRaw).digest().subarray(0, 4);
    expect(asLogKey.toString('hex')).not.toBe('da77ade7');
  });

  it('reads the timestamps of the specification example and of a published cosignature', () => {
    const [spec] = parseSignatureLines('\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n');
    expect(spec!.name).toBe('witness.example.com/w1');
    expect(spec!.payload.length).toBe(72);
    expect(Number(spec!.payload.readBigUInt64BE(0))).toBe(1679315147); // "time 1679315147" in the spec
    const [other] = parseSignatureLines('\u2014 w ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOworDcFiEBYJXORmnFBOBA==\n');
    expect(Number(other!.payload.readBigUInt64BE(0))).toBe(1727964367);
  });

  it('signs "cosignature/v1\\ntime T\\n" followed by the checkpoint body, and verifies against the vkey', () => {
    expect(cosignedMessage(text, 1679315147).toString()).toBe(`cosignature/v1\ntime 1679315147\n${text}`);
    const { privateKey } = generateKeyPair();
    const vkey = cosignerVerifierKey('witness.test/w1', publicKeyRaw(privateKey));
    const line = cosign(text, 'witness.test/w1', privateKey, 1700000000);
    const raw = Buffer.from(line.split(' ')[2]!, 'base64');
    expect(raw.length).toBe(76);
    expect(raw.subarray(0, 4)).toEqual(cosignerKeyId('witness.test/w1', publicKeyRaw(privateKey)));
    expect(raw.readBigUInt64BE(4)).toBe(1700000000n);
    expect(verifyCosignature(text, line, vkey)).toEqual({ valid: true, name: 'witness.test/w1', timestamp: 1700000000 });

    // Over the signed note too (its text is what was cosigned).
    const log = generateKeyPair().privateKey;
    const note = signCheckpoint({ origin: 'example.com/log', size: 20852163, rootHash: root }, 'example.com/log', log);
    expect(verifyCosignature(note, line, vkey).valid).toBe(true);
  });

  it('refuses a cosignature over another checkpoint, another time, another key, or under a plain note key', () => {
    const { privateKey } = generateKeyPair();
    const vkey = cosignerVerifierKey('w', publicKeyRaw(privateKey));
    const line = cosign(text, 'w', privateKey, 1700000000);
    const other = formatCheckpoint({ origin: 'example.com/log', size: 20852164, rootHash: root });
    expect(verifyCosignature(other, line, vkey)).toMatchObject({ valid: false, reason: expect.stringMatching(/does not verify/) });

    const raw = Buffer.from(line.split(' ')[2]!, 'base64');
    raw.writeBigUInt64BE(1700000001n, 4); // move the time: the signature covers it
    expect(verifyCosignature(text, `\u2014 w ${raw.toString('base64')}`, vkey).valid).toBe(false);

    const stranger = cosignerVerifierKey('w', publicKeyRaw(generateKeyPair().privateKey));
    expect(verifyCosignature(text, line, stranger)).toMatchObject({ valid: false, reason: expect.stringMatching(/not by witness w/) });

    // An Ed25519 note signature (type 0x01) by the same key is not a cosignature.
    const plain = signCheckpoint({ origin: 'example.com/log', size: 20852163, rootHash: root }, 'w', privateKey).trimEnd().split('\n').pop()!;
    expect(verifyCosignature(text, plain, vkey).valid).toBe(false);
    // And a log key (type 0x01 vkey) is not a witness key.
    expect(() => parseCosignerVerifierKey(`w+${createHash('sha256').update('w\n\x01').update(publicKeyRaw(privateKey)).digest().subarray(0, 4).toString('hex')}+${Buffer.concat([Buffer.from([1]), publicKeyRaw(privateKey)]).toString('base64')}`)).toThrow(
      /log \(type 0x01\) key/,
    );
  });

  it('refuses lines that are not note signature lines', () => {
    for (const bad of ['', 'x', '\u2014 w AAAA', '\u2014 w AAAAAAAA\n\n', '\u2014 w AAAAAAAA\n\n\u2014 v AAAAAAAA\n', '- w AAAAAAAA\n', '\u2014 w\n', '\u2014 w+x AAAAAAAA\n', '\u2014 w AAAAAA==\n', '\u2014 w AAAAAAA\n'])
      expect(() => parseSignatureLines(bad), JSON.stringify(bad)).toThrow();
    expect(parseSignatureLines('\u2014 a AAAAAAAA\n\u2014 b AAAAAAAA\n').map((l) => l.name)).toEqual(['a', 'b']);
  });
});

describe('cosignature parsing with hostile input (property)', () => {
  const { privateKey } = generateKeyPair();
  const vkey = cosignerVerifierKey('witness.test/w1', publicKeyRaw(privateKey));
  const good = cosign(text, 'witness.test/w1', privateKey, 1700000000);

  it('never throws anything but an Error from the parser, and the verifier never throws', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 300 }), fc.constantFrom(good, `${good}\n`, `${good}\n${good}\n`)), (s) => {
        try {
          const lines = parseSignatureLines(s);
          expect(lines.length).toBeGreaterThan(0);
          for (const l of lines) expect(s).toContain(`${l.line}\n`);
        } catch (err) {
          expect(err).toBeInstanceOf(Error);
        }
        const r = verifyCosignature(text, s, vkey);
        if (r.valid) expect(s.replace(/\n$/, '')).toBe(good);
      }),
      { numRuns: 2000 },
    );
  });

  it('any change to a valid cosignature line makes it invalid', () => {
    fc.assert(
      fc.property(fc.nat({ max: good.length - 1 }), fc.string({ minLength: 1, maxLength: 3 }), (at, insert) => {
        const mutated = good.slice(0, at) + insert + good.slice(at + 1);
        fc.pre(mutated.replace(/\n$/, '') !== good);
        expect(verifyCosignature(text, mutated, vkey).valid).toBe(false);
      }),
      { numRuns: 1000 },
    );
  });
});
