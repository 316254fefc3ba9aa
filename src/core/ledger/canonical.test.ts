// The canonical encoding is what every signature and hash covers: the serialiser must give the
// bytes of the `canonicalize` package (RFC 8785) for every value, quirks included.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import canonicalizeLib from 'canonicalize';
import { canonicalJson } from './canonical.ts';

const reference = canonicalizeLib as unknown as (v: unknown) => string | undefined;

function same(value: unknown): void {
  let want: string | undefined;
  let wantErr: string | undefined;
  try {
    want = reference(value);
  } catch (err) {
    wantErr = (err as Error).message;
  }
  if (wantErr !== undefined || want === undefined) {
    expect(() => canonicalJson(value)).toThrow(wantErr ?? 'cannot be canonicalised');
    return;
  }
  expect(canonicalJson(value)).toBe(want);
}

describe('canonicalJson', () => {
  it('gives the bytes of the canonicalize package for any JSON value', () => {
    // Strings of any UTF-16 code units (lone surrogates, control characters, quotes), doubles of
    // every kind, deep nesting.
    const text = fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: fc.nat({ max: 0xffff }).map((c) => String.fromCharCode(c)) }));
    const key = fc.oneof(text, fc.constantFrom('0', '1', '10', '9', '-1', 'a', 'B', 'é', '\u{1F600}', '__proto__'));
    const leaf = fc.oneof(text, fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer(), fc.boolean(), fc.constant(null));
    const value = fc.letrec((tie) => ({
      node: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('node')), fc.dictionary(key, tie('node'))),
    })).node;
    fc.assert(fc.property(value, (v) => same(v)), { numRuns: 1000 });
  });

  it('keeps the quirks: undefined and symbols skipped in objects, null in arrays, toJSON, holes, errors', () => {
    const cases: unknown[] = [
      { a: undefined, b: Symbol('x'), c: 1 },
      [undefined, Symbol('y'), 2],
      { d: new Date(0), t: { toJSON: () => ({ z: 1, a: [1, 2] }) } },
      // eslint-disable-next-line no-sparse-arrays
      [1, , 3],
      // eslint-disable-next-line no-sparse-arrays
      [, 2],
      { f: () => 1 },
      -0,
      1e21,
      5e-324,
      { n: NaN },
      [Infinity],
      undefined,
      'plain',
      { '': { '': [] } },
      { '\ud800': 'a\udfffb', '\u001f"\\': '\ud83d\ude00' },
    ];
    for (const c of cases) same(c);
  });
});
