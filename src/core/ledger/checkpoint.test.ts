import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import {
  MAX_NOTE_BYTES,
  MAX_SIGNATURES,
  addSignature,
  formatCheckpoint,
  noteKeyId,
  openCheckpoint,
  openNote,
  parseCheckpoint,
  parseVerifierKey,
  signCheckpoint,
  signNote,
  verifierKey,
  type Checkpoint,
} from './checkpoint.ts';

const PKCS8_ED25519_PREFIX = '302e020100300506032b657004220420';

function keyFromSeed(seed: Buffer): KeyObject {
  return createPrivateKey({ key: Buffer.concat([Buffer.from(PKCS8_ED25519_PREFIX, 'hex'), seed]), format: 'der', type: 'pkcs8' });
}

function rawPub(k: KeyObject): Buffer {
  return createPublicKey(k).export({ format: 'der', type: 'spki' }).subarray(-32);
}

/** True when the string has no character below U+0020 (which notes may not contain). */
function noControl(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) < 0x20) return false;
  return true;
}

function newKey(): { privateKey: KeyObject; raw: Buffer } {
  const { privateKey } = generateKeyPairSync('ed25519');
  return { privateKey, raw: rawPub(privateKey) };
}

const ROOT8 = Buffer.from('5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328', 'hex');
const ORIGIN = 'example.com/nexus-test';

// ---------------------------------------------------------------------------------------------
// External vectors.
//
// The C2SP signed-note spec (C2SP/C2SP signed-note.md) publishes no verifier key, so the key-ID and
// signature vectors come from the reference implementation it was extracted from:
// golang.org/x/mod/sumdb/note, note_test.go (TestNewVerifier, TestSign, TestOpen) and the package
// documentation: the PeterNeumann and EnochRoot keys and signed notes below.
const PETER_VKEY = 'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW';
// Go's private key format: PRIVATE+KEY+<name>+<id>+base64(0x01 || 32-byte Ed25519 seed).
const PETER_SKEY_B64 = 'AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz';
const ENOCH_VKEY = 'EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop';
const GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const PETER_SIG = '— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n';
const ENOCH_SIG = '— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n';

// RFC 8032 section 7.1, TEST 1: secret key (seed) and its public key.
const RFC8032_SEED = Buffer.from('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60', 'hex');
const RFC8032_PUB = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';
const RFC8032_SIG_EMPTY =
  'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b';

describe('checkpoint: format and parse', () => {
  it('formats the exact C2SP layout', () => {
    expect(formatCheckpoint({ origin: ORIGIN, size: 8, rootHash: ROOT8 })).toBe(
      'example.com/nexus-test\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n',
    );
    expect(formatCheckpoint({ origin: 'o', size: 0, rootHash: ROOT8, extensions: ['ext one', 'x'] })).toBe(
      'o\n0\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\next one\nx\n',
    );
  });

  it('parses the C2SP tlog-checkpoint example body', () => {
    // The example checkpoint in C2SP/C2SP tlog-checkpoint.md.
    const c = parseCheckpoint('example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n');
    expect(c.origin).toBe('example.com/behind-the-sofa');
    expect(c.size).toBe(20852163);
    expect(c.rootHash.toString('base64')).toBe('CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=');
    expect(c.extensions).toBeUndefined();
  });

  it('round trips (property)', () => {
    const line = fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' }).filter(noControl);
    fc.assert(
      fc.property(
        line,
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.array(line, { maxLength: 4 }),
        (origin, size, root, extensions) => {
          const c: Checkpoint = { origin, size, rootHash: Buffer.from(root), ...(extensions.length ? { extensions } : {}) };
          const text = formatCheckpoint(c);
          expect(parseCheckpoint(text)).toEqual(c);
          expect(formatCheckpoint(parseCheckpoint(text))).toBe(text);
        },
      ),
    );
  });

  it('rejects malformed checkpoints with a clear message', () => {
    const good = formatCheckpoint({ origin: ORIGIN, size: 8, rootHash: ROOT8 });
    const b64 = ROOT8.toString('base64');
    const cases: [string, RegExp][] = [
      ['', /end with a newline/],
      [good.slice(0, -1), /end with a newline/],
      [`${ORIGIN}\n8\n`, /at least 3 lines/],
      [`\n8\n${b64}\n`, /line 1 is empty/],
      [`${ORIGIN}\n\n${b64}\n`, /line 2 is empty/],
      [`${ORIGIN}\n08\n${b64}\n`, /leading zeros/],
      [`${ORIGIN}\n-1\n${b64}\n`, /not a decimal/],
      [`${ORIGIN}\n+8\n${b64}\n`, /not a decimal/],
      [`${ORIGIN}\n8.0\n${b64}\n`, /not a decimal/],
      [`${ORIGIN}\n 8\n${b64}\n`, /not a decimal/],
      [`${ORIGIN}\n99999999999999999999\n${b64}\n`, /too large/],
      [`${ORIGIN}\n8\n${b64.slice(0, -1)}\n`, /base64/],
      [`${ORIGIN}\n8\n${Buffer.from(ROOT8).toString('base64url')}\n`, /base64/],
      [`${ORIGIN}\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyh=\n`, /canonical base64/], // non-zero trailing bits
      [`${ORIGIN}\n8\n${Buffer.alloc(31).toString('base64')}\n`, /31 bytes/],
      [`${ORIGIN}\r\n8\n${b64}\n`, /control character U\+000d/],
      [`${ORIGIN}\n8\n${b64}\n\n`, /line 4 is empty.*openNote/],
      [`${good}\n— ${ORIGIN} AAAA\n`, /line 4 is empty/],
      [`\uD800${good}`, /lone surrogate/],
      [`${good}${'x'.repeat(MAX_NOTE_BYTES)}\n`, /larger than/],
    ];
    for (const [text, msg] of cases) expect(() => parseCheckpoint(text), JSON.stringify(text.slice(0, 60))).toThrow(msg);
    expect(() => parseCheckpoint(42 as never)).toThrow(/must be a string/);
  });

  it('refuses to format invalid checkpoints', () => {
    const bad: Checkpoint[] = [
      { origin: '', size: 1, rootHash: ROOT8 },
      { origin: 'a\nb', size: 1, rootHash: ROOT8 },
      { origin: 'a\tb', size: 1, rootHash: ROOT8 },
      { origin: 'a', size: -1, rootHash: ROOT8 },
      { origin: 'a', size: 1.5, rootHash: ROOT8 },
      { origin: 'a', size: 2 ** 53, rootHash: ROOT8 },
      { origin: 'a', size: 1, rootHash: Buffer.alloc(31) },
      { origin: 'a', size: 1, rootHash: ROOT8, extensions: [''] },
      { origin: 'a', size: 1, rootHash: ROOT8, extensions: ['x\ny'] },
    ];
    for (const c of bad) expect(() => formatCheckpoint(c)).toThrow(Error);
  });
});

describe('checkpoint: keys', () => {
  it('reproduces the published key ID of the Go reference verifier key (PeterNeumann+c74f20a3)', () => {
    const { name, publicKeyRaw } = parseVerifierKey(PETER_VKEY);
    expect(name).toBe('PeterNeumann');
    expect(noteKeyId(name, publicKeyRaw).toString('hex')).toBe('c74f20a3');
    expect(verifierKey(name, publicKeyRaw)).toBe(PETER_VKEY);
    const enoch = parseVerifierKey(ENOCH_VKEY);
    expect(noteKeyId(enoch.name, enoch.publicKeyRaw).toString('hex')).toBe('af0cfe78');
  });

  it('round-trips verifier keys whose base64 material contains +', () => {
    for (let i = 0; i < 64; i++) {
      const raw = rawPub(keyFromSeed(Buffer.alloc(32, i)));
      const vkey = verifierKey('nexus.local/log', raw);
      const parsed = parseVerifierKey(vkey);
      expect(Buffer.from(parsed.publicKeyRaw).equals(raw), vkey).toBe(true);
    }
    expect([...Array(64).keys()].some((i) => verifierKey('n', rawPub(keyFromSeed(Buffer.alloc(32, i)))).split('+').length > 3)).toBe(true);
  });

  it('derives the verifier key from the Go reference signer key', () => {
    const seed = Buffer.from(PETER_SKEY_B64, 'base64');
    expect(seed[0]).toBe(0x01);
    const k = keyFromSeed(seed.subarray(1));
    expect(verifierKey('PeterNeumann', rawPub(k))).toBe(PETER_VKEY);
  });

  it('rejects mangled verifier keys', () => {
    const bad = [
      'PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW', // wrong ID
      'PeterNeuman+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW', // wrong name
      'PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T', // truncated
      'PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW', // unknown algorithm
      'PeterNeumann+c74f20a3',
      'Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
      '+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW',
    ];
    for (const k of bad) expect(() => parseVerifierKey(k), k).toThrow(Error);
    for (let i = 0; i < PETER_VKEY.length; i++) {
      const mangled = PETER_VKEY.slice(0, i) + String.fromCharCode(PETER_VKEY.charCodeAt(i) + 1) + PETER_VKEY.slice(i + 1);
      expect(() => parseVerifierKey(mangled), mangled).toThrow(Error);
    }
  });

  it('rejects invalid key names and key lengths', () => {
    const pub = Buffer.alloc(32, 7);
    for (const name of ['', 'a b', 'a+b', 'a\u00a0b', 'a\u3000b', 'a\nb', 'a\u0085b']) {
      expect(() => noteKeyId(name, pub), JSON.stringify(name)).toThrow(/invalid key name/);
    }
    expect(() => noteKeyId('ok', Buffer.alloc(31))).toThrow(/32 raw bytes/);
    expect(() => noteKeyId('ok', Buffer.alloc(33))).toThrow(/32 raw bytes/);
  });
});

describe('checkpoint: signed notes', () => {
  const peter = parseVerifierKey(PETER_VKEY);
  const enoch = parseVerifierKey(ENOCH_VKEY);
  const peterKey = keyFromSeed(Buffer.from(PETER_SKEY_B64, 'base64').subarray(1));

  it('signs exactly as the Go reference implementation (TestSign)', () => {
    expect(signNote(GO_TEXT, 'PeterNeumann', peterKey)).toBe(`${GO_TEXT}\n${PETER_SIG}`);
  });

  it('opens the Go reference notes (TestOpen)', () => {
    const note = `${GO_TEXT}\n${PETER_SIG}${ENOCH_SIG}`;
    expect(openNote(note, [peter])).toEqual({ text: GO_TEXT, signers: ['PeterNeumann'] });
    expect(openNote(note, [peter, enoch])).toEqual({ text: GO_TEXT, signers: ['PeterNeumann', 'EnochRoot'] });
    expect(openNote(note, [enoch])).toEqual({ text: GO_TEXT, signers: ['EnochRoot'] });
    expect(() => openNote(note, [])).toThrow(/no verifiable signature/);
    // repeated signatures and an unknown corrupted one are fine
    const corruptEnoch = `${ENOCH_SIG.slice(0, 60)}ABCD${ENOCH_SIG.slice(60)}`;
    expect(openNote(`${GO_TEXT}\n${PETER_SIG}${PETER_SIG}${ENOCH_SIG}${corruptEnoch}`, [peter]).signers).toEqual(['PeterNeumann']);
    // a corrupted signature by a known key is an error
    expect(() => openNote(`${GO_TEXT}\n${PETER_SIG.slice(0, 60)}ABCD${PETER_SIG.slice(60)}`, [peter])).toThrow(/invalid signature for key PeterNeumann\+c74f20a3/);
    // the Go test's malformed messages
    const bad = [
      GO_TEXT,
      `${GO_TEXT}\n`,
      `${GO_TEXT}\n${PETER_SIG.slice(0, -1)}`,
      `\u0001${GO_TEXT}\n${PETER_SIG}`,
      `${GO_TEXT}\n— Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=`,
      `${GO_TEXT}\n${PETER_SIG}Unexpected line.\n`,
      `${GO_TEXT}\n${PETER_SIG.repeat(MAX_SIGNATURES + 1)}`,
    ];
    for (const n of bad) expect(() => openNote(n, [peter]), JSON.stringify(n.slice(-40))).toThrow(Error);
    expect(openNote(`${GO_TEXT}\n${PETER_SIG.repeat(MAX_SIGNATURES)}`, [peter]).signers).toEqual(['PeterNeumann']);
  });

  it('pins a known checkpoint note byte for byte (RFC 8032 test key, deterministic Ed25519)', () => {
    const key = keyFromSeed(RFC8032_SEED);
    // the key construction is right: RFC 8032 TEST 1 public key and empty-message signature
    expect(rawPub(key).toString('hex')).toBe(RFC8032_PUB);
    expect(sign(null, Buffer.alloc(0), key).toString('hex')).toBe(RFC8032_SIG_EMPTY);
    expect(noteKeyId(ORIGIN, rawPub(key)).toString('hex')).toBe('e6a33260');
    // Expected line cross-checked outside this code with the openssl CLI (pkeyutl -sign -rawin)
    // and sha256sum over "example.com/nexus-test\n\x01" || public key.
    const expected =
      'example.com/nexus-test\n' +
      '8\n' +
      'XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n' +
      '\n' +
      '\u2014 example.com/nexus-test 5qMyYIxnBBPfNGdvL5AlB5I7yOVkGqNATTUB08BYwGJNr6VKLPN65FUns04179uDeruymnTLAuAPiW+d1ywswNrapwo=\n';
    const note = signCheckpoint({ origin: ORIGIN, size: 8, rootHash: ROOT8 }, ORIGIN, key);
    expect(note).toBe(expected);
    expect(verifierKey(ORIGIN, rawPub(key))).toBe('example.com/nexus-test+e6a33260+AddamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea');
    const opened = openCheckpoint(note, [{ name: ORIGIN, publicKeyRaw: rawPub(key) }], ORIGIN);
    expect(opened.signers).toEqual([ORIGIN]);
    expect(opened.checkpoint).toEqual({ origin: ORIGIN, size: 8, rootHash: ROOT8 });
  });

  it('round trips with fresh keys and cosigners', () => {
    const log = newKey();
    const w1 = newKey();
    const w2 = newKey();
    const cp: Checkpoint = { origin: 'example.com/log', size: 12345, rootHash: Buffer.alloc(32, 9), extensions: ['ext'] };
    let note = signCheckpoint(cp, 'example.com/log', log.privateKey);
    note = addSignature(note, 'witness.example/one', w1.privateKey);
    note = addSignature(note, 'witness.example/two', w2.privateKey);
    expect(addSignature(note, 'witness.example/two', w2.privateKey)).toBe(note); // same key: replaced, not repeated
    expect(note.split('\n— ').length - 1).toBe(3);
    const all = [
      { name: 'example.com/log', publicKeyRaw: log.raw },
      { name: 'witness.example/one', publicKeyRaw: w1.raw },
      { name: 'witness.example/two', publicKeyRaw: w2.raw },
    ];
    const opened = openCheckpoint(note, all, 'example.com/log');
    expect(opened.checkpoint).toEqual(cp);
    expect(opened.signers).toEqual(['example.com/log', 'witness.example/one', 'witness.example/two']);
    expect(openNote(note, [all[1]!]).signers).toEqual(['witness.example/one']);
    expect(() => openCheckpoint(note, all, 'example.com/other')).toThrow(/not the expected/);
  });

  it('round trips arbitrary note texts (property)', () => {
    const { privateKey, raw } = newKey();
    const text = fc
      .array(fc.string({ maxLength: 30, unit: 'grapheme' }).filter(noControl), { minLength: 1, maxLength: 6 })
      .map((ls) => `${ls.join('\n')}\n`);
    fc.assert(
      fc.property(text, (t) => {
        const note = signNote(t, 'k', privateKey);
        expect(openNote(note, [{ name: 'k', publicKeyRaw: raw }])).toEqual({ text: t, signers: ['k'] });
      }),
      { numRuns: 200 },
    );
  });

  it('rejects a signature by the wrong key, and a changed body', () => {
    const a = newKey();
    const b = newKey();
    const note = signCheckpoint({ origin: ORIGIN, size: 8, rootHash: ROOT8 }, ORIGIN, a.privateKey);
    // wrong key under the same name: key ID differs, so the signature is unknown and nothing verifies
    expect(() => openNote(note, [{ name: ORIGIN, publicKeyRaw: b.raw }])).toThrow(/no verifiable signature/);
    // any change to the body is an invalid signature by the known key
    const changed = note.replace('\n8\n', '\n9\n');
    expect(() => openNote(changed, [{ name: ORIGIN, publicKeyRaw: a.raw }])).toThrow(/invalid signature for key example\.com\/nexus-test\+/);
    const changedRoot = note.replace('Xcna', 'Ycna');
    expect(() => openNote(changedRoot, [{ name: ORIGIN, publicKeyRaw: a.raw }])).toThrow(/invalid signature/);
    // a signature line lifted onto another body
    const other = signNote('other\n', ORIGIN, b.privateKey);
    const spliced = `other\n\n${note.slice(note.lastIndexOf('\u2014'))}`;
    expect(() => openNote(spliced, [{ name: ORIGIN, publicKeyRaw: a.raw }])).toThrow(/invalid signature/);
    expect(openNote(other, [{ name: ORIGIN, publicKeyRaw: b.raw }]).text).toBe('other\n');
    // every single-bit change to the signature bytes is rejected or ignored, never accepted
    const sigB64 = note.slice(note.lastIndexOf(' ') + 1, -1);
    const sig = Buffer.from(sigB64, 'base64');
    for (let bit = 0; bit < sig.length * 8; bit++) {
      const s = Buffer.from(sig);
      s[bit >> 3]! ^= 1 << (bit & 7);
      const tampered = note.replace(sigB64, s.toString('base64'));
      expect(() => openNote(tampered, [{ name: ORIGIN, publicKeyRaw: a.raw }])).toThrow(/invalid signature|no verifiable signature/);
    }
  });

  it('signNote and addSignature validate their input', () => {
    const { privateKey } = newKey();
    expect(() => signNote('no newline', 'k', privateKey)).toThrow(/end with a newline/);
    expect(() => signNote('', 'k', privateKey)).toThrow(/end with a newline/);
    expect(() => signNote('bad\u0000\n', 'k', privateKey)).toThrow(/control character/);
    expect(() => signNote('ok\n', 'bad name', privateKey)).toThrow(/invalid key name/);
    expect(() => signNote('ok\n', 'k', createPublicKey(privateKey))).toThrow(/private KeyObject/);
    expect(() => signNote('ok\n', 'k', generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey)).toThrow(/Ed25519/);
    expect(() => signNote(`${'x'.repeat(MAX_NOTE_BYTES)}\n`, 'k', privateKey)).toThrow(/larger than/);
    expect(() => addSignature('not a note\n', 'k', privateKey)).toThrow(/malformed note/);
    let note = signNote('t\n', 'k0', privateKey);
    for (let i = 1; i < MAX_SIGNATURES; i++) note = addSignature(note, `k${i}`, privateKey);
    expect(() => addSignature(note, 'one-too-many', privateKey)).toThrow(/at most 100/);
  });

  it('handles hostile notes without crashing', () => {
    const v = [peter];
    const hostile: unknown[] = [
      undefined,
      null,
      42,
      {},
      '',
      '\n',
      '\n\n',
      '\n\n\n',
      '— \n\n— \n',
      `${GO_TEXT}\n— PeterNeumann \n`,
      `${GO_TEXT}\n— PeterNeumann AAAA\n`, // too short
      `${GO_TEXT}\n— PeterNeumann x08g\n`, // 3 bytes
      `${GO_TEXT}\n— PeterNeumann ${Buffer.concat([Buffer.from('c74f20a3', 'hex'), Buffer.alloc(10)]).toString('base64')}\n`, // known key, short sig
      `${GO_TEXT}\n— PeterNeumann ${Buffer.concat([Buffer.from('c74f20a3', 'hex'), Buffer.alloc(64)]).toString('base64')}\n`, // known key, zero sig
      `${GO_TEXT}\n— PeterNeumann ${Buffer.concat([Buffer.from('c74f20a3', 'hex'), Buffer.alloc(5000, 0xff)]).toString('base64')}\n`,
      `${GO_TEXT}\n-- PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`,
      `${GO_TEXT}\n${PETER_SIG.replace('\n', '\r\n')}`,
      `${GO_TEXT}\n${PETER_SIG}`.replace('If', '\uDC00If'),
      `${'a'.repeat(MAX_NOTE_BYTES)}\n\n${PETER_SIG}`,
      `${GO_TEXT}\n${'— x AAAAAAAA\n'.repeat(10_000)}`,
    ];
    for (const n of hostile) {
      expect(() => openNote(n as string, v), JSON.stringify(n)?.slice(0, 80)).toThrow(Error);
    }
    // malformed verifier lists are errors too
    expect(() => openNote(`${GO_TEXT}\n${PETER_SIG}`, null as never)).toThrow(/array/);
    expect(() => openNote(`${GO_TEXT}\n${PETER_SIG}`, [{ name: 'PeterNeumann', publicKeyRaw: Buffer.alloc(31) }])).toThrow(/32 raw bytes/);
    expect(() => openNote(`${GO_TEXT}\n${PETER_SIG}`, [{ name: 'a b', publicKeyRaw: Buffer.alloc(32) }])).toThrow(/invalid key name/);
    // fuzz: random bytes after a valid prefix never crash, they throw an Error or open cleanly
    fc.assert(
      fc.property(fc.string({ maxLength: 200, unit: 'binary' }), (junk) => {
        try {
          const r = openNote(`${GO_TEXT}\n${PETER_SIG}${junk}`, v);
          expect(r.signers).toEqual(['PeterNeumann']);
        } catch (e) {
          expect(e).toBeInstanceOf(Error);
        }
      }),
      { numRuns: 300 },
    );
  });
});
