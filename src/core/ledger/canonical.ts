// RFC 8785 (JCS): the one byte encoding that is signed, hashed and replayed.
//
// The serialiser is that of the `canonicalize` package (2.1.0), rewritten with loops instead of
// reduce() and template strings: it runs several times for every entry the chokepoint appends,
// and the output must stay the library's to the byte, quirks included (canonical.test.ts checks it
// against the library).

/** A string JSON.stringify returns quoted as it is: no quote, backslash, control character or surrogate. */
// eslint-disable-next-line no-control-regex -- control characters are exactly what JSON escapes
const PLAIN = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/;

function quote(s: string): string {
  return PLAIN.test(s) ? '"' + s + '"' : JSON.stringify(s);
}

function serialize(value: unknown): string | undefined {
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'number') {
    if (isNaN(value)) throw new Error('NaN is not allowed');
    if (!isFinite(value)) throw new Error('Infinity is not allowed');
    return JSON.stringify(value);
  }
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  const o = value as { toJSON?: unknown } & Record<string, unknown>;
  if (o.toJSON instanceof Function) return serialize((o.toJSON as () => unknown).call(o));
  if (Array.isArray(value)) {
    let out = '[';
    // Holes are skipped, as reduce() skips them; the comma depends on the index, as it does there.
    for (let i = 0; i < value.length; i++) {
      if (!(i in value)) continue;
      const v: unknown = value[i];
      if (i !== 0) out += ',';
      out += serialize(v === undefined || typeof v === 'symbol' ? null : v);
    }
    return out + ']';
  }
  const keys = Object.keys(o).sort();
  let out = '';
  for (const k of keys) {
    const v = o[k];
    if (v === undefined || typeof v === 'symbol') continue;
    if (out.length !== 0) out += ',';
    out += quote(k) + ':' + serialize(v);
  }
  return '{' + out + '}';
}

export function canonicalJson(value: unknown): string {
  const out = serialize(value);
  if (out === undefined) throw new Error('value cannot be canonicalised');
  return out;
}

export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), 'utf8');
}
