// The chokepoint serialises each input once (its canonical copy) and reads the command's signed
// bytes, its sizes and the entry's encoding off that serialisation. These tests hold it to the
// full encodings it replaces: byte for byte, and never where the schema's copy of the command
// differs from the input.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { signCommand } from '../identity/envelope.ts';
import { canonicalBytes, canonicalJson } from '../ledger/canonical.ts';
import { decodeEntry, encodeEntry, encodeEntryWith } from '../ledger/ledger.ts';
import { testPlatform, type Actor, type TestPlatform } from '../testing.ts';
import { NotRecorded } from './chokepoint.ts';
import type { LedgerEntry } from '../types.ts';

describe('encodeEntryWith', () => {
  it('gives the bytes of encodeEntry for any entry, the command given as its canonical JSON', () => {
    const json = fc.jsonValue();
    const gate = fc.record({ gate: fc.integer({ min: 0, max: 17 }), status: fc.constantFrom('pass', 'deny', 'n/a'), reason: fc.string({ unit: 'binary' }) });
    const entry = fc.record({
      v: fc.constant(1 as const),
      index: fc.nat(),
      at: fc.string({ unit: 'binary' }),
      command: fc.record({ command: fc.dictionary(fc.string(), json), sig: fc.string({ unit: 'binary' }) }),
      decision: fc.record({ allowed: fc.boolean(), gates: fc.array(gate) }),
    });
    fc.assert(
      fc.property(entry, (e) => {
        const le = e as unknown as LedgerEntry;
        expect(encodeEntryWith(le, canonicalJson(le.command)).equals(encodeEntry(le))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('encodes in full an entry with more members (an elided body) or with an index that is not an integer', () => {
    const base = { v: 1, index: 3, at: 'now', command: { command: { type: 'x' }, sig: 's' }, decision: { allowed: false, gates: [] } } as unknown as LedgerEntry;
    const wrong = '{"bogus":true}';
    const elided = { ...base, elided: { sha256: 'ab', bytes: 9999 } };
    expect(encodeEntryWith(elided, wrong).equals(encodeEntry(elided))).toBe(true);
    const odd = { ...base, index: 1.5 };
    expect(encodeEntryWith(odd, wrong).equals(encodeEntry(odd))).toBe(true);
    expect(encodeEntryWith(base, undefined).equals(encodeEntry(base))).toBe(true);
  });
});

// The daemon checks signatures ahead on worker threads (over the raw input); decide() must still
// judge the bytes the schema reads, so both paths give the same verdicts.
describe.each([
  ['inline', false],
  ['checked ahead on worker threads', true],
])('the chokepoint reads the signed bytes off its canonical copy (signatures %s)', (_how, parallelVerify) => {
  let p: TestPlatform;
  let member: Actor;
  beforeEach(async () => {
    p = await testPlatform({ parallelVerify });
    member = await p.register('member1', 'member');
  });
  afterEach(async () => p.cleanup());

  it('records every entry in its canonical encoding, whatever the key order the client sent', async () => {
    const signed = signCommand(member.key, 'consent.record', { subject: member.id, purpose: 'news', imvu: 'IMVU-001', granted: true }, { origin: p.config.origin });
    // The same signed command with its members in another order.
    const shuffled = { sig: signed.sig, command: Object.fromEntries(Object.entries(signed.command).reverse()) };
    const r = await p.chokepoint.submit(shuffled);
    const [data] = await p.store.readEntries(r.index, r.index + 1);
    expect(data!.equals(canonicalBytes(decodeEntry(data!)))).toBe(true);
    expect(decodeEntry(data!).command).toEqual(signed);
  });

  it('checks the signature over the command the gates see: a body member the schema drops (__proto__) fails it, as it always did', async () => {
    // An own "__proto__" member is kept by JSON.parse and by the canonical copy, and dropped by the
    // body schema's copy: the signature covers bytes the gates never see.
    const body = JSON.parse(`{"__proto__":{"x":1},"imvu":"IMVU-001","subject":"${member.id}","purpose":"news","granted":true}`) as Record<string, never>;
    const signed = signCommand(member.key, 'consent.record', body, { origin: p.config.origin });
    const before = p.chokepoint.ledger.size;
    const err = await p.chokepoint.submit(signed).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(NotRecorded);
    expect((err as NotRecorded).why).toBe('bad-signature');
    expect(p.chokepoint.ledger.size).toBe(before);
  });
});
