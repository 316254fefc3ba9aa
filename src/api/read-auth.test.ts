import { createPrivateKey, createPublicKey, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { httpbis } from 'http-message-signatures';
import { generateKeyPair, identityIdFromPublicKey, publicKeyRaw } from '../core/identity/keys.ts';
import { ReadAuthError, ReadVerifier, signRead, type IncomingRead } from './read-auth.ts';

// RFC 9421 Appendix B.1.4 (test-key-ed25519) and B.2.6 (signing a request using ed25519).
const RFC_KEY = createPrivateKey({ key: Buffer.from('MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF', 'base64'), format: 'der', type: 'pkcs8' });
const RFC_REQUEST = {
  method: 'POST',
  url: 'https://example.com/foo?param=Value&Pet=dog',
  headers: { Host: 'example.com', Date: 'Tue, 20 Apr 2021 02:07:55 GMT', 'Content-Type': 'application/json', 'Content-Length': '18' },
};
const RFC_PARAMS = '("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"';
const RFC_BASE = [
  '"date": Tue, 20 Apr 2021 02:07:55 GMT',
  '"@method": POST',
  '"@path": /foo',
  '"@authority": example.com',
  '"content-type": application/json',
  '"content-length": 18',
  `"@signature-params": ${RFC_PARAMS}`,
].join('\n');
const RFC_SIGNATURE = 'wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==';

describe('RFC 9421 signature base (the library, against the RFC)', () => {
  it('B.2.6: the signature base and the Ed25519 signature are byte for byte the RFC ones', () => {
    const fields = ['"date"', '"@method"', '"@path"', '"@authority"', '"content-type"', '"content-length"'];
    const lines = httpbis.createSignatureBase({ fields }, RFC_REQUEST);
    lines.push(['"@signature-params"', [RFC_PARAMS]]);
    const base = httpbis.formatSignatureBase(lines);
    expect(base).toBe(RFC_BASE);
    // Ed25519 is deterministic: the same key over the same base gives the RFC's signature.
    expect(sign(null, Buffer.from(base), RFC_KEY).toString('base64')).toBe(RFC_SIGNATURE);
    // The public key of B.1.4 (JWK x) is the one that goes with it.
    expect(createPublicKey(RFC_KEY).export({ format: 'jwk' }).x).toBe('JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs');
  });

  it('the RFC request verifies with this module once its keyid is an identity and its time is now', async () => {
    // The same request and components, but with the parameters this daemon insists on.
    const raw = publicKeyRaw(RFC_KEY);
    const id = identityIdFromPublicKey(raw);
    const created = 1618884473;
    const params = `("date" "@method" "@path" "@query" "@authority" "content-type" "content-length");created=${created};keyid="${id}";nonce="rfc9421-b26-nonce";alg="ed25519"`;
    const fields = ['"date"', '"@method"', '"@path"', '"@query"', '"@authority"', '"content-type"', '"content-length"'];
    const lines = httpbis.createSignatureBase({ fields }, RFC_REQUEST);
    lines.push(['"@signature-params"', [params]]);
    const sig = sign(null, Buffer.from(httpbis.formatSignatureBase(lines)), RFC_KEY).toString('base64');
    const v = new ReadVerifier(async (k) => (k === id ? { name: 'rfc', role: 'creator', publicKey: raw.toString('base64') } : undefined), { now: () => created * 1000 });
    const req: IncomingRead = {
      method: 'POST',
      url: '/foo?param=Value&Pet=dog',
      scheme: 'https',
      headers: { host: 'example.com', date: RFC_REQUEST.headers.Date, 'content-type': 'application/json', 'content-length': '18', 'signature-input': `sig-b26=${params}`, signature: `sig-b26=:${sig}:` },
    };
    expect(await v.verify(req)).toEqual({ id, name: 'rfc', role: 'creator' });
  });

  it('@query of a request without a query is "?" (RFC 9421 section 2.2.7)', () => {
    const lines = httpbis.createSignatureBase({ fields: ['"@query"'] }, { method: 'GET', url: 'http://127.0.0.1:7600/v1/imvus', headers: {} });
    expect(lines).toEqual([['"@query"', ['?']]]);
  });
});

describe('ReadVerifier', () => {
  const key = generateKeyPair().privateKey;
  const raw = publicKeyRaw(key);
  const id = identityIdFromPublicKey(raw);
  const NOW = 1_900_000_000;
  const verifier = (now = NOW) => new ReadVerifier(async (k) => (k === id ? { name: 'alice', role: 'creator', publicKey: raw.toString('base64') } : undefined), { now: () => now * 1000 });
  const incoming = (path: string, headers: Record<string, string>): IncomingRead => ({ method: 'GET', url: path, scheme: 'http', headers: { host: '127.0.0.1:7600', ...headers } });
  const signed = (path: string, opts: Parameters<typeof signRead>[4] = {}) => incoming(path, { ...signRead(key, id, 'GET', `http://127.0.0.1:7600${path}`, { created: NOW, ...opts }) });
  const refused = async (v: ReadVerifier, req: IncomingRead, why: RegExp) => {
    const err = await v.verify(req).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ReadAuthError);
    expect((err as Error).message).toMatch(why);
  };

  it('accepts a signed read and names its signer; the same signed request a second time is a replay', async () => {
    const v = verifier();
    const req = signed('/v1/ledger/entries?from=0&to=5');
    expect(await v.verify(req)).toEqual({ id, name: 'alice', role: 'creator' });
    await refused(v, req, /already used/);
  });

  it('refuses unsigned, half-signed, stale, future, unknown-key and retargeted reads', async () => {
    const v = verifier();
    await refused(v, incoming('/v1/imvus', {}), /must be signed by a registered identity/);
    const s = signed('/v1/imvus');
    await refused(v, incoming('/v1/imvus', { signature: s.headers.signature as string }), /together/);
    await refused(verifier(NOW + 61), signed('/v1/imvus'), /at most 60 s/);
    await refused(verifier(NOW - 61), signed('/v1/imvus'), /at most 60 s/);
    // Another path, another query, another host, another method: the signature covers them.
    const sig = signed('/v1/imvus/IMVU-001');
    await refused(v, { ...sig, url: '/v1/imvus/IMVU-002' }, /does not verify/);
    const q = signed('/v1/ledger/entries?from=0');
    await refused(v, { ...q, url: '/v1/ledger/entries?from=5' }, /does not verify/);
    const h = signed('/v1/imvus');
    await refused(v, { ...h, headers: { ...h.headers, host: 'other.example:7600' } }, /does not verify/);
    const m = signed('/v1/imvus');
    await refused(v, { ...m, method: 'DELETE' }, /does not verify/);
    const pr = signed('/v1/imvus');
    await refused(v, { ...pr, url: '//127.0.0.1:7600/v1/imvus' }, /do not form a URL/);
    await refused(v, { ...pr, headers: { ...pr.headers, host: undefined } }, /do not form a URL/);
    // Signed by a key that is not registered.
    const stranger = generateKeyPair().privateKey;
    const sid = identityIdFromPublicKey(publicKeyRaw(stranger));
    await refused(v, incoming('/v1/imvus', signRead(stranger, sid, 'GET', 'http://127.0.0.1:7600/v1/imvus', { created: NOW }) as unknown as Record<string, string>), /not a registered identity/);
    // Alice's keyid over a stranger's signature.
    const forged = signRead(stranger, id, 'GET', 'http://127.0.0.1:7600/v1/imvus', { created: NOW });
    await refused(v, incoming('/v1/imvus', forged as unknown as Record<string, string>), /does not verify/);
  });

  it('insists on alg ed25519, keyid, created, nonce, @method and @path+@query (or @target-uri), one signature', async () => {
    const v = verifier();
    const base = (params: string, components = '"@method" "@path" "@query"', label = 'sig1') => {
      const fields = components.split(' ');
      const lines = httpbis.createSignatureBase({ fields }, { method: 'GET', url: 'http://127.0.0.1:7600/v1/imvus', headers: {} });
      const p = `(${components});${params}`;
      lines.push(['"@signature-params"', [p]]);
      const sig = sign(null, Buffer.from(httpbis.formatSignatureBase(lines)), key).toString('base64');
      return incoming('/v1/imvus', { 'signature-input': `${label}=${p}`, signature: `${label}=:${sig}:` });
    };
    const good = `created=${NOW};keyid="${id}";nonce="abcdefghijklmnop";alg="ed25519"`;
    expect((await v.verify(base(good))).id).toBe(id);
    expect((await v.verify(base(good.replace('abcdefghijklmnop', 'abcdefghijklmnoq'), '"@method" "@target-uri"'))).id).toBe(id);
    await refused(v, base(`created=${NOW};keyid="${id}";nonce="abcdefghijklmnop1";alg="rsa-pss-sha512"`), /alg="ed25519"/);
    await refused(v, base(`created=${NOW};keyid="${id}";nonce="abcdefghijklmnop2"`), /alg="ed25519"/);
    await refused(v, base(`created=${NOW};nonce="abcdefghijklmnop3";alg="ed25519"`), /keyid/);
    await refused(v, base(`keyid="${id}";nonce="abcdefghijklmnop4";alg="ed25519"`), /created/);
    await refused(v, base(`created=${NOW};keyid="${id}";alg="ed25519"`), /nonce/);
    await refused(v, base(`created=${NOW};keyid="${id}";nonce="abcdefghijklmnop5";alg="ed25519";expires=${NOW - 1}`), /expired/);
    await refused(v, base(`created=${NOW};keyid="${id}";nonce="abcdefghijklmnop6";alg="ed25519";foo=1`), /not accepted/);
    await refused(v, base(good, '"@path" "@query"'), /cover "@method"/);
    await refused(v, base(good, '"@method" "@path"'), /@target-uri/);
    await refused(v, base(good, '"@method" "@path" "@query" "@path"'), /twice/);
    const dummy = `sig1=:${Buffer.alloc(64).toString('base64')}:`;
    await refused(v, incoming('/v1/imvus?x=1', { 'signature-input': `sig1=("@method" "@path" "@query" "@query-param";name="x");${good}`, signature: dummy }), /has parameters/);
    await refused(v, incoming('/v1/imvus', { 'signature-input': `sig1=("@method" "@path" "@query" "@status");${good}`, signature: dummy }), /not accepted/);
    const two = base(good);
    await refused(v, { ...two, headers: { ...two.headers, 'signature-input': `${two.headers['signature-input'] as string}, sig2=${(two.headers['signature-input'] as string).slice(5)}` } }, /exactly one/);
    await refused(v, { ...two, headers: { ...two.headers, signature: (two.headers.signature as string).replace('sig1=', 'other=') } }, /labelled "sig1"/);
    await refused(v, { ...two, headers: { ...two.headers, signature: 'sig1=:AAAA:' } }, /64 bytes/);
  });

  it('hostile headers get a ReadAuthError, never a crash', async () => {
    const v = verifier();
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 300 }), fc.string({ maxLength: 300 }), async (input, sig) => {
        const err = await v.verify(incoming('/v1/imvus', { 'signature-input': input, signature: sig })).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(ReadAuthError);
      }),
      { numRuns: 300 },
    );
    const s = signed('/v1/imvus');
    const input = s.headers['signature-input'] as string;
    await fc.assert(
      fc.asyncProperty(fc.nat({ max: input.length - 1 }), fc.string({ minLength: 1, maxLength: 3 }), async (at, junk) => {
        fc.pre(junk !== input.slice(at, at + junk.length));
        const mutated = input.slice(0, at) + junk + input.slice(at + junk.length);
        const err = await verifier().verify({ ...s, headers: { ...s.headers, 'signature-input': mutated } }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(ReadAuthError);
      }),
      { numRuns: 300 },
    );
  });

  it('remembers a bounded number of nonces: past the bound signed reads get 429 until old ones expire', async () => {
    let now = NOW;
    const v = new ReadVerifier(async (k) => (k === id ? { name: 'alice', role: 'creator', publicKey: raw.toString('base64') } : undefined), { now: () => now * 1000, maxNonces: 3 });
    for (let i = 0; i < 3; i++) await v.verify(signed(`/v1/imvus?i=${i}`));
    const err = await v.verify(signed('/v1/imvus?i=3')).catch((e: unknown) => e);
    expect(err).toMatchObject({ statusCode: 429 });
    now = NOW + 61;
    expect((await v.verify(incoming('/v1/imvus', { ...signRead(key, id, 'GET', 'http://127.0.0.1:7600/v1/imvus', { created: now }) }))).id).toBe(id);
  });
});
